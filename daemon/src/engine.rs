//! What the daemon does with each request: CHECK, FREEZE, THAW, the
//! watchdog and shutdown. Generic over the freezer and the clock so the
//! whole sequence (hooks, rollback, logs held while frozen, watchdog, the
//! request budget) is tested with a fake freezer and a manual clock.
//!
//! FREEZE, as the host sees it, is the list of steps in [`Engine::freeze`]:
//! revalidate the plan, freeze hooks, flush what cannot be frozen, open
//! every mount, record the freeze, freeze. The host waits for all of it and
//! gives up after its own deadline (15 s in both drivers), so the steps
//! share `request_budget`, counted from when the request was read. THAW
//! thaws through the descriptors opened at FREEZE and is answered at once;
//! thaw hooks, held logs and the status follow in [`Engine::after_answer`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hv_vss_proto::{DeviceOperation, DeviceStatus};

use crate::busy::FreezeLock;
use crate::child;
use crate::config::Config;
use crate::freezer::{FreezeError, Freezer, Leftover};
use crate::hooks::{self, Hook, HookRun, Phase};
use crate::log::{Escaped, Log};
use crate::mounts::{self, Mount, MountTable};
use crate::policy::{self, FreezePlan, SkipReason};
use crate::safefile::{self, Staged};
use crate::statefile::{self, FrozenMount};
use crate::status::{State, Status, Transaction, unix_now};
use crate::watchdog::{Clock, Watchdog};

/// Of `request_budget`, what the freezes themselves are left at least:
/// hooks and `zpool sync` stop this much before the budget ends, and the
/// first freeze does not start with less than this left.
pub const FREEZE_RESERVE: Duration = Duration::from_secs(1);

/// How often thawing is tried again when a thaw failed.
pub const THAW_RETRY: Duration = Duration::from_secs(1);

/// The state between requests.
pub struct Engine<F: Freezer, C: Clock> {
    config: Config,
    /// A configuration read (SIGHUP) while frozen: it applies after the
    /// thaw, so a reload never moves where the active freeze is recorded.
    pending_config: Option<Config>,
    freezer: F,
    clock: C,
    pub log: Log,
    mounts: Box<dyn MountTable>,
    /// The last plan and the mount table it was made from: FREEZE reuses
    /// CHECK's plan (and the mounts CHECK opened) when the table has not
    /// changed since.
    planned: Option<Planned<F::Handle>>,
    /// Set when the last scan found the hooks directory empty or missing.
    hooks_dir_stamp: Option<HooksDirStamp>,
    /// Owner hooks must have: root, or the test's own uid.
    hook_owner: u32,
    /// The `zpool` program.
    zpool: PathBuf,
    status: Status,
    /// Set from the first successful freeze until everything is thawed.
    freeze: Option<ActiveFreeze<F::Handle>>,
    /// Filesystems an earlier daemon froze that could not be reached at
    /// start: kept in the state file and shown by the status.
    unreachable: Vec<FrozenMount>,
    /// Where the active freeze is recorded (Linux): the state file of its
    /// FREEZE, and the new one of a reload meanwhile, so that a daemon
    /// restarted after a crash finds it whichever configuration it reads.
    recorded_at: Vec<PathBuf>,
    watchdog: Watchdog,
    /// The watchdog thawed: the THAW that comes late is answered failure.
    thawed_by_watchdog: bool,
    /// What the host does not wait for, done by [`Self::after_answer`].
    after_answer: AfterAnswer,
    /// Set by SIGTERM/SIGINT: a FREEZE in progress thaws and fails.
    stop: Arc<AtomicBool>,
    /// One freeze at a time on this machine (the daemon's, or a local
    /// `hv_vssctl test`): held from FREEZE until everything is thawed.
    freeze_lock: Option<FreezeLock>,
    /// False for `hv_vssctl test`: the status file is the daemon's.
    publishes_status: bool,
    /// Skip reasons and hook refusals already logged (each is logged once).
    logged_once: HashSet<String>,
}

struct Planned<H> {
    mounts: Vec<Mount>,
    plan: FreezePlan,
    /// What CHECK readied for the FREEZE that follows (the host sends CHECK
    /// first), so FREEZE neither resolves mount points nor writes a file
    /// while the host waits. Dropped when the table changes or after
    /// [`PREPARED_TTL`], not to keep mounts busy for long.
    prepared: Option<Prepared<H>>,
}

struct Prepared<H> {
    /// The plan's mounts, opened.
    held: Vec<Held<H>>,
    /// The crash record of exactly these mounts, written and not yet in
    /// place (Linux).
    record: Option<Staged>,
    at: Instant,
}

/// How long mounts opened by CHECK are kept for a FREEZE. On Linux an open
/// directory keeps its mount busy (umount: EBUSY), so not long; a FREEZE
/// that comes later opens them itself. (A FreeBSD handle is a
/// /dev/ufssuspend descriptor, which keeps nothing busy.)
pub const PREPARED_TTL: Duration = Duration::from_secs(10);

/// What an empty or missing hooks directory looked like when it was last
/// scanned: the same directory (device and inode) with the same
/// modification and change times still has no entries, so the walk from
/// `/` and the listing are not repeated on the FREEZE path. Any entry added
/// or removed, a rename or a chmod changes one of them (ctime cannot be set
/// by anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HooksDirStamp {
    Missing,
    Empty {
        dev: u64,
        ino: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
    },
}

impl HooksDirStamp {
    fn of(dir: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(dir) {
            Ok(m) => Some(Self::Empty {
                dev: m.dev(),
                ino: m.ino(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Self::Missing),
            Err(_) => None,
        }
    }
}

/// What is frozen now: each mount with the handle it is thawed through.
struct ActiveFreeze<H> {
    /// In freeze order.
    held: Vec<Held<H>>,
    /// Hooks whose `freeze` succeeded, in the order they ran.
    hooks: Vec<Hook>,
    skipped: usize,
    /// When the first filesystem was frozen: `freeze_limit` counts from here,
    /// whatever the host sends afterwards.
    since: Instant,
    /// Set once a thaw of some of `held` failed; they are tried again.
    thaw_failed: Option<Instant>,
}

struct Held<H> {
    mount: Mount,
    handle: H,
}

#[derive(Default)]
struct AfterAnswer {
    /// Thaw hooks of a THAW that succeeded.
    thaw_hooks: Vec<Hook>,
}

impl<F: Freezer, C: Clock> std::fmt::Debug for Engine<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("frozen", &self.frozen_paths())
            .finish_non_exhaustive()
    }
}

/// The outcome of one operation, before it becomes a [`Transaction`].
struct Outcome {
    success: bool,
    detail: String,
    frozen: usize,
    skipped: usize,
}

impl Outcome {
    fn ok(frozen: usize, skipped: usize) -> Self {
        Self {
            success: true,
            detail: String::new(),
            frozen,
            skipped,
        }
    }
    fn fail(detail: impl Into<String>, skipped: usize) -> Self {
        Self {
            success: false,
            detail: detail.into(),
            frozen: 0,
            skipped,
        }
    }
}

impl<F: Freezer, C: Clock> Engine<F, C> {
    pub fn new(
        config: Config,
        freezer: F,
        clock: C,
        log: Log,
        mounts: Box<dyn MountTable>,
        hook_owner: u32,
    ) -> Self {
        let watchdog = Watchdog::new(config.freeze_limit);
        let status = Status::new(std::process::id(), config.freeze_limit.as_secs());
        Self {
            config,
            pending_config: None,
            freezer,
            clock,
            log,
            mounts,
            planned: None,
            hooks_dir_stamp: None,
            hook_owner,
            zpool: PathBuf::from(crate::freezer::ZPOOL),
            status,
            freeze: None,
            unreachable: Vec::new(),
            recorded_at: Vec::new(),
            watchdog,
            thawed_by_watchdog: false,
            after_answer: AfterAnswer::default(),
            stop: Arc::new(AtomicBool::new(false)),
            freeze_lock: None,
            publishes_status: true,
            logged_once: HashSet::new(),
        }
    }

    /// Uses another `zpool` program (tests).
    pub fn set_zpool(&mut self, zpool: PathBuf) {
        self.zpool = zpool;
    }

    /// The flag SIGTERM/SIGINT set: a FREEZE that finds it set thaws what it
    /// froze and answers failure instead of success.
    pub fn set_stop_flag(&mut self, stop: Arc<AtomicBool>) {
        self.stop = stop;
    }

    /// Takes `lock` for every freeze: a FREEZE while someone else holds it
    /// fails without touching anything.
    pub fn set_freeze_lock(&mut self, lock: FreezeLock) {
        self.freeze_lock = Some(lock);
    }

    /// Keeps the status in memory only (a local test freeze must not
    /// overwrite the running daemon's status file).
    pub fn without_status_file(&mut self) {
        self.publishes_status = false;
    }

    /// The engine's clock: when a request was read.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Replaces the configuration (SIGHUP). While frozen it is kept until
    /// the thaw: the active freeze keeps its watchdog deadline and its
    /// state file.
    pub fn reload(&mut self, config: Config) {
        if self.freeze.is_some() {
            self.record_also_at(&config.state_file);
            self.pending_config = Some(config);
            self.log
                .notice("configuration read during a freeze: it applies after the thaw");
        } else {
            self.apply(config);
        }
    }

    /// A reload that moves the state file while frozen: the active freeze
    /// stays recorded where it was, and is recorded at the new place too
    /// (unless that is on a frozen filesystem), because a daemon started
    /// after a crash reads the new configuration.
    fn record_also_at(&mut self, state_file: &std::path::Path) {
        if self.recorded_at.is_empty() || self.recorded_at.iter().any(|p| p == state_file) {
            return;
        }
        let dir = state_file.parent().unwrap_or(state_file);
        if self.is_on_frozen_filesystem(dir) {
            self.log.warning(format!(
                "the new state_file {} is on a frozen filesystem: the active freeze stays \
                 recorded in {} only",
                Escaped(state_file.as_os_str()),
                Escaped(self.recorded_at[0].as_os_str())
            ));
            return;
        }
        let held = self
            .freeze
            .iter()
            .flat_map(|f| f.held.iter().map(|h| &h.mount));
        match statefile::record(state_file, &self.record_of(held)) {
            Ok(()) => self.recorded_at.push(state_file.to_owned()),
            Err(e) => self.log.error(format!(
                "cannot record the active freeze in the new state_file {}: {e}",
                Escaped(state_file.as_os_str())
            )),
        }
    }

    fn apply(&mut self, config: Config) {
        self.watchdog.set_limit(config.freeze_limit);
        self.status.freeze_limit_secs = config.freeze_limit.as_secs();
        self.config = config;
        self.planned = None;
        self.hooks_dir_stamp = None;
        self.logged_once.clear();
        self.log.notice("configuration reloaded");
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    pub fn is_frozen(&self) -> bool {
        self.freeze.is_some()
    }

    pub fn frozen_paths(&self) -> Vec<PathBuf> {
        self.freeze
            .as_ref()
            .map(|f| f.held.iter().map(|h| h.mount.path.clone()).collect())
            .unwrap_or_default()
    }

    /// Publishes the status file, unless it lives on a frozen filesystem
    /// (a write there would block until the thaw; it is published then).
    pub fn publish_status(&mut self) {
        if !self.publishes_status || self.status_file_is_frozen() {
            return;
        }
        if let Err(e) = self.status.publish(&self.config.status_file) {
            self.log.warning(format!(
                "cannot write the status file {}: {e}",
                Escaped(self.config.status_file.as_os_str())
            ));
        }
    }

    fn status_file_is_frozen(&self) -> bool {
        let file = &self.config.status_file;
        self.is_on_frozen_filesystem(file.parent().unwrap_or(file))
    }

    /// Whether `dir` is on a filesystem this daemon holds frozen. Unknown
    /// counts as frozen: skipping a write is harmless, blocking is not.
    fn is_on_frozen_filesystem(&self, dir: &std::path::Path) -> bool {
        let Some(active) = &self.freeze else {
            return false;
        };
        mounts::filesystem_of(dir)
            .map_or(true, |fs| active.held.iter().any(|h| h.mount.fs_id == fs))
    }

    /// Thaws what an earlier daemon left frozen (Linux: the state file).
    /// Called at start, before any other path is touched. A filesystem that
    /// cannot be reached (its mount point shows another filesystem, or is
    /// gone, and no other mount shows it) is not assumed thawed: it stays in
    /// the state file and the status.
    pub fn recover(&mut self) {
        if !self.freezer.freeze_outlives_process() {
            return;
        }
        let path = self.config.state_file.clone();
        let stale = safefile::remove_stale_temporaries(&path);
        if stale > 0 {
            self.log.info(format!(
                "removed {stale} crash records written ahead by a daemon that stopped before \
                 using them"
            ));
        }
        let record = match statefile::read(&path) {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                self.log.error(e);
                return;
            }
        };
        self.log.warning(format!(
            "{} says pid {} froze {} mounts and did not thaw them: thawing now",
            Escaped(path.as_os_str()),
            record.pid,
            record.frozen.len()
        ));
        let current = self.mounts.list().unwrap_or_default();
        for leftover in record.frozen.iter().rev() {
            if !self.thaw_leftover(leftover, &current) {
                self.unreachable.push(leftover.clone());
            }
        }
        if self.unreachable.is_empty() {
            if let Err(e) = statefile::clear(&path) {
                self.log
                    .error(format!("cannot remove {}: {e}", Escaped(path.as_os_str())));
            }
        }
        self.status.unreachable = self
            .unreachable
            .iter()
            .map(|m| Escaped(m.path.as_os_str()).to_string())
            .collect();
    }

    /// Thaws one leftover through its recorded mount point, or through any
    /// other mount of the same filesystem. False when none reaches it.
    fn thaw_leftover(&mut self, leftover: &FrozenMount, current: &[Mount]) -> bool {
        let shown = Escaped(leftover.path.as_os_str()).to_string();
        let others = current
            .iter()
            .filter(|m| m.fs_id == leftover.fs_id && m.path != leftover.path)
            .map(|m| m.path.clone());
        for path in std::iter::once(leftover.path.clone()).chain(others) {
            match self.freezer.thaw_leftover(&path, leftover.fs_id) {
                Ok(Leftover::Thawed) => {
                    self.log.notice(format!(
                        "thawed leftover {shown} (through {})",
                        Escaped(path.as_os_str())
                    ));
                    return true;
                }
                Ok(Leftover::NotFrozen) => {
                    self.log
                        .info(format!("leftover {shown} was not frozen any more"));
                    return true;
                }
                Err(e) => self.log.warning(e.to_string()),
            }
        }
        self.log.error(format!(
            "leftover {shown} cannot be reached to thaw it (its mount point shows another \
             filesystem or is gone): it may still be frozen; it stays in {} until it is \
             thawed (fsfreeze -u on its mount point), then remove that file",
            Escaped(self.config.state_file.as_os_str())
        ));
        false
    }

    /// Handles one request read at `read_at` and returns the status to
    /// answer. The caller answers at once and then calls
    /// [`Self::after_answer`]: the host waits for the answer only.
    pub fn handle(
        &mut self,
        operation: DeviceOperation,
        msgid: u64,
        read_at: Instant,
    ) -> DeviceStatus {
        let (name, outcome) = match operation {
            DeviceOperation::Check => ("CHECK", self.check()),
            DeviceOperation::Freeze => ("FREEZE", self.freeze(read_at)),
            DeviceOperation::Thaw => ("THAW", self.thaw()),
            DeviceOperation::None => ("NONE", Outcome::fail("operation NONE is not a request", 0)),
        };
        let counters = &mut self.status.counters;
        let counter = match (operation, outcome.success) {
            (DeviceOperation::Check, true) => Some(&mut counters.check_ok),
            (DeviceOperation::Check, false) => Some(&mut counters.check_failed),
            (DeviceOperation::Freeze, true) => Some(&mut counters.freeze_ok),
            (DeviceOperation::Freeze, false) => Some(&mut counters.freeze_failed),
            (DeviceOperation::Thaw, true) => Some(&mut counters.thaw_ok),
            (DeviceOperation::Thaw, false) => Some(&mut counters.thaw_failed),
            (DeviceOperation::None, _) => None,
        };
        if let Some(counter) = counter {
            *counter += 1;
        }
        // Before the answer, not in settle() after it: whoever sees this
        // answer (a THAW's, or a failed FREEZE's) may take the freeze lock
        // at once, as `hv_vssctl test` does. settle() releases it on the
        // paths no request answers (watchdog, shutdown).
        if self.freeze.is_none() {
            if let Some(lock) = &mut self.freeze_lock {
                lock.unlock();
            }
        }
        self.finish(name, msgid, read_at, &outcome);
        if outcome.success {
            DeviceStatus::Success
        } else {
            DeviceStatus::Fail
        }
    }

    /// After the answer: thaw hooks, held logs, the crash record and the
    /// status, none of which the host waits for.
    pub fn after_answer(&mut self) {
        let thaw_hooks = std::mem::take(&mut self.after_answer.thaw_hooks);
        self.settle();
        self.run_hooks_reverse(&thaw_hooks, Phase::Thaw);
        self.publish_status();
    }

    /// Once nothing is frozen: write the held logs, drop the crash record,
    /// apply a configuration read meanwhile. Harmless when already done.
    fn settle(&mut self) {
        if self.freeze.is_some() {
            return;
        }
        self.log.release();
        if let Some(config) = self.pending_config.take() {
            self.apply(config);
        }
        if self.freezer.freeze_outlives_process() {
            self.clear_records();
        }
        if let Some(lock) = &mut self.freeze_lock {
            lock.unlock();
        }
    }

    /// Nothing of ours is frozen: remove the records of the last freeze,
    /// keeping only what could not be reached at start.
    fn clear_records(&mut self) {
        let mut records = std::mem::take(&mut self.recorded_at);
        if !records.contains(&self.config.state_file) {
            records.push(self.config.state_file.clone());
        }
        for path in records {
            let result = if self.unreachable.is_empty() || path != self.config.state_file {
                statefile::clear(&path)
            } else {
                statefile::record(&path, &self.unreachable)
            };
            if let Err(e) = result {
                self.log
                    .error(format!("cannot update {}: {e}", Escaped(path.as_os_str())));
            }
        }
    }

    /// How long the event loop may wait before [`Self::on_timer`] is due.
    pub fn next_timeout(&self) -> Option<Duration> {
        let now = self.clock.now();
        let frozen = match self.freeze.as_ref().and_then(|f| f.thaw_failed) {
            Some(last) => Some((last + THAW_RETRY).saturating_duration_since(now)),
            None => self.watchdog.remaining(now),
        };
        let prepared = self
            .planned
            .as_ref()
            .and_then(|p| p.prepared.as_ref())
            .map(|p| (p.at + PREPARED_TTL).saturating_duration_since(now));
        match (frozen, prepared) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Thaws by itself when THAW is overdue, or tries a failed thaw again;
    /// closes the mounts CHECK opened once no FREEZE came for them.
    pub fn on_timer(&mut self) {
        let now = self.clock.now();
        if let Some(planned) = &mut self.planned {
            if planned
                .prepared
                .as_ref()
                .is_some_and(|p| now >= p.at + PREPARED_TTL)
            {
                planned.prepared = None;
            }
        }
        let retry_due = self
            .freeze
            .as_ref()
            .and_then(|f| f.thaw_failed)
            .is_some_and(|last| now >= last + THAW_RETRY);
        if retry_due {
            let outcome = self.thaw_everything();
            self.finish("THAW-RETRY", 0, now, &outcome);
            self.after_answer();
            return;
        }
        if !self.watchdog.expired(now) {
            return;
        }
        let limit = self.config.freeze_limit.as_secs();
        let mut outcome = self.thaw_everything();
        self.thawed_by_watchdog = true;
        self.status.counters.watchdog_thaws += 1;
        self.log.warning(format!(
            "THAW did not come within freeze_limit ({limit} s of the first freeze): \
             thawed by the watchdog"
        ));
        outcome.detail = join(&format!("no THAW within {limit} s"), &outcome.detail);
        self.finish("WATCHDOG", 0, now, &outcome);
        self.after_answer();
    }

    /// Thaws everything before exiting (SIGTERM, SIGINT, device gone).
    pub fn shutdown(&mut self) {
        if self.freeze.is_none() {
            return;
        }
        let started = self.clock.now();
        let outcome = self.thaw_everything();
        self.finish("SHUTDOWN", 0, started, &outcome);
        self.after_answer();
    }

    fn finish(&mut self, op: &str, msgid: u64, started: Instant, outcome: &Outcome) {
        let elapsed = self.clock.now().saturating_duration_since(started);
        let transaction = Transaction {
            op: op.to_owned(),
            msgid,
            success: outcome.success,
            detail: outcome.detail.clone(),
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            frozen: outcome.frozen,
            skipped: outcome.skipped,
            finished_at: unix_now(),
        };
        let line = transaction.summary();
        if outcome.success {
            self.log.notice(line);
        } else {
            self.log.error(line);
        }
        self.status.record(transaction);
    }

    /// Lists the mounts and plans, logging each skip once.
    fn plan_afresh(&mut self) -> Result<&FreezePlan, String> {
        let mounts = self.mounts.list().map_err(|e| e.to_string())?;
        if self.planned.as_ref().is_none_or(|p| p.mounts != mounts) {
            let plan = policy::plan(&mounts, &self.config);
            self.log_plan(&plan);
            self.planned = Some(Planned {
                mounts,
                plan,
                prepared: None,
            });
        }
        self.planned
            .as_ref()
            .map(|p| &p.plan)
            .ok_or_else(|| "no plan".to_owned())
    }

    /// The last plan if the mount table is known not to have changed since
    /// (FREEZE right after CHECK), else a new one.
    fn revalidated_plan(&mut self) -> Result<FreezePlan, String> {
        if self.planned.is_none() || self.mounts.may_have_changed() {
            self.plan_afresh()?;
        }
        self.planned
            .as_ref()
            .map(|p| p.plan.clone())
            .ok_or_else(|| "no plan".to_owned())
    }

    fn log_plan(&mut self, plan: &FreezePlan) {
        for skipped in &plan.skipped {
            let line = format!(
                "skipping {} ({}, {}): {}",
                Escaped(skipped.mount.path.as_os_str()),
                skipped.mount.fs_type,
                Escaped(skipped.mount.source.as_ref()),
                skipped.reason
            );
            self.once(&line, false);
        }
        for mount in &plan.freeze {
            self.log.debug(format!(
                "will freeze {} ({}, {})",
                Escaped(mount.path.as_os_str()),
                mount.fs_type,
                Escaped(mount.source.as_ref())
            ));
        }
    }

    /// Logs `line` at info (or warning) the first time, at debug afterwards.
    fn once(&mut self, line: &str, warning: bool) {
        if self.logged_once.insert(line.to_owned()) {
            if warning {
                self.log.warning(line);
            } else {
                self.log.info(line);
            }
        } else {
            self.log.debug(line);
        }
    }

    fn check(&mut self) -> Outcome {
        let plan = match self.plan_afresh() {
            Ok(plan) => plan,
            Err(e) => return Outcome::fail(e, 0),
        };
        let (skipped, count) = (plan.skipped.len(), plan.freeze.len());
        if let Some(veto) = &plan.veto {
            return Outcome::fail(veto.clone(), skipped);
        }
        if self.freeze.is_none() {
            if let Err(e) = self.prepare() {
                return Outcome::fail(e.to_string(), skipped);
            }
        }
        Outcome::ok(count, skipped)
    }

    /// Opens the planned mounts ahead of FREEZE (each checked to show the
    /// planned filesystem, as FREEZE would): an error here is the error
    /// FREEZE would get.
    fn prepare(&mut self) -> Result<(), FreezeError> {
        let Some(planned) = &self.planned else {
            return Ok(());
        };
        if planned.prepared.is_some() {
            return Ok(());
        }
        let mounts = planned.plan.freeze.clone();
        let held = self.open_all(&mounts)?;
        // The record is only a head start: if it cannot be written now,
        // FREEZE writes it (and fails if it cannot either).
        let record = if self.freezer.freeze_outlives_process() && !mounts.is_empty() {
            statefile::stage(&self.config.state_file, &self.record_of(&mounts)).ok()
        } else {
            None
        };
        let at = self.clock.now();
        if let Some(planned) = &mut self.planned {
            planned.prepared = Some(Prepared { held, record, at });
        }
        Ok(())
    }

    /// What CHECK readied for this plan, if still fresh.
    fn take_prepared(&mut self) -> Option<Prepared<F::Handle>> {
        let now = self.clock.now();
        let prepared = self.planned.as_mut()?.prepared.take()?;
        (now.saturating_duration_since(prepared.at) < PREPARED_TTL).then_some(prepared)
    }

    /// The crash record of a freeze of `mounts`: them, and what an earlier
    /// daemon left that could not be reached.
    fn record_of<'m>(&self, mounts: impl IntoIterator<Item = &'m Mount>) -> Vec<FrozenMount> {
        mounts
            .into_iter()
            .map(FrozenMount::from)
            .chain(self.unreachable.iter().cloned())
            .collect()
    }

    fn scan_hooks(&mut self) -> Vec<Hook> {
        let stamp = HooksDirStamp::of(&self.config.hooks_dir);
        if stamp.is_some() && stamp == self.hooks_dir_stamp {
            return Vec::new();
        }
        let set = hooks::scan(&self.config.hooks_dir, self.hook_owner, &self.config.file);
        self.hooks_dir_stamp = stamp.filter(|_| set.hooks.is_empty() && set.refused.is_empty());
        for refused in &set.refused {
            let line = format!(
                "hook {} refused: {}",
                Escaped(refused.path.as_os_str()),
                refused.reason
            );
            self.once(&line, true);
        }
        set.hooks
    }

    fn log_hook(&mut self, run: &HookRun) {
        if run.succeeded() {
            self.log.info(run.summary());
        } else {
            self.status.counters.hook_failures += 1;
            self.log.warning(run.summary());
        }
        if let Ok(finished) = &run.result {
            for line in finished.output.lines().filter(|l| !l.trim().is_empty()) {
                self.log
                    .info(format!("hook {} output: {line}", run.hook.name()));
            }
        }
    }

    fn run_hooks_reverse(&mut self, hooks: &[Hook], phase: Phase) {
        for run in hooks::run_reverse(hooks, phase, self.config.hook_timeout, None) {
            self.log_hook(&run);
        }
    }

    /// FREEZE: each step may refuse, and undoes what the steps before it did.
    fn freeze(&mut self, read_at: Instant) -> Outcome {
        if let Some(outcome) = self.freeze_again() {
            return outcome;
        }
        self.thawed_by_watchdog = false;
        if let Err(e) = self.lock_for_freeze() {
            return Outcome::fail(e, 0);
        }
        let budget = Budget::new(read_at, self.config.request_budget);
        let plan = match self.revalidated_plan() {
            Ok(plan) => plan,
            Err(e) => return Outcome::fail(e, 0),
        };
        let skipped = plan.skipped.len();
        if let Some(veto) = plan.veto {
            return Outcome::fail(veto, skipped);
        }
        if let Err(e) = self.enough_time_left(&budget) {
            return Outcome::fail(e, skipped);
        }
        let hooks = match self.freeze_hooks(&budget) {
            Ok(hooks) => hooks,
            Err(veto) => return Outcome::fail(veto, skipped),
        };
        let undo = |engine: &mut Self, detail: String| {
            engine.run_hooks_reverse(&hooks, Phase::FreezeFail);
            Outcome::fail(detail, skipped)
        };
        if let Err(e) = self.flush(&plan, &budget) {
            return undo(self, e);
        }
        if let Err(e) = self.enough_time_left(&budget) {
            return undo(self, e);
        }
        let (opened, staged) = match self.take_prepared() {
            Some(prepared) => (prepared.held, prepared.record),
            None => match self.open_all(&plan.freeze) {
                Ok(opened) => (opened, None),
                Err(e) => return undo(self, e.to_string()),
            },
        };
        if let Err(e) = self.record_freeze(&plan.freeze, staged) {
            return undo(self, e);
        }
        match self.freeze_all(opened, hooks.clone(), skipped) {
            Ok(frozen) => self.answer_freeze(frozen, skipped),
            Err(detail) => {
                self.run_hooks_reverse(&hooks, Phase::FreezeFail);
                Outcome::fail(detail, skipped)
            }
        }
    }

    /// A FREEZE while a freeze is active: success if it still holds (the
    /// watchdog keeps counting from the first freeze), failure if a thaw
    /// failed (what is left must be thawed first).
    fn freeze_again(&mut self) -> Option<Outcome> {
        let active = self.freeze.as_ref()?;
        Some(if active.thaw_failed.is_some() {
            let paths: Vec<String> = active
                .held
                .iter()
                .map(|h| Escaped(h.mount.path.as_os_str()).to_string())
                .collect();
            Outcome::fail(
                format!(
                    "not freezing again: the last thaw failed and {} is still frozen",
                    paths.join(", ")
                ),
                active.skipped,
            )
        } else {
            Outcome {
                success: true,
                detail: "already frozen".to_owned(),
                frozen: active.held.len(),
                skipped: active.skipped,
            }
        })
    }

    fn lock_for_freeze(&mut self) -> Result<(), String> {
        let Some(lock) = &mut self.freeze_lock else {
            return Ok(());
        };
        match lock.try_lock() {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "another freeze is under way on this machine ({} is locked, by \
                 `hv_vssctl test`?): not freezing",
                Escaped(lock.path().as_os_str())
            )),
            Err(e) => Err(format!(
                "cannot lock {}: {e}",
                Escaped(lock.path().as_os_str())
            )),
        }
    }

    /// Step 1: the freeze hooks in lexical order; the first failure vetoes
    /// (and the hooks that did freeze are thawed). Returns the hooks to thaw.
    fn freeze_hooks(&mut self, budget: &Budget) -> Result<Vec<Hook>, String> {
        let hooks = self.scan_hooks();
        if hooks.is_empty() {
            return Ok(hooks);
        }
        let deadline = budget.real_deadline(self.clock.now());
        let runs = hooks::run_freeze(&hooks, self.config.hook_timeout, Some(deadline));
        let mut frozen_hooks = Vec::new();
        let mut veto = None;
        for run in &runs {
            self.log_hook(run);
            if run.succeeded() {
                frozen_hooks.push(run.hook.clone());
            } else {
                veto = Some(format!("hook {} vetoed the freeze", run.hook.name()));
            }
        }
        match veto {
            None => Ok(frozen_hooks),
            Some(veto) => {
                self.run_hooks_reverse(&frozen_hooks, Phase::Thaw);
                Err(veto)
            }
        }
    }

    /// Step 2: flush what cannot be frozen: `zpool sync` of the ZFS pools
    /// (always consistent, but what was written must be on disk), and the
    /// read-write filesystems nothing can freeze (best effort).
    fn flush(&mut self, plan: &FreezePlan, budget: &Budget) -> Result<(), String> {
        if !plan.zfs_pools.is_empty() {
            self.sync_pools(&plan.zfs_pools, budget)?;
        }
        let unfreezable: Vec<&Mount> = plan
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::NotFreezable)
            .map(|s| &s.mount)
            .collect();
        if !unfreezable.is_empty() {
            if let Err(e) = self.freezer.flush_unfreezable(&unfreezable) {
                self.log.warning(e.to_string());
            }
        }
        Ok(())
    }

    /// Before the hooks and again before opening the mounts: never start
    /// late (the host may have given up) or while the daemon is stopping.
    fn enough_time_left(&self, budget: &Budget) -> Result<(), String> {
        if self.stop.load(Ordering::SeqCst) {
            return Err("the daemon is stopping (SIGTERM): not freezing".to_owned());
        }
        let now = self.clock.now();
        if now >= budget.prepare_deadline() {
            return Err(format!(
                "request_budget ({} s) spent after {} ms of hooks and flushing: \
                 not freezing so late (the host gives up after 15 s)",
                budget.total.as_secs(),
                now.saturating_duration_since(budget.read_at).as_millis()
            ));
        }
        Ok(())
    }

    /// Step 4: open every mount to freeze, before anything is frozen: the
    /// only path lookups of a freeze, each checked to show the planned
    /// filesystem.
    fn open_all(&mut self, plan: &[Mount]) -> Result<Vec<Held<F::Handle>>, FreezeError> {
        plan.iter()
            .map(|mount| {
                self.freezer.open(mount).map(|handle| Held {
                    mount: mount.clone(),
                    handle,
                })
            })
            .collect()
    }

    /// Step 5 (Linux, where a freeze outlives the daemon): the crash record,
    /// the last write before freezing.
    fn record_freeze(&mut self, plan: &[Mount], staged: Option<Staged>) -> Result<(), String> {
        if !self.freezer.freeze_outlives_process() || plan.is_empty() {
            return Ok(());
        }
        let written = match staged {
            // Written by CHECK for this very plan: only the rename is left.
            Some(staged) => staged.commit(),
            None => statefile::record(&self.config.state_file, &self.record_of(plan)),
        };
        written.map_err(|e| {
            format!(
                "cannot write the state file {}: {e}",
                Escaped(self.config.state_file.as_os_str())
            )
        })?;
        self.recorded_at = vec![self.config.state_file.clone()];
        Ok(())
    }

    /// Step 6: freeze, children first, root last, holding the logs from
    /// here on. A failure thaws what was frozen (rollback); a mount whose
    /// rollback thaw fails stays held and is tried again.
    fn freeze_all(
        &mut self,
        opened: Vec<Held<F::Handle>>,
        hooks: Vec<Hook>,
        skipped: usize,
    ) -> Result<usize, String> {
        self.log.hold();
        let mut frozen: Vec<Held<F::Handle>> = Vec::with_capacity(opened.len());
        let mut since = None;
        for mut held in opened {
            match self.freezer.freeze(&mut held.handle, &held.mount) {
                Ok(()) => {
                    since.get_or_insert_with(|| self.clock.now());
                    self.log
                        .info(format!("froze {}", Escaped(held.mount.path.as_os_str())));
                    frozen.push(held);
                }
                Err(e) => {
                    self.log.error(e.to_string());
                    self.status.counters.rollbacks += 1;
                    let rolled_back = frozen.len();
                    let errors = self.hold_freeze(frozen, skipped, since);
                    let mut detail = format!("{e}; rolled back {rolled_back} mounts");
                    for error in errors {
                        detail = join(&detail, &error.to_string());
                    }
                    return Err(detail);
                }
            }
        }
        let count = frozen.len();
        let since = since.unwrap_or_else(|| self.clock.now());
        self.watchdog.arm(since);
        self.freeze = Some(ActiveFreeze {
            held: frozen,
            hooks,
            skipped,
            since,
            thaw_failed: None,
        });
        self.status.state = State::Frozen;
        self.status.frozen = self.frozen_paths_text();
        self.status.frozen_since = Some(unix_now());
        Ok(count)
    }

    /// Rollback: makes `frozen` the active freeze and thaws it at once.
    /// The freeze hooks are not part of it: the caller runs them with
    /// [`Phase::FreezeFail`].
    fn hold_freeze(
        &mut self,
        frozen: Vec<Held<F::Handle>>,
        skipped: usize,
        since: Option<Instant>,
    ) -> Vec<FreezeError> {
        self.freeze = Some(ActiveFreeze {
            held: frozen,
            hooks: Vec::new(),
            skipped,
            since: since.unwrap_or_else(|| self.clock.now()),
            thaw_failed: None,
        });
        let (_, errors) = self.thaw_held();
        if errors.is_empty() {
            self.settle();
        }
        errors
    }

    /// The end of a FREEZE that froze everything: success, unless SIGTERM
    /// came meanwhile (then thaw and fail: the daemon is leaving and cannot
    /// keep the filesystems frozen for the host).
    fn answer_freeze(&mut self, frozen: usize, skipped: usize) -> Outcome {
        if !self.stop.load(Ordering::SeqCst) {
            return Outcome::ok(frozen, skipped);
        }
        let (hooks, errors) = self.thaw_held();
        self.run_hooks_reverse(&hooks, Phase::FreezeFail);
        let mut detail = "SIGTERM during FREEZE: thawed again, answering failure".to_owned();
        for error in &errors {
            detail = join(&detail, &error.to_string());
        }
        if errors.is_empty() {
            self.settle();
        }
        Outcome::fail(detail, skipped)
    }

    fn frozen_paths_text(&self) -> Vec<String> {
        self.frozen_paths()
            .iter()
            .map(|p| Escaped(p.as_os_str()).to_string())
            .collect()
    }

    fn thaw(&mut self) -> Outcome {
        if self.freeze.is_none() {
            return if self.thawed_by_watchdog {
                let limit = self.config.freeze_limit.as_secs();
                self.log.warning(format!(
                    "THAW after the watchdog thawed (freeze_limit {limit} s): answering \
                     failure, the snapshot may have been taken after the thaw"
                ));
                Outcome::fail(
                    format!("already thawed by the watchdog after freeze_limit ({limit} s)"),
                    0,
                )
            } else {
                Outcome {
                    success: true,
                    detail: "nothing was frozen".to_owned(),
                    frozen: 0,
                    skipped: 0,
                }
            };
        }
        self.thaw_everything()
    }

    /// Thaws the active freeze through its handles. What thawed is done
    /// with; what did not stays held (and in the state file) and is tried
    /// again every [`THAW_RETRY`]. Thaw hooks wait for [`Self::after_answer`].
    fn thaw_everything(&mut self) -> Outcome {
        let Some(active) = &self.freeze else {
            return Outcome::ok(0, 0);
        };
        let (count, skipped, since) = (active.held.len(), active.skipped, active.since);
        self.watchdog.disarm();
        let (hooks, errors) = self.thaw_held();
        let thawed = count - self.frozen_paths().len();
        let frozen_for = self.clock.now().saturating_duration_since(since);
        self.log.info(format!(
            "thawed {thawed} of {count} mounts after {} ms frozen",
            frozen_for.as_millis()
        ));
        self.after_answer.thaw_hooks.extend(hooks);
        let mut outcome = Outcome::ok(thawed, skipped);
        for error in errors {
            outcome.success = false;
            outcome.detail = join(&outcome.detail, &error.to_string());
        }
        if !outcome.success {
            outcome.detail = join(
                &outcome.detail,
                &format!(
                    "still frozen: {}; retrying every {} s",
                    self.frozen_paths_text().join(", "),
                    THAW_RETRY.as_secs()
                ),
            );
        }
        outcome
    }

    /// Thaws every held mount in reverse freeze order, trying each. Returns
    /// the hooks to thaw once nothing is frozen, and the errors.
    fn thaw_held(&mut self) -> (Vec<Hook>, Vec<FreezeError>) {
        let Some(mut active) = self.freeze.take() else {
            return (Vec::new(), Vec::new());
        };
        let mut errors = Vec::new();
        let mut still_frozen = Vec::new();
        while let Some(mut held) = active.held.pop() {
            match self.freezer.thaw(&mut held.handle, &held.mount) {
                Ok(()) => {}
                Err(e) => {
                    self.log.error(e.to_string());
                    errors.push(e);
                    still_frozen.push(held);
                }
            }
        }
        if still_frozen.is_empty() {
            self.status.state = State::Idle;
            self.status.frozen.clear();
            self.status.frozen_since = None;
            return (active.hooks, errors);
        }
        still_frozen.reverse();
        active.held = still_frozen;
        active.thaw_failed = Some(self.clock.now());
        self.freeze = Some(active);
        self.status.frozen = self.frozen_paths_text();
        (Vec::new(), errors)
    }

    fn sync_pools(&mut self, pools: &[String], budget: &Budget) -> Result<(), String> {
        let mut args = vec!["sync"];
        args.extend(pools.iter().map(String::as_str));
        let deadline = budget.real_deadline(self.clock.now());
        let limit = child::time_for(self.config.zfs_sync_timeout, Some(deadline))
            .ok_or("no time left in request_budget for zpool sync")?;
        let finished = child::run(&self.zpool, &args, limit)
            .map_err(|e| format!("cannot run {}: {e}", self.zpool.display()))?;
        let line = format!(
            "zpool sync {}: {} in {} ms",
            pools.join(" "),
            finished.ending,
            finished.elapsed.as_millis()
        );
        if finished.ending.success() {
            self.log.info(line);
            Ok(())
        } else {
            let output = finished.output.trim();
            Err(if output.is_empty() {
                line
            } else {
                format!("{line}: {output}")
            })
        }
    }
}

/// The time one request may take, counted from when it was read.
struct Budget {
    read_at: Instant,
    total: Duration,
}

impl Budget {
    fn new(read_at: Instant, total: Duration) -> Self {
        Self { read_at, total }
    }

    /// Hooks and flushing end here, leaving [`FREEZE_RESERVE`] to freeze.
    fn prepare_deadline(&self) -> Instant {
        self.read_at + self.total.saturating_sub(FREEZE_RESERVE)
    }

    /// [`Self::prepare_deadline`] on the real clock (hooks are real
    /// processes), given the engine clock's `now`.
    fn real_deadline(&self, now: Instant) -> Instant {
        Instant::now() + self.prepare_deadline().saturating_duration_since(now)
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}; {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;
    use crate::testing::{FakeFreezer, Harness, ManualClock, mount};
    use DeviceOperation::{Check, Freeze, Thaw};
    use nix::errno::Errno;
    use std::cell::Cell;
    use std::path::Path;
    use std::rc::Rc;

    fn ufs_guest() -> Vec<Mount> {
        vec![
            mount("/", "ufs", 1),
            mount("/dev", "devfs", 2),
            mount("/var", "ufs", 3),
            mount("/data", "ufs", 4),
        ]
    }

    #[test]
    fn freeze_then_thaw_in_reverse_order_with_one_summary_line_each() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        assert_eq!(h.send(Check, 1), DeviceStatus::Success);
        assert!(h.calls().is_empty(), "CHECK must not freeze anything");
        assert_eq!(h.send(Freeze, 2), DeviceStatus::Success);
        assert_eq!(h.calls(), ["freeze /data", "freeze /var", "freeze /"]);
        assert!(h.engine.is_frozen());
        assert_eq!(h.send(Thaw, 3), DeviceStatus::Success);
        assert_eq!(
            h.calls()[3..],
            ["thaw /", "thaw /var", "thaw /data"].map(String::from)
        );
        assert!(h.log_contains("CHECK msgid 1: success"));
        assert!(h.log_contains("FREEZE msgid 2: success in 0 ms, froze 3 mounts, skipped 1"));
        assert!(h.log_contains("THAW msgid 3: success in 0 ms, thawed 3 mounts"));
        let c = &h.engine.status().counters;
        assert_eq!((c.check_ok, c.freeze_ok, c.thaw_ok), (1, 1, 1));
    }

    #[test]
    fn nothing_is_logged_while_frozen_and_everything_after_thaw() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.send(Freeze, 2);
        let during = h.log.borrow().len();
        assert!(!h.log_contains("froze /"), "log written while frozen");
        assert!(!h.log_contains("FREEZE msgid 2"));
        h.send(Thaw, 3);
        assert!(h.log.borrow().len() > during);
        let log = h.log.borrow();
        let froze = log.iter().position(|l| l.contains("froze /data")).unwrap();
        let summary = log
            .iter()
            .position(|l| l.contains("FREEZE msgid 2"))
            .unwrap();
        let thawed = log.iter().position(|l| l.contains("THAW msgid 3")).unwrap();
        assert!(froze < summary && summary < thawed);
    }

    #[test]
    fn a_failed_freeze_rolls_back_what_was_frozen_and_names_the_mount() {
        let freezer = FakeFreezer {
            fail_freeze: vec![PathBuf::from("/var")],
            ..FakeFreezer::default()
        };
        let mut h = Harness::new(ufs_guest(), "", freezer);
        h.hook("10-db", "");
        assert_eq!(h.send(Freeze, 7), DeviceStatus::Fail);
        assert_eq!(h.calls(), ["freeze /data", "freeze /var", "thaw /data"]);
        assert!(h.freezer.frozen.borrow().is_empty());
        assert!(!h.engine.is_frozen());
        assert!(h.log_contains("cannot freeze /var: EIO"));
        assert!(h.log_contains("FREEZE msgid 7: FAILURE"));
        assert_eq!(h.journal(), ["10-db freeze", "10-db freeze-fail"]);
        assert_eq!(h.engine.status().counters.rollbacks, 1);
        // The host's THAW after a failed freeze is harmless.
        assert_eq!(h.send(Thaw, 8), DeviceStatus::Success);
        assert_eq!(h.calls().len(), 3);
    }

    #[test]
    fn a_mount_that_no_longer_shows_the_planned_filesystem_fails_before_any_freeze() {
        let freezer = FakeFreezer {
            fail_open: vec![PathBuf::from("/var")],
            ..FakeFreezer::default()
        };
        let mut h = Harness::new(ufs_guest(), "", freezer);
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Fail);
        assert!(h.calls().is_empty(), "opened all before freezing any");
        assert!(h.log_contains("cannot freeze /var: ESTALE"));
    }

    #[test]
    fn hooks_run_in_order_around_the_freeze() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.hook("20-b", "");
        h.hook("10-a", "echo flushing tables");
        h.send(Freeze, 1);
        assert_eq!(h.journal(), ["10-a freeze", "20-b freeze"]);
        h.send(Thaw, 2);
        assert_eq!(
            h.journal(),
            ["10-a freeze", "20-b freeze", "20-b thaw", "10-a thaw"]
        );
        assert!(h.log_contains("hook 10-a output: flushing tables"));
    }

    #[test]
    fn thaw_is_answered_before_the_thaw_hooks_run() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.hook("10-a", "");
        h.send(Freeze, 1);
        let answer = h.engine.handle(Thaw, 2, h.clock.now());
        assert_eq!(answer, DeviceStatus::Success);
        assert!(
            h.freezer.frozen.borrow().is_empty(),
            "thawed before answering"
        );
        assert_eq!(h.journal(), ["10-a freeze"], "no hook before the answer");
        h.engine.after_answer();
        assert_eq!(h.journal(), ["10-a freeze", "10-a thaw"]);
    }

    #[test]
    fn a_failing_freeze_hook_vetoes_before_any_filesystem_is_frozen() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.hook("10-a", "");
        h.hook("20-b", "exit 3");
        h.hook("30-c", "");
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Fail);
        assert!(h.calls().is_empty());
        assert_eq!(h.journal(), ["10-a freeze", "20-b freeze", "10-a thaw"]);
        assert!(h.log_contains("hook 20-b vetoed the freeze"));
        assert_eq!(h.engine.status().counters.hook_failures, 1);
    }

    #[test]
    fn a_hung_freeze_hook_is_killed_and_vetoes() {
        let mut h = Harness::new(ufs_guest(), "hook_timeout = 1", FakeFreezer::default());
        h.hook("10-hang", "sleep 60");
        let started = std::time::Instant::now();
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Fail);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(h.log_contains("timed out"));
        assert!(h.calls().is_empty());
    }

    #[test]
    fn hooks_get_only_what_is_left_of_the_request_budget() {
        // Read 9.5 s ago with a 12 s budget: 1.5 s left, 0.5 s for hooks.
        let mut h = Harness::new(ufs_guest(), "hook_timeout = 10", FakeFreezer::default());
        h.hook("10-slow", "sleep 30");
        let read_at = h.clock.now();
        h.clock.advance(Duration::from_millis(9_500));
        let started = std::time::Instant::now();
        assert_eq!(h.engine.handle(Freeze, 1, read_at), DeviceStatus::Fail);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the hook ran for {:?}, past the budget",
            started.elapsed()
        );
        assert!(h.calls().is_empty());
        assert!(h.log_contains("timed out"));
    }

    #[test]
    fn no_freeze_starts_when_the_budget_is_spent() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.hook("10-a", "");
        let read_at = h.clock.now();
        // 11.2 s of the 12 s budget gone: less than FREEZE_RESERVE left.
        h.clock.advance(Duration::from_millis(11_200));
        assert_eq!(h.engine.handle(Freeze, 1, read_at), DeviceStatus::Fail);
        h.engine.after_answer();
        assert!(h.calls().is_empty(), "froze after the budget");
        assert!(h.log_contains("request_budget (12 s) spent"), "{:?}", h.log);
        assert!(h.journal().is_empty(), "no hook started either");
        // Time spent inside the request (here: flushing an msdosfs) counts.
        let clock = ManualClock::new();
        let ticking = clock.clone();
        let freezer = FakeFreezer {
            on_call: Some(Rc::new(move |call: &str| {
                if call.starts_with("flush") {
                    ticking.advance(Duration::from_millis(11_500));
                }
            })),
            ..FakeFreezer::default()
        };
        let mut guest = ufs_guest();
        guest.push(mount("/boot/efi", "msdosfs", 5));
        let mut h = Harness::with_clock(clock, Box::new(move || Ok(guest.clone())), "", freezer);
        h.hook("10-a", "");
        assert_eq!(h.send(Freeze, 2), DeviceStatus::Fail);
        assert_eq!(h.calls(), ["flush /boot/efi"]);
        assert_eq!(h.journal(), ["10-a freeze", "10-a freeze-fail"]);
    }

    #[test]
    fn sigterm_during_freeze_thaws_and_answers_failure() {
        // Already set when FREEZE starts: nothing is frozen, no hook runs.
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        let stop = Arc::new(AtomicBool::new(true));
        h.engine.set_stop_flag(stop);
        h.hook("10-a", "");
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Fail);
        assert!(h.calls().is_empty());
        assert!(h.journal().is_empty());
        assert!(h.log_contains("stopping (SIGTERM)"));
        // Arriving while the last filesystem freezes: thawed again and failed.
        let stop = Arc::new(AtomicBool::new(false));
        let arrives = stop.clone();
        let freezer = FakeFreezer {
            on_call: Some(Rc::new(move |call: &str| {
                if call == "freeze /" {
                    arrives.store(true, Ordering::SeqCst);
                }
            })),
            ..FakeFreezer::default()
        };
        let mut h = Harness::new(ufs_guest(), "", freezer);
        h.engine.set_stop_flag(stop);
        h.hook("10-a", "");
        assert_eq!(h.send(Freeze, 2), DeviceStatus::Fail);
        assert_eq!(
            h.calls(),
            [
                "freeze /data",
                "freeze /var",
                "freeze /",
                "thaw /",
                "thaw /var",
                "thaw /data"
            ]
        );
        assert!(!h.engine.is_frozen());
        assert_eq!(h.journal(), ["10-a freeze", "10-a freeze-fail"]);
        assert!(h.log_contains("SIGTERM during FREEZE"));
    }

    #[test]
    fn the_watchdog_thaws_at_freeze_limit_and_the_late_thaw_fails() {
        let mut h = Harness::new(ufs_guest(), "freeze_limit = 20", FakeFreezer::default());
        h.hook("10-a", "");
        h.send(Freeze, 1);
        assert_eq!(h.engine.next_timeout(), Some(Duration::from_secs(20)));
        h.clock.advance(Duration::from_millis(19_999));
        h.engine.on_timer();
        assert!(h.engine.is_frozen(), "thawed early");
        h.clock.advance(Duration::from_millis(1));
        h.engine.on_timer();
        assert!(!h.engine.is_frozen());
        assert!(h.freezer.frozen.borrow().is_empty());
        assert_eq!(h.journal(), ["10-a freeze", "10-a thaw"]);
        assert!(h.log_contains("thawed by the watchdog"));
        assert!(h.log_contains("WATCHDOG msgid 0: success"));
        assert_eq!(h.engine.next_timeout(), None);
        // The host may have taken its snapshot after the thaw: not a
        // consistent backup, so its THAW is not a success.
        assert_eq!(h.send(Thaw, 2), DeviceStatus::Fail);
        assert!(h.log_contains("already thawed by the watchdog"));
        assert_eq!(h.engine.status().counters.watchdog_thaws, 1);
        // The next backup starts afresh.
        assert_eq!(h.send(Freeze, 3), DeviceStatus::Success);
        assert_eq!(h.send(Thaw, 4), DeviceStatus::Success);
    }

    #[test]
    fn a_repeated_freeze_keeps_the_freeze_and_the_watchdog_deadline() {
        let mut h = Harness::new(ufs_guest(), "freeze_limit = 10", FakeFreezer::default());
        h.send(Freeze, 1);
        for msgid in 2..6 {
            h.clock.advance(Duration::from_secs(2));
            assert_eq!(h.send(Freeze, msgid), DeviceStatus::Success);
        }
        assert_eq!(h.calls().len(), 3, "froze once");
        assert_eq!(h.engine.next_timeout(), Some(Duration::from_secs(2)));
        h.clock.advance(Duration::from_secs(2));
        h.engine.on_timer();
        assert!(
            !h.engine.is_frozen(),
            "freeze_limit counts from the first FREEZE"
        );
    }

    #[test]
    fn strict_vetoes_check_and_freeze_on_zfs() {
        let mounts = vec![mount("/", "zfs", 1)];
        let mut h = Harness::new(mounts, "strict = yes", FakeFreezer::default());
        assert_eq!(h.send(Check, 1), DeviceStatus::Fail);
        assert_eq!(h.send(Freeze, 2), DeviceStatus::Fail);
        assert!(h.log_contains("strict: / (zfs)"));
    }

    #[test]
    fn zfs_pools_are_synced_with_zpool_before_freezing() {
        let mut mounts = ufs_guest();
        mounts.push(Mount {
            source: "tank/data".to_owned(),
            ..mount("/tank", "zfs", 9)
        });
        let mut h = Harness::new(mounts, "", FakeFreezer::default());
        let zpool = h.dir.path().join("zpool");
        let args = h.dir.path().join("zpool-args");
        std::fs::write(
            &zpool,
            format!("#!/bin/sh\necho \"$@\" > {}\n", args.display()),
        )
        .unwrap();
        std::fs::set_permissions(&zpool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        h.engine.set_zpool(zpool.clone());
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Success);
        assert_eq!(std::fs::read_to_string(&args).unwrap(), "sync tank\n");
        h.send(Thaw, 2);
        // A failing zpool sync fails the freeze before anything is frozen.
        std::fs::write(&zpool, "#!/bin/sh\necho no such pool >&2\nexit 1\n").unwrap();
        let before = h.calls().len();
        assert_eq!(h.send(Freeze, 3), DeviceStatus::Fail);
        assert_eq!(h.calls().len(), before);
        assert!(h.log_contains("no such pool"));
    }

    #[test]
    fn linux_style_freezes_are_recorded_and_thawed_at_the_next_start() {
        let freezer = FakeFreezer {
            outlives_process: true,
            ..FakeFreezer::default()
        };
        let mut h = Harness::new(ufs_guest(), "", freezer.clone());
        h.send(Freeze, 1);
        let record = statefile::read(&h.state_file()).unwrap().unwrap();
        let paths: Vec<_> = record.frozen.iter().map(|f| f.path.clone()).collect();
        assert_eq!(paths, ["/data", "/var", "/"].map(PathBuf::from));
        // The daemon dies here (no thaw). The next one recovers.
        let mut next = Harness::new(ufs_guest(), "", freezer);
        std::fs::copy(h.state_file(), next.state_file()).unwrap();
        next.engine.recover();
        assert_eq!(
            next.calls()[3..],
            [
                "thaw-leftover /",
                "thaw-leftover /var",
                "thaw-leftover /data"
            ]
            .map(String::from)
        );
        assert!(statefile::read(&next.state_file()).unwrap().is_none());
        // A normal thaw removes the record.
        h.send(Thaw, 2);
        assert!(statefile::read(&h.state_file()).unwrap().is_none());
    }

    #[test]
    fn a_leftover_that_cannot_be_reached_is_kept_not_forgotten() {
        let freezer = FakeFreezer {
            outlives_process: true,
            leftover: Err(Errno::ESTALE),
            ..FakeFreezer::default()
        };
        let mut h = Harness::new(ufs_guest(), "", freezer);
        let record = [FrozenMount::from(&mount("/var", "ufs", 3))];
        statefile::record(&h.state_file(), &record).unwrap();
        h.engine.recover();
        assert!(h.log_contains("cannot be reached"), "{:?}", h.log);
        assert_eq!(h.engine.status().unreachable, ["/var"]);
        // A later backup keeps it in the record, whatever happens.
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Success);
        let during = statefile::read(&h.state_file()).unwrap().unwrap();
        assert!(during.frozen.iter().any(|f| f.path == Path::new("/var")));
        assert_eq!(h.send(Thaw, 2), DeviceStatus::Success);
        let after = statefile::read(&h.state_file()).unwrap().unwrap();
        assert_eq!(after.frozen, record);
    }

    #[test]
    fn a_failed_thaw_keeps_the_mount_frozen_recorded_and_retried() {
        let freezer = FakeFreezer {
            outlives_process: true,
            ..FakeFreezer::default()
        };
        let stuck = freezer.fail_thaw.clone();
        stuck.borrow_mut().push(PathBuf::from("/var"));
        let mut h = Harness::new(ufs_guest(), "", freezer);
        h.hook("10-a", "");
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Success);
        assert_eq!(h.send(Thaw, 2), DeviceStatus::Fail);
        let thaw = h.engine.status().recent.back().unwrap().summary();
        assert!(thaw.starts_with("THAW msgid 2: FAILURE"), "{thaw}");
        assert!(thaw.contains("thawed 2 mounts"), "{thaw}");
        assert!(thaw.contains("still frozen: /var"), "{thaw}");
        assert!(
            !h.log_contains("THAW msgid 2"),
            "logged while something is frozen"
        );
        assert_eq!(h.engine.frozen_paths(), [PathBuf::from("/var")]);
        assert_eq!(h.engine.status().state, State::Frozen);
        assert_eq!(h.engine.status().frozen, ["/var"]);
        assert!(statefile::read(&h.state_file()).unwrap().is_some());
        assert_eq!(h.journal(), ["10-a freeze"], "hooks wait for the last thaw");
        // A new FREEZE is refused until it is thawed.
        assert_eq!(h.send(Freeze, 3), DeviceStatus::Fail);
        let refused = h.engine.status().recent.back().unwrap().summary();
        assert!(
            refused.contains("the last thaw failed and /var is still frozen"),
            "{refused}"
        );
        // Retried on a timer.
        assert_eq!(h.engine.next_timeout(), Some(THAW_RETRY));
        h.clock.advance(THAW_RETRY);
        h.engine.on_timer();
        assert!(h.engine.is_frozen(), "still failing");
        stuck.borrow_mut().clear();
        h.clock.advance(THAW_RETRY);
        h.engine.on_timer();
        assert!(!h.engine.is_frozen());
        assert!(h.freezer.frozen.borrow().is_empty());
        assert!(statefile::read(&h.state_file()).unwrap().is_none());
        assert_eq!(h.journal(), ["10-a freeze", "10-a thaw"]);
        assert_eq!(h.engine.next_timeout(), None);
        assert!(
            h.log_contains("THAW msgid 2: FAILURE"),
            "held lines written"
        );
        assert!(h.log_contains("THAW-RETRY msgid 0: success"));
        assert_eq!(h.send(Freeze, 4), DeviceStatus::Success);
    }

    #[test]
    fn a_failed_rollback_thaw_is_kept_and_retried_too() {
        let freezer = FakeFreezer {
            fail_freeze: vec![PathBuf::from("/")],
            ..FakeFreezer::default()
        };
        freezer.fail_thaw.borrow_mut().push(PathBuf::from("/data"));
        let mut h = Harness::new(ufs_guest(), "", freezer);
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Fail);
        assert_eq!(h.engine.frozen_paths(), [PathBuf::from("/data")]);
        assert!(h.engine.next_timeout().is_some());
    }

    #[test]
    fn freeze_reuses_the_check_plan_unless_the_mount_table_changed() {
        let listed = Rc::new(Cell::new(0));
        let changed = Rc::new(Cell::new(false));
        let extra = Rc::new(Cell::new(false));
        let table = CountingTable {
            listed: listed.clone(),
            changed: changed.clone(),
            extra: extra.clone(),
        };
        let mut h = Harness::with_mount_source(Box::new(table), "", FakeFreezer::default());
        h.send(Check, 1);
        assert_eq!(listed.get(), 1);
        h.send(Freeze, 2);
        assert_eq!(listed.get(), 1, "FREEZE right after CHECK listed again");
        assert_eq!(h.calls().len(), 3);
        h.send(Thaw, 3);
        // A mount appears between CHECK and FREEZE: it is frozen too.
        h.send(Check, 4);
        extra.set(true);
        changed.set(true);
        h.freezer.calls.borrow_mut().clear();
        h.send(Freeze, 5);
        assert_eq!(listed.get(), 3);
        assert_eq!(h.calls()[0], "freeze /new");
        assert_eq!(h.calls().len(), 4);
        h.send(Thaw, 6);
        // And vanishes again: not frozen.
        h.send(Check, 7);
        extra.set(false);
        changed.set(true);
        h.freezer.calls.borrow_mut().clear();
        h.send(Freeze, 8);
        assert_eq!(h.calls(), ["freeze /data", "freeze /var", "freeze /"]);
    }

    /// A mount table that counts its listings and says when it changed.
    struct CountingTable {
        listed: Rc<Cell<usize>>,
        changed: Rc<Cell<bool>>,
        extra: Rc<Cell<bool>>,
    }

    impl MountTable for CountingTable {
        fn list(&mut self) -> Result<Vec<Mount>, crate::mounts::MountError> {
            self.listed.set(self.listed.get() + 1);
            self.changed.set(false);
            let mut mounts = ufs_guest();
            if self.extra.get() {
                mounts.push(mount("/new", "ufs", 8));
            }
            Ok(mounts)
        }
        fn may_have_changed(&mut self) -> bool {
            self.changed.get()
        }
    }

    #[test]
    fn check_opens_the_mounts_and_the_freeze_after_it_uses_them() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        let opens = h.freezer.opens.clone();
        assert_eq!(h.send(Check, 1), DeviceStatus::Success);
        assert_eq!(opens.get(), 3, "CHECK opens the three mounts");
        assert!(h.calls().is_empty(), "and freezes nothing");
        assert_eq!(h.send(Freeze, 2), DeviceStatus::Success);
        assert_eq!(opens.get(), 3, "FREEZE used CHECK's handles");
        assert_eq!(h.send(Thaw, 3), DeviceStatus::Success);
        // Without a CHECK just before, FREEZE opens them itself.
        assert_eq!(h.send(Freeze, 4), DeviceStatus::Success);
        assert_eq!(opens.get(), 6);
        assert_eq!(h.send(Thaw, 5), DeviceStatus::Success);
        // Handles kept past PREPARED_TTL are closed by the timer.
        assert_eq!(h.send(Check, 6), DeviceStatus::Success);
        assert_eq!(h.engine.next_timeout(), Some(PREPARED_TTL));
        h.clock.advance(PREPARED_TTL);
        h.engine.on_timer();
        assert_eq!(h.engine.next_timeout(), None);
        assert_eq!(h.send(Freeze, 7), DeviceStatus::Success);
        assert_eq!(opens.get(), 12, "a late FREEZE opens again");
    }

    #[test]
    fn check_writes_the_crash_record_ahead_and_freeze_only_renames_it() {
        let freezer = FakeFreezer {
            outlives_process: true,
            ..FakeFreezer::default()
        };
        let mut h = Harness::new(ufs_guest(), "", freezer);
        let temporaries = |h: &Harness| -> Vec<String> {
            std::fs::read_dir(h.dir.path())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("frozen.tmp."))
                .collect()
        };
        assert_eq!(h.send(Check, 1), DeviceStatus::Success);
        assert_eq!(temporaries(&h).len(), 1, "written ahead");
        assert!(
            statefile::read(&h.state_file()).unwrap().is_none(),
            "not yet in place"
        );
        assert_eq!(h.send(Freeze, 2), DeviceStatus::Success);
        assert!(temporaries(&h).is_empty());
        let record = statefile::read(&h.state_file()).unwrap().unwrap();
        assert_eq!(record.frozen.len(), 3);
        assert_eq!(h.send(Thaw, 3), DeviceStatus::Success);
        assert!(statefile::read(&h.state_file()).unwrap().is_none());
        // A CHECK without its FREEZE leaves nothing behind.
        assert_eq!(h.send(Check, 4), DeviceStatus::Success);
        h.clock.advance(PREPARED_TTL);
        h.engine.on_timer();
        assert!(temporaries(&h).is_empty());
        assert!(statefile::read(&h.state_file()).unwrap().is_none());
    }

    #[test]
    fn check_fails_when_a_mount_no_longer_shows_the_planned_filesystem() {
        let freezer = FakeFreezer {
            fail_open: vec![PathBuf::from("/var")],
            ..FakeFreezer::default()
        };
        let mut h = Harness::new(ufs_guest(), "", freezer);
        assert_eq!(h.send(Check, 1), DeviceStatus::Fail);
        assert!(h.log_contains("cannot freeze /var: ESTALE"));
    }

    #[test]
    fn an_unchanged_empty_hooks_directory_is_not_walked_again() {
        use std::os::unix::fs::PermissionsExt;
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Success);
        h.send(Thaw, 2);
        // The hooks directory's parent turns world-writable: a walk would
        // refuse the directory (and log it); the unchanged empty directory
        // is not walked again, and it still runs nothing.
        let parent = h.dir.path().to_owned();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(h.send(Freeze, 3), DeviceStatus::Success);
        h.send(Thaw, 4);
        assert!(!h.log_contains("refused"), "{:?}", h.log);
        // A hook added changes the directory: it is walked, and refused.
        h.hook("10-new", "");
        assert_eq!(h.send(Freeze, 5), DeviceStatus::Success);
        h.send(Thaw, 6);
        assert!(h.log_contains("hooks directory refused"), "{:?}", h.log);
        assert!(
            h.journal().is_empty(),
            "a hook ran from an unsafe directory"
        );
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(h.send(Freeze, 7), DeviceStatus::Success);
        h.send(Thaw, 8);
        assert_eq!(h.journal(), ["10-new freeze", "10-new thaw"]);
    }

    #[test]
    fn unfreezable_mounts_are_flushed_before_anything_is_frozen() {
        let mut guest = ufs_guest();
        guest.push(mount("/boot/efi", "msdosfs", 5));
        let mut h = Harness::new(guest, "", FakeFreezer::default());
        assert_eq!(h.send(Check, 1), DeviceStatus::Success);
        assert!(h.calls().is_empty(), "CHECK flushes nothing either");
        assert_eq!(h.send(Freeze, 2), DeviceStatus::Success);
        assert_eq!(
            h.calls(),
            ["flush /boot/efi", "freeze /data", "freeze /var", "freeze /"]
        );
    }

    #[test]
    fn status_says_frozen_after_the_freeze_answer_and_idle_after_the_thaw() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.engine.publish_status();
        assert_eq!(Status::read(&h.status_file()).unwrap().state, State::Idle);
        let answer = h.engine.handle(Freeze, 1, h.clock.now());
        assert_eq!(answer, DeviceStatus::Success);
        assert_eq!(
            Status::read(&h.status_file()).unwrap().state,
            State::Idle,
            "nothing written between the request and its answer"
        );
        h.engine.after_answer();
        let s = Status::read(&h.status_file()).unwrap();
        assert_eq!(s.state, State::Frozen);
        assert_eq!(s.frozen, ["/data", "/var", "/"]);
        h.engine.handle(Thaw, 2, h.clock.now());
        assert_eq!(Status::read(&h.status_file()).unwrap().state, State::Frozen);
        h.engine.after_answer();
        let s = Status::read(&h.status_file()).unwrap();
        assert_eq!(s.state, State::Idle);
        assert!(s.frozen.is_empty());
        assert_eq!(s.recent.back().unwrap().op, "THAW");
        assert_eq!(s.counters.freeze_ok, 1);
    }

    #[test]
    fn the_status_is_not_written_onto_a_frozen_filesystem() {
        // The status file's own filesystem is among the frozen mounts.
        let here = mounts::filesystem_of(std::path::Path::new("/tmp")).unwrap();
        let mut guest = ufs_guest();
        guest.push(Mount {
            fs_id: here,
            ..mount("/scratch", "ufs", 0)
        });
        let mut h = Harness::new(guest, "", FakeFreezer::default());
        h.engine.publish_status();
        h.send(Freeze, 1);
        assert_eq!(
            Status::read(&h.status_file()).unwrap().state,
            State::Idle,
            "written while its filesystem was frozen"
        );
        h.send(Thaw, 2);
        assert_eq!(Status::read(&h.status_file()).unwrap().state, State::Idle);
        assert_eq!(Status::read(&h.status_file()).unwrap().counters.thaw_ok, 1);
    }

    #[test]
    fn the_freeze_lock_is_held_while_frozen_and_a_held_lock_refuses_freeze() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        let path = crate::busy::lock_path(&h.dir.path().join("pid"));
        h.engine.set_freeze_lock(FreezeLock::open(&path).unwrap());
        let mut admin = FreezeLock::open(&path).unwrap();
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Success);
        assert!(!admin.try_lock().unwrap(), "not held while frozen");
        assert_eq!(h.send(Thaw, 2), DeviceStatus::Success);
        assert!(admin.try_lock().unwrap(), "still held after the thaw");
        // Somebody else's freeze (hv_vssctl test): FREEZE touches nothing.
        h.freezer.calls.borrow_mut().clear();
        assert_eq!(h.send(Freeze, 3), DeviceStatus::Fail);
        assert!(h.calls().is_empty());
        assert!(h.log_contains("another freeze is under way"));
        admin.unlock();
        assert_eq!(h.send(Freeze, 4), DeviceStatus::Success);
        assert_eq!(h.send(Thaw, 5), DeviceStatus::Success);
    }

    #[test]
    fn the_freeze_lock_is_free_when_the_thaw_or_a_failed_freeze_is_answered() {
        // Whoever sees the answer may take the lock at once: it must be
        // free before after_answer() runs.
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        let path = crate::busy::lock_path(&h.dir.path().join("pid"));
        h.engine.set_freeze_lock(FreezeLock::open(&path).unwrap());
        let mut admin = FreezeLock::open(&path).unwrap();
        assert_eq!(h.send(Freeze, 1), DeviceStatus::Success);
        assert_eq!(
            h.engine.handle(Thaw, 2, h.clock.now()),
            DeviceStatus::Success
        );
        assert!(admin.try_lock().unwrap(), "held when THAW was answered");
        admin.unlock();
        h.engine.after_answer();
        h.hook("10-no", "exit 1");
        assert_eq!(
            h.engine.handle(Freeze, 3, h.clock.now()),
            DeviceStatus::Fail
        );
        assert!(
            admin.try_lock().unwrap(),
            "held when a failed FREEZE was answered"
        );
        admin.unlock();
        h.engine.after_answer();
    }

    #[test]
    fn shutdown_thaws_everything() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.send(Freeze, 1);
        h.engine.shutdown();
        assert!(h.freezer.frozen.borrow().is_empty());
        assert!(h.log_contains("SHUTDOWN msgid 0: success"));
    }

    #[test]
    fn skip_reasons_are_logged_once() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.send(Check, 1);
        h.send(Check, 2);
        let count = h
            .log
            .borrow()
            .iter()
            .filter(|l| l.starts_with("info: skipping /dev"))
            .count();
        assert_eq!(count, 1);
    }

    #[test]
    fn a_reload_during_a_freeze_applies_after_the_thaw() {
        let freezer = FakeFreezer {
            outlives_process: true,
            ..FakeFreezer::default()
        };
        let mut h = Harness::new(ufs_guest(), "freeze_limit = 30", freezer);
        h.send(Freeze, 1);
        let moved = h.dir.path().join("elsewhere");
        let mut config = h.engine.config().clone();
        config.state_file = moved.clone();
        config.freeze_limit = Duration::from_secs(5);
        h.engine.reload(config);
        assert_eq!(h.engine.config().freeze_limit, Duration::from_secs(30));
        assert_eq!(h.engine.next_timeout(), Some(Duration::from_secs(30)));
        assert!(statefile::read(&h.state_file()).unwrap().is_some());
        // A daemon restarted after a crash reads the new configuration: the
        // freeze is recorded there too.
        let copy = statefile::read(&moved).unwrap().unwrap();
        assert_eq!(copy.frozen.len(), 3);
        h.send(Thaw, 2);
        assert!(
            statefile::read(&h.state_file()).unwrap().is_none(),
            "the active freeze's record was not cleared where it was written"
        );
        assert!(statefile::read(&moved).unwrap().is_none());
        assert_eq!(h.engine.config().state_file, moved);
        assert_eq!(h.engine.config().freeze_limit, Duration::from_secs(5));
        assert!(h.log_contains("configuration reloaded"));
    }

    #[test]
    fn a_non_utf8_mount_point_is_frozen_and_logged_escaped() {
        use std::os::unix::ffi::OsStringExt;
        let odd = PathBuf::from(std::ffi::OsString::from_vec(b"/caf\xe9".to_vec()));
        let mut guest = ufs_guest();
        guest.push(Mount {
            path: odd.clone(),
            ..mount("/", "ufs", 7)
        });
        let mut h = Harness::new(guest, "", FakeFreezer::default());
        assert_eq!(h.send(Check, 1), DeviceStatus::Success);
        assert_eq!(h.send(Freeze, 2), DeviceStatus::Success);
        assert_eq!(h.engine.frozen_paths()[0], odd);
        h.send(Thaw, 3);
        assert!(h.log_contains("froze /caf\\351"), "{:?}", h.log);
    }
}
