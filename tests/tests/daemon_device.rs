//! The real daemon against the FUSE device with a scripted backend (no
//! engine): the device ABI between `hv_vssd` and the kernel, checked
//! on real loop-mounted filesystems.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hv_vss_e2e::{built_binaries, e2e};
use hv_vss_proto::{DeviceMessage, DeviceOperation, DeviceStatus};
use hv_vss_sim::daemon::DaemonSetup;
use hv_vss_sim::devices::{DeviceBackend, DeviceKind};
use hv_vss_sim::fuse_devices::DeviceMount;
use hv_vss_sim::loopfs::{FsType, LoopFilesystems};
use hv_vss_sim::scripted::ScriptedDevices;

#[test]
fn daemon_answers_check_freeze_thaw_through_the_device() {
    e2e(
        "daemon_device",
        Duration::from_secs(60),
        &[FsType::Ext4, FsType::Xfs],
        || {
            let filesystems = LoopFilesystems::create(&[FsType::Ext4, FsType::Xfs]).unwrap();
            let scratch = tempfile::tempdir().unwrap();
            let dev = scratch.path().join("dev");
            std::fs::create_dir(&dev).unwrap();
            let backend = Arc::new(ScriptedDevices::default());
            let dyn_backend: Arc<dyn DeviceBackend> = backend.clone();
            let mount = DeviceMount::new(&dev, &dyn_backend).unwrap();
            let setup = DaemonSetup {
                binary: built_binaries().unwrap().daemon,
                device_dir: mount.dir().to_owned(),
                work_dir: scratch.path().join("daemon"),
                include: filesystems
                    .iter()
                    .map(|f| f.mount_point().to_owned())
                    .collect(),
                freeze_limit: None,
                hook_timeout: None,
            };
            let daemon = setup.spawn().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !backend.is_open(DeviceKind::Fs) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(
                backend.is_open(DeviceKind::Fs),
                "daemon log:\n{}",
                daemon.log()
            );

            let mut expected = Vec::new();
            for (msgid, operation, frozen_after) in [
                (11, DeviceOperation::Check, 0),
                (12, DeviceOperation::Freeze, 2),
                (13, DeviceOperation::Thaw, 0),
            ] {
                backend.queue(DeviceKind::Fs, DeviceMessage::new(operation, msgid));
                expected.push((msgid, operation, DeviceStatus::Success));
                let answers = backend.wait_answers(expected.len(), Duration::from_secs(15));
                let got: Vec<_> = answers
                    .iter()
                    .map(|(_, m)| (m.msgid(), m.operation().unwrap(), m.status().unwrap()))
                    .collect();
                assert_eq!(got, expected, "daemon log:\n{}", daemon.log());
                assert_eq!(
                    filesystems.frozen().unwrap().len(),
                    frozen_after,
                    "after {operation:?}"
                );
            }
            println!("daemon log:\n{}", daemon.log());
            drop(daemon);
            drop(mount);
        },
    );
}
