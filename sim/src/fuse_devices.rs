//! The two simulated devices as files in a FUSE mount.
//!
//! CUSE (character devices in userspace) is not available on the machines
//! this runs on, but a plain FUSE file supports everything the daemon does
//! with the real devices: `open` (single opener, `EBUSY`), `ioctl` with
//! fixed-size `_IOR`/`_IOW` requests (FUSE forwards "restricted" ioctls whose
//! size and direction are encoded in the request number), and `poll` with
//! asynchronous wakeups through FUSE poll notifications. The request numbers
//! are Linux's encoding of the FreeBSD ones (`ioctl::LINUX_*` in proto).
//!
//! Files are `root:root 0640` and the mount uses `default_permissions` and
//! `allow_other`, so the kernel itself refuses other users with `EACCES`, as
//! devfs does for the real devices.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, IoctlFlags,
    LockOwner, MountOption, OpenFlags, PollEvents, PollFlags, PollHandle, PollNotifier, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyPoll,
    ReplyWrite, Request, SessionACL, WriteFlags,
};
use hv_vss_proto::ioctl;

use crate::devices::{DeviceBackend, DeviceErrno, DeviceKind, PollWaker};

/// Attributes never change, so the kernel may cache them for a long time.
const ATTR_TTL: Duration = Duration::from_secs(3600);
const DEVICE_MODE: u16 = 0o640;
const MESSAGE_LEN: usize = hv_vss_proto::device::DEVICE_MESSAGE_LEN;

/// Errors while exposing the devices.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(
        "cannot mount the simulated devices on {dir}: {source} (FUSE needs root and /dev/fuse; \
         is the fuse module loaded?)"
    )]
    Mount {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The devices mounted on a directory; unmounted when dropped.
///
/// Dropping also works while a process (say, a daemon under test) still
/// holds a device open: the mount is detached and its FUSE connection
/// aborted, so the opener gets `ENOTCONN` instead of keeping the mount alive.
#[derive(Debug)]
pub struct DeviceMount {
    dir: PathBuf,
    /// Number of the FUSE connection, for `/sys/fs/fuse/connections/N/abort`.
    connection: Option<u64>,
    session: Option<fuser::BackgroundSession>,
}

impl DeviceMount {
    /// Mounts `hv_fsvss_dev` and `hv_appvss_dev` served by `backend` on the
    /// existing directory `dir`.
    pub fn new(dir: &Path, backend: &Arc<dyn DeviceBackend>) -> Result<Self, MountError> {
        let pollers = Arc::new(Pollers::default());
        let fs = DeviceFs {
            backend: Arc::clone(backend),
            pollers: Arc::clone(&pollers),
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("hv-vss-sim".to_owned()),
            MountOption::Subtype("hv-vss-sim".to_owned()),
            MountOption::DefaultPermissions,
            MountOption::NoExec,
            MountOption::NoSuid,
            MountOption::NoDev,
        ];
        // allow_other: the kernel then applies the files' modes to every user.
        config.acl = SessionACL::All;
        let mount_error = |source| MountError::Mount {
            dir: dir.to_owned(),
            source,
        };
        let session = fuser::Session::new(fs, dir, &config).map_err(mount_error)?;
        let notifier = session.notifier();
        let session = session.spawn().map_err(mount_error)?;
        // From here on, dropping `mount` unmounts.
        let mount = DeviceMount {
            dir: dir.to_owned(),
            connection: std::fs::metadata(dir)
                .ok()
                .map(|meta| nix::sys::stat::minor(meta.dev())),
            session: Some(session),
        };
        backend.attach_waker(PollWaker::new(move |device| {
            for handle in pollers.take(device) {
                // A failed notification means the poller is gone (unmount
                // or process exit): nothing left to wake.
                let _ = notifier.poll(handle);
            }
        }));
        Ok(mount)
    }

    /// The directory holding the device files (pass it to the daemon).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of one device file.
    pub fn path(&self, device: DeviceKind) -> PathBuf {
        self.dir.join(device.file_name())
    }
}

impl DeviceMount {
    /// Takes the devices away now, as an unloaded driver would: the mount
    /// is detached and its FUSE connection aborted, so a process holding a
    /// device open gets `POLLERR`/`ENOTCONN` from then on. Idempotent; the
    /// drop does the same.
    pub fn abort(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        // Detach first so no new opener can find the files, then abort the
        // connection so openers and the session thread are released.
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        if let Some(connection) = self.connection {
            let abort = format!("/sys/fs/fuse/connections/{connection}/abort");
            let _ = std::fs::write(abort, b"1");
        }
        // The mount is already gone; fuser notices and only joins its thread.
        let _ = session.umount_and_join();
    }
}

impl Drop for DeviceMount {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Poll handles the kernel asked us to notify, per device.
#[derive(Debug, Default)]
struct Pollers {
    handles: Mutex<[Vec<PollHandle>; 2]>,
}

impl Pollers {
    fn register(&self, device: DeviceKind, handle: PollHandle) {
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        let list = &mut handles[device.index()];
        if !list.iter().any(|known| known.0 == handle.0) {
            list.push(handle);
        }
    }

    fn take(&self, device: DeviceKind) -> Vec<PollHandle> {
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut handles[device.index()])
    }
}

struct DeviceFs {
    backend: Arc<dyn DeviceBackend>,
    pollers: Arc<Pollers>,
}

const ROOT: INodeNo = INodeNo::ROOT;

fn inode(device: DeviceKind) -> INodeNo {
    match device {
        DeviceKind::Fs => INodeNo(2),
        DeviceKind::App => INodeNo(3),
    }
}

fn device_of(ino: INodeNo) -> Option<DeviceKind> {
    DeviceKind::ALL.into_iter().find(|&d| inode(d) == ino)
}

fn errno(e: DeviceErrno) -> Errno {
    Errno::from_i32(e.0)
}

fn attr(ino: INodeNo, kind: FileType, perm: u16) -> FileAttr {
    FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 512,
    }
}

fn device_attr(device: DeviceKind) -> FileAttr {
    attr(inode(device), FileType::RegularFile, DEVICE_MODE)
}

impl Filesystem for DeviceFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = DeviceKind::ALL
            .into_iter()
            .find(|d| parent == ROOT && OsStr::new(d.file_name()) == name);
        match found {
            Some(device) => reply.entry(&ATTR_TTL, &device_attr(device), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == ROOT {
            reply.attr(&ATTR_TTL, &attr(ROOT, FileType::Directory, 0o755));
        } else if let Some(device) = device_of(ino) {
            reply.attr(&ATTR_TTL, &device_attr(device));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (
                inode(DeviceKind::Fs),
                FileType::RegularFile,
                DeviceKind::Fs.file_name(),
            ),
            (
                inode(DeviceKind::App),
                FileType::RegularFile,
                DeviceKind::App.file_name(),
            ),
        ];
        for (next, (ino, kind, name)) in (1u64..).zip(entries).skip_while(|(n, _)| *n <= offset) {
            if reply.add(ino, next, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(device) = device_of(ino) else {
            reply.error(Errno::EISDIR);
            return;
        };
        match self.backend.open(device) {
            // Direct I/O and no seeking: this is a device, not a file.
            Ok(()) => reply.opened(
                FileHandle(ino.0),
                FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NONSEEKABLE,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(device) = device_of(ino) {
            self.backend.close(device);
        }
        reply.ok();
    }

    // The real devices have no read/write entry points: everything goes
    // through ioctl.
    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        reply.error(Errno::ENODEV);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::ENODEV);
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let Some(device) = device_of(ino) else {
            reply.error(Errno::ENOTTY);
            return;
        };
        if cmd == ioctl::LINUX_READ {
            match self.backend.read_request(device) {
                Ok(message) => reply.ioctl(0, &message),
                Err(e) => reply.error(errno(e)),
            }
        } else if cmd == ioctl::LINUX_WRITE {
            let Ok(message) = <&[u8; MESSAGE_LEN]>::try_from(in_data) else {
                reply.error(Errno::EINVAL);
                return;
            };
            match self.backend.write_answer(device, message) {
                Ok(()) => reply.ioctl(0, &[]),
                Err(e) => reply.error(errno(e)),
            }
        } else {
            reply.error(Errno::ENOTTY);
        }
    }

    fn poll(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        ph: PollNotifier,
        events: PollEvents,
        flags: PollFlags,
        reply: ReplyPoll,
    ) {
        let Some(device) = device_of(ino) else {
            reply.error(Errno::EINVAL);
            return;
        };
        // Register before looking at the state: a wakeup that happens in
        // between then notifies the handle instead of being lost.
        if flags.contains(PollFlags::FUSE_POLL_SCHEDULE_NOTIFY) {
            self.pollers.register(device, ph.handle());
        }
        let mut revents = PollEvents::empty();
        if self.backend.readiness(device).readable {
            revents |= events & (PollEvents::POLLIN | PollEvents::POLLRDNORM);
        }
        reply.poll(revents);
    }
}
