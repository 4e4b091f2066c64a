//! Running the administrator's freeze/thaw commands with a deadline.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How a command ended.
#[derive(Debug)]
pub enum CommandResult {
    Succeeded,
    Failed(ExitStatus),
    /// Still running at the deadline; its whole process group was killed.
    TimedOut,
    NotStarted(std::io::Error),
}

impl CommandResult {
    pub fn succeeded(&self) -> bool {
        matches!(self, CommandResult::Succeeded)
    }
}

impl std::fmt::Display for CommandResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandResult::Succeeded => f.write_str("succeeded"),
            CommandResult::Failed(status) => write!(f, "failed ({status})"),
            CommandResult::TimedOut => f.write_str("timed out and was killed"),
            CommandResult::NotStarted(e) => write!(f, "could not be started: {e}"),
        }
    }
}

/// Runs `command` with `sh -c`, in its own process group, with
/// `HV_VSS_OPERATION` set to `operation`. Kills the group at `timeout`.
pub fn run(command: &str, operation: &str, timeout: Duration) -> CommandResult {
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("HV_VSS_OPERATION", operation)
        .stdin(Stdio::null())
        // Its own group, so a timeout also kills what the command started.
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return CommandResult::NotStarted(e),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return CommandResult::Succeeded,
            Ok(Some(status)) => return CommandResult::Failed(status),
            Ok(None) if Instant::now() >= deadline => break,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return CommandResult::NotStarted(e),
        }
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
    CommandResult::TimedOut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_decides_success() {
        assert!(run("true", "freeze", Duration::from_secs(5)).succeeded());
        assert!(matches!(
            run("exit 3", "freeze", Duration::from_secs(5)),
            CommandResult::Failed(status) if status.code() == Some(3)
        ));
    }

    #[test]
    fn operation_is_passed_in_the_environment() {
        let result = run(
            r#"test "$HV_VSS_OPERATION" = thaw"#,
            "thaw",
            Duration::from_secs(5),
        );
        assert!(result.succeeded(), "{result}");
    }

    #[test]
    fn a_hung_command_is_killed_at_the_deadline_with_its_children() {
        let marker = std::env::temp_dir().join(format!("hv_vss_app-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let started = Instant::now();
        let command = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let result = run(&command, "freeze", Duration::from_millis(300));
        assert!(matches!(result, CommandResult::TimedOut), "{result}");
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the background child was killed too");
    }
}
