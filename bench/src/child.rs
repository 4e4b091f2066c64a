//! A child process (the daemon, qemu-ga) in its own process group, stopped
//! with SIGTERM then SIGKILL when dropped, and registered for the panic path.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::guard;

#[derive(Debug)]
pub(crate) struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `command` in a new process group (a terminal's Ctrl-C must
    /// reach only the benchmark, which then stops children in order).
    pub(crate) fn spawn(command: &mut Command) -> std::io::Result<ChildGuard> {
        use std::os::unix::process::CommandExt;
        let child = command.process_group(0).spawn()?;
        guard::register_child(child.id());
        Ok(ChildGuard { child: Some(child) })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL. Returns how it ended.
    pub(crate) fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    let _ = child.kill();
                    break child.wait().ok();
                }
            }
        };
        guard::unregister_child(child.id());
        status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}
