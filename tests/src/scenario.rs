//! What the end-to-end scenarios of `tests/tests/e2e.rs` (issue 6) and the
//! fault suite of `tests/tests/faults.rs` (issue 9) share: starting a
//! simulation with the real daemon, checking the host's replies, asking
//! which filesystems are frozen without endangering the machine, a full
//! backup (on a running simulation, or `hv-vss-sim backup` with its checks), the exactly-once accounting, and the soak's seeded generator and
//! the soak actions both suites run the same way.
//!
//! Everything here panics on failure: it runs inside a test body (see
//! [`crate::e2e`]), where a panic is the failed assertion.

// A panic is how these helpers fail the test that called them.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hv_vss_proto::HostOperation;
use hv_vss_sim::backup;
use hv_vss_sim::host::{Reply, TransactionId};
use hv_vss_sim::loopfs::FsType;
use hv_vss_sim::script::HostStep;
use hv_vss_sim::simulation::{Simulation, SimulationOptions};

use crate::built_binaries;

/// The host's patience for one reply: above every deadline under test.
pub const REPLY: Duration = Duration::from_secs(30);

/// Simulation options for `filesystems`, running the real `hv_vssd`
/// built for this test run (see [`built_binaries`]).
pub fn options(filesystems: &[FsType]) -> SimulationOptions {
    SimulationOptions {
        filesystems: filesystems.to_vec(),
        daemon_binary: Some(built_binaries().unwrap().daemon),
        ..SimulationOptions::default()
    }
}

/// A simulation with its daemon already running.
pub fn started(options: &SimulationOptions) -> Simulation {
    let mut sim = Simulation::new(options).unwrap();
    sim.start_daemon()
        .unwrap_or_else(|e| panic!("daemon did not start: {e}"));
    sim
}

/// Asserts that the host got success for `what`; the failure message
/// carries the daemon's log, which says why.
pub fn ok(reply: &Reply, what: &str, sim: &Simulation) {
    assert!(
        reply.succeeded(),
        "{what}: {} (daemon log:\n{})",
        reply.status_text(),
        sim.daemon_log()
    );
}

/// Asserts that the host got exactly `HV_E_FAIL` for `what`; the failure
/// message carries the daemon's log, which says what it did instead.
pub fn failed(reply: &Reply, what: &str, sim: &Simulation) {
    assert_eq!(
        reply.status_text(),
        "HV_E_FAIL",
        "{what} (daemon log:\n{})",
        sim.daemon_log()
    );
}

/// Sends `operation` and asserts that the host got success for it (see
/// [`ok`]).
pub fn request_ok(sim: &mut Simulation, operation: HostOperation, what: &str) {
    let reply = sim.host.request(operation, REPLY).unwrap();
    ok(&reply, what, sim);
}

/// Sends `operation` and asserts that the host got exactly `HV_E_FAIL` for
/// it (see [`failed`]).
pub fn request_failed(sim: &mut Simulation, operation: HostOperation, what: &str) {
    let reply = sim.host.request(operation, REPLY).unwrap();
    failed(&reply, what, sim);
}

/// Mount points of the simulation's filesystems, in creation (mount) order.
pub fn mount_points(sim: &Simulation) -> Vec<PathBuf> {
    sim.filesystems
        .iter()
        .map(|fs| fs.mount_point().to_owned())
        .collect()
}

/// The loop (md) device behind the simulation's `index`th filesystem, for
/// a test that unmounts it and mounts it back or elsewhere.
pub fn device_of(sim: &Simulation, index: usize) -> PathBuf {
    sim.filesystems
        .iter()
        .nth(index)
        .and_then(|fs| fs.loop_device())
        .unwrap_or_else(|| panic!("filesystem {index} has no device"))
        .to_owned()
}

/// Whether something is mounted exactly at `path` right now (the daemon's
/// own mount-table reader, so escaped names match too).
pub fn is_mount_point(path: &Path) -> bool {
    // Never panics: cleanup guards call it while unwinding.
    hv_vssd::mounts::discover().is_ok_and(|mounts| mounts.iter().any(|mount| mount.path == path))
}

/// The simulation's filesystems that are frozen now, in mount order.
///
/// Only mounted ones are probed: the probe is FIFREEZE on the path, and on
/// a path whose filesystem was unmounted that would freeze the machine's
/// own root. Use this, never `sim.filesystems.frozen()`, which probes every
/// path.
pub fn frozen(sim: &Simulation) -> Vec<PathBuf> {
    sim.filesystems
        .iter()
        .filter(|fs| is_mount_point(fs.mount_point()))
        .filter(|fs| fs.is_frozen().unwrap())
        .map(|fs| fs.mount_point().to_owned())
        .collect()
}

/// Waits up to `timeout` until each of `mounts` is frozen by another
/// process, seen without a probe: a file created there has not been
/// created half a second later (the create waits for the thaw). Never
/// call [`frozen`] while another process may be freezing: its probe
/// freezes for a moment, and the other process's freeze then fails
/// (EBUSY). A create left waiting finishes at the thaw, in its thread.
pub fn wait_frozen_by_another(mounts: &[PathBuf], timeout: Duration) -> bool {
    const BLOCKED: Duration = Duration::from_millis(500);
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&PathBuf> = mounts.iter().collect();
    let mut attempt = 0;
    while !pending.is_empty() {
        if Instant::now() >= deadline {
            return false;
        }
        attempt += 1;
        let creates: Vec<_> = pending
            .iter()
            .map(|mount| {
                let path = mount.join(format!("created-while-waiting-for-a-freeze-{attempt}"));
                let (done, created) = std::sync::mpsc::channel();
                std::thread::spawn(move || done.send(std::fs::write(&path, b"x")));
                created
            })
            .collect();
        std::thread::sleep(BLOCKED);
        pending = pending
            .into_iter()
            .zip(creates)
            .filter(|(_, created)| {
                !matches!(
                    created.try_recv(),
                    Err(std::sync::mpsc::TryRecvError::Empty)
                )
            })
            .map(|(mount, _)| mount)
            .collect();
    }
    true
}

/// Asserts that none of the simulation's (mounted) filesystems is frozen.
pub fn assert_nothing_frozen(sim: &Simulation) {
    let frozen = frozen(sim);
    assert!(
        frozen.is_empty(),
        "still frozen: {frozen:?}\n{}",
        sim.daemon_log()
    );
}

/// Asserts that every one of the simulation's filesystems is frozen.
pub fn assert_all_frozen(sim: &Simulation) {
    assert_eq!(
        frozen(sim),
        mount_points(sim),
        "not all frozen\n{}",
        sim.daemon_log()
    );
}

/// Polls `condition` every 50 ms until it holds (`true`) or `timeout`
/// passes (`false`).
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that nothing is frozen within `timeout` (a watchdog, a restarted
/// daemon or a late rollback thawing); `what` says who should have thawed.
pub fn wait_thawed(sim: &Simulation, timeout: Duration, what: &str) {
    assert!(
        wait_for(timeout, || frozen(sim).is_empty()),
        "{what}: still frozen after {timeout:?}: {:?}\n{}",
        frozen(sim),
        sim.daemon_log()
    );
}

/// Every request answered exactly once; the numbers, for the reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Requests (and malformed packets) the host sent.
    pub sent: usize,
    /// Of those, the ones a reply can exist for.
    pub answerable: usize,
    /// Answerable ones that got exactly one reply.
    pub answered_once: usize,
    /// Answerable ones that got no reply.
    pub unanswered: usize,
    /// Answerable ones that got more than one reply.
    pub duplicated: usize,
    /// Unanswerable packets (shorter than an IC header) that got a reply.
    pub unanswerable_answered: usize,
    /// Replies for transactions the host never sent.
    pub strays: usize,
}

/// Collects the replies still in flight (300 ms), then counts the host's
/// ledger. Checks nothing: see [`assert_exactly_once`].
pub fn tally(sim: &mut Simulation) -> Tally {
    sim.host.drain(Duration::from_millis(300));
    let mut tally = Tally {
        strays: sim.host.answered_exactly_once().len(),
        ..Tally::default()
    };
    for sent in sim.host.ledger().values() {
        tally.sent += 1;
        match (sent.answerable, sent.replies.len()) {
            (true, 1) => {
                tally.answerable += 1;
                tally.answered_once += 1;
            }
            (true, 0) => {
                tally.answerable += 1;
                tally.unanswered += 1;
            }
            (true, _) => {
                tally.answerable += 1;
                tally.duplicated += 1;
            }
            (false, 0) => {}
            (false, _) => tally.unanswerable_answered += 1,
        }
    }
    // `answered_exactly_once` lists the per-request problems plus strays.
    tally.strays -= tally.unanswered + tally.duplicated + tally.unanswerable_answered;
    tally
}

/// Asserts that every answerable request got exactly one reply, no
/// unanswerable packet got any and no stray reply came (after collecting
/// late replies, so duplicates show); returns the numbers.
pub fn assert_exactly_once(sim: &mut Simulation) -> Tally {
    let tally = tally(sim);
    let problems = sim.host.answered_exactly_once();
    assert!(problems.is_empty(), "{problems:?}");
    tally
}

/// A full, successful backup (HOT_BACKUP, FREEZE, THAW) on the running
/// simulation; checks that exactly `expected` (mount points, in mount
/// order) is frozen between FREEZE and THAW, and nothing after.
pub fn full_backup(sim: &mut Simulation, expected: &[PathBuf]) {
    request_ok(sim, HostOperation::HotBackup, "HOT_BACKUP");
    request_ok(sim, HostOperation::Freeze, "FREEZE");
    assert_eq!(
        frozen(sim),
        expected,
        "frozen during the backup\n{}",
        sim.daemon_log()
    );
    request_ok(sim, HostOperation::Thaw, "THAW");
    assert_nothing_frozen(sim);
}

/// `hv-vss-sim backup` on new `filesystems`: it succeeds, and the
/// timeline's checks (all frozen, writes block, writes complete, nothing
/// frozen) and its cleanup each ran and passed.
pub fn backup_passes_every_check(filesystems: &[FsType]) {
    let timeline = backup::run(&options(filesystems)).unwrap();
    println!("{}", timeline.render());
    assert!(timeline.succeeded, "{}", timeline.render());
    for step in [
        "check: all frozen",
        "check: writes block",
        "check: writes complete",
        "check: nothing frozen",
        "cleanup",
    ] {
        assert!(
            timeline.steps.iter().any(|s| s.name == step && s.ok),
            "step {step} missing or failed:\n{}",
            timeline.render()
        );
    }
}

/// A small deterministic PRNG (xorshift64), so a failing soak can be
/// replayed by its seed.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// The generator for `seed`. Its state must never be 0 (xorshift would
    /// then only ever return 0), so the lowest bit is set.
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    /// The next number, in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

/// Soak action: one operation user space never sees (GET_DM_INFO, CREATE,
/// DELETE or BU_COMPLETE, chosen by `rng`), which the engine must answer
/// with success on its own.
pub fn soak_engine_only_operation(sim: &mut Simulation, rng: &mut XorShift) {
    let ops = [
        HostOperation::GetDmInfo,
        HostOperation::Create,
        HostOperation::Delete,
        HostOperation::BuComplete,
    ];
    let op = ops[rng.below(ops.len())];
    ok(&sim.host.request(op, REPLY).unwrap(), op.name(), sim);
}

/// Sends the malformed packet `step` (an unknown operation, a truncated or
/// raw one); if it can be answered, asserts that the answer is failure.
///
/// Returns the transaction of a packet that cannot be answered (shorter
/// than an IC header: nothing to echo), for a caller that checks no reply
/// comes; `None` when it was answered.
pub fn send_malformed(sim: &mut Simulation, step: &HostStep) -> Option<TransactionId> {
    let transaction = hv_vss_sim::script::send(&mut sim.host, step)
        .unwrap()
        .unwrap();
    if !sim.host.answerable(transaction) {
        return Some(transaction);
    }
    failed(
        &sim.host.wait(transaction, REPLY).unwrap(),
        &step.to_string(),
        sim,
    );
    None
}

/// Soak action: one malformed packet (an unknown operation or a truncated
/// one, chosen by `rng`), see [`send_malformed`]. The unanswerable ones are
/// held to "no reply" by the final exactly-once check
/// ([`assert_exactly_once`]).
pub fn soak_malformed_packet(sim: &mut Simulation, rng: &mut XorShift) {
    let steps = [
        "unknown:99",
        "truncated:freeze:35",
        "truncated:thaw:29",
        "raw:00",
    ];
    let step: HostStep = steps[rng.below(steps.len())].parse().unwrap();
    send_malformed(sim, &step);
}

/// Starts the daemon on its configuration file as it is now (the
/// simulation's own start writes a fresh one), logging where the
/// simulation's daemons log.
pub fn spawn_as_configured(setup: &hv_vss_sim::daemon::DaemonSetup) -> std::process::Child {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(setup.log_file())
        .unwrap();
    setup
        .command()
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Mounts a loop (md) device back on its mount point when dropped, if
/// nothing is mounted there (after a test moved or unmounted it).
#[derive(Debug)]
pub struct Remount {
    pub fs_type: FsType,
    pub device: PathBuf,
    pub mount_point: PathBuf,
}

impl Drop for Remount {
    fn drop(&mut self) {
        if !is_mount_point(&self.mount_point) {
            let _ = hv_vss_sim::loopfs::LoopFilesystem::mount_device(
                self.fs_type,
                &self.device,
                &self.mount_point,
            );
        }
    }
}
