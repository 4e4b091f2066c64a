//! The nine end-to-end scenarios of issue 6: the real `hv_vssd` and
//! `hv_vss_app` binaries, the real kernel engine behind the simulated
//! devices (FUSE on Linux, CUSE on FreeBSD), a simulated Hyper-V host, and
//! real frozen filesystems (ext4/xfs on Linux, UFS2 on FreeBSD).
//!
//! Each test has its own deadline and cleans up in every path (see
//! `hv_vss_e2e::e2e`); without root, FUSE or loop devices each prints
//! `SKIP <test>: <reason>`.
#![cfg(any(target_os = "linux", target_os = "freebsd"))]
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hv_vss_e2e::platform::{FREEZE_OUTLIVES_PROCESS, alive, as_nobody};
use hv_vss_e2e::scenario::{
    REPLY, XorShift, assert_all_frozen, assert_exactly_once, assert_nothing_frozen,
    backup_passes_every_check, failed, full_backup, mount_points, ok, options, request_failed,
    request_ok, send_malformed, soak_engine_only_operation, soak_malformed_packet, started,
    wait_thawed,
};
use hv_vss_e2e::{built_binaries, e2e};
use hv_vss_proto::HostOperation;
use hv_vss_sim::devices::DeviceKind;
use hv_vss_sim::kernel::KernelOptions;
use hv_vss_sim::loopfs::FsType;
use hv_vss_sim::simulation::Simulation;

/// One filesystem of the platform's main kind: ext4 on Linux (hence the
/// name), UFS2 with SU+J on FreeBSD.
const EXT4: &[FsType] = &[FsType::PRIMARY];
/// Replies the engine makes without user space must be this fast.
const IMMEDIATE: Duration = Duration::from_secs(1);

/// `hv_vss_app` on the simulation's app device; killed on drop.
struct App(Child);

impl App {
    fn start(sim: &Simulation, args: &[&str]) -> App {
        // Its messages go to a log in the scratch directory, not the test output.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(sim.scratch_dir().join("hv_vss_app.log"))
            .unwrap();
        let child = Command::new(built_binaries().unwrap().app)
            .arg("-v")
            .arg("-d")
            .arg(sim.device_path(DeviceKind::App))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        assert!(
            sim.kernel()
                .wait_until(Duration::from_secs(10), |k| k.is_open(DeviceKind::App)),
            "hv_vss_app did not open the app device"
        );
        App(child)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// 1. Full backup with 1 and with 8 filesystems; writes blocked during the
// freeze and completed after (checked by the backup timeline's steps).
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn e2e_1_full_backup_one_and_eight_filesystems() {
    let all = [FsType::PRIMARY, FsType::SECONDARY];
    e2e("e2e_1_full_backup", Duration::from_secs(240), &all, || {
        let eight = [FsType::PRIMARY, FsType::SECONDARY].repeat(4);
        for filesystems in [EXT4, &eight[..]] {
            backup_passes_every_check(filesystems);
        }
    });
}

// 2. An app registered: success (app first on freeze, last on thaw),
// failure (host gets failure, nothing frozen), too slow (deadline).
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn e2e_2_app_success_failure_and_too_slow() {
    e2e("e2e_2_app", Duration::from_secs(180), EXT4, || {
        let mut options = options(EXT4);
        options.kernel = KernelOptions {
            deadline: Duration::from_secs(3),
            rollback: Duration::from_secs(2),
        };
        let mut sim = started(&options);
        let mounts = mount_points(&sim);
        let mount = mounts[0].clone();
        let marker = |name: &str| mount.join(name);

        // Success. The freeze command writes to the filesystem, which only
        // works before the daemon froze it; the thaw command likewise after.
        let app = App::start(
            &sim,
            &[
                "-T",
                "2",
                "-f",
                &format!("echo app > {}", marker("app-froze-first").display()),
                "-t",
                &format!("echo app > {}", marker("app-thawed-last").display()),
            ],
        );
        full_backup(&mut sim, &mounts);
        assert!(
            marker("app-froze-first").exists(),
            "the app's freeze ran before the freeze"
        );
        assert!(
            marker("app-thawed-last").exists(),
            "the app's thaw ran after the thaw"
        );
        drop(app);
        assert!(
            sim.kernel()
                .wait_until(Duration::from_secs(5), |k| !k.is_open(DeviceKind::App))
        );

        // Failure: the freeze command fails, so the host gets failure and the
        // daemon is never asked to freeze.
        let app = App::start(&sim, &["-f", "exit 3", "-t", "true"]);
        request_ok(&mut sim, HostOperation::HotBackup, "HOT_BACKUP");
        request_failed(&mut sim, HostOperation::Freeze, "FREEZE with a failing app");
        assert_nothing_frozen(&sim);
        drop(app);
        assert!(
            sim.kernel()
                .wait_until(Duration::from_secs(5), |k| !k.is_open(DeviceKind::App))
        );

        // Too slow: the app's command outlives the engine's 3 s deadline.
        // The engine then tells the app THAW (rollback) and answers the host
        // when the 2 s rollback window closes: the app is still busy.
        let app = App::start(&sim, &["-T", "4", "-f", "sleep 30", "-t", "true"]);
        let started = Instant::now();
        let reply = sim.host.request(HostOperation::Freeze, REPLY).unwrap();
        failed(&reply, "FREEZE with a slow app", &sim);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(7),
            "failure came after {waited:?}, expected between the 3 s deadline and 3 s + 2 s rollback"
        );
        assert_nothing_frozen(&sim);
        drop(app);
        assert!(
            sim.kernel()
                .wait_until(Duration::from_secs(5), |k| !k.is_open(DeviceKind::App))
        );

        // And the guest still backs up afterwards.
        full_backup(&mut sim, &mounts);
        assert_exactly_once(&mut sim);
    });
}

// 3. A freeze hook that fails, and one that hangs (killed at its timeout;
// freeze vetoed; nothing frozen).
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn e2e_3_failing_and_hanging_hooks_veto_the_freeze() {
    e2e("e2e_3_hooks", Duration::from_secs(120), EXT4, || {
        let mut options = options(EXT4);
        options.hook_timeout = Some(Duration::from_secs(2));
        let mut sim = Simulation::new(&options).unwrap();
        let failing = sim
            .daemon_setup
            .add_hook(
                "10-fails",
                "#!/bin/sh\n[ \"$1\" = freeze ] && exit 1\nexit 0\n",
            )
            .unwrap();
        sim.start_daemon().unwrap();
        request_failed(
            &mut sim,
            HostOperation::Freeze,
            "FREEZE with a failing hook",
        );
        assert_nothing_frozen(&sim);
        std::fs::remove_file(&failing).unwrap();
        sim.stop_daemon();

        let pid_file = sim.scratch_dir().join("hung-hook.pid");
        sim.daemon_setup
            .add_hook(
                "20-hangs",
                &format!(
                    "#!/bin/sh\nif [ \"$1\" = freeze ]; then echo $$ > {}; exec sleep 600; fi\nexit 0\n",
                    pid_file.display()
                ),
            )
            .unwrap();
        sim.start_daemon().unwrap();
        let started = Instant::now();
        let reply = sim.host.request(HostOperation::Freeze, REPLY).unwrap();
        let waited = started.elapsed();
        failed(&reply, "FREEZE with a hung hook", &sim);
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
            "veto came after {waited:?}, expected at the 2 s hook timeout"
        );
        assert_nothing_frozen(&sim);
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!alive(pid), "the hung hook (pid {pid}) was killed");
        assert_exactly_once(&mut sim);
    });
}

// 4. The daemon killed with SIGKILL while frozen: restarting it thaws
// everything; the host's THAW still gets an answer.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn e2e_4_daemon_sigkill_while_frozen() {
    e2e(
        "e2e_4_sigkill",
        Duration::from_secs(120),
        &[FsType::PRIMARY, FsType::SECONDARY],
        || {
            let mut sim = started(&options(&[FsType::PRIMARY, FsType::SECONDARY]));
            let mounts = mount_points(&sim);
            request_ok(&mut sim, HostOperation::Freeze, "FREEZE");
            assert_all_frozen(&sim);
            let mut daemon = sim.take_daemon().unwrap();
            daemon.kill_hard();
            assert!(
                sim.kernel()
                    .wait_until(Duration::from_secs(5), |k| !k.is_open(DeviceKind::Fs))
            );
            // FIFREEZE outlives the process: still frozen. UFSSUSPEND ends
            // with its descriptor: already thawed.
            if FREEZE_OUTLIVES_PROCESS {
                assert_all_frozen(&sim);
            } else {
                assert_nothing_frozen(&sim);
            }
            // The host's THAW is answered at once, with failure: nobody is there.
            let reply = sim.host.request(HostOperation::Thaw, REPLY).unwrap();
            failed(&reply, "THAW with the daemon dead", &sim);
            assert!(
                reply.latency < IMMEDIATE,
                "answered after {:?}",
                reply.latency
            );
            // A new daemon thaws what the old one froze (its state file).
            sim.start_daemon().unwrap();
            wait_thawed(&sim, Duration::from_secs(10), "the restarted daemon");
            full_backup(&mut sim, &mounts);
            assert_exactly_once(&mut sim);
        },
    );
}

// 5. A host that never sends THAW: the watchdog thaws at its limit.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn e2e_5_watchdog_thaws_without_host_thaw() {
    e2e("e2e_5_watchdog", Duration::from_secs(120), EXT4, || {
        let mut options = options(EXT4);
        options.freeze_limit = Some(Duration::from_secs(2));
        let mut sim = started(&options);
        let mounts = mount_points(&sim);
        request_ok(&mut sim, HostOperation::Freeze, "FREEZE");
        let frozen_at = Instant::now();
        assert_all_frozen(&sim);
        // Half-way to the limit it is still frozen: the watchdog waits.
        std::thread::sleep(Duration::from_secs(1));
        assert_all_frozen(&sim);
        wait_thawed(
            &sim,
            Duration::from_secs(10),
            "the watchdog (freeze_limit = 2)",
        );
        let thawed_after = frozen_at.elapsed();
        assert!(
            // The limit counts from the freeze, a little before its reply.
            thawed_after >= Duration::from_millis(1500),
            "thawed too early: {thawed_after:?}"
        );
        // A late THAW gets exactly one answer, and it is a failure: the
        // host may have taken its snapshot after the watchdog's thaw.
        let reply = sim.host.request(HostOperation::Thaw, REPLY).unwrap();
        failed(&reply, "THAW after the watchdog", &sim);
        assert_nothing_frozen(&sim);
        full_backup(&mut sim, &mounts);
        assert_exactly_once(&mut sim);
    });
}

// 6. A second FREEZE while one is pending; THAW without FREEZE; unknown and
// truncated packets: each answered correctly, the daemon unaffected.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn e2e_6_overlapping_unexpected_and_malformed_requests() {
    e2e("e2e_6_malformed", Duration::from_secs(120), EXT4, || {
        let mut sim = Simulation::new(&options(EXT4)).unwrap();
        // A slow hook keeps the first FREEZE pending for a second.
        sim.daemon_setup
            .add_hook(
                "10-slow",
                "#!/bin/sh\n[ \"$1\" = freeze ] && sleep 1\nexit 0\n",
            )
            .unwrap();
        sim.start_daemon().unwrap();
        let mounts = mount_points(&sim);

        let first = sim.host.send_operation(HostOperation::Freeze, 0).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let second = sim.host.send_operation(HostOperation::Freeze, 0).unwrap();
        let second = sim.host.wait(second, REPLY).unwrap();
        failed(&second, "second FREEZE while one is pending", &sim);
        assert!(
            second.latency < IMMEDIATE,
            "answered after {:?}",
            second.latency
        );
        ok(&sim.host.wait(first, REPLY).unwrap(), "first FREEZE", &sim);
        assert_all_frozen(&sim);
        request_ok(&mut sim, HostOperation::Thaw, "THAW");
        assert_nothing_frozen(&sim);

        // THAW without FREEZE: answered (nothing to thaw), nothing changes.
        let reply = sim.host.request(HostOperation::Thaw, REPLY).unwrap();
        assert!(
            reply.status().is_some(),
            "THAW without FREEZE: {}",
            reply.status_text()
        );
        assert_nothing_frozen(&sim);

        // Operations user space never sees are answered by the engine.
        for operation in [
            HostOperation::GetDmInfo,
            HostOperation::Create,
            HostOperation::Delete,
            HostOperation::BuComplete,
        ] {
            let reply = sim.host.request(operation, REPLY).unwrap();
            ok(&reply, operation.name(), &sim);
            assert!(reply.latency < IMMEDIATE);
        }
        let dm_info = sim.host.request(HostOperation::GetDmInfo, REPLY).unwrap();
        assert_eq!(
            dm_info.vss_flags(),
            Some(0),
            "GET_DM_INFO replies carry flags 0"
        );

        // An unknown operation code and truncated packets: failure replies.
        for step in [
            "unknown:42",
            "truncated:freeze:30",
            "truncated:thaw:12",
            "truncated:hot-backup:39",
        ] {
            let step: hv_vss_sim::script::HostStep = step.parse().unwrap();
            if let Some(unanswerable) = send_malformed(&mut sim, &step) {
                // Shorter than an IC header: nothing to echo, so no reply.
                let reply = sim.host.wait(unanswerable, Duration::from_millis(300));
                assert!(reply.is_err(), "{step} was answered");
            }
        }
        // A FREEZE with LUN data is valid.
        let big = sim
            .host
            .send_operation(HostOperation::Freeze, 6000)
            .unwrap();
        ok(
            &sim.host.wait(big, REPLY).unwrap(),
            "FREEZE with 6000 bytes of LUN data",
            &sim,
        );
        request_ok(&mut sim, HostOperation::Thaw, "THAW");

        assert!(sim.daemon().unwrap().is_running(), "the daemon survived");
        full_backup(&mut sim, &mounts);
        assert_exactly_once(&mut sim);
    });
}

// 7. The daemon not running: the host gets failure at once, and
// negotiation still works.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn e2e_7_no_daemon_fails_at_once_and_negotiation_works() {
    e2e("e2e_7_no_daemon", Duration::from_secs(60), EXT4, || {
        let mut sim = Simulation::new(&options(EXT4)).unwrap();
        let mounts = mount_points(&sim);
        let negotiated = sim.host.negotiate(REPLY).unwrap();
        ok(&negotiated, "NEGOTIATE without a daemon", &sim);
        let chosen = negotiated.negotiated().unwrap();
        assert_eq!(chosen.framework, hv_vss_proto::VSS_FRAMEWORK_MAX);
        assert_eq!(chosen.message, hv_vss_proto::VSS_MESSAGE_MAX);
        for operation in [
            HostOperation::HotBackup,
            HostOperation::Freeze,
            HostOperation::Thaw,
        ] {
            let reply = sim.host.request(operation, REPLY).unwrap();
            failed(&reply, operation.name(), &sim);
            assert!(
                reply.latency < IMMEDIATE,
                "{} answered after {:?}",
                operation.name(),
                reply.latency
            );
        }
        let check = sim.host.request(HostOperation::HotBackup, REPLY).unwrap();
        assert_eq!(
            check.vss_flags(),
            Some(hv_vss_proto::HOT_BACKUP_NO_AUTO_RECOVERY)
        );
        assert_nothing_frozen(&sim);
        // Once a daemon starts, backups work.
        sim.start_daemon().unwrap();
        full_backup(&mut sim, &mounts);
        assert_exactly_once(&mut sim);
    });
}

// 8. A second daemon instance exits with a clear error; a non-root user
// cannot open either device.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn e2e_8_second_instance_and_non_root_are_refused() {
    e2e("e2e_8_refusals", Duration::from_secs(60), EXT4, || {
        let mut sim = started(&options(EXT4));
        let mounts = mount_points(&sim);
        let mut second = sim.daemon_setup.spawn().unwrap();
        let status = second
            .wait_exit(Duration::from_secs(10))
            .expect("a second daemon must exit, not run");
        assert_eq!(
            status.code(),
            Some(69),
            "second instance: {status}\n{}",
            second.log()
        );
        let log = second.log();
        assert!(
            log.contains("busy") || log.contains("already running") || log.contains("pidfile"),
            "the second instance says why:\n{log}"
        );
        assert!(
            sim.daemon().unwrap().is_running(),
            "the first daemon is unaffected"
        );

        for device in DeviceKind::ALL {
            let output = as_nobody(Command::new("sh").args(["-c", "exec 3<>\"$1\"", "sh"]))
                .arg(sim.device_path(device))
                .output()
                .unwrap();
            assert!(!output.status.success(), "nobody opened {device}");
            assert!(
                String::from_utf8_lossy(&output.stderr).contains("Permission denied"),
                "{device}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        full_backup(&mut sim, &mounts);
        assert_exactly_once(&mut sim);
    });
}

// 9. A randomized soak of at least 200 transactions mixing all of the
// above: nothing left frozen, every host request answered exactly once.
#[test]
#[ignore = "end-to-end: needs root, FUSE and loop devices; run by .ci/checks/40-e2e.sh"]
fn e2e_9_randomized_soak() {
    e2e(
        "e2e_9_soak",
        Duration::from_secs(600),
        &[FsType::PRIMARY, FsType::SECONDARY],
        || {
            let seed = std::env::var("HV_VSS_SOAK_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15);
            println!("soak seed {seed} (set HV_VSS_SOAK_SEED to replay)");
            let mut rng = XorShift::new(seed);
            let mut options = options(&[FsType::PRIMARY, FsType::SECONDARY]);
            options.kernel = KernelOptions {
                deadline: Duration::from_secs(3),
                rollback: Duration::from_secs(2),
            };
            options.freeze_limit = Some(Duration::from_secs(4));
            let mut sim = started(&options);
            let mounts = mount_points(&sim);
            let mut app: Option<App> = None;
            let mut transactions = 0usize;
            let mut counts = std::collections::BTreeMap::<&str, usize>::new();
            while transactions < 200 {
                let action = match rng.below(100) {
                    0..=29 => "full backup",
                    30..=39 => "check only",
                    40..=49 => "thaw without freeze",
                    50..=59 => "engine-only operation",
                    60..=67 => "malformed packet",
                    68..=75 => "freeze, no thaw",
                    76..=81 => "overlapping freeze",
                    82..=87 => "toggle app",
                    88..=91 => "failing app",
                    92..=95 => "negotiate",
                    _ => "sigkill daemon while frozen",
                };
                *counts.entry(action).or_default() += 1;
                let before = sim.host.ledger().len();
                match action {
                    "full backup" => full_backup(&mut sim, &mounts),
                    "check only" => {
                        request_ok(&mut sim, HostOperation::HotBackup, "HOT_BACKUP");
                    }
                    "thaw without freeze" => {
                        sim.host.request(HostOperation::Thaw, REPLY).unwrap();
                        assert_nothing_frozen(&sim);
                    }
                    "engine-only operation" => soak_engine_only_operation(&mut sim, &mut rng),
                    "malformed packet" => soak_malformed_packet(&mut sim, &mut rng),
                    "freeze, no thaw" => {
                        request_ok(&mut sim, HostOperation::Freeze, "FREEZE");
                        // Either the host thaws late, or the watchdog does.
                        if rng.below(2) == 0 {
                            std::thread::sleep(Duration::from_millis(500));
                            request_ok(&mut sim, HostOperation::Thaw, "THAW");
                        } else {
                            wait_thawed(&sim, Duration::from_secs(15), "watchdog");
                            sim.host.request(HostOperation::Thaw, REPLY).unwrap();
                        }
                        assert_nothing_frozen(&sim);
                    }
                    "overlapping freeze" => {
                        let first = sim.host.send_operation(HostOperation::Freeze, 0).unwrap();
                        let second = sim.host.send_operation(HostOperation::Freeze, 0).unwrap();
                        let first = sim.host.wait(first, REPLY).unwrap();
                        let second = sim.host.wait(second, REPLY).unwrap();
                        assert!(
                            !(first.succeeded() && second.succeeded()),
                            "two overlapping FREEZEs cannot both succeed"
                        );
                        sim.host.request(HostOperation::Thaw, REPLY).unwrap();
                        wait_thawed(
                            &sim,
                            Duration::from_secs(5),
                            "THAW after overlapping FREEZEs",
                        );
                    }
                    "toggle app" => {
                        if app.take().is_none() {
                            app = Some(App::start(&sim, &["-T", "2", "-f", "true", "-t", "true"]));
                        } else {
                            assert!(sim.kernel().wait_until(Duration::from_secs(5), |k| {
                                !k.is_open(DeviceKind::App)
                            }));
                        }
                    }
                    "failing app" => {
                        drop(app.take());
                        assert!(
                            sim.kernel().wait_until(Duration::from_secs(5), |k| !k
                                .is_open(DeviceKind::App))
                        );
                        let failing = App::start(&sim, &["-f", "false", "-t", "true"]);
                        request_failed(&mut sim, HostOperation::Freeze, "FREEZE, failing app");
                        assert_nothing_frozen(&sim);
                        drop(failing);
                        assert!(
                            sim.kernel().wait_until(Duration::from_secs(5), |k| !k
                                .is_open(DeviceKind::App))
                        );
                    }
                    "negotiate" => {
                        ok(&sim.host.negotiate(REPLY).unwrap(), "NEGOTIATE", &sim);
                    }
                    _ => {
                        request_ok(&mut sim, HostOperation::Freeze, "FREEZE");
                        sim.take_daemon().unwrap().kill_hard();
                        assert!(
                            sim.kernel()
                                .wait_until(Duration::from_secs(5), |k| !k.is_open(DeviceKind::Fs))
                        );
                        request_failed(&mut sim, HostOperation::Thaw, "THAW, daemon dead");
                        sim.start_daemon().unwrap();
                        wait_thawed(&sim, Duration::from_secs(10), "restart thaws");
                    }
                }
                transactions += sim.host.ledger().len() - before;
            }
            drop(app);
            assert_nothing_frozen(&sim);
            assert_exactly_once(&mut sim);
            println!("soak: {transactions} host requests, actions {counts:?}");
            assert!(sim.daemon().unwrap().is_running());
        },
    );
}
