//! The real binary: flags, exit statuses, config errors, status output, and
//! a foreground run on a FIFO standing in for the device (pollable, never
//! readable), stopped with SIGTERM.

// Helpers outside #[test] fns panic too; a panic here is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hv_vssd");

fn daemon(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("HV_VSS_DEVICE_DIR")
        .output()
        .expect("run hv_vssd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temp dir with a config that keeps every file inside it.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("daemon.conf"),
            format!(
                "include = {d}/mnt/*\nhooks_dir = {d}/hooks.d\npid_file = {d}/pid\n\
                 status_file = {d}/status\nstate_file = {d}/frozen\n{extra}"
            ),
        )
        .unwrap();
        Self { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn config(&self) -> String {
        self.path("daemon.conf").display().to_string()
    }
}

#[test]
fn unknown_flag_prints_usage_and_exits_64() {
    let out = daemon(&["-x"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("usage: hv_vssd"));
    assert!(out.stdout.is_empty());
}

#[test]
fn help_prints_usage_and_exits_0() {
    let out = daemon(&["-h"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("usage: hv_vssd"));
}

#[test]
fn t_accepts_a_good_config_and_names_the_line_of_a_bad_one() {
    let sandbox = Sandbox::new("freeze_limit = 30\n");
    let out = daemon(&["-t", "-c", &sandbox.config()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration OK"));

    let bad = Sandbox::new("freeze_limit = 30\nhook_timeout = forever\n");
    let out = daemon(&["-t", "-c", &bad.config()]);
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert!(
        err.contains("daemon.conf, line 7") && err.contains("forever"),
        "{err}"
    );

    let out = daemon(&["-t", "-c", "/nonexistent/hv.conf"]);
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn print_config_gives_the_pid_file_the_rc_script_reads() {
    let sandbox = Sandbox::new("");
    let out = daemon(&["-T", "-c", &sandbox.config()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let pid_file = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid_file = "))
        .unwrap_or_default();
    assert_eq!(
        pid_file,
        sandbox.path("pid").display().to_string(),
        "{stdout}"
    );
    let out = daemon(&["-T", "-c", "/nonexistent/hv.conf"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stdout).is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn linux_refuses_to_run_without_include() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.conf");
    std::fs::write(&conf, "freeze_limit = 10\n").unwrap();
    let out = daemon(&["-t", "-c", &conf.display().to_string()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("include"));
}

#[test]
fn status_when_not_running_exits_1() {
    let sandbox = Sandbox::new("");
    let out = daemon(&["-s", "-c", &sandbox.config()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("not running"));
    let out = daemon(&["-s", "-j", "-c", &sandbox.config()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["running"], false);
}

#[test]
fn a_missing_device_exits_69_with_a_clear_message() {
    let sandbox = Sandbox::new("");
    let out = daemon(&["-n", "-c", &sandbox.config(), "-D", "/nonexistent-devdir"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
}

/// Kills the daemon if a test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Collects the daemon's stderr lines on a thread, so the test can wait for
/// a given line.
struct Lines {
    receiver: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(stderr: std::process::ChildStderr) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            receiver,
            seen: Vec::new(),
        }
    }

    /// Waits up to 10 s for a line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.receiver.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line containing `{needle}` in {:#?}", self.seen);
    }
}

#[test]
fn runs_in_the_foreground_reloads_on_sighup_and_exits_0_on_sigterm() {
    use nix::sys::signal::{Signal, kill};
    let sandbox = Sandbox::new("");
    let devdir = sandbox.path("dev");
    std::fs::create_dir(&devdir).unwrap();
    nix::unistd::mkfifo(
        &devdir.join(hv_vss_proto::FS_DEVICE_NAME),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["-n", "-d", "-c", &sandbox.config()])
        .env("HV_VSS_DEVICE_DIR", &devdir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::spawn(child.stderr.take().unwrap());
    let mut running = Running(child);
    let pid = running.0.id();
    let nix_pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    lines.wait_for("hv_vssd: notice: started");
    assert!(
        wait_for(&sandbox.path("status"), Duration::from_secs(10)),
        "no status file"
    );

    let out = daemon(&["-s", "-c", &sandbox.config()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(&format!("running as pid {pid}")));
    assert!(text(&out.stdout).contains("State: idle"));
    let out = daemon(&["-s", "-j", "-c", &sandbox.config()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["running"], true);
    assert_eq!(json["status"]["state"], "idle");
    assert_eq!(json["status"]["pid"], pid);

    // A second daemon is refused by the pidfile lock (a FIFO has no
    // single-opener rule, the real device does).
    let second = Command::new(BIN)
        .args(["-n", "-c", &sandbox.config()])
        .env("HV_VSS_DEVICE_DIR", &devdir)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(69));
    assert!(text(&second.stderr).contains("another hv_vssd is running"));

    // SIGHUP with a broken file keeps the old configuration...
    let good = std::fs::read_to_string(sandbox.config()).unwrap();
    std::fs::write(sandbox.config(), format!("{good}strict = perhaps\n")).unwrap();
    kill(nix_pid, Signal::SIGHUP).unwrap();
    let line = lines.wait_for("SIGHUP: keeping the old configuration");
    assert!(line.contains("line 6"), "{line}");
    // ...and with a good one reloads.
    std::fs::write(sandbox.config(), format!("{good}strict = yes\n")).unwrap();
    kill(nix_pid, Signal::SIGHUP).unwrap();
    lines.wait_for("configuration reloaded");

    kill(nix_pid, Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    lines.wait_for("terminating on signal");
    lines.wait_for("exiting");
}
