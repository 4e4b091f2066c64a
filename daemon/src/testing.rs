//! Test doubles: a freezer that records calls, a manual clock, and an engine
//! built from them with a fixed mount list.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hv_vss_proto::{DeviceOperation, DeviceStatus};
use nix::errno::Errno;

use crate::config::Config;
use crate::engine::Engine;
use crate::freezer::{FreezeError, Freezer, Leftover};
use crate::log::Log;
use crate::mounts::{FsId, Mount, MountTable};
use crate::watchdog::Clock;

/// Records `freeze /x` and `thaw /x`; fails opening paths in `fail_open`
/// (ESTALE, as for a mount point that shows another filesystem), freezing
/// paths in `fail_freeze` (EIO), and thawing paths in `fail_thaw` (EIO, for
/// as long as they stay in the list). Leftovers thaw with `leftover`.
#[derive(Clone)]
pub(crate) struct FakeFreezer {
    pub(crate) calls: Rc<RefCell<Vec<String>>>,
    /// How many mounts were opened (the only path lookups).
    pub(crate) opens: Rc<Cell<usize>>,
    pub(crate) frozen: Rc<RefCell<Vec<PathBuf>>>,
    pub(crate) fail_open: Vec<PathBuf>,
    pub(crate) fail_freeze: Vec<PathBuf>,
    pub(crate) fail_thaw: Rc<RefCell<Vec<PathBuf>>>,
    pub(crate) outlives_process: bool,
    pub(crate) leftover: Result<Leftover, Errno>,
    /// Called with each call as it is recorded (a signal arriving, time
    /// passing).
    pub(crate) on_call: Option<OnCall>,
}

/// What a test runs when the fake freezer records a call.
pub(crate) type OnCall = Rc<dyn Fn(&str)>;

impl std::fmt::Debug for FakeFreezer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeFreezer")
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl Default for FakeFreezer {
    fn default() -> Self {
        Self {
            calls: Rc::default(),
            opens: Rc::default(),
            frozen: Rc::default(),
            fail_open: Vec::new(),
            fail_freeze: Vec::new(),
            fail_thaw: Rc::default(),
            outlives_process: false,
            leftover: Ok(Leftover::Thawed),
            on_call: None,
        }
    }
}

impl FakeFreezer {
    fn called(&self, call: &str) {
        if let Some(hook) = &self.on_call {
            hook(call);
        }
    }
}

fn fake_error(path: &Path, action: &'static str, errno: Errno) -> FreezeError {
    FreezeError {
        mount: path.to_owned(),
        action,
        errno,
    }
}

impl Freezer for FakeFreezer {
    type Handle = PathBuf;

    fn open(&mut self, mount: &Mount) -> Result<PathBuf, FreezeError> {
        self.opens.set(self.opens.get() + 1);
        if self.fail_open.contains(&mount.path) {
            return Err(fake_error(&mount.path, "freeze", Errno::ESTALE));
        }
        Ok(mount.path.clone())
    }

    fn freeze(&mut self, handle: &mut PathBuf, _mount: &Mount) -> Result<(), FreezeError> {
        self.calls
            .borrow_mut()
            .push(format!("freeze {}", handle.display()));
        if self.fail_freeze.contains(handle) {
            return Err(fake_error(handle, "freeze", Errno::EIO));
        }
        self.frozen.borrow_mut().push(handle.clone());
        self.called(&format!("freeze {}", handle.display()));
        Ok(())
    }

    fn thaw(&mut self, handle: &mut PathBuf, _mount: &Mount) -> Result<(), FreezeError> {
        self.calls
            .borrow_mut()
            .push(format!("thaw {}", handle.display()));
        if self.fail_thaw.borrow().contains(handle) {
            return Err(fake_error(handle, "thaw", Errno::EIO));
        }
        self.frozen.borrow_mut().retain(|p| p != handle);
        Ok(())
    }

    fn freeze_outlives_process(&self) -> bool {
        self.outlives_process
    }

    fn thaw_leftover(&mut self, path: &Path, _fs_id: FsId) -> Result<Leftover, FreezeError> {
        self.calls
            .borrow_mut()
            .push(format!("thaw-leftover {}", path.display()));
        self.leftover
            .map_err(|errno| fake_error(path, "thaw", errno))
    }

    fn flush_unfreezable(&mut self, mounts: &[&Mount]) -> Result<(), FreezeError> {
        for mount in mounts {
            let call = format!("flush {}", mount.path.display());
            self.calls.borrow_mut().push(call.clone());
            self.called(&call);
        }
        Ok(())
    }
}

/// A clock the test moves by hand.
#[derive(Debug, Clone)]
pub(crate) struct ManualClock(pub(crate) Rc<Cell<Instant>>);

impl ManualClock {
    pub(crate) fn new() -> Self {
        Self(Rc::new(Cell::new(Instant::now())))
    }
    pub(crate) fn advance(&self, by: Duration) {
        self.0.set(self.0.get() + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.0.get()
    }
}

pub(crate) fn mount(path: &str, fs_type: &str, id: i64) -> Mount {
    Mount {
        path: PathBuf::from(path),
        fs_type: fs_type.to_owned(),
        source: format!("/dev/disk{id}"),
        read_only: false,
        local: true,
        fs_id: FsId([id, 0]),
    }
}

/// Everything a test needs to drive and inspect an engine.
pub(crate) struct Harness {
    pub(crate) engine: Engine<FakeFreezer, ManualClock>,
    pub(crate) freezer: FakeFreezer,
    pub(crate) clock: ManualClock,
    pub(crate) log: Rc<RefCell<Vec<String>>>,
    pub(crate) dir: tempfile::TempDir,
}

impl Harness {
    /// An engine over `mounts`, with its files and hooks dir in a temp dir;
    /// `extra_config` is appended to the generated configuration.
    pub(crate) fn new(mounts: Vec<Mount>, extra_config: &str, freezer: FakeFreezer) -> Self {
        Self::with_mount_source(Box::new(move || Ok(mounts.clone())), extra_config, freezer)
    }

    /// The same with any mount table.
    pub(crate) fn with_mount_source(
        mounts: Box<dyn MountTable>,
        extra_config: &str,
        freezer: FakeFreezer,
    ) -> Self {
        Self::with_clock(ManualClock::new(), mounts, extra_config, freezer)
    }

    /// The same with a clock the test already holds.
    pub(crate) fn with_clock(
        clock: ManualClock,
        mounts: Box<dyn MountTable>,
        extra_config: &str,
        freezer: FakeFreezer,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let hooks = dir.path().join("hooks.d");
        std::fs::create_dir(&hooks).expect("hooks dir");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o755))
                .expect("chmod hooks dir");
        }
        let text = format!(
            "hooks_dir = {}\npid_file = {}\nstatus_file = {}\nstate_file = {}\n{extra_config}",
            hooks.display(),
            dir.path().join("pid").display(),
            dir.path().join("status").display(),
            dir.path().join("frozen").display(),
        );
        let config = Config::parse(&text).expect("config");
        let (log, lines) = Log::memory(true);
        let engine = Engine::new(
            config,
            freezer.clone(),
            clock.clone(),
            log,
            mounts,
            nix::unistd::geteuid().as_raw(),
        );
        Self {
            engine,
            freezer,
            clock,
            log: lines,
            dir,
        }
    }

    /// One request as the device loop serves it: handled, answered (the
    /// returned status), then the work after the answer.
    pub(crate) fn send(&mut self, op: DeviceOperation, msgid: u64) -> DeviceStatus {
        let status = self.engine.handle(op, msgid, self.clock.now());
        self.engine.after_answer();
        status
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.freezer.calls.borrow().clone()
    }

    pub(crate) fn log_contains(&self, needle: &str) -> bool {
        self.log.borrow().iter().any(|l| l.contains(needle))
    }

    /// Writes an executable hook that appends `name phase` to `journal`.
    pub(crate) fn hook(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join("hooks.d").join(name);
        let journal = self.dir.path().join("journal");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $1\" >> {}\n{body}\n",
                journal.display()
            ),
        )
        .expect("write hook");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    pub(crate) fn journal(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("journal"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn status_file(&self) -> PathBuf {
        self.dir.path().join("status")
    }

    pub(crate) fn state_file(&self) -> PathBuf {
        self.dir.path().join("frozen")
    }
}
