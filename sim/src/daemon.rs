//! The real `hv_vssd` as a child process, pointed at the simulated
//! devices and confined to a scratch directory: its configuration, pid,
//! status and state files and its hooks all live there, and its `include`
//! patterns name only the simulator's loop filesystems, so it can never
//! freeze a filesystem of the machine running the tests.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a stopping daemon gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Everything needed to start a daemon against the simulator.
#[derive(Debug, Clone)]
pub struct DaemonSetup {
    pub binary: PathBuf,
    /// Directory holding `hv_fsvss_dev` (the FUSE mount).
    pub device_dir: PathBuf,
    /// Scratch directory for config, pid, status, state, hooks and log.
    pub work_dir: PathBuf,
    /// Mount points the daemon may freeze (all others are ignored).
    pub include: Vec<PathBuf>,
    /// `freeze_limit`: the watchdog thaws after this long without THAW.
    pub freeze_limit: Option<Duration>,
    /// `hook_timeout`: a hook is killed after this long.
    pub hook_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("hv_vssd exited or did not open {device} within {waited:?}; its output: {log:?}")]
    NotReady {
        device: PathBuf,
        waited: Duration,
        log: String,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

impl DaemonSetup {
    pub fn config_path(&self) -> PathBuf {
        self.work_dir.join("hv_vssd.conf")
    }

    pub fn hooks_dir(&self) -> PathBuf {
        self.work_dir.join("hooks.d")
    }

    pub fn state_file(&self) -> PathBuf {
        self.work_dir.join("hv_vssd.frozen")
    }

    pub fn status_file(&self) -> PathBuf {
        self.work_dir.join("hv_vssd.status")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.work_dir.join("hv_vssd.pid")
    }

    pub fn log_file(&self) -> PathBuf {
        self.work_dir.join("hv_vssd.log")
    }

    /// Writes the configuration file and creates the hooks directory.
    pub fn write_config(&self) -> Result<(), DaemonError> {
        std::fs::create_dir_all(self.hooks_dir())
            .map_err(io_error(format!("creating {}", self.hooks_dir().display())))?;
        let mut config = String::from("# written by hv-vss-sim for one simulated run\n");
        let include: Vec<String> = self
            .include
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if include.is_empty() {
            // Match nothing rather than everything.
            config.push_str("include = /nonexistent-hv-vss-sim\n");
        } else {
            let _ = writeln!(config, "include = {}", include.join(", "));
        }
        if let Some(limit) = self.freeze_limit {
            let _ = writeln!(config, "freeze_limit = {}", limit.as_secs().max(1));
        }
        if let Some(timeout) = self.hook_timeout {
            let _ = writeln!(config, "hook_timeout = {}", timeout.as_secs().max(1));
        }
        for (key, path) in [
            ("hooks_dir", self.hooks_dir()),
            ("pid_file", self.pid_file()),
            ("status_file", self.status_file()),
            ("state_file", self.state_file()),
        ] {
            let _ = writeln!(config, "{key} = {}", path.display());
        }
        std::fs::write(self.config_path(), config).map_err(io_error(format!(
            "writing {}",
            self.config_path().display()
        )))
    }

    /// Installs an executable hook script named `name` in the hooks directory.
    pub fn add_hook(&self, name: &str, script: &str) -> Result<PathBuf, DaemonError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(self.hooks_dir())
            .map_err(io_error(format!("creating {}", self.hooks_dir().display())))?;
        let path = self.hooks_dir().join(name);
        std::fs::write(&path, script).map_err(io_error(format!("writing {}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io_error(format!("chmod {}", path.display())))?;
        Ok(path)
    }

    /// The daemon's command line (foreground, our config and devices).
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        // -n: foreground, log to stderr (our log file); -d: debug detail.
        command
            .arg("-n")
            .arg("-d")
            .arg("-c")
            .arg(self.config_path())
            .arg("-D")
            .arg(&self.device_dir)
            .stdin(Stdio::null());
        command
    }

    /// Starts the daemon (config written first) without waiting for it.
    pub fn spawn(&self) -> Result<DaemonProcess, DaemonError> {
        self.write_config()?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_file())
            .map_err(io_error(format!("opening {}", self.log_file().display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_error("duplicating the log descriptor"))?;
        let child = self
            .command()
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io_error(format!("starting {}", self.binary.display())))?;
        Ok(DaemonProcess {
            child: Some(child),
            log_file: self.log_file(),
        })
    }
}

/// A running daemon; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct DaemonProcess {
    child: Option<Child>,
    log_file: PathBuf,
}

impl DaemonProcess {
    pub fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .map(Pid::from_raw)
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        match self.pid() {
            Some(pid) => kill(pid, signal),
            None => Err(nix::errno::Errno::ESRCH),
        }
    }

    /// Kills the daemon with SIGKILL and reaps it (no cleanup on its side).
    pub fn kill_hard(&mut self) -> Option<ExitStatus> {
        let _ = self.signal(Signal::SIGKILL);
        self.child.take().and_then(|mut c| c.wait().ok())
    }

    /// Waits up to `timeout` for the daemon to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Stops the daemon: SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.child.as_ref()?;
        let _ = self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait_exit(STOP_GRACE) {
            return Some(status);
        }
        self.kill_hard()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything the daemon wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        read_log(&self.log_file)
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
