//! What the daemon does with each request: CHECK, FREEZE, THAW, the
//! watchdog and shutdown. Generic over the freezer and the clock so the
//! whole sequence (hooks, rollback, logs held while frozen, watchdog) is
//! tested with a fake freezer and a manual clock.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hv_vss_proto::{DeviceOperation, DeviceStatus};

use crate::config::Config;
use crate::freezer::{FreezeError, Freezer};
use crate::hooks::{self, Hook, HookRun, Phase};
use crate::log::Log;
use crate::mounts::{Mount, MountError};
use crate::policy::{self, FreezePlan, SkipReason};
use crate::status::{State, Status, Transaction, unix_now};
use crate::watchdog::{Clock, Watchdog};
use crate::{child, statefile};

/// Lists the mounted filesystems (getmntinfo/mountinfo, or a test's list).
pub type MountSource = Box<dyn FnMut() -> Result<Vec<Mount>, MountError>>;

/// The state between requests.
pub struct Engine<F: Freezer, C: Clock> {
    config: Config,
    freezer: F,
    clock: C,
    pub log: Log,
    mounts: MountSource,
    /// Owner hooks must have: root, or the test's own uid.
    hook_owner: u32,
    /// The `zpool` program.
    zpool: PathBuf,
    status: Status,
    /// Set from a successful FREEZE until THAW, the watchdog or shutdown.
    freeze: Option<ActiveFreeze>,
    watchdog: Watchdog,
    /// The watchdog thawed; the late THAW is answered with success.
    thawed_by_watchdog: bool,
    /// Skip reasons and hook refusals already logged (each is logged once).
    logged_once: HashSet<String>,
}

/// What is frozen now.
struct ActiveFreeze {
    /// In freeze order.
    mounts: Vec<Mount>,
    /// Hooks whose `freeze` succeeded, in the order they ran.
    hooks: Vec<Hook>,
    skipped: usize,
    since: Instant,
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
        mounts: MountSource,
        hook_owner: u32,
    ) -> Self {
        let watchdog = Watchdog::new(config.freeze_limit);
        let status = Status::new(std::process::id(), config.freeze_limit.as_secs());
        Self {
            config,
            freezer,
            clock,
            log,
            mounts,
            hook_owner,
            zpool: PathBuf::from(crate::freezer::ZPOOL),
            status,
            freeze: None,
            watchdog,
            thawed_by_watchdog: false,
            logged_once: HashSet::new(),
        }
    }

    /// Uses another `zpool` program (tests).
    pub fn set_zpool(&mut self, zpool: PathBuf) {
        self.zpool = zpool;
    }

    /// Replaces the configuration (SIGHUP). Takes effect at the next request;
    /// a freeze in progress keeps its watchdog deadline.
    pub fn reload(&mut self, config: Config) {
        self.watchdog.set_limit(config.freeze_limit);
        self.status.freeze_limit_secs = config.freeze_limit.as_secs();
        self.config = config;
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
            .map(|f| f.mounts.iter().map(|m| m.path.clone()).collect())
            .unwrap_or_default()
    }

    /// Publishes the status file now (at startup). Never while frozen.
    pub fn publish_status(&mut self) {
        if self.freeze.is_some() {
            return;
        }
        if let Err(e) = self.status.publish(&self.config.status_file) {
            self.log.warning(format!(
                "cannot write the status file {}: {e}",
                self.config.status_file.display()
            ));
        }
    }

    /// Thaws what an earlier daemon left frozen (Linux: the state file).
    pub fn recover(&mut self) {
        if !self.freezer.freeze_outlives_process() {
            return;
        }
        let path = self.config.state_file.clone();
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
            path.display(),
            record.pid,
            record.frozen.len()
        ));
        let mut all_thawed = true;
        for mount in record.frozen.iter().rev() {
            match self.freezer.thaw_leftover(&mount.path, mount.fs_id) {
                Ok(true) => self
                    .log
                    .notice(format!("thawed leftover {}", mount.path.display())),
                Ok(false) => self.log.info(format!(
                    "{} was not frozen any more (or is another filesystem now)",
                    mount.path.display()
                )),
                Err(e) => {
                    all_thawed = false;
                    self.log.error(e.to_string());
                }
            }
        }
        if all_thawed {
            if let Err(e) = statefile::clear(&path) {
                self.log
                    .error(format!("cannot remove {}: {e}", path.display()));
            }
        }
    }

    /// Handles one request from the device and returns the status to answer.
    /// The caller answers first and then calls [`Self::publish_status`]: the
    /// host is waiting for the answer, the status file is not.
    pub fn handle(&mut self, operation: DeviceOperation, msgid: u64) -> DeviceStatus {
        let started = self.clock.now();
        let (name, outcome) = match operation {
            DeviceOperation::Check => ("CHECK", self.check()),
            DeviceOperation::Freeze => ("FREEZE", self.freeze()),
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
        self.finish(name, msgid, started, &outcome);
        if outcome.success {
            DeviceStatus::Success
        } else {
            DeviceStatus::Fail
        }
    }

    /// How long the event loop may wait before [`Self::on_timer`] is due.
    pub fn next_timeout(&self) -> Option<Duration> {
        self.watchdog.remaining(self.clock.now())
    }

    /// Thaws by itself when THAW is overdue.
    pub fn on_timer(&mut self) {
        if !self.watchdog.expired(self.clock.now()) {
            return;
        }
        let started = self.clock.now();
        let limit = self.config.freeze_limit.as_secs();
        let mut outcome = self.thaw_everything();
        self.thawed_by_watchdog = true;
        self.status.counters.watchdog_thaws += 1;
        self.log.warning(format!(
            "THAW did not come within freeze_limit ({limit} s): thawed by the watchdog"
        ));
        outcome.detail = join(&format!("no THAW within {limit} s"), &outcome.detail);
        self.finish("WATCHDOG", 0, started, &outcome);
        self.publish_status();
    }

    /// Thaws everything before exiting (SIGTERM, SIGINT, device gone).
    pub fn shutdown(&mut self) {
        if self.freeze.is_none() {
            return;
        }
        let started = self.clock.now();
        let outcome = self.thaw_everything();
        self.finish("SHUTDOWN", 0, started, &outcome);
        self.publish_status();
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

    /// Discovers the mounts and plans, logging each skip once.
    fn plan(&mut self) -> Result<FreezePlan, String> {
        let mounts = (self.mounts)().map_err(|e| e.to_string())?;
        let plan = policy::plan(&mounts, &self.config);
        for skipped in &plan.skipped {
            let line = format!(
                "skipping {} ({}, {}): {}",
                skipped.mount.path.display(),
                skipped.mount.fs_type,
                skipped.mount.source,
                skipped.reason
            );
            self.once(&line, false);
        }
        for mount in &plan.freeze {
            self.log.debug(format!(
                "will freeze {} ({}, {})",
                mount.path.display(),
                mount.fs_type,
                mount.source
            ));
        }
        Ok(plan)
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
        let plan = match self.plan() {
            Ok(plan) => plan,
            Err(e) => return Outcome::fail(e, 0),
        };
        let skipped = plan.skipped.len();
        match plan.veto {
            Some(veto) => Outcome::fail(veto, skipped),
            None => Outcome::ok(plan.freeze.len(), skipped),
        }
    }

    fn scan_hooks(&mut self) -> Vec<Hook> {
        let set = hooks::scan(&self.config.hooks_dir, self.hook_owner, &self.config.file);
        for refused in &set.refused {
            let line = format!(
                "hook {} refused: {}",
                refused.path.display(),
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

    fn freeze(&mut self) -> Outcome {
        if let Some(active) = &self.freeze {
            // A repeated FREEZE: everything is frozen already; restart the
            // watchdog so the host gets its full window again.
            let outcome = Outcome {
                success: true,
                detail: "already frozen".to_owned(),
                frozen: active.mounts.len(),
                skipped: active.skipped,
            };
            self.watchdog.arm(self.clock.now());
            return outcome;
        }
        self.thawed_by_watchdog = false;
        let plan = match self.plan() {
            Ok(plan) => plan,
            Err(e) => return Outcome::fail(e, 0),
        };
        let skipped = plan.skipped.len();
        if let Some(veto) = plan.veto {
            return Outcome::fail(veto, skipped);
        }

        // 1. Hooks, in lexical order; the first failure vetoes.
        let hooks = self.scan_hooks();
        let runs = hooks::run_freeze(&hooks, self.config.hook_timeout, None);
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
        if let Some(veto) = veto {
            self.run_hooks_reverse(&frozen_hooks, Phase::Thaw);
            return Outcome::fail(veto, skipped);
        }

        // 2. ZFS: flush the pools (cannot be frozen, always consistent).
        if !plan.zfs_pools.is_empty() {
            if let Err(e) = self.sync_pools(&plan.zfs_pools) {
                self.run_hooks_reverse(&frozen_hooks, Phase::FreezeFail);
                return Outcome::fail(e, skipped);
            }
        }
        // Flush what cannot be frozen (msdosfs...).
        let unfreezable: Vec<&Mount> = plan
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::NotFreezable)
            .map(|s| &s.mount)
            .collect();
        if let Err(e) = self.freezer.flush_unfreezable(&unfreezable) {
            self.log.warning(e.to_string());
        }

        // 3. Crash-safety record and status, the last writes before freezing.
        let paths: Vec<PathBuf> = plan.freeze.iter().map(|m| m.path.clone()).collect();
        if self.freezer.freeze_outlives_process() && !paths.is_empty() {
            if let Err(e) = statefile::record(&self.config.state_file, &plan.freeze) {
                self.run_hooks_reverse(&frozen_hooks, Phase::FreezeFail);
                return Outcome::fail(
                    format!(
                        "cannot write the state file {}: {e}",
                        self.config.state_file.display()
                    ),
                    skipped,
                );
            }
        }
        self.status.state = State::Frozen;
        self.status.frozen = paths.iter().map(|p| p.display().to_string()).collect();
        self.status.frozen_since = Some(unix_now());
        self.publish_status();

        // 4. Freeze, children first, root last. Logs are held from here on.
        self.log.hold();
        let mut frozen: Vec<Mount> = Vec::new();
        for mount in &plan.freeze {
            match self.freezer.freeze(mount) {
                Ok(()) => {
                    self.log.info(format!("froze {}", mount.path.display()));
                    frozen.push(mount.clone());
                }
                Err(e) => {
                    self.log.error(e.to_string());
                    let rollback_errors = self.thaw_mounts(&frozen);
                    self.status.counters.rollbacks += 1;
                    self.after_thaw(rollback_errors.is_empty());
                    self.run_hooks_reverse(&frozen_hooks, Phase::FreezeFail);
                    let mut detail = format!("{e}; rolled back {} mounts", frozen.len());
                    for error in rollback_errors {
                        detail = join(&detail, &error.to_string());
                    }
                    return Outcome::fail(detail, skipped);
                }
            }
        }
        let frozen_count = frozen.len();
        let now = self.clock.now();
        self.watchdog.arm(now);
        self.freeze = Some(ActiveFreeze {
            mounts: frozen,
            hooks: frozen_hooks,
            skipped,
            since: now,
        });
        Outcome::ok(frozen_count, skipped)
    }

    fn thaw(&mut self) -> Outcome {
        if self.freeze.is_none() {
            let detail = if self.thawed_by_watchdog {
                "already thawed by the watchdog"
            } else {
                "nothing was frozen"
            };
            return Outcome {
                success: true,
                detail: detail.to_owned(),
                frozen: 0,
                skipped: 0,
            };
        }
        self.thaw_everything()
    }

    /// Thaws the active freeze, releases the held logs, runs the thaw hooks.
    fn thaw_everything(&mut self) -> Outcome {
        let Some(active) = self.freeze.take() else {
            return Outcome::ok(0, 0);
        };
        self.watchdog.disarm();
        let errors = self.thaw_mounts(&active.mounts);
        let frozen_for = self.clock.now().saturating_duration_since(active.since);
        self.log.info(format!(
            "thawed {} mounts after {} ms frozen",
            active.mounts.len() - errors.len(),
            frozen_for.as_millis()
        ));
        self.after_thaw(errors.is_empty());
        self.run_hooks_reverse(&active.hooks, Phase::Thaw);
        let mut outcome = Outcome::ok(active.mounts.len(), active.skipped);
        for error in errors {
            outcome.success = false;
            outcome.detail = join(&outcome.detail, &error.to_string());
        }
        outcome
    }

    /// Thaws in reverse freeze order, trying every mount.
    fn thaw_mounts(&mut self, frozen: &[Mount]) -> Vec<FreezeError> {
        let mut errors = Vec::new();
        for mount in frozen.iter().rev() {
            if let Err(e) = self.freezer.thaw(mount) {
                self.log.error(e.to_string());
                errors.push(e);
            }
        }
        errors
    }

    /// Once nothing is frozen: write the held logs, drop the crash record,
    /// publish the status.
    fn after_thaw(&mut self, all_thawed: bool) {
        self.log.release();
        if self.freezer.freeze_outlives_process() && all_thawed {
            if let Err(e) = statefile::clear(&self.config.state_file) {
                self.log.error(format!(
                    "cannot remove {}: {e}",
                    self.config.state_file.display()
                ));
            }
        }
        self.status.state = State::Idle;
        self.status.frozen.clear();
        self.status.frozen_since = None;
    }

    fn sync_pools(&mut self, pools: &[String]) -> Result<(), String> {
        let mut args = vec!["sync"];
        args.extend(pools.iter().map(String::as_str));
        let finished = child::run(&self.zpool, &args, self.config.zfs_sync_timeout)
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
    use crate::testing::{FakeFreezer, Harness, mount};
    use DeviceOperation::{Check, Freeze, Thaw};

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
        assert_eq!(h.engine.handle(Check, 1), DeviceStatus::Success);
        assert!(h.calls().is_empty(), "CHECK must not freeze anything");
        assert_eq!(h.engine.handle(Freeze, 2), DeviceStatus::Success);
        assert_eq!(h.calls(), ["freeze /data", "freeze /var", "freeze /"]);
        assert!(h.engine.is_frozen());
        assert_eq!(h.engine.handle(Thaw, 3), DeviceStatus::Success);
        assert_eq!(
            h.calls()[3..],
            ["thaw /", "thaw /var", "thaw /data"].map(String::from)
        );
        assert!(h.log_contains("CHECK msgid 1: success"));
        assert!(h.log_contains("FREEZE msgid 2: success in 0 ms, froze 3 mounts, skipped 1"));
        assert!(h.log_contains("THAW msgid 3: success"));
        let c = &h.engine.status().counters;
        assert_eq!((c.check_ok, c.freeze_ok, c.thaw_ok), (1, 1, 1));
    }

    #[test]
    fn nothing_is_logged_while_frozen_and_everything_after_thaw() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.engine.handle(Freeze, 2);
        let during = h.log.borrow().len();
        assert!(!h.log_contains("froze /"), "log written while frozen");
        assert!(!h.log_contains("FREEZE msgid 2"));
        h.engine.handle(Thaw, 3);
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
        assert_eq!(h.engine.handle(Freeze, 7), DeviceStatus::Fail);
        assert_eq!(h.calls(), ["freeze /data", "freeze /var", "thaw /data"]);
        assert!(h.freezer.frozen.borrow().is_empty());
        assert!(!h.engine.is_frozen());
        assert!(h.log_contains("cannot freeze /var: EIO"));
        assert!(h.log_contains("FREEZE msgid 7: FAILURE"));
        assert_eq!(h.journal(), ["10-db freeze", "10-db freeze-fail"]);
        assert_eq!(h.engine.status().counters.rollbacks, 1);
        // The host's THAW after a failed freeze is harmless.
        assert_eq!(h.engine.handle(Thaw, 8), DeviceStatus::Success);
        assert_eq!(h.calls().len(), 3);
    }

    #[test]
    fn hooks_run_in_order_around_the_freeze() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.hook("20-b", "");
        h.hook("10-a", "echo flushing tables");
        h.engine.handle(Freeze, 1);
        assert_eq!(h.journal(), ["10-a freeze", "20-b freeze"]);
        h.engine.handle(Thaw, 2);
        assert_eq!(
            h.journal(),
            ["10-a freeze", "20-b freeze", "20-b thaw", "10-a thaw"]
        );
        assert!(h.log_contains("hook 10-a output: flushing tables"));
    }

    #[test]
    fn a_failing_freeze_hook_vetoes_before_any_filesystem_is_frozen() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.hook("10-a", "");
        h.hook("20-b", "exit 3");
        h.hook("30-c", "");
        assert_eq!(h.engine.handle(Freeze, 1), DeviceStatus::Fail);
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
        assert_eq!(h.engine.handle(Freeze, 1), DeviceStatus::Fail);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(h.log_contains("timed out"));
        assert!(h.calls().is_empty());
    }

    #[test]
    fn the_watchdog_thaws_at_freeze_limit_and_the_late_thaw_succeeds() {
        let mut h = Harness::new(ufs_guest(), "freeze_limit = 20", FakeFreezer::default());
        h.hook("10-a", "");
        h.engine.handle(Freeze, 1);
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
        assert_eq!(h.engine.handle(Thaw, 2), DeviceStatus::Success);
        assert!(h.log_contains("already thawed by the watchdog"));
        assert_eq!(h.engine.status().counters.watchdog_thaws, 1);
    }

    #[test]
    fn strict_vetoes_check_and_freeze_on_zfs() {
        let mounts = vec![mount("/", "zfs", 1)];
        let mut h = Harness::new(mounts, "strict = yes", FakeFreezer::default());
        assert_eq!(h.engine.handle(Check, 1), DeviceStatus::Fail);
        assert_eq!(h.engine.handle(Freeze, 2), DeviceStatus::Fail);
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
        assert_eq!(h.engine.handle(Freeze, 1), DeviceStatus::Success);
        assert_eq!(std::fs::read_to_string(&args).unwrap(), "sync tank\n");
        h.engine.handle(Thaw, 2);
        // A failing zpool sync fails the freeze before anything is frozen.
        std::fs::write(&zpool, "#!/bin/sh\necho no such pool >&2\nexit 1\n").unwrap();
        let before = h.calls().len();
        assert_eq!(h.engine.handle(Freeze, 3), DeviceStatus::Fail);
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
        h.engine.handle(Freeze, 1);
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
        h.engine.handle(Thaw, 2);
        assert!(statefile::read(&h.state_file()).unwrap().is_none());
    }

    #[test]
    fn unfreezable_mounts_are_flushed_before_anything_is_frozen() {
        let mut guest = ufs_guest();
        guest.push(mount("/boot/efi", "msdosfs", 5));
        let mut h = Harness::new(guest, "", FakeFreezer::default());
        assert_eq!(h.engine.handle(Check, 1), DeviceStatus::Success);
        assert!(h.calls().is_empty(), "CHECK flushes nothing either");
        assert_eq!(h.engine.handle(Freeze, 2), DeviceStatus::Success);
        assert_eq!(
            h.calls(),
            ["flush /boot/efi", "freeze /data", "freeze /var", "freeze /"]
        );
    }

    #[test]
    fn status_file_says_frozen_before_the_freeze_and_idle_after_the_thaw() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.engine.publish_status();
        assert_eq!(Status::read(&h.status_file()).unwrap().state, State::Idle);
        h.engine.handle(Freeze, 1);
        let s = Status::read(&h.status_file()).unwrap();
        assert_eq!(s.state, State::Frozen);
        assert_eq!(s.frozen, ["/data", "/var", "/"]);
        h.engine.handle(Thaw, 2);
        // The device loop answers the host first, then publishes.
        assert_eq!(Status::read(&h.status_file()).unwrap().state, State::Frozen);
        h.engine.publish_status();
        let s = Status::read(&h.status_file()).unwrap();
        assert_eq!(s.state, State::Idle);
        assert!(s.frozen.is_empty());
        assert_eq!(s.recent.back().unwrap().op, "THAW");
        assert_eq!(s.counters.freeze_ok, 1);
    }

    #[test]
    fn shutdown_thaws_everything() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.engine.handle(Freeze, 1);
        h.engine.shutdown();
        assert!(h.freezer.frozen.borrow().is_empty());
        assert!(h.log_contains("SHUTDOWN msgid 0: success"));
    }

    #[test]
    fn skip_reasons_are_logged_once() {
        let mut h = Harness::new(ufs_guest(), "", FakeFreezer::default());
        h.engine.handle(Check, 1);
        h.engine.handle(Check, 2);
        let count = h
            .log
            .borrow()
            .iter()
            .filter(|l| l.starts_with("info: skipping /dev"))
            .count();
        assert_eq!(count, 1);
    }

    #[test]
    fn a_repeated_freeze_keeps_the_freeze_and_rearms_the_watchdog() {
        let mut h = Harness::new(ufs_guest(), "freeze_limit = 10", FakeFreezer::default());
        h.engine.handle(Freeze, 1);
        h.clock.advance(Duration::from_secs(8));
        assert_eq!(h.engine.handle(Freeze, 2), DeviceStatus::Success);
        assert_eq!(h.calls().len(), 3);
        assert_eq!(h.engine.next_timeout(), Some(Duration::from_secs(10)));
    }
}
