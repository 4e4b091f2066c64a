//! FreeBSD: the two simulated devices as real character devices, made with
//! CUSE (cuse(3); the kernel side is sys/fs/cuse/cuse.c, `kldload cuse`).
//!
//! Processes open them, ioctl them with FreeBSD's own IOCHVVSSREAD /
//! IOCHVVSSWRITE numbers and poll them exactly as they would
//! `/dev/hv_fsvss_dev`; the kernel forwards each call to this process as a
//! command, which [`crate::cuse_protocol::answer`] turns into a
//! [`DeviceBackend`] call. The nodes are `root:wheel 0640` and devfs checks
//! those modes itself.
//!
//! Facts of cuse.c that shape this module:
//! - One server per process (the first `/dev/cuse` open); every device it
//!   creates lives under `/dev`. The nodes are made under a unique
//!   `/dev/hvvsssim/<pid>.<n>/`, and [`DeviceMount`] puts symbolic links
//!   named `hv_fsvss_dev` and `hv_appvss_dev` in the directory it is given,
//!   so callers see the same layout as with FUSE (`-D dir` for the daemon).
//! - A process cannot open a device its own server made (EINVAL,
//!   cuse_client_open): the devices are for the child processes under test
//!   (the daemon, `hv_vss_app`), not for the test process itself.
//! - Destroying a device (`CUSE_IOCTL_DESTROY_DEV`) closes it under its
//!   openers, whose calls then fail: the "driver unloaded" of
//!   [`DeviceMount::abort`].
//!
//! The server's descriptor is close-on-exec and one thread serves every
//! command (none blocks, as with FUSE); both live as long as the process.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use nix::errno::Errno;

use crate::cuse_protocol::{self as protocol, Command, CreateDev, DataChunk, Peer};
use crate::devices::{DeviceBackend, DeviceErrno, DeviceKind, PollWaker};

const CUSE_DEVICE: &str = "/dev/cuse";
/// root:wheel 0640, as the real driver makes its nodes.
const DEVICE_MODE: libc::c_int = 0o640;
const WHEEL: u32 = 0;

nix::ioctl_read_bad!(get_command, protocol::GET_COMMAND, Command);
nix::ioctl_write_ptr_bad!(write_data, protocol::WRITE_DATA, DataChunk);
nix::ioctl_write_ptr_bad!(read_data, protocol::READ_DATA, DataChunk);
nix::ioctl_write_ptr_bad!(sync_command, protocol::SYNC_COMMAND, libc::c_int);
nix::ioctl_write_ptr_bad!(create_dev, protocol::CREATE_DEV, CreateDev);
nix::ioctl_write_ptr_bad!(destroy_dev, protocol::DESTROY_DEV, usize);
nix::ioctl_write_ptr_bad!(selwakeup, protocol::SELWAKEUP, libc::c_int);

/// Errors while exposing the devices.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot open {CUSE_DEVICE}: {0} (CUSE needs root and the cuse module: kldload cuse)")]
    Server(std::io::Error),
    #[error("cannot create /dev/{name} with CUSE: {errno}")]
    Create { name: String, errno: Errno },
    #[error("cannot link the simulated devices into {dir}: {source}")]
    Mount {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The devices' backend and which of the two a node is, per node key.
struct Node {
    backend: Arc<dyn DeviceBackend>,
    device: DeviceKind,
}

/// This process's CUSE server: the `/dev/cuse` descriptor, the nodes it
/// serves (by the key stored as their `struct cuse_dev *`) and the thread
/// that answers their commands.
struct Server {
    file: File,
    nodes: Mutex<HashMap<usize, Node>>,
    next_key: AtomicUsize,
}

impl Server {
    /// The process's server, started on first use.
    fn get() -> Result<&'static Server, MountError> {
        static SERVER: OnceLock<Result<&'static Server, String>> = OnceLock::new();
        SERVER
            .get_or_init(Server::start)
            .as_ref()
            .map(|server| *server)
            .map_err(|e| MountError::Server(std::io::Error::other(e.clone())))
    }

    fn start() -> Result<&'static Server, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(CUSE_DEVICE)
            .map_err(|e| e.to_string())?;
        // Lives as long as the process, like the kernel's server it stands for.
        let server: &'static Server = Box::leak(Box::new(Server {
            file,
            nodes: Mutex::new(HashMap::new()),
            next_key: AtomicUsize::new(1),
        }));
        std::thread::Builder::new()
            .name("hv-vss-sim-cuse".to_owned())
            .spawn(move || server.serve())
            .map_err(|e| format!("cannot start the CUSE thread: {e}"))?;
        Ok(server)
    }

    fn fd(&self) -> libc::c_int {
        self.file.as_raw_fd()
    }

    /// Answers commands forever: get one, carry it out, report the result.
    fn serve(&self) {
        loop {
            let mut command = Command::default();
            // SAFETY: the descriptor is /dev/cuse; the kernel writes one
            // struct cuse_command through the valid pointer.
            match unsafe { get_command(self.fd(), &raw mut command) } {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    // The server is unusable (the module is being unloaded):
                    // say so once a second rather than spin.
                    eprintln!("hv-vss-sim: CUSE_IOCTL_GET_COMMAND failed: {e}");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    continue;
                }
            }
            let node = self
                .nodes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&command.dev)
                .map(|node| (Arc::clone(&node.backend), node.device));
            let result = match node {
                Some((backend, device)) => protocol::answer(&command, device, &*backend, self),
                // A node destroyed after the kernel queued the command.
                None => protocol::ERR_OTHER,
            };
            // SAFETY: the kernel reads one int; it matches the command this
            // thread took (the kernel tracks it per thread).
            let _ = unsafe { sync_command(self.fd(), &raw const result) };
        }
    }

    fn wake_pollers(&self) {
        let unused: libc::c_int = 0;
        // SAFETY: CUSE_IOCTL_SELWAKEUP reads one (ignored) int.
        let _ = unsafe { selwakeup(self.fd(), &raw const unused) };
    }

    fn create(
        &self,
        name: &str,
        device: DeviceKind,
        backend: &Arc<dyn DeviceBackend>,
    ) -> Result<usize, MountError> {
        let create_error = |errno| MountError::Create {
            name: name.to_owned(),
            errno,
        };
        let devname = protocol::device_name(name).ok_or(create_error(Errno::EINVAL))?;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key,
                Node {
                    backend: Arc::clone(backend),
                    device,
                },
            );
        let request = CreateDev {
            dev: key,
            user_id: 0,
            group_id: WHEEL,
            permissions: DEVICE_MODE,
            devname,
        };
        // SAFETY: the kernel reads one struct cuse_create_dev through the
        // valid pointer; `dev` is an opaque key it hands back in commands.
        if let Err(errno) = unsafe { create_dev(self.fd(), &raw const request) } {
            self.forget(key);
            return Err(create_error(errno));
        }
        Ok(key)
    }

    /// Destroys the node (its openers' calls fail from now on).
    fn destroy(&self, key: usize) {
        // SAFETY: the kernel reads the key given at creation.
        let _ = unsafe { destroy_dev(self.fd(), &raw const key) };
        self.forget(key);
    }

    fn forget(&self, key: usize) {
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }
}

/// Copies through the kernel, for the command the calling thread holds.
impl Peer for Server {
    fn copy_out(&self, bytes: &[u8], peer_ptr: usize) -> Result<(), DeviceErrno> {
        let chunk = DataChunk {
            local_ptr: bytes.as_ptr() as usize,
            peer_ptr,
            length: bytes.len() as libc::c_ulong,
        };
        // SAFETY: the kernel copies `length` bytes from `local_ptr`, which
        // points into `bytes`, alive for the call.
        unsafe { write_data(self.fd(), &raw const chunk) }
            .map(drop)
            .map_err(|_| DeviceErrno(libc::EFAULT))
    }

    fn copy_in(&self, peer_ptr: usize, buffer: &mut [u8]) -> Result<(), DeviceErrno> {
        let chunk = DataChunk {
            local_ptr: buffer.as_mut_ptr() as usize,
            peer_ptr,
            length: buffer.len() as libc::c_ulong,
        };
        // SAFETY: the kernel copies `length` bytes to `local_ptr`, which
        // points into `buffer`, writable and alive for the call.
        unsafe { read_data(self.fd(), &raw const chunk) }
            .map(drop)
            .map_err(|_| DeviceErrno(libc::EFAULT))
    }
}

/// Which node this mount is, for unique names across a test run.
static MOUNTS: AtomicUsize = AtomicUsize::new(0);

/// The devices, linked into a directory; destroyed when dropped.
///
/// Dropping also works while a process holds a device open: its node is
/// destroyed under it, and its calls fail from then on.
#[derive(Debug)]
pub struct DeviceMount {
    dir: PathBuf,
    /// Node keys, one per [`DeviceKind`]; empty once aborted.
    keys: Vec<usize>,
    /// Whether `dir` holds links made by [`Self::new`] (removed on abort).
    links: bool,
}

impl DeviceMount {
    /// Creates `hv_fsvss_dev` and `hv_appvss_dev` served by `backend` and
    /// links them into the existing directory `dir`.
    pub fn new(dir: &Path, backend: &Arc<dyn DeviceBackend>) -> Result<Self, MountError> {
        let server = Server::get()?;
        let prefix = format!(
            "hvvsssim/{}.{}",
            std::process::id(),
            MOUNTS.fetch_add(1, Ordering::Relaxed)
        );
        // From here on, dropping `mount` destroys what was made.
        let mut mount = DeviceMount {
            dir: dir.to_owned(),
            keys: Vec::new(),
            links: true,
        };
        for device in DeviceKind::ALL {
            let name = format!("{prefix}/{}", device.file_name());
            mount.keys.push(server.create(&name, device, backend)?);
            let node = Path::new("/dev").join(&name);
            std::os::unix::fs::symlink(&node, mount.path(device)).map_err(|source| {
                MountError::Mount {
                    dir: dir.to_owned(),
                    source,
                }
            })?;
        }
        backend.attach_waker(PollWaker::new(move |_device| server.wake_pollers()));
        Ok(mount)
    }

    /// Creates the devices as `/dev/hv_fsvss_dev` and `/dev/hv_appvss_dev`
    /// themselves, where the driver makes them: what devd(8) sees (a CREATE
    /// event for `cdev=hv_fsvss_dev`) and the rc.d script checks. Fails if
    /// a driver already made them (a Hyper-V guest).
    pub fn at_system_paths(backend: &Arc<dyn DeviceBackend>) -> Result<Self, MountError> {
        let server = Server::get()?;
        let mut mount = DeviceMount {
            dir: PathBuf::from("/dev"),
            keys: Vec::new(),
            links: false,
        };
        for device in DeviceKind::ALL {
            mount
                .keys
                .push(server.create(device.file_name(), device, backend)?);
        }
        backend.attach_waker(PollWaker::new(move |_device| server.wake_pollers()));
        Ok(mount)
    }

    /// The directory holding the device links (pass it to the daemon).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of one device (a link to its node under /dev).
    pub fn path(&self, device: DeviceKind) -> PathBuf {
        self.dir.join(device.file_name())
    }

    /// Takes the devices away now, as an unloaded driver would: the nodes
    /// are destroyed under their openers and the links removed.
    /// Idempotent; the drop does the same.
    pub fn abort(&mut self) {
        let Ok(server) = Server::get() else {
            return;
        };
        for key in self.keys.drain(..) {
            server.destroy(key);
        }
        // Never remove anything from /dev itself: devfs removes destroyed
        // nodes, and a file there that remains is someone else's.
        if std::mem::take(&mut self.links) {
            for device in DeviceKind::ALL {
                let _ = std::fs::remove_file(self.path(device));
            }
        }
    }
}

impl Drop for DeviceMount {
    fn drop(&mut self) {
        self.abort();
    }
}
