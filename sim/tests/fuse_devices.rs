//! The FUSE device layer on this kernel: single opener, ioctl numbers,
//! poll wakeups and permissions, with a scripted backend (no engine).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use hv_vss_proto::{DeviceMessage, DeviceOperation, DeviceStatus, ioctl};
use hv_vss_sim::devices::DeviceKind;
use hv_vss_sim::scripted::mount_for_test;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

nix::ioctl_read_bad!(device_read, ioctl::LINUX_READ, DeviceMessage);
nix::ioctl_write_ptr_bad!(device_write, ioctl::LINUX_WRITE, DeviceMessage);

fn open_rw(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

#[test]
fn second_open_is_busy_until_the_first_closes() {
    let Some((_dir, _backend, mount)) =
        mount_for_test("second_open_is_busy_until_the_first_closes")
    else {
        return;
    };
    let path = mount.path(DeviceKind::Fs);
    let first = open_rw(&path).unwrap();
    let second = open_rw(&path).unwrap_err();
    assert_eq!(second.raw_os_error(), Some(libc::EBUSY));
    // The other device is independent.
    let _app = open_rw(&mount.path(DeviceKind::App)).unwrap();
    drop(first);
    // FUSE sends RELEASE asynchronously after close(2): allow it to land.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match open_rw(&path) {
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("reopen failed: {e}"),
        }
    }
}

#[test]
fn files_are_root_only_0640() {
    let Some((_dir, _backend, mount)) = mount_for_test("files_are_root_only_0640") else {
        return;
    };
    for device in DeviceKind::ALL {
        let meta = std::fs::metadata(mount.path(device)).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640, "{device}");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{device}");
    }
}

#[test]
fn ioctls_carry_messages_both_ways() {
    let Some((_dir, backend, mount)) = mount_for_test("ioctls_carry_messages_both_ways") else {
        return;
    };
    let file = open_rw(&mount.path(DeviceKind::Fs)).unwrap();
    let mut message = DeviceMessage::new(DeviceOperation::None, 0);
    // SAFETY: valid fd and a valid 64-byte out buffer.
    unsafe { device_read(file.as_raw_fd(), &raw mut message) }.unwrap();
    assert_eq!(
        message.status(),
        Ok(DeviceStatus::Fail),
        "empty queue reads 'nothing'"
    );

    backend.queue(
        DeviceKind::Fs,
        DeviceMessage::new(DeviceOperation::Freeze, 77),
    );
    // SAFETY: as above.
    unsafe { device_read(file.as_raw_fd(), &raw mut message) }.unwrap();
    assert_eq!(message.operation(), Ok(DeviceOperation::Freeze));
    assert_eq!(message.msgid(), 77);

    let answer = message.with_status(DeviceStatus::Success);
    // SAFETY: valid fd and a valid 64-byte in buffer.
    unsafe { device_write(file.as_raw_fd(), &raw const answer) }.unwrap();
    assert_eq!(backend.answers(), vec![(DeviceKind::Fs, answer)]);
}

#[test]
fn poll_wakes_when_a_request_is_queued() {
    let Some((_dir, backend, mount)) = mount_for_test("poll_wakes_when_a_request_is_queued") else {
        return;
    };
    let file = open_rw(&mount.path(DeviceKind::App)).unwrap();
    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
    assert_eq!(
        poll(&mut fds, PollTimeout::ZERO).unwrap(),
        0,
        "nothing queued yet"
    );

    let producer = {
        let backend = backend.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            backend.queue(
                DeviceKind::App,
                DeviceMessage::new(DeviceOperation::Check, 1),
            );
        })
    };
    let started = Instant::now();
    let ready = poll(&mut fds, PollTimeout::from(10_000u16)).unwrap();
    let waited = started.elapsed();
    producer.join().unwrap();
    assert_eq!(ready, 1);
    assert!(fds[0].revents().unwrap().contains(PollFlags::POLLIN));
    // Woken by the notification, not by the 10 s timeout.
    assert!(waited < Duration::from_secs(5), "poll took {waited:?}");
}

#[test]
fn other_users_cannot_open_the_devices() {
    let Some((_dir, _backend, mount)) = mount_for_test("other_users_cannot_open_the_devices")
    else {
        return;
    };
    for device in DeviceKind::ALL {
        let path = mount.path(device);
        let status = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg("sh")
            .arg("-c")
            .arg("exec 3<>\"$1\"")
            .arg("sh")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!status.status.success(), "nobody opened {device}");
        let stderr = String::from_utf8_lossy(&status.stderr);
        assert!(stderr.contains("Permission denied"), "{device}: {stderr}");
    }
}
