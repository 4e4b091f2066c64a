//! Running a helper program (a hook, `zpool sync`) with a time limit,
//! without threads: the daemon must stay single-threaded (UFSSUSPEND
//! refuses multi-threaded callers), so the child's combined stdout/stderr
//! pipe is polled with short timeouts and the child reaped with try_wait.

use std::fmt::Write as _;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Output kept per child; the rest is counted and dropped.
const MAX_OUTPUT: usize = 16 * 1024;
/// How often a running child is checked for exit while its pipe is quiet.
const REAP_INTERVAL: Duration = Duration::from_millis(20);

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    /// Killed (SIGKILL to its process group) after the time limit.
    TimedOut,
}

impl Ending {
    pub fn success(&self) -> bool {
        *self == Self::Exited(0)
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exit status {code}"),
            Self::Signaled(sig) => write!(f, "killed by signal {sig}"),
            Self::TimedOut => f.write_str("timed out, process group killed"),
        }
    }
}

/// A finished child: how it ended, what it printed, how long it took.
#[derive(Debug, Clone)]
pub struct Finished {
    pub ending: Ending,
    pub output: String,
    pub elapsed: Duration,
}

/// Runs `program args...` in its own process group with stdin from
/// /dev/null and stdout+stderr captured, for at most `limit`.
pub fn run(program: &Path, args: &[&str], limit: Duration) -> std::io::Result<Finished> {
    let started = Instant::now();
    let (reader, writer) = nix::unistd::pipe()?;
    set_nonblocking(&reader)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer.try_clone()?))
        .stderr(Stdio::from(writer))
        // Its own process group, so a timeout kills everything it started.
        .process_group(0)
        .env(
            "PATH",
            "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin",
        );
    let mut child = spawn(&mut command)?;
    // The parent's copies of the write end were moved into the Command and
    // dropped with it, so EOF comes when the child side closes.
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let mut reader = std::fs::File::from(reader);
    let mut output = Vec::new();
    let mut dropped = 0usize;
    let mut pipe_open = true;
    let deadline = started + limit;
    let ending = loop {
        if let Some(status) = child.try_wait()? {
            if pipe_open {
                drain(&mut reader, &mut output, &mut dropped);
            }
            break match (status.code(), status.signal()) {
                (Some(code), _) => Ending::Exited(code),
                (None, Some(sig)) => Ending::Signaled(sig),
                (None, None) => Ending::Exited(-1),
            };
        }
        let now = Instant::now();
        if now >= deadline {
            // ESRCH: the group is already gone; nothing else can fail here.
            let _ = killpg(pid, Signal::SIGKILL);
            child.wait()?;
            drain(&mut reader, &mut output, &mut dropped);
            break Ending::TimedOut;
        }
        let wait = (deadline - now).min(REAP_INTERVAL);
        if pipe_open {
            let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
            let millis = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => {}
                Ok(_) => pipe_open = drain(&mut reader, &mut output, &mut dropped),
                Err(e) => return Err(e.into()),
            }
        } else {
            std::thread::sleep(wait);
        }
    };
    let mut text = String::from_utf8_lossy(&output).into_owned();
    if dropped > 0 {
        let _ = write!(text, "\n[{dropped} more bytes of output dropped]");
    }
    Ok(Finished {
        ending,
        output: text,
        elapsed: started.elapsed(),
    })
}

/// Spawns, retrying briefly on ETXTBSY: a script just written (by a package
/// upgrade, or a test) can be held open for writing for a moment by a
/// process that is between fork and exec.
fn spawn(command: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

/// Reads what is available. Returns false at end of file.
fn drain(reader: &mut std::fs::File, output: &mut Vec<u8>, dropped: &mut usize) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(output.len()).min(n);
                output.extend_from_slice(&chunk[..room]);
                *dropped += n - room;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // WouldBlock: nothing more for now (a grandchild may hold the pipe).
            Err(_) => return true,
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, limit: Duration) -> Finished {
        run(Path::new("/bin/sh"), &["-c", script], limit).unwrap()
    }

    #[test]
    fn captures_stdout_and_stderr_and_exit_code() {
        let f = sh("echo out; echo err >&2; exit 3", Duration::from_secs(5));
        assert_eq!(f.ending, Ending::Exited(3));
        assert!(
            f.output.contains("out") && f.output.contains("err"),
            "{}",
            f.output
        );
    }

    #[test]
    fn a_hung_child_and_its_group_are_killed_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-survived");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let f = sh(&script, Duration::from_millis(300));
        assert_eq!(f.ending, Ending::TimedOut);
        assert!(f.elapsed < Duration::from_secs(5), "{:?}", f.elapsed);
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            !marker.exists(),
            "the grandchild outlived the process-group kill"
        );
    }

    #[test]
    fn a_background_grandchild_holding_the_pipe_does_not_block_the_exit() {
        let f = sh("sleep 5 & echo done", Duration::from_secs(3));
        assert_eq!(f.ending, Ending::Exited(0));
        assert!(f.elapsed < Duration::from_secs(2), "{:?}", f.elapsed);
        assert!(f.output.contains("done"));
    }

    #[test]
    fn output_is_capped() {
        let f = sh(
            "head -c 100000 /dev/zero | tr '\\0' x",
            Duration::from_secs(5),
        );
        assert!(f.output.len() < MAX_OUTPUT + 100);
        assert!(f.output.contains("more bytes of output dropped"));
    }

    #[test]
    fn a_signal_is_reported() {
        let f = sh("kill -TERM $$", Duration::from_secs(5));
        assert_eq!(f.ending, Ending::Signaled(15));
    }
}
