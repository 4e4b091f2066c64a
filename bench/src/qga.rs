//! The peer: qemu-guest-agent on a Unix socket, driven over its JSON
//! protocol exactly as libvirt drives it for `virsh domfsfreeze
//! --mountpoint`: `guest-sync` once, then per cycle
//! `guest-fsfreeze-freeze-list` with our mount points and
//! `guest-fsfreeze-thaw`.
//!
//! qemu-ga runs inside [`crate::jail`] (its thaw touches every mount it can
//! see), with the probe shim preloaded, no fsfreeze hook (`-F` not given:
//! the daemon runs no hooks either), its state in a scratch directory, and
//! the RPCs we never use blocked, `guest-fsfreeze-freeze` (all
//! filesystems) first among them.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::ChildGuard;
use crate::clock::now_ns;
use crate::cycle::Cycle;
use crate::probe::{self, FreezeSpan, ProbeLog};

/// Where Debian installs it (package `qemu-guest-agent`).
pub(crate) const DEFAULT_BINARY: &str = "/usr/sbin/qemu-ga";

/// How long one qemu-ga command may take before the benchmark gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// RPCs qemu-ga must refuse (`-b`): everything except what we call.
const BLOCKED_RPCS: &str = "guest-fsfreeze-freeze,guest-exec,guest-exec-status,\
guest-file-open,guest-file-write,guest-shutdown,guest-suspend-disk,guest-suspend-ram,\
guest-suspend-hybrid,guest-set-time,guest-set-vcpus,guest-set-user-password,\
guest-set-memory-blocks,guest-fstrim,guest-ssh-add-authorized-keys,\
guest-ssh-remove-authorized-keys";

#[derive(Debug, thiserror::Error)]
pub(crate) enum QgaError {
    #[error("{0} not found: install it with `apt-get install qemu-guest-agent`")]
    Missing(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("qemu-ga did not create its socket {socket} within {waited:?}; its log:\n{log}")]
    NotReady {
        socket: PathBuf,
        waited: Duration,
        log: String,
    },
    #[error("qemu-ga answered {command} with {answer}")]
    Refused {
        command: &'static str,
        answer: String,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> QgaError {
    let what = what.into();
    move |source| QgaError::Io { what, source }
}

/// A running, connected qemu-ga (stopped when dropped).
#[derive(Debug)]
pub(crate) struct QemuGa {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    mount_points: Vec<String>,
    probe: ProbeLog,
    // Declared last: dropped after the socket is closed.
    child: ChildGuard,
}

impl QemuGa {
    /// Starts qemu-ga in `scratch` confined to `mount_points`, connects and
    /// syncs.
    pub(crate) fn start(
        binary: &Path,
        probe_library: &Path,
        scratch: &Path,
        mount_points: &[&Path],
    ) -> Result<QemuGa, QgaError> {
        if !binary.is_file() {
            return Err(QgaError::Missing(binary.to_owned()));
        }
        let socket = scratch.join("qga.sock");
        let state_dir = scratch.join("qga-state");
        std::fs::create_dir_all(&state_dir).map_err(io_error("creating qemu-ga's state dir"))?;
        let log_file = scratch.join("qga.log");
        let probe = ProbeLog::new(&scratch.join("qga.probe")).map_err(io_error("probe log"))?;
        let myself = std::env::current_exe().map_err(io_error("locating hv-vss-bench"))?;
        let mut command = Command::new(myself);
        command.arg(crate::jail::SUBCOMMAND);
        for mount in mount_points {
            command.arg("--keep").arg(mount);
        }
        command
            .arg("--")
            .arg(binary)
            .args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(&state_dir)
            .arg("-f")
            .arg(scratch.join("qga.pid"))
            .arg("-l")
            .arg(&log_file)
            .arg("-b")
            .arg(BLOCKED_RPCS)
            .env("LD_PRELOAD", probe_library)
            .env(probe::LOG_VAR, probe.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(scratch.join("qga.stderr"))
                    .map_err(io_error("qemu-ga stderr file"))?,
            );
        let mut child = ChildGuard::spawn(&mut command)
            .map_err(io_error(format!("starting {}", binary.display())))?;
        let waited = Duration::from_secs(10);
        let deadline = Instant::now() + waited;
        let stream = loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline && child.is_running() => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => {
                    let log = [scratch.join("qga.stderr"), log_file.clone()]
                        .iter()
                        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("\n");
                    return Err(QgaError::NotReady {
                        socket,
                        waited,
                        log,
                    });
                }
            }
        };
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(io_error("socket timeout"))?;
        let writer = stream.try_clone().map_err(io_error("socket clone"))?;
        let mut qga = QemuGa {
            reader: BufReader::new(stream),
            writer,
            mount_points: mount_points
                .iter()
                .map(|m| m.display().to_string())
                .collect(),
            probe,
            child,
        };
        let id = u64::from(std::process::id()) << 16 | 0x5ca1;
        let answer = qga.execute(
            "guest-sync",
            &json!({"execute": "guest-sync", "arguments": {"id": id}}),
        )?;
        if answer != json!(id) {
            return Err(QgaError::Refused {
                command: "guest-sync",
                answer: answer.to_string(),
            });
        }
        Ok(qga)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Sends one command and returns its `return` value.
    fn execute(&mut self, name: &'static str, command: &Value) -> Result<Value, QgaError> {
        let mut line = command.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(io_error(format!("sending {name}")))?;
        let mut reply = String::new();
        self.reader
            .read_line(&mut reply)
            .map_err(io_error(format!("reading the reply to {name}")))?;
        let parsed: Value = serde_json::from_str(reply.trim()).map_err(|e| QgaError::Refused {
            command: name,
            answer: format!("unparsable {reply:?} ({e})"),
        })?;
        match parsed.get("return") {
            Some(value) => Ok(value.clone()),
            None => Err(QgaError::Refused {
                command: name,
                answer: parsed.to_string(),
            }),
        }
    }

    fn expect_count(
        &mut self,
        name: &'static str,
        command: &Value,
        expected: usize,
    ) -> Result<(), QgaError> {
        let answer = self.execute(name, command)?;
        if answer.as_u64() == Some(expected as u64) {
            Ok(())
        } else {
            Err(QgaError::Refused {
                command: name,
                answer: format!("{answer} (expected {expected} filesystems)"),
            })
        }
    }

    /// One freeze-list / thaw cycle. After a failed freeze qemu-ga has
    /// thawed by itself; after a failed thaw the caller's guards thaw.
    pub(crate) fn cycle(&mut self) -> Result<(Cycle, FreezeSpan), QgaError> {
        let n = self.mount_points.len();
        self.probe
            .take_new()
            .map_err(io_error("reading the probe log"))?;
        let freeze = json!({
            "execute": "guest-fsfreeze-freeze-list",
            "arguments": {"mountpoints": self.mount_points},
        });
        let thaw = json!({"execute": "guest-fsfreeze-thaw"});
        let t0 = now_ns();
        let frozen = self.expect_count("guest-fsfreeze-freeze-list", &freeze, n);
        let t1 = now_ns();
        // Always ask for the thaw, even when the freeze reply was odd.
        let t2 = now_ns();
        let thawed = self.expect_count("guest-fsfreeze-thaw", &thaw, n);
        let t3 = now_ns();
        frozen?;
        thawed?;
        let span = FreezeSpan::of(
            &self
                .probe
                .take_new()
                .map_err(io_error("reading the probe log"))?,
        );
        Ok((Cycle::probed([t0, t1, t2, t3], &span), span))
    }

    /// Freezes, runs `during` while frozen, thaws.
    pub(crate) fn while_frozen<T>(&mut self, during: impl FnOnce() -> T) -> Result<T, QgaError> {
        let n = self.mount_points.len();
        let freeze = json!({
            "execute": "guest-fsfreeze-freeze-list",
            "arguments": {"mountpoints": self.mount_points},
        });
        let frozen = self.expect_count("guest-fsfreeze-freeze-list", &freeze, n);
        let value = during();
        let thawed = self.expect_count(
            "guest-fsfreeze-thaw",
            &json!({"execute": "guest-fsfreeze-thaw"}),
            n,
        );
        frozen?;
        thawed?;
        Ok(value)
    }
}
