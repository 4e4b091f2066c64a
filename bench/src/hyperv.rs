//! hyperv-vss, the whole path: the simulated Hyper-V host sends FREEZE on
//! the VSS channel → the real kernel engine from `kmod/` (in `hv-vss-sim`)
//! queues it → the FUSE device `hv_fsvss_dev` wakes the real
//! `hv_vssd` from poll(2) → READ ioctl → FIFREEZE on every mount →
//! WRITE ioctl → the engine replies to the host; then the same for THAW.
//!
//! The daemon runs as in production except for what a test needs: `-n`
//! (foreground, log lines to a file instead of syslog, one per request),
//! `-D` (the simulated device directory) and a scratch configuration whose
//! `include` names only the benchmark's mounts. No `-d`: debug logging is
//! not what a production daemon does. The probe shim is preloaded.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hv_vss_proto::HostOperation;
use hv_vss_sim::devices::DeviceKind;
use hv_vss_sim::loopfs::FsType;
use hv_vss_sim::simulation::{Simulation, SimulationOptions};

use crate::child::ChildGuard;
use crate::clock::now_ns;
use crate::cycle::Cycle;
use crate::guard;
use crate::probe::{self, Call, FreezeSpan, PhaseProfile, ProbeLog};

/// A host request unanswered after this long is a failure (Hyper-V gives
/// up after about 15 s; the engine's deadline is 15 s).
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub(crate) enum HypervError {
    #[error("simulator: {0}")]
    Simulation(#[from] hv_vss_sim::simulation::SimulationError),
    #[error("host: {0}")]
    Host(#[from] hv_vss_sim::host::HostError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("hv_vssd did not open its device within 10 s; its log:\n{0}")]
    NotReady(String),
    #[error("{operation} was answered {status}; daemon log:\n{log}")]
    Failed {
        operation: &'static str,
        status: String,
        log: String,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HypervError {
    let what = what.into();
    move |source| HypervError::Io { what, source }
}

/// Stops ext4's background inode-table zeroing (`ext4lazyinit`) on a
/// freshly made filesystem. mkfs.ext4 leaves the tables to be zeroed after
/// mount, which writes to all N images for minutes and makes every freeze
/// wait for that I/O: noise that no system under test causes.
fn stop_lazy_init(mount_point: &Path) -> Result<(), HypervError> {
    let status = Command::new("mount")
        .arg("-o")
        .arg("remount,noinit_itable")
        .arg(mount_point)
        .stdin(Stdio::null())
        .status()
        .map_err(io_error("running mount -o remount,noinit_itable"))?;
    if status.success() {
        Ok(())
    } else {
        Err(HypervError::Io {
            what: format!("mount -o remount,noinit_itable {}", mount_point.display()),
            source: std::io::Error::other(status.to_string()),
        })
    }
}

/// The simulated guest with the daemon running. Field order is drop order:
/// the daemon stops (and thaws) before the devices and filesystems go.
#[derive(Debug)]
pub(crate) struct Hyperv {
    daemon: ChildGuard,
    probe: ProbeLog,
    log_file: std::path::PathBuf,
    pub(crate) sim: Simulation,
}

impl Hyperv {
    /// Creates `count` filesystems of `fs_type`, mounts the devices, starts
    /// the daemon and negotiates.
    pub(crate) fn start(
        fs_type: FsType,
        count: usize,
        daemon_binary: Option<&Path>,
        probe_library: &Path,
    ) -> Result<Hyperv, HypervError> {
        let options = SimulationOptions {
            filesystems: vec![fs_type; count],
            daemon_binary: daemon_binary.map(Path::to_owned),
            ..SimulationOptions::default()
        };
        let sim = Simulation::new(&options)?;
        for fs in &sim.filesystems {
            guard::register_filesystem(fs.mount_point(), fs.loop_device());
        }
        for fs in &sim.filesystems {
            if fs.fs_type() == FsType::Ext4 {
                stop_lazy_init(fs.mount_point())?;
            }
        }
        guard::register_fuse_mount(sim.device_dir());
        let setup = &sim.daemon_setup;
        setup.write_config().map_err(|e| HypervError::Io {
            what: "writing the daemon configuration".to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let probe = ProbeLog::new(&sim.scratch_dir().join("daemon.probe"))
            .map_err(io_error("probe log"))?;
        let log_file = setup.log_file();
        let log = std::fs::File::create(&log_file).map_err(io_error("daemon log file"))?;
        let log_err = log.try_clone().map_err(io_error("daemon log file"))?;
        let mut command = Command::new(&setup.binary);
        command
            .arg("-n")
            .arg("-c")
            .arg(setup.config_path())
            .arg("-D")
            .arg(&setup.device_dir)
            .env("LD_PRELOAD", probe_library)
            .env(probe::LOG_VAR, probe.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let mut daemon = ChildGuard::spawn(&mut command)
            .map_err(io_error(format!("starting {}", setup.binary.display())))?;
        let ready = sim
            .kernel()
            .wait_until(Duration::from_secs(10), |k| k.is_open(DeviceKind::Fs));
        if !ready || !daemon.is_running() {
            return Err(HypervError::NotReady(
                std::fs::read_to_string(&log_file).unwrap_or_default(),
            ));
        }
        let mut hyperv = Hyperv {
            daemon,
            probe,
            log_file,
            sim,
        };
        let reply = hyperv.sim.host.negotiate(REPLY_TIMEOUT)?;
        if !reply.succeeded() {
            return Err(hyperv.failed("NEGOTIATE", &reply.status_text()));
        }
        Ok(hyperv)
    }

    pub(crate) fn daemon_pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    pub(crate) fn mount_points(&self) -> Vec<&Path> {
        self.sim
            .filesystems
            .iter()
            .map(hv_vss_sim::loopfs::LoopFilesystem::mount_point)
            .collect()
    }

    fn failed(&self, operation: &'static str, status: &str) -> HypervError {
        HypervError::Failed {
            operation,
            status: status.to_owned(),
            log: std::fs::read_to_string(&self.log_file).unwrap_or_default(),
        }
    }

    fn request(&mut self, operation: HostOperation) -> Result<(), HypervError> {
        let reply = self.sim.host.request(operation, REPLY_TIMEOUT)?;
        if reply.succeeded() {
            Ok(())
        } else {
            Err(self.failed(operation.name(), &reply.status_text()))
        }
    }

    /// CHECK (HOT_BACKUP), as Hyper-V sends before each backup.
    pub(crate) fn check(&mut self) -> Result<Duration, HypervError> {
        let t0 = now_ns();
        self.request(HostOperation::HotBackup)?;
        Ok(crate::clock::between(t0, now_ns()))
    }

    /// A backup as Hyper-V runs it: CHECK (HOT_BACKUP, not measured: the
    /// host sends it before the freeze and nothing is frozen yet), then the
    /// measured FREEZE → reply → THAW → reply. THAW is sent even if FREEZE
    /// failed (the engine rolls back by itself, the extra THAW is harmless).
    pub(crate) fn cycle(
        &mut self,
    ) -> Result<(Cycle, FreezeSpan, Option<[PhaseProfile; 2]>), HypervError> {
        self.request(HostOperation::HotBackup)?;
        self.probe
            .take_new()
            .map_err(io_error("reading the probe log"))?;
        let t0 = now_ns();
        let frozen = self.request(HostOperation::Freeze);
        let t1 = now_ns();
        let t2 = now_ns();
        let thawed = self.request(HostOperation::Thaw);
        let t3 = now_ns();
        frozen?;
        thawed?;
        // The daemon stamps its WRITE after the ioctl returns, which can be
        // after the host already has the reply: give the record a moment.
        let mut records = Vec::new();
        let waited_since = std::time::Instant::now();
        loop {
            records.extend(
                self.probe
                    .take_new()
                    .map_err(io_error("reading the probe log"))?,
            );
            let thaw_answered = records
                .iter()
                .any(|r| r.call == Call::DeviceWrite && r.start_ns >= t2);
            if thaw_answered || waited_since.elapsed() > Duration::from_millis(200) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let span = FreezeSpan::of(&records);
        let profile = PhaseProfile::of(&records, Call::Freeze, t0, t1)
            .zip(PhaseProfile::of(&records, Call::Thaw, t2, t3))
            .map(|(freeze, thaw)| [freeze, thaw]);
        Ok((Cycle::probed([t0, t1, t2, t3], &span), span, profile))
    }

    /// Freezes, runs `during` while frozen, thaws.
    pub(crate) fn while_frozen<T>(&mut self, during: impl FnOnce() -> T) -> Result<T, HypervError> {
        let frozen = self.request(HostOperation::Freeze);
        let value = during();
        let thawed = self.request(HostOperation::Thaw);
        frozen?;
        thawed?;
        Ok(value)
    }

    /// Every host request so far answered exactly once (empty = yes).
    pub(crate) fn unanswered(&self) -> Vec<String> {
        self.sim.host.answered_exactly_once()
    }
}

impl Drop for Hyperv {
    fn drop(&mut self) {
        // SIGTERM: the daemon thaws and answers what is queued, which needs
        // the devices, so it goes first. Then the simulation drops.
        self.daemon.stop(Duration::from_secs(10));
        let _ = self.sim.filesystems.thaw_all();
        guard::unregister_all_mounts();
    }
}
