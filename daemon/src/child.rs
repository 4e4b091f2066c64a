//! Running a helper program (a hook, `zpool sync`) with a time limit,
//! without threads: the daemon must stay single-threaded (UFSSUSPEND
//! refuses multi-threaded callers), so the child's combined stdout/stderr
//! pipe and its exit (an [`ExitWatch`]) are polled together. The daemon
//! wakes up when the child printed something, when it exited, or when its
//! time is up, never on a timer of its own.
//!
//! Every child gets a minimal environment (`PATH` and `HOME=/`; hooks add
//! their own variables), stdin from /dev/null, and its own process group,
//! which gets SIGKILL at the time limit. A child that survives SIGKILL (a
//! process in an uninterruptible wait: `zpool sync` on a suspended pool, a
//! write to a suspended filesystem) is waited for [`KILL_WAIT`] at most,
//! then left behind and reaped by a later run: the daemon keeps serving.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::exit_watch::ExitWatch;
use crate::log::Escaped;

/// `PATH` of every child.
pub const PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin";
/// Output kept per child; the rest is counted and dropped.
const MAX_OUTPUT: usize = 16 * 1024;
/// After SIGKILL of a timed-out child's process group, how long to wait for
/// the child to die before leaving it behind. A killed process normally
/// goes within milliseconds; one in an uninterruptible wait only when the
/// wait ends, which may be never.
pub const KILL_WAIT: Duration = Duration::from_millis(500);
/// How often a child is checked for exit when no [`ExitWatch`] could be
/// made (a Linux kernel older than 5.3 has no pidfd).
const FALLBACK_REAP_INTERVAL: Duration = Duration::from_millis(20);

thread_local! {
    /// Children that outlived SIGKILL, reaped by later runs. Thread-local
    /// rather than owned by a caller: any run may find them exited, and the
    /// daemon has one thread.
    static LEFT_BEHIND: RefCell<Vec<Child>> = const { RefCell::new(Vec::new()) };
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    /// Killed (SIGKILL to its process group) after the time limit.
    TimedOut,
    /// Still running [`KILL_WAIT`] after SIGKILL to its process group
    /// (an uninterruptible wait): left behind, reaped later.
    Unkillable,
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
            Self::Unkillable => write!(
                f,
                "timed out and still running {} ms after SIGKILL of its process group \
                 (an uninterruptible wait); left behind to be reaped later",
                KILL_WAIT.as_millis()
            ),
        }
    }
}

/// A finished child: how it ended, what it printed, how long it took.
#[derive(Debug, Clone)]
pub struct Finished {
    pub ending: Ending,
    /// stdout and stderr together, each line escaped as [`Escaped`] shows
    /// it (control characters and bytes that are not UTF-8), so it can be
    /// logged as it is.
    pub output: String,
    pub elapsed: Duration,
    /// How many times the wait for the child woke up because a timeout
    /// passed rather than because the child printed or exited: 0 unless the
    /// time limit was reached (or no [`ExitWatch`] could be made).
    pub timed_wakeups: u32,
}

/// A command with what every child gets: `PATH` and `HOME=/` as its whole
/// environment, stdin from /dev/null, its own process group (so a timeout
/// kills everything it started).
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/")
        .stdin(Stdio::null())
        .process_group(0);
    command
}

/// Runs `program args...` (see [`command`]) for at most `limit`.
pub fn run(program: &Path, args: &[&str], limit: Duration) -> std::io::Result<Finished> {
    let mut command = command(program);
    command.args(args);
    run_command(command, limit)
}

/// The time a child may have: `limit`, cut to what is left before
/// `deadline`. `None` when nothing is left: the child must not start.
pub fn time_for(limit: Duration, deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(limit),
        Some(deadline) => {
            let left = deadline.checked_duration_since(Instant::now())?;
            (!left.is_zero()).then(|| limit.min(left))
        }
    }
}

/// Runs a command made by [`command`] for at most `limit`, capturing its
/// stdout and stderr.
pub fn run_command(mut command: Command, limit: Duration) -> std::io::Result<Finished> {
    reap_left_behind();
    let started = Instant::now();
    let (reader, writer) = nix::unistd::pipe()?;
    set_nonblocking(&reader)?;
    command
        .stdout(Stdio::from(writer.try_clone()?))
        .stderr(Stdio::from(writer));
    let mut child = spawn(&mut command)?;
    // The Command holds the parent's copies of the pipe's write end: drop
    // it, so the pipe reports end-of-file when the child side closes.
    drop(command);
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let watch = ExitWatch::new(pid).ok();
    let mut reader = std::fs::File::from(reader);
    let mut output = Output::default();
    let mut pipe_open = true;
    let mut timed_wakeups = 0;
    let deadline = started + limit;
    let ending = loop {
        if let Some(status) = child.try_wait()? {
            if pipe_open {
                output.drain(&mut reader);
            }
            break ending_of(status);
        }
        let now = Instant::now();
        if now >= deadline {
            // ESRCH: the group is already gone; nothing else can fail here.
            let _ = killpg(pid, Signal::SIGKILL);
            let ending = if wait_exit(&mut child, watch.as_ref(), KILL_WAIT)? {
                Ending::TimedOut
            } else {
                Ending::Unkillable
            };
            output.drain(&mut reader);
            break ending;
        }
        let mut wait = deadline - now;
        if watch.is_none() {
            wait = wait.min(FALLBACK_REAP_INTERVAL);
        }
        let pipe_ready = {
            let mut fds = Vec::with_capacity(2);
            if pipe_open {
                fds.push(PollFd::new(reader.as_fd(), PollFlags::POLLIN));
            }
            if let Some(watch) = &watch {
                fds.push(PollFd::new(watch.as_fd(), PollFlags::POLLIN));
            }
            if fds.is_empty() {
                std::thread::sleep(wait);
                timed_wakeups += 1;
                continue;
            }
            match poll(&mut fds, poll_timeout(wait)) {
                Ok(0) => {
                    timed_wakeups += 1;
                    false
                }
                Ok(_) => pipe_open && fds[0].revents().is_some_and(|r| !r.is_empty()),
                Err(nix::errno::Errno::EINTR) => false,
                Err(e) => {
                    let _ = killpg(pid, Signal::SIGKILL);
                    leave_behind(child);
                    return Err(e.into());
                }
            }
        };
        if pipe_ready {
            pipe_open = output.drain(&mut reader);
        }
    };
    if ending == Ending::Unkillable {
        leave_behind(child);
    }
    Ok(Finished {
        ending,
        output: output.into_text(),
        elapsed: started.elapsed(),
        timed_wakeups,
    })
}

/// How many children that outlived SIGKILL are not reaped yet.
pub fn left_behind() -> usize {
    reap_left_behind();
    LEFT_BEHIND.with_borrow(Vec::len)
}

fn leave_behind(child: Child) {
    LEFT_BEHIND.with_borrow_mut(|children| children.push(child));
}

fn reap_left_behind() {
    LEFT_BEHIND.with_borrow_mut(|children| {
        children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
    });
}

fn ending_of(status: ExitStatus) -> Ending {
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(sig)) => Ending::Signaled(sig),
        (None, None) => Ending::Exited(-1),
    }
}

/// Waits up to `within` for `child` to exit; whether it did (and was reaped).
fn wait_exit(
    child: &mut Child,
    watch: Option<&ExitWatch>,
    within: Duration,
) -> std::io::Result<bool> {
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Ok(false);
        };
        match watch {
            Some(watch) => {
                let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, poll_timeout(left)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None => std::thread::sleep(left.min(FALLBACK_REAP_INTERVAL)),
        }
    }
}

/// `wait` as a poll(2) timeout, rounded up so the wait never ends early.
fn poll_timeout(wait: Duration) -> PollTimeout {
    let millis = wait.as_millis() + u128::from(wait.subsec_nanos() % 1_000_000 != 0);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}

/// Spawns, retrying briefly on ETXTBSY: a script just written (by a package
/// upgrade, or a test) can be held open for writing for a moment by a
/// process that is between fork and exec.
fn spawn(command: &mut Command) -> std::io::Result<Child> {
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

/// What a child printed, capped.
#[derive(Debug, Default)]
struct Output {
    kept: Vec<u8>,
    dropped: usize,
}

impl Output {
    /// Reads what is available. Returns false at end of file.
    fn drain(&mut self, reader: &mut std::fs::File) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(self.kept.len()).min(n);
                    self.kept.extend_from_slice(&chunk[..room]);
                    self.dropped += n - room;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // WouldBlock: nothing more for now (a grandchild may hold the pipe).
                Err(_) => return true,
            }
        }
    }

    /// The lines, each escaped, plus a note of what was dropped.
    fn into_text(self) -> String {
        let mut text = String::new();
        for (i, line) in self.kept.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                text.push('\n');
            }
            let _ = write!(text, "{}", Escaped(OsStr::from_bytes(line)));
        }
        if self.dropped > 0 {
            let _ = write!(text, "\n[{} more bytes of output dropped]", self.dropped);
        }
        text
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
    fn waiting_is_event_driven() {
        // Each child exits at once: no wait may end by a timer.
        let mut wakeups = 0;
        for _ in 0..50 {
            let f = run(Path::new("/bin/true"), &[], Duration::from_secs(5)).unwrap();
            assert_eq!(f.ending, Ending::Exited(0));
            wakeups += f.timed_wakeups;
        }
        assert_eq!(wakeups, 0, "waits ended by a timer instead of the exit");
    }

    #[test]
    fn children_get_only_path_and_home() {
        let f = sh("env", Duration::from_secs(5));
        let lines: Vec<&str> = f.output.lines().collect();
        assert!(
            lines.contains(&format!("PATH={PATH}").as_str()),
            "{lines:?}"
        );
        assert!(lines.contains(&"HOME=/"), "{lines:?}");
        // Whatever the test runner has (CARGO_*, USER, ...) is not passed on;
        // the shell itself may add PWD, SHLVL, OLDPWD and _.
        for (key, _) in std::env::vars() {
            if !["PATH", "HOME", "PWD", "SHLVL", "OLDPWD", "_"].contains(&key.as_str()) {
                let inherited = format!("{key}=");
                assert!(
                    !lines.iter().any(|l| l.starts_with(&inherited)),
                    "{key} inherited: {lines:?}"
                );
            }
        }
    }

    #[test]
    fn output_lines_are_escaped() {
        let f = sh(
            "printf 'ok\\nred \\033[31mtext\\r\\ncaf\\351\\n'",
            Duration::from_secs(5),
        );
        let lines: Vec<&str> = f.output.lines().collect();
        assert_eq!(lines, ["ok", "red \\033[31mtext\\r", "caf\\351"]);
    }

    #[test]
    fn time_for_cuts_the_limit_to_the_deadline() {
        let limit = Duration::from_secs(30);
        assert_eq!(time_for(limit, None), Some(limit));
        let soon = Instant::now() + Duration::from_secs(2);
        let given = time_for(limit, Some(soon)).unwrap();
        assert!(given <= Duration::from_secs(2) && given > Duration::from_secs(1));
        assert_eq!(time_for(limit, Some(Instant::now())), None);
        let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
        assert_eq!(time_for(limit, Some(past)), None);
    }

    #[test]
    fn a_signal_is_reported() {
        let f = sh("kill -TERM $$", Duration::from_secs(5));
        assert_eq!(f.ending, Ending::Signaled(15));
    }
}
