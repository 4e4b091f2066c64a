//! The host's deadline (issue 12): the real `hv_vssd` against the real
//! kernel engine and loop-mounted ext4. The kernel answers each host
//! request with failure after its deadline (15 s in FreeBSD's drivers) and
//! drops a later answer, so the daemon spends at most `request_budget` on a
//! FREEZE, never freezes after it, answers THAW before running thaw hooks,
//! and thaws and fails a FREEZE that SIGTERM interrupts.
//!
//! Run as `.ci/checks/40-e2e.sh` does:
//! `cargo test -p hv-vss-e2e --test deadlines -- --ignored --test-threads=1`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::time::{Duration, Instant};

use hv_vss_e2e::e2e;
use hv_vss_e2e::scenario::{
    REPLY, assert_exactly_once, assert_nothing_frozen, failed, full_backup, mount_points, options,
    request_ok, spawn_as_configured, wait_for,
};
use hv_vss_proto::HostOperation;
use hv_vss_sim::loopfs::FsType;
use hv_vss_sim::simulation::Simulation;
use nix::sys::signal::Signal;

const EXT4: &[FsType] = &[FsType::Ext4];

/// A hook that appends `<name> <phase> start|end` to `journal` around a
/// `sleep` in the given phase.
fn sleepy_hook(journal: &std::path::Path, name: &str, phase: &str, seconds: &str) -> String {
    let j = journal.display();
    format!(
        "#!/bin/sh\necho \"{name} $1 start\" >> {j}\n\
         [ \"$1\" = {phase} ] && sleep {seconds}\n\
         echo \"{name} $1 end\" >> {j}\nexit 0\n"
    )
}

fn journal(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn with_config(sim: &mut Simulation, extra: &str) {
    sim.daemon_setup.write_config().unwrap();
    let path = sim.daemon_setup.config_path();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
}

/// Starts the daemon on the configuration as written (start_daemon would
/// write its own), and waits until it holds the device.
fn start_as_configured(sim: &mut Simulation) -> std::process::Child {
    let daemon = spawn_as_configured(&sim.daemon_setup);
    assert!(wait_for(Duration::from_secs(10), || sim
        .kernel()
        .is_open(hv_vss_sim::devices::DeviceKind::Fs)));
    daemon
}

fn terminate(daemon: &mut std::process::Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.id()).unwrap()),
        Signal::SIGTERM,
    );
    let _ = daemon.wait();
}

// 1. Freeze hooks that together outlast request_budget: the daemon cuts
// the second one short, freezes nothing, and answers failure itself while
// the host is still waiting (the kernel's deadline is 15 s; the budget 4 s).
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn deadline_1_hooks_share_request_budget_and_nothing_freezes_after_it() {
    e2e("deadline_1_budget", Duration::from_secs(120), EXT4, || {
        let mut sim = Simulation::new(&options(EXT4)).unwrap();
        let record = sim.scratch_dir().join("journal");
        for name in ["10-slow", "20-slower"] {
            sim.daemon_setup
                .add_hook(name, &sleepy_hook(&record, name, "freeze", "2"))
                .unwrap();
        }
        with_config(
            &mut sim,
            "request_budget = 4\nhook_timeout = 3\nzfs_sync_timeout = 3\n",
        );
        let mut daemon = start_as_configured(&mut sim);
        let asked = Instant::now();
        let reply = sim.host.request(HostOperation::Freeze, REPLY).unwrap();
        let answered = asked.elapsed();
        terminate(&mut daemon);
        failed(&reply, "FREEZE past request_budget", &sim);
        assert!(
            answered < Duration::from_secs(10),
            "answered after {answered:?}: that is the kernel's deadline, not the daemon's budget"
        );
        let ran = journal(&record);
        assert!(
            ran.contains(&"20-slower freeze start".to_owned())
                && !ran.contains(&"20-slower freeze end".to_owned()),
            "the second hook was not cut at the budget: {ran:?}"
        );
        assert_nothing_frozen(&sim);
    });
}

// 2. THAW is answered as soon as the filesystems are thawed; the thaw hooks
// run afterwards (the host waits for the thaw, not for them).
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn deadline_2_thaw_is_answered_before_the_thaw_hooks() {
    e2e(
        "deadline_2_thaw_first",
        Duration::from_secs(120),
        EXT4,
        || {
            let mut sim = Simulation::new(&options(EXT4)).unwrap();
            let record = sim.scratch_dir().join("journal");
            sim.daemon_setup
                .add_hook("10-app", &sleepy_hook(&record, "10-app", "thaw", "2"))
                .unwrap();
            sim.start_daemon().unwrap();
            let mounts = mount_points(&sim);
            request_ok(&mut sim, HostOperation::Freeze, "FREEZE");
            request_ok(&mut sim, HostOperation::Thaw, "THAW");
            let at_answer = journal(&record);
            assert_nothing_frozen(&sim);
            assert!(
                !at_answer.contains(&"10-app thaw end".to_owned()),
                "THAW waited for the thaw hook: {at_answer:?}"
            );
            assert!(
                wait_for(Duration::from_secs(10), || journal(&record)
                    .contains(&"10-app thaw end".to_owned())),
                "the thaw hook did not run after the answer"
            );
            full_backup(&mut sim, &mounts);
            assert_exactly_once(&mut sim);
        },
    );
}

// 3. SIGTERM while a FREEZE is under way: the daemon thaws, answers the
// FREEZE with failure (it cannot keep anything frozen for the host once it
// is gone), then exits. It used to answer success and thaw right after.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn deadline_3_sigterm_during_freeze_thaws_and_answers_failure() {
    e2e("deadline_3_sigterm", Duration::from_secs(120), EXT4, || {
        let mut sim = Simulation::new(&options(EXT4)).unwrap();
        let record = sim.scratch_dir().join("journal");
        sim.daemon_setup
            .add_hook("10-app", &sleepy_hook(&record, "10-app", "freeze", "1"))
            .unwrap();
        sim.start_daemon().unwrap();
        let freeze = sim.host.send_operation(HostOperation::Freeze, 0).unwrap();
        assert!(wait_for(Duration::from_secs(5), || journal(&record)
            .contains(&"10-app freeze start".to_owned())));
        sim.daemon().unwrap().signal(Signal::SIGTERM).unwrap();
        let reply = sim.host.wait(freeze, REPLY).unwrap();
        failed(&reply, "FREEZE interrupted by SIGTERM", &sim);
        let exited = sim
            .take_daemon()
            .unwrap()
            .wait_exit(Duration::from_secs(10));
        assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
        assert_nothing_frozen(&sim);
        assert!(sim.daemon_log().contains("SIGTERM"), "{}", sim.daemon_log());
    });
}
