//! A scripted device backend: requests are queued by hand and answers
//! recorded, with no engine behind. It tests the device layer and device
//! clients (the app library, `hv_vss_app`) independently of the engine.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hv_vss_proto::DeviceMessage;
use zerocopy::{FromBytes, IntoBytes};

use crate::device_nodes::DeviceMount;
use crate::devices::{DeviceBackend, DeviceErrno, DeviceKind, PollWaker, Readiness};
use crate::environment::{check_devices, report_skip};

/// Scripted devices mounted in a fresh temporary directory: what a test of
/// a device client starts from (on FreeBSD, of a client in another process:
/// CUSE refuses opens by the process serving the device). `None` where
/// the device layer cannot be used here, after
/// printing `SKIP <test>: <reason>` (a failure when `HV_VSS_E2E_REQUIRED=1`).
/// Keep the directory and the mount alive for the test's duration.
#[must_use]
pub fn mount_for_test(
    test: &str,
) -> Option<(tempfile::TempDir, Arc<ScriptedDevices>, DeviceMount)> {
    if let Err(missing) = check_devices() {
        report_skip(test, &missing);
        return None;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let backend = Arc::new(ScriptedDevices::default());
    let dyn_backend: Arc<dyn DeviceBackend> = backend.clone();
    let mount = DeviceMount::new(dir.path(), &dyn_backend).expect("mounting the scripted devices");
    Some((dir, backend, mount))
}

#[derive(Debug, Default)]
pub struct ScriptedDevices {
    state: Mutex<State>,
    waker: Mutex<PollWaker>,
}

#[derive(Debug, Default)]
struct State {
    open: [bool; 2],
    queued: [VecDeque<DeviceMessage>; 2],
    answers: Vec<(DeviceKind, DeviceMessage)>,
}

impl ScriptedDevices {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `message` for `device` and wakes its pollers.
    pub fn queue(&self, device: DeviceKind, message: DeviceMessage) {
        self.state().queued[device.index()].push_back(message);
        self.waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .wake(device);
    }

    /// Every answer written so far.
    pub fn answers(&self) -> Vec<(DeviceKind, DeviceMessage)> {
        self.state().answers.clone()
    }

    pub fn is_open(&self, device: DeviceKind) -> bool {
        self.state().open[device.index()]
    }

    /// Waits until `count` answers were written.
    pub fn wait_answers(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Vec<(DeviceKind, DeviceMessage)> {
        let deadline = Instant::now() + timeout;
        loop {
            let answers = self.answers();
            if answers.len() >= count || Instant::now() >= deadline {
                return answers;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl DeviceBackend for ScriptedDevices {
    fn open(&self, device: DeviceKind) -> Result<(), DeviceErrno> {
        let mut state = self.state();
        let open = &mut state.open[device.index()];
        if *open {
            return Err(DeviceErrno::BUSY);
        }
        *open = true;
        Ok(())
    }

    fn close(&self, device: DeviceKind) {
        self.state().open[device.index()] = false;
    }

    fn read_request(&self, device: DeviceKind) -> Result<[u8; 64], DeviceErrno> {
        let message = self.state().queued[device.index()]
            .pop_front()
            .unwrap_or_else(DeviceMessage::nothing_queued);
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(message.as_bytes());
        Ok(bytes)
    }

    fn write_answer(&self, device: DeviceKind, message: &[u8; 64]) -> Result<(), DeviceErrno> {
        let message = DeviceMessage::read_from_bytes(message).map_err(|_| DeviceErrno::INVALID)?;
        self.state().answers.push((device, message));
        Ok(())
    }

    fn readiness(&self, device: DeviceKind) -> Readiness {
        Readiness {
            readable: !self.state().queued[device.index()].is_empty(),
        }
    }

    fn attach_waker(&self, waker: PollWaker) {
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = waker;
    }
}
