//! FreeBSD: md(4) vnode disks over sparse images in a temporary directory,
//! formatted with newfs(8) (UFS2 with SU+J, soft updates only, or neither)
//! or holding a ZFS pool, mounted in the same directory; plus a read-only
//! UFS and a nullfs(5) mount for the daemon's skip policy.
//!
//! The harness itself suspends UFS only through /dev/ufssuspend
//! (sys/ufs/ffs/ffs_suspend.c), and only in a forked child:
//! - UFSSUSPEND refuses (EDEADLK) a caller with more than one thread or with
//!   a descriptor open for writing on the mount, and a test process has
//!   many threads; a child forked from it has one thread, and closes every
//!   inherited descriptor before the call;
//! - a suspension ends when its descriptor closes, also when the holder
//!   dies ("death = thaw"): the probe child exits at once, and the holder
//!   child of [`LoopFilesystem::freeze`] exits when the test drops its end
//!   of a pipe, or when the test process dies. Nothing the harness suspends
//!   can outlive it.
//!
//! It only ever suspends its own filesystems: each call first checks that
//! the mount point is the root of a mounted filesystem whose source is this
//! filesystem's md device, so an unmounted path (which would resolve to the
//! filesystem underneath, possibly `/`) is never suspended.
//!
//! Cleanup on drop (also during a panic), in order: release a held
//! suspension, unmount (forcibly if busy), destroy the pool, detach the md
//! device, remove the image.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use super::{FsType, LoopError, create_image, io_error, ioctl_error, path_str, run_tool};

const UFSSUSPEND_DEVICE: &std::ffi::CStr = c"/dev/ufssuspend";

/// `fsid_t` as ufs/ffs/fs.h passes it to UFSSUSPEND.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fsid {
    val: [i32; 2],
}

// ufs/ffs/fs.h: UFSSUSPEND _IOW('U', 1, fsid_t). (UFSRESUME is not needed:
// the suspending child exits, which resumes.)
const UFSSUSPEND: libc::c_ulong =
    nix::request_code_write!(b'U', 1, std::mem::size_of::<Fsid>()) as libc::c_ulong;

/// Image sizes: ZFS refuses vdevs under 64 MiB (SPA_MINDEVSIZE); sparse.
fn image_size(fs_type: FsType) -> u64 {
    match fs_type {
        FsType::Zfs => 128 << 20,
        _ => 64 << 20,
    }
}

/// newfs(8) flags for each UFS flavour (sbin/newfs/newfs.c: soft updates
/// and their journal are off unless -U / -j is given).
fn newfs_flags(fs_type: FsType) -> &'static [&'static str] {
    match fs_type {
        FsType::UfsSuj => &["-j"],
        FsType::UfsSu => &["-U"],
        _ => &[],
    }
}

/// A process-wide counter, for unique pool names within one test run.
static POOLS: AtomicU32 = AtomicU32::new(0);

/// The start of the name of every pool this process creates
/// (`hvsim<pid>_<n>`), for leftover checks.
pub fn pool_prefix() -> String {
    format!("hvsim{}_", std::process::id())
}

/// An attached md(4) unit.
#[derive(Debug, Clone)]
struct MdUnit {
    /// `mdN`, as mdconfig(8) prints and takes it.
    unit: String,
    /// `/dev/mdN`.
    device: PathBuf,
}

impl MdUnit {
    fn attach(image: &Path) -> Result<MdUnit, LoopError> {
        let image = path_str(image)?;
        let unit = run_tool("mdconfig", &["-a", "-t", "vnode", "-f", &image])?
            .trim()
            .to_owned();
        let device = PathBuf::from("/dev").join(&unit);
        Ok(MdUnit { unit, device })
    }

    fn detach(&self) {
        // -o force: detach even if a forced unmount left it referenced.
        let _ = run_tool("mdconfig", &["-d", "-u", &self.unit, "-o", "force"]);
    }
}

/// A child process holding a UFS suspension until its pipe closes.
#[derive(Debug)]
struct Holder {
    pid: Pid,
    release: OwnedFd,
}

impl Holder {
    /// Ends the suspension: closing the pipe makes the child exit, and its
    /// exit closes the suspension descriptor.
    fn release(self) {
        drop(self.release);
        let _ = wait_for_exit(self.pid);
    }
}

/// One md-backed filesystem; released, unmounted and detached on drop.
#[derive(Debug)]
pub struct LoopFilesystem {
    fs_type: FsType,
    image: PathBuf,
    mount_point: PathBuf,
    /// ZFS: the pool's name.
    pool: Option<String>,
    md: Option<MdUnit>,
    /// Mounts made, innermost last (unmounted in reverse).
    mounted: Vec<PathBuf>,
    held: Mutex<Option<Holder>>,
}

impl LoopFilesystem {
    /// Creates `<dir>/<name>.img`, attaches it as an md device, formats it
    /// and mounts it on `<dir>/<name>`.
    pub fn create(dir: &Path, name: &str, fs_type: FsType) -> Result<Self, LoopError> {
        let image = dir.join(format!("{name}.img"));
        let mount_point = dir.join(name);
        create_image(&image, image_size(fs_type))?;
        // From here on, Drop undoes whatever was done.
        let mut fs = LoopFilesystem {
            fs_type,
            image,
            mount_point,
            pool: None,
            md: None,
            mounted: Vec::new(),
            held: Mutex::new(None),
        };
        let md = MdUnit::attach(&fs.image)?;
        let device = path_str(&md.device)?;
        fs.md = Some(md);
        match fs_type {
            FsType::Zfs => fs.create_pool(&device)?,
            FsType::Nullfs => {
                // The UFS under the nullfs mount.
                let lower = dir.join(format!("{name}.lower"));
                fs.newfs_and_mount(&device, &lower, FsType::Ufs)?;
                mkdir(&fs.mount_point)?;
                let (lower_arg, target) = (path_str(&lower)?, path_str(&fs.mount_point)?);
                run_tool("mount", &["-t", "nullfs", &lower_arg, &target])?;
                fs.mounted.push(fs.mount_point.clone());
            }
            _ => {
                let mount_point = fs.mount_point.clone();
                fs.newfs_and_mount(&device, &mount_point, fs_type)?;
            }
        }
        Ok(fs)
    }

    /// newfs with this filesystem's flags, then the UFS mounted as
    /// `mount_as` is (see [`Self::mount_device`]).
    fn newfs_and_mount(
        &mut self,
        device: &str,
        mount_point: &Path,
        mount_as: FsType,
    ) -> Result<(), LoopError> {
        let mut args = newfs_flags(self.fs_type).to_vec();
        args.push(device);
        run_tool("newfs", &args)?;
        mkdir(mount_point)?;
        Self::mount_device(mount_as, Path::new(device), mount_point)?;
        self.mounted.push(mount_point.to_owned());
        Ok(())
    }

    /// A pool on the md device, its root dataset mounted on the mount
    /// point; `cachefile=none` keeps it out of /etc/zfs/zpool.cache, so a
    /// leftover pool is never imported at the next boot.
    fn create_pool(&mut self, device: &str) -> Result<(), LoopError> {
        let pool = format!("{}{}", pool_prefix(), POOLS.fetch_add(1, Ordering::Relaxed));
        let mount_point = path_str(&self.mount_point)?;
        run_tool(
            "zpool",
            &[
                "create",
                "-o",
                "cachefile=none",
                "-m",
                &mount_point,
                &pool,
                device,
            ],
        )?;
        self.pool = Some(pool);
        Ok(())
    }

    pub fn fs_type(&self) -> FsType {
        self.fs_type
    }

    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// The md(4) device (`/dev/mdN`).
    pub fn loop_device(&self) -> Option<&Path> {
        self.md.as_ref().map(|md| md.device.as_path())
    }

    /// The ZFS pool's name (ZFS only).
    pub fn pool(&self) -> Option<&str> {
        self.pool.as_deref()
    }

    /// Whether the filesystem is suspended right now: a forked child tries
    /// UFSSUSPEND (EBUSY: suspended; success: it was not, and the child's
    /// exit resumes it at once). Only UFS can be suspended; a filesystem
    /// that is not mounted is not frozen. Only call it while nobody else is
    /// freezing.
    pub fn is_frozen(&self) -> Result<bool, LoopError> {
        let Some(fsid) = self.own_ufs_fsid()? else {
            return Ok(false);
        };
        match probe_suspension(fsid) {
            Ok(Probe::WasSuspended) => Ok(true),
            Ok(Probe::WasNotSuspended) => Ok(false),
            Err(errno) => Err(ioctl_error("UFSSUSPEND probe", &self.mount_point, errno)),
        }
    }

    /// Suspends the filesystem in a holder child, as another party would
    /// (for tests that need a frozen state the daemon did not create);
    /// [`Self::thaw`] or the drop ends it.
    pub fn freeze(&self) -> Result<(), LoopError> {
        let Some(fsid) = self.own_ufs_fsid()? else {
            return Err(ioctl_error("UFSSUSPEND", &self.mount_point, Errno::EINVAL));
        };
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.is_some() {
            return Err(ioctl_error("UFSSUSPEND", &self.mount_point, Errno::EBUSY));
        }
        *held = Some(
            hold_suspension(fsid).map_err(|e| ioctl_error("UFSSUSPEND", &self.mount_point, e))?,
        );
        Ok(())
    }

    /// Ends a suspension made by [`Self::freeze`]; `Ok(false)` if it holds
    /// none. (A suspension by another process ends only with that
    /// process's descriptor: stop the daemon to thaw what it froze.)
    pub fn thaw(&self) -> Result<bool, LoopError> {
        let holder = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Ok(holder.map(Holder::release).is_some())
    }

    /// Unmounts it (for tests of a mount that disappears); the md device
    /// stays attached, so [`Self::mount_on`] can put it back. UFS only.
    pub fn unmount(&self) -> Result<(), LoopError> {
        nix::mount::unmount(&self.mount_point, nix::mount::MntFlags::empty())
            .map_err(|errno| ioctl_error("unmount", &self.mount_point, errno))
    }

    /// Mounts the filesystem's md device on `mount_point` (its own after
    /// [`Self::unmount`], or another directory). UFS only
    /// ([`Self::mount_device`] refuses the others).
    pub fn mount_on(&self, mount_point: &Path) -> Result<(), LoopError> {
        let Some(md) = &self.md else {
            return Err(LoopError::Unsupported(self.fs_type));
        };
        Self::mount_device(self.fs_type, &md.device, mount_point)
    }

    /// Mounts `device`, holding a UFS of `fs_type`, on `mount_point` (for
    /// guards that put a mount back without borrowing the filesystem).
    pub fn mount_device(
        fs_type: FsType,
        device: &Path,
        mount_point: &Path,
    ) -> Result<(), LoopError> {
        let options = match fs_type {
            FsType::UfsReadOnly => "ro",
            FsType::UfsSuj | FsType::UfsSu | FsType::Ufs => "rw",
            _ => return Err(LoopError::Unsupported(fs_type)),
        };
        let (device, target) = (path_str(device)?, path_str(mount_point)?);
        run_tool("mount", &["-t", "ufs", "-o", options, &device, &target]).map(drop)
    }

    /// Unmounts a mount point made with [`Self::mount_on`] elsewhere,
    /// forcibly if busy. Never fails: for cleanups. (A suspension made by
    /// the harness is released by the owning filesystem's drop.)
    pub fn unmount_other(mount_point: &Path) {
        if nix::mount::unmount(mount_point, nix::mount::MntFlags::empty()).is_err() {
            let _ = nix::mount::unmount(mount_point, nix::mount::MntFlags::MNT_FORCE);
        }
    }

    /// The fsid of this filesystem if it is a read-write UFS mounted on its
    /// mount point from its own md device; `None` otherwise (another type,
    /// or not mounted: the path then shows the filesystem underneath, which
    /// must never be suspended).
    fn own_ufs_fsid(&self) -> Result<Option<Fsid>, LoopError> {
        let Some(md) = &self.md else {
            return Ok(None);
        };
        // ZFS, nullfs and read-only UFS are never suspended, by anyone.
        if !self.fs_type.freezes() {
            return Ok(None);
        }
        let stat = statfs(&self.mount_point)?;
        let own = stat.mounted_on == self.mount_point
            && stat.source == md.device
            && stat.fs_type == "ufs";
        Ok(own.then_some(stat.fsid))
    }

    pub(super) fn cleanup(&mut self) {
        let _ = self.thaw();
        if let Some(pool) = self.pool.take() {
            // Unmounts the dataset and releases the vdev.
            let _ = run_tool("zpool", &["destroy", "-f", &pool]);
        }
        while let Some(mount_point) = self.mounted.pop() {
            Self::unmount_other(&mount_point);
            let _ = std::fs::remove_dir(&mount_point);
        }
        if let Some(md) = self.md.take() {
            md.detach();
        }
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_dir(&self.mount_point);
    }
}

impl Drop for LoopFilesystem {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn mkdir(path: &Path) -> Result<(), LoopError> {
    std::fs::create_dir_all(path).map_err(io_error(format!("creating {}", path.display())))
}

/// What statfs(2) says about the filesystem a path is on.
#[derive(Debug)]
struct FsStat {
    fsid: Fsid,
    mounted_on: PathBuf,
    source: PathBuf,
    fs_type: String,
}

fn statfs(path: &Path) -> Result<FsStat, LoopError> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| LoopError::Io {
        what: format!("path {} contains a NUL byte", path.display()),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `stat` has room for one
    // struct statfs, which the kernel fills on success.
    let result = unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if result != 0 {
        return Err(io_error(format!("statfs {}", path.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: statfs returned 0, so the struct is initialised.
    let stat = unsafe { stat.assume_init() };
    // SAFETY: fsid_t is `struct { int32_t val[2]; }` (sys/mount.h); libc
    // keeps the field private, so it is read as the same 8 bytes.
    let val: [i32; 2] = unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(stat.f_fsid) };
    Ok(FsStat {
        fsid: Fsid { val },
        mounted_on: PathBuf::from(c_text(&stat.f_mntonname)),
        source: PathBuf::from(c_text(&stat.f_mntfromname)),
        fs_type: c_text(&stat.f_fstypename),
    })
}

fn c_text(field: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .map(|&c| u8::from_ne_bytes(c.to_ne_bytes()))
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a probe child found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    WasSuspended,
    WasNotSuspended,
}

/// Exit codes of the forked children (beyond these: 64 + errno).
const CHILD_SUSPENDED_IT: i32 = 0;
const CHILD_FOUND_SUSPENDED: i32 = 1;
const CHILD_ERRNO_BASE: i32 = 64;

/// In a forked child (one thread, no inherited descriptor): opens
/// /dev/ufssuspend and suspends `fsid`. Returns the child's exit code for
/// the outcome, and leaves the descriptor open in `fd` on success.
///
/// Only async-signal-safe system calls: this runs between fork and exit
/// in a copy of a multi-threaded process.
fn child_suspend(fsid: &Fsid, fd: &mut libc::c_int) -> i32 {
    // SAFETY: a NUL-terminated path; plain open(2).
    *fd = unsafe { libc::open(UFSSUSPEND_DEVICE.as_ptr(), libc::O_RDWR) };
    if *fd < 0 {
        return CHILD_ERRNO_BASE + Errno::last_raw().min(190);
    }
    // SAFETY: UFSSUSPEND reads one fsid_t through the valid pointer.
    if unsafe { libc::ioctl(*fd, UFSSUSPEND, std::ptr::from_ref(fsid)) } == 0 {
        return CHILD_SUSPENDED_IT;
    }
    match Errno::last() {
        Errno::EBUSY => CHILD_FOUND_SUSPENDED,
        errno => CHILD_ERRNO_BASE + (errno as i32).min(190),
    }
}

fn exit_code_to_result(code: i32) -> Result<Probe, Errno> {
    match code {
        CHILD_SUSPENDED_IT => Ok(Probe::WasNotSuspended),
        CHILD_FOUND_SUSPENDED => Ok(Probe::WasSuspended),
        code if code > CHILD_ERRNO_BASE => Err(Errno::from_raw(code - CHILD_ERRNO_BASE)),
        _ => Err(Errno::EIO),
    }
}

/// Probes `fsid` in a forked child that exits at once (which resumes
/// whatever it suspended).
fn probe_suspension(fsid: Fsid) -> Result<Probe, Errno> {
    // SAFETY: the child only makes async-signal-safe system calls
    // (closefrom, open, ioctl, _exit) before exiting.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // SAFETY: closes every descriptor the child inherited, so the
            // kernel sees no writable descriptor on the mount.
            unsafe { libc::closefrom(0) };
            let mut fd = -1;
            let code = child_suspend(&fsid, &mut fd);
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or destructors; the exit closes `fd`, which
            // resumes a suspension made here.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match wait_for_exit(child)? {
            WaitStatus::Exited(_, code) => exit_code_to_result(code),
            _ => Err(Errno::EIO),
        },
    }
}

/// waitpid(2) for `child`, again when a signal interrupts it.
fn wait_for_exit(child: Pid) -> Result<WaitStatus, Errno> {
    loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => {}
            other => return other,
        }
    }
}

/// Suspends `fsid` in a forked child that keeps the suspension until the
/// returned holder is released (or the parent dies: the child then reads
/// end-of-file on its pipe and exits).
fn hold_suspension(fsid: Fsid) -> Result<Holder, Errno> {
    let (release_read, release_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (release_fd, report_fd) = (release_read.as_raw_fd(), report_write.as_raw_fd());
    // SAFETY: the child only makes async-signal-safe system calls (dup2,
    // closefrom, open, ioctl, write, read, _exit) before exiting.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // SAFETY: plain descriptor calls on descriptors this child owns:
            // keep the two pipe ends as 0 and 1, close everything else.
            unsafe {
                libc::dup2(release_fd, 0);
                libc::dup2(report_fd, 1);
                libc::closefrom(2);
            }
            let mut fd = -1;
            let code = child_suspend(&fsid, &mut fd);
            let byte = u8::try_from(code).unwrap_or(u8::MAX);
            let mut wait = 0u8;
            // SAFETY: one byte to the report pipe, then block reading the
            // release pipe until the parent closes it (or dies); then
            // _exit, whose close of `fd` resumes the filesystem.
            unsafe {
                libc::write(1, std::ptr::from_ref(&byte).cast(), 1);
                if code == CHILD_SUSPENDED_IT {
                    libc::read(0, std::ptr::from_mut(&mut wait).cast(), 1);
                }
                libc::_exit(0)
            }
        }
        ForkResult::Parent { child } => {
            drop(release_read);
            drop(report_write);
            let mut byte = [0u8; 1];
            let read = nix::unistd::read(&report_read, &mut byte);
            let holder = Holder {
                pid: child,
                release: release_write,
            };
            let outcome = match read {
                Ok(1) => exit_code_to_result(i32::from(byte[0])),
                Ok(_) => Err(Errno::EIO),
                Err(errno) => Err(errno),
            };
            if outcome == Ok(Probe::WasNotSuspended) {
                return Ok(holder);
            }
            holder.release();
            Err(outcome.err().unwrap_or(Errno::EBUSY))
        }
    }
}
