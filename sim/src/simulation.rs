//! One simulated guest: scratch filesystems, the kernel engine behind the
//! simulated devices (FUSE on Linux, CUSE on FreeBSD), the host, and (when
//! started) the real daemon.
//!
//! Fields drop in declaration order, which is the cleanup order: the
//! daemon is stopped first, then the devices are unmounted and the engine's
//! timer stopped, then every filesystem is thawed, unmounted and detached,
//! and finally the scratch directory is removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::binaries::{self, Program};
use crate::daemon::{DaemonError, DaemonProcess, DaemonSetup};
use crate::device_nodes::{DeviceMount, MountError};
use crate::devices::{DeviceBackend, DeviceKind};
use crate::environment::{self, Missing};
use crate::host::Host;
use crate::kernel::{KernelOptions, SimKernel};
use crate::loopfs::{FsType, LoopError, LoopFilesystems};

/// How long a started daemon may take to open its device.
const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SimulationOptions {
    pub filesystems: Vec<FsType>,
    /// `hv_vssd` to run; found next to the simulator when `None`.
    pub daemon_binary: Option<PathBuf>,
    /// The daemon's `freeze_limit` (watchdog).
    pub freeze_limit: Option<Duration>,
    /// The daemon's `hook_timeout`.
    pub hook_timeout: Option<Duration>,
    pub kernel: KernelOptions,
}

impl Default for SimulationOptions {
    fn default() -> Self {
        SimulationOptions {
            filesystems: FsType::BACKUP_DEFAULTS.to_vec(),
            daemon_binary: None,
            freeze_limit: None,
            hook_timeout: None,
            kernel: KernelOptions::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error("cannot simulate here: {0}")]
    Environment(Missing),
    #[error(transparent)]
    Binary(#[from] binaries::FindError),
    #[error("loop filesystems: {0}")]
    Loop(#[from] LoopError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("creating the scratch directory: {0}")]
    Scratch(std::io::Error),
}

/// A running simulation; everything is cleaned up when it is dropped.
#[derive(Debug)]
pub struct Simulation {
    daemon: Option<DaemonProcess>,
    pub host: Host,
    mount: DeviceMount,
    kernel: Arc<SimKernel>,
    pub filesystems: LoopFilesystems,
    pub daemon_setup: DaemonSetup,
    scratch: tempfile::TempDir,
}

impl Simulation {
    /// Checks the machine, creates the filesystems, mounts the devices.
    /// The daemon is not started yet ([`Self::start_daemon`]).
    pub fn new(options: &SimulationOptions) -> Result<Self, SimulationError> {
        environment::check_backup(&options.filesystems).map_err(SimulationError::Environment)?;
        let daemon_binary = binaries::find(Program::Daemon, options.daemon_binary.as_deref())?;
        let scratch = tempfile::Builder::new()
            .prefix("hv-vss-sim.")
            .tempdir()
            .map_err(SimulationError::Scratch)?;
        let device_dir = scratch.path().join("dev");
        let work_dir = scratch.path().join("daemon");
        for dir in [&device_dir, &work_dir] {
            std::fs::create_dir_all(dir).map_err(SimulationError::Scratch)?;
        }
        let filesystems = LoopFilesystems::create(&options.filesystems)?;
        let kernel = SimKernel::start(&options.kernel);
        let backend: Arc<dyn DeviceBackend> = kernel.clone();
        let mount = DeviceMount::new(&device_dir, &backend)?;
        let host = Host::new(kernel.clone(), kernel.take_host_replies());
        let daemon_setup = DaemonSetup {
            binary: daemon_binary,
            device_dir,
            work_dir,
            include: filesystems
                .iter()
                .map(|fs| fs.mount_point().to_owned())
                .collect(),
            freeze_limit: options.freeze_limit,
            hook_timeout: options.hook_timeout,
        };
        Ok(Simulation {
            daemon: None,
            host,
            mount,
            kernel,
            filesystems,
            daemon_setup,
            scratch,
        })
    }

    pub fn kernel(&self) -> &Arc<SimKernel> {
        &self.kernel
    }

    pub fn device_dir(&self) -> &Path {
        self.mount.dir()
    }

    pub fn device_path(&self, device: DeviceKind) -> PathBuf {
        self.mount.path(device)
    }

    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// Starts the daemon and waits until it has opened `hv_fsvss_dev`.
    pub fn start_daemon(&mut self) -> Result<Duration, SimulationError> {
        let started = Instant::now();
        let mut daemon = self.daemon_setup.spawn()?;
        // Ready once it holds the device; give up early if it exits.
        let deadline = Instant::now() + DAEMON_READY_TIMEOUT;
        while !self.kernel.is_open(DeviceKind::Fs)
            && daemon.is_running()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !self.kernel.is_open(DeviceKind::Fs) || !daemon.is_running() {
            let log = daemon.log();
            daemon.stop();
            return Err(DaemonError::NotReady {
                device: self.device_path(DeviceKind::Fs),
                waited: DAEMON_READY_TIMEOUT,
                log,
            }
            .into());
        }
        self.daemon = Some(daemon);
        Ok(started.elapsed())
    }

    /// Takes the devices away under whoever holds them open (an unloaded
    /// driver): see [`DeviceMount::abort`]. The engine is not told (no
    /// close reaches it), as when a driver's device node vanishes.
    pub fn abort_devices(&mut self) {
        self.mount.abort();
    }

    /// The running daemon, if any.
    pub fn daemon(&mut self) -> Option<&mut DaemonProcess> {
        self.daemon.as_mut()
    }

    /// Takes the daemon out (to kill it, or to keep it past a restart).
    pub fn take_daemon(&mut self) -> Option<DaemonProcess> {
        self.daemon.take()
    }

    /// Stops the daemon (SIGTERM) and waits until the device is closed.
    pub fn stop_daemon(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.daemon.take()?.stop();
        self.kernel
            .wait_until(Duration::from_secs(5), |k| !k.is_open(DeviceKind::Fs));
        status
    }

    /// Everything the daemon logged in this simulation (all its runs).
    pub fn daemon_log(&self) -> String {
        crate::daemon::read_log(&self.daemon_setup.log_file())
    }
}

impl Drop for Simulation {
    fn drop(&mut self) {
        // The daemon first: on SIGTERM it thaws and answers what is queued,
        // which needs the engine. Then the callout; the fields then drop in
        // order (devices, filesystems, scratch directory).
        drop(self.daemon.take());
        self.kernel.shutdown();
    }
}
