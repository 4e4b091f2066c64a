//! Which driver owns the Hyper-V VSS channel: the base system's `hvvss`
//! (in hv_utils / GENERIC), this package's `hvvss_rs` (hv_vss_rs.ko), or
//! none. Read from the kernel's device sysctls (`dev.<driver>.<unit>`),
//! which exist exactly while a driver is attached, as devinfo(8) shows.

use std::path::Path;

use hv_vss_proto::FS_DEVICE_NAME;
use serde::Serialize;

/// The driver on the VSS channel and the device it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// `hvvss_rs`, `hvvss`, or `None` when no driver is attached.
    pub driver: Option<String>,
    /// What that means, for people.
    pub description: String,
    /// Whether `hv_fsvss_dev` exists in the device directory.
    pub device_present: bool,
}

/// Our driver's name (kmod/glue/hv_vss_rs.c), then the base system's
/// (sys/dev/hyperv/utilities/hv_snapshot.c).
const DRIVERS: [(&str, &str); 2] = [
    ("hvvss_rs", "the hyperv-vss kernel module hv_vss_rs.ko"),
    (
        "hvvss",
        "the base system's driver (hv_vss(4)); the daemon works with it",
    ),
];

pub fn channel(device_dir: &Path) -> Channel {
    let device_present = device_dir.join(FS_DEVICE_NAME).exists();
    let attached = DRIVERS.iter().find(|(name, _)| is_attached(name));
    match attached {
        Some((name, what)) => Channel {
            driver: Some((*name).to_owned()),
            description: format!("{name}0, {what}"),
            device_present,
        },
        None => Channel {
            driver: None,
            description: no_driver(device_present),
            device_present,
        },
    }
}

#[cfg(target_os = "freebsd")]
fn is_attached(driver: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(format!("dev.{driver}.0.%driver")) else {
        return false;
    };
    let mut value = [0u8; 64];
    let mut len = value.len();
    // SAFETY: `name` is NUL-terminated; `value` and `len` describe a valid,
    // writable buffer; no new value is set.
    let rc = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            &raw mut len,
            std::ptr::null(),
            0,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "freebsd"))]
fn is_attached(_driver: &str) -> bool {
    false
}

fn no_driver(device_present: bool) -> String {
    if cfg!(target_os = "freebsd") {
        "no driver is attached to a VSS channel: not a Hyper-V guest, the VSS \
         integration service is off on the host, or the driver is not loaded"
            .to_owned()
    } else if device_present {
        "not FreeBSD: the device is a simulated one (hv-vss-sim)".to_owned()
    } else {
        "not FreeBSD: no VSS driver here (builds for Linux exist for development)".to_owned()
    }
}
