//! Test doubles: a freezer that records calls, a manual clock, and an engine
//! built from them with a fixed mount list.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::config::Config;
use crate::engine::Engine;
use crate::freezer::{FreezeError, Freezer};
use crate::log::Log;
use crate::mounts::{FsId, Mount};
use crate::watchdog::Clock;

/// Records `freeze /x` and `thaw /x`; fails freezing paths in `fail_freeze`.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeFreezer {
    pub(crate) calls: Rc<RefCell<Vec<String>>>,
    pub(crate) frozen: Rc<RefCell<Vec<PathBuf>>>,
    pub(crate) fail_freeze: Vec<PathBuf>,
    pub(crate) outlives_process: bool,
}

impl Freezer for FakeFreezer {
    fn freeze(&mut self, mount: &Mount) -> Result<(), FreezeError> {
        self.calls
            .borrow_mut()
            .push(format!("freeze {}", mount.path.display()));
        if self.fail_freeze.contains(&mount.path) {
            return Err(FreezeError {
                mount: mount.path.clone(),
                action: "freeze",
                errno: Errno::EIO,
            });
        }
        self.frozen.borrow_mut().push(mount.path.clone());
        Ok(())
    }

    fn thaw(&mut self, mount: &Mount) -> Result<(), FreezeError> {
        self.calls
            .borrow_mut()
            .push(format!("thaw {}", mount.path.display()));
        self.frozen.borrow_mut().retain(|p| *p != mount.path);
        Ok(())
    }

    fn freeze_outlives_process(&self) -> bool {
        self.outlives_process
    }

    fn thaw_leftover(&mut self, path: &Path, _fs_id: FsId) -> Result<bool, FreezeError> {
        self.calls
            .borrow_mut()
            .push(format!("thaw-leftover {}", path.display()));
        Ok(true)
    }

    fn flush_unfreezable(&mut self, mounts: &[&Mount]) -> Result<(), FreezeError> {
        let mut calls = self.calls.borrow_mut();
        calls.extend(mounts.iter().map(|m| format!("flush {}", m.path.display())));
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
        let clock = ManualClock::new();
        let (log, lines) = Log::memory(true);
        let engine = Engine::new(
            config,
            freezer.clone(),
            clock.clone(),
            log,
            Box::new(move || Ok(mounts.clone())),
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
