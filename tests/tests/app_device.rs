//! The application side without the engine: the `hv-vss-app` library and
//! the `hv_vss_app` binary against the FUSE devices with a scripted backend.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use hv_vss_app::{AppDevice, AppError, Outcome};
use hv_vss_proto::{DeviceMessage, DeviceOperation, DeviceStatus};
use hv_vss_sim::devices::DeviceKind;
use hv_vss_sim::scripted::mount_for_test;

#[test]
fn library_waits_reads_and_answers() {
    let Some((_dir, backend, mount)) = mount_for_test("library_waits_reads_and_answers") else {
        return;
    };
    let device = AppDevice::open_in(mount.dir()).unwrap();
    assert!(matches!(
        AppDevice::open_in(mount.dir()),
        Err(AppError::Busy { .. })
    ));
    assert_eq!(device.wait(Some(Duration::from_millis(50))).unwrap(), None);
    backend.queue(
        DeviceKind::App,
        DeviceMessage::new(DeviceOperation::Freeze, 42),
    );
    let request = device.wait(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!(request.operation(), DeviceOperation::Freeze);
    assert_eq!(request.msgid(), 42);
    device.answer(&request, Outcome::Failure).unwrap();
    let answers = backend.answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].1.msgid(), 42);
    assert_eq!(answers[0].1.status(), Ok(DeviceStatus::Fail));
    assert_eq!(answers[0].1.operation(), Ok(DeviceOperation::Freeze));
}

#[test]
fn unknown_operations_are_answered_with_failure() {
    let Some((_dir, backend, mount)) =
        mount_for_test("unknown_operations_are_answered_with_failure")
    else {
        return;
    };
    let device = AppDevice::open_in(mount.dir()).unwrap();
    let mut odd = DeviceMessage::new(DeviceOperation::Check, 7);
    odd.opt = 99;
    backend.queue(DeviceKind::App, odd);
    assert!(matches!(
        device.wait(Some(Duration::from_secs(5))),
        Err(AppError::UnknownOperation { opt: 99, msgid: 7 })
    ));
    assert_eq!(backend.answers()[0].1.status(), Ok(DeviceStatus::Fail));
}

#[test]
fn the_command_line_tool_runs_commands_and_answers() {
    let binaries = hv_vss_e2e::built_binaries().unwrap();
    let Some((_dir, backend, mount)) =
        mount_for_test("the_command_line_tool_runs_commands_and_answers")
    else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("ran");
    let mut app = Command::new(&binaries.app)
        .args(["-v", "-T", "1", "-d"])
        .arg(mount.path(DeviceKind::App))
        .arg("-f")
        .arg(format!("echo \"$HV_VSS_OPERATION\" >> {}", log.display()))
        .arg("-t")
        .arg(format!("echo \"$HV_VSS_OPERATION\" >> {}", log.display()))
        .arg("-c")
        .arg("sleep 5")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !backend.is_open(DeviceKind::App) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    backend.queue(
        DeviceKind::App,
        DeviceMessage::new(DeviceOperation::Freeze, 1),
    );
    backend.queue(
        DeviceKind::App,
        DeviceMessage::new(DeviceOperation::Thaw, 2),
    );
    // CHECK runs `sleep 5` with a 1 s timeout: killed, answered failure.
    backend.queue(
        DeviceKind::App,
        DeviceMessage::new(DeviceOperation::Check, 3),
    );
    let answers = backend.wait_answers(3, Duration::from_secs(15));
    let summary: Vec<(u64, Result<DeviceStatus, _>)> = answers
        .iter()
        .map(|(_, m)| (m.msgid(), m.status()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, Ok(DeviceStatus::Success)),
            (2, Ok(DeviceStatus::Success)),
            (3, Ok(DeviceStatus::Fail))
        ]
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "freeze\nthaw\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(app.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = app.wait().unwrap();
    assert!(status.success(), "hv_vss_app exits 0 on SIGTERM: {status}");
}
