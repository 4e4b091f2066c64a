//! `hv_vssctl` end to end (issue 13): `check`, `test` and `status` against
//! the real daemon, the simulated host and loop-mounted ext4 — a hook that
//! vetoes, a refused hook, a skipped mount, a test refused while a host
//! freeze is under way (and a host FREEZE refused during a test), status
//! while frozen, nothing left frozen in any path.
//!
//! Run as `.ci/checks/40-e2e.sh` does:
//! `cargo test -p hv-vss-e2e --test ctl -- --ignored --test-threads=1`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hv_vss_e2e::scenario::{
    assert_all_frozen, assert_exactly_once, assert_nothing_frozen, mount_points, options,
    request_failed, request_ok, started, wait_for, wait_frozen_by_another,
};
use hv_vss_e2e::{built_binaries, e2e};
use hv_vss_proto::HostOperation;
use hv_vss_sim::loopfs::FsType;
use hv_vss_sim::simulation::Simulation;

const EXT4: &[FsType] = &[FsType::Ext4, FsType::Ext4];

/// `hv_vssctl` on the simulation's configuration and devices.
fn ctl(sim: &Simulation) -> Command {
    let mut command = Command::new(built_binaries().unwrap().ctl);
    command
        .arg("-c")
        .arg(sim.daemon_setup.config_path())
        .arg("-D")
        .arg(sim.device_dir())
        .stdin(Stdio::null());
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    (status.code().unwrap_or(-1), text(&stdout), text(&stderr))
}

/// A hook the check must refuse: writable by its group.
fn add_group_writable_hook(sim: &Simulation, name: &str) {
    let path = sim
        .daemon_setup
        .add_hook(name, "#!/bin/sh\nexit 0\n")
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o775)).unwrap();
}

// 1. `check` lists every mount (frozen or skipped, and why), every hook
// (accepted or refused, and why), the VSS device and the daemon; it
// reports a stopped daemon as a problem; `-j` says the same as JSON.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn ctl_1_check_shows_the_plan_the_hooks_and_the_problems() {
    e2e("ctl_1_check", Duration::from_secs(120), EXT4, || {
        let mut sim = Simulation::new(&options(EXT4)).unwrap();
        let mounts = mount_points(&sim);
        sim.daemon_setup
            .add_hook("10-flush", "#!/bin/sh\nexit 0\n")
            .unwrap();
        add_group_writable_hook(&sim, "20-unsafe");
        sim.start_daemon().unwrap();
        // Exclude the second mount in the file the check reads.
        let config = sim.daemon_setup.config_path();
        let mut written = std::fs::read_to_string(&config).unwrap();
        written.push_str("exclude = ");
        written.push_str(&mounts[1].display().to_string());
        written.push('\n');
        std::fs::write(&config, written).unwrap();

        let (code, out, err) = run(ctl(&sim).arg("check"));
        assert_eq!(code, 0, "{out}{err}");
        let first = mounts[0].display().to_string();
        let second = mounts[1].display().to_string();
        assert!(out.contains(&format!("  freeze  {first} (ext4")), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("  skip    {second} ")) && l.contains("exclude")),
            "{out}"
        );
        assert!(out.contains("  accept  10-flush"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("  refuse  20-unsafe: ") && l.contains("writable")),
            "{out}"
        );
        assert!(out.contains("device present"), "{out}");
        assert!(out.contains("hv_vssd is running as pid"), "{out}");
        assert!(out.contains("No problems found."), "{out}");

        let (code, json, _) = run(ctl(&sim).args(["check", "-j"]));
        assert_eq!(code, 0);
        let report: serde_json::Value = serde_json::from_str(&json).unwrap();
        let decision = |path: &str| {
            report["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["path"] == path)
                .cloned()
                .unwrap()
        };
        assert_eq!(decision(&first)["freeze"], true);
        assert_eq!(decision(&second)["freeze"], false);
        assert!(report["daemon_pid"].as_u64().is_some());

        sim.stop_daemon();
        let (code, out, _) = run(ctl(&sim).arg("check"));
        assert_eq!(code, 1, "a stopped daemon is a problem: {out}");
        assert!(out.contains("Problem: hv_vssd is not running"), "{out}");
        assert_nothing_frozen(&sim);
    });
}

// 2. `test` freezes for real, holds, thaws, and prints a timeline; the
// filesystems are frozen during the hold and thawed after.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn ctl_2_test_freezes_holds_and_thaws_with_a_timeline() {
    e2e("ctl_2_test", Duration::from_secs(120), EXT4, || {
        let mut sim = started(&options(EXT4));
        let child = ctl(&sim)
            .args(["test", "--hold", "2s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            wait_frozen_by_another(&mount_points(&sim), Duration::from_secs(10)),
            "the test never froze both filesystems"
        );
        assert_all_frozen(&sim);
        let output = child.wait_with_output().unwrap();
        let out = text(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{out}{}",
            text(&output.stderr)
        );
        for needle in ["CHECK", "FREEZE", "hold", "THAW", "TEST FREEZE SUCCEEDED"] {
            assert!(out.contains(needle), "{needle}: {out}");
        }
        assert!(out.contains("froze 2 mounts"), "{out}");
        assert_nothing_frozen(&sim);
        // The daemon's status file is left alone by the test.
        assert!(
            !std::fs::read_to_string(sim.daemon_setup.status_file())
                .unwrap()
                .contains("\"FREEZE\"")
        );
        assert_exactly_once(&mut sim);
    });
}

// 3. A hook that vetoes fails the test the way it would fail a backup, and
// nothing is frozen.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn ctl_3_a_vetoing_hook_fails_the_test_and_freezes_nothing() {
    e2e("ctl_3_veto", Duration::from_secs(120), EXT4, || {
        let mut sim = Simulation::new(&options(EXT4)).unwrap();
        sim.daemon_setup
            .add_hook(
                "10-no",
                "#!/bin/sh\n[ \"$1\" = freeze ] && { echo not now; exit 3; }\nexit 0\n",
            )
            .unwrap();
        sim.start_daemon().unwrap();
        let (code, out, err) = run(ctl(&sim).args(["test", "--hold", "100ms"]));
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.contains("TEST FREEZE FAILED"), "{out}");
        assert!(out.contains("hook 10-no vetoed the freeze"), "{out}");
        assert!(
            err.contains("not now"),
            "the hook's output is logged: {err}"
        );
        assert_nothing_frozen(&sim);
    });
}

// 4. One freeze at a time: `test` is refused while a host freeze is under
// way, and a host FREEZE is refused while a test holds its freeze.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn ctl_4_test_and_host_freezes_exclude_each_other() {
    e2e("ctl_4_exclusive", Duration::from_secs(120), EXT4, || {
        let mut sim = started(&options(EXT4));
        request_ok(&mut sim, HostOperation::Freeze, "FREEZE");
        let (code, out, err) = run(ctl(&sim).arg("test"));
        assert_eq!(code, 75, "{out}{err}");
        assert!(
            err.contains("refused") && err.contains("hv_vssd (pid"),
            "{err}"
        );
        // status works while frozen, and says so. The daemon writes the
        // status file just after answering (the host waits for the answer
        // only), so the host can see the answer first: read until it says
        // frozen.
        let mut status = serde_json::Value::Null;
        let says_frozen = wait_for(Duration::from_secs(5), || {
            let (code, text, _) = run(ctl(&sim).args(["status", "-j"]));
            assert_eq!(code, 0);
            status = serde_json::from_str(&text).unwrap();
            status["status"]["state"] == "frozen"
        });
        assert!(says_frozen, "{status}");
        assert_eq!(status["freezing"], true, "the freeze lock is held");
        request_ok(&mut sim, HostOperation::Thaw, "THAW");
        assert_nothing_frozen(&sim);

        let child = ctl(&sim)
            .args(["test", "--hold", "3s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(wait_frozen_by_another(
            &mount_points(&sim),
            Duration::from_secs(10)
        ));
        request_failed(
            &mut sim,
            HostOperation::Freeze,
            "host FREEZE during a local test",
        );
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
        assert_nothing_frozen(&sim);
        assert!(
            wait_for(Duration::from_secs(5), || sim
                .daemon_log()
                .contains("another freeze is under way")),
            "{}",
            sim.daemon_log()
        );
        // And backups work again.
        request_ok(&mut sim, HostOperation::Freeze, "FREEZE");
        request_ok(&mut sim, HostOperation::Thaw, "THAW");
        assert_nothing_frozen(&sim);
        assert_exactly_once(&mut sim);
    });
}
