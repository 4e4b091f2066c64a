//! Real freezes on Linux: sparse loop-mounted ext4 and xfs images, frozen
//! with FIFREEZE through the daemon's freezer and engine. Needs root and
//! loop devices; prints SKIP and passes vacuously otherwise (say so loudly).
//!
//! Every filesystem is thawed, unmounted and its loop device detached by a
//! guard, also when a test panics.
#![cfg(target_os = "linux")]
// Helpers outside #[test] fns panic too; a panic here is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hv_vss_proto::{DeviceOperation, DeviceStatus};
use hv_vssd::config::Config;
use hv_vssd::engine::Engine;
use hv_vssd::freezer::{Freezer, Leftover, PlatformFreezer};
use hv_vssd::log::Log;
use hv_vssd::mounts::{self, FsId, Mount};
use hv_vssd::watchdog::SystemClock;

/// A loop-mounted filesystem image; dropping it thaws, unmounts, detaches.
/// Its image and mount point live in a directory the test owns (declare
/// that directory first, so it is dropped after the filesystem).
struct LoopFs {
    mount_point: PathBuf,
    loop_device: String,
    /// Set once mounted: the guard thaws only this filesystem.
    fs_id: Option<FsId>,
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl LoopFs {
    /// Creates a sparse image of `mib` MiB, formats it with `mkfs`, attaches
    /// and mounts it. `Err` is a SKIP reason.
    fn new(dir: &Path, fs_type: &str, mib: u64) -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root".to_owned());
        }
        let image = dir.join(format!("{fs_type}.img"));
        File::create(&image)
            .and_then(|f| f.set_len(mib * 1024 * 1024))
            .map_err(|e| e.to_string())?;
        let image_str = image.to_string_lossy().into_owned();
        match fs_type {
            "xfs" => run("mkfs.xfs", &["-q", "-f", &image_str])?,
            _ => run("mkfs.ext4", &["-q", "-F", &image_str])?,
        };
        let loop_device = run("losetup", &["-f", "--show", &image_str])
            .map_err(|e| format!("no loop device: {e}"))?;
        let mount_point = dir.join(format!("{fs_type}-mnt"));
        std::fs::create_dir(&mount_point).map_err(|e| e.to_string())?;
        let mut fs = Self {
            mount_point,
            loop_device,
            fs_id: None,
        };
        let mount_str = fs.mount_point.to_string_lossy().into_owned();
        run("mount", &["-t", fs_type, &fs.loop_device, &mount_str])?;
        fs.fs_id = Some(fs.mount().fs_id);
        Ok(fs)
    }

    fn mount(&self) -> Mount {
        mounts::discover()
            .expect("mountinfo")
            .into_iter()
            .find(|m| m.path == self.mount_point)
            .expect("our mount is listed")
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Thaw first (EINVAL when not frozen), or umount would hang.
        let mut freezer = PlatformFreezer::default();
        if let Some(fs_id) = self.fs_id {
            let _ = freezer.thaw_leftover(&self.mount_point, fs_id);
        }
        let mount_str = self.mount_point.to_string_lossy().into_owned();
        if run("umount", &[&mount_str]).is_err() {
            let _ = run("umount", &["-l", &mount_str]);
        }
        let _ = run("losetup", &["-d", &self.loop_device]);
    }
}

macro_rules! or_skip {
    ($fs:expr) => {
        match $fs {
            Ok(fs) => fs,
            Err(reason) => {
                // Written to the real stderr, past the test harness's capture,
                // so CI logs show the skip.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIP: real freeze test needs root, loop devices, mkfs.ext4 and mkfs.xfs: {reason}"
                );
                return;
            }
        }
    };
}

/// Prints a measurement past the test harness's capture (numbers, not
/// assertions: timing depends on the machine).
fn report(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "MEASURED: {line}");
}

/// A child process writing to the filesystem; killed if the test ends first.
struct Writer(Child);

impl Writer {
    fn start(dir: &Path) -> Self {
        let file = dir.join("written-while-frozen");
        // One open: dd writes and fsyncs through the descriptor it resolved
        // at start, whatever happens to the path later (a covered mount).
        Self(
            Command::new("/bin/sh")
                .arg("-c")
                .arg("echo payload | dd of=\"$1\" conv=fsync status=none")
                .arg("writer")
                .arg(&file)
                .spawn()
                .expect("spawn writer"),
        )
    }

    /// Waits up to `limit`; true if the writer finished successfully.
    fn finished_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn assert_write_blocks_while_frozen_then_completes(fs: &LoopFs) {
    let mut freezer = PlatformFreezer::default();
    let mount = fs.mount();
    let mut handle = freezer.open(&mount).expect("open the mount point");
    let started = Instant::now();
    freezer.freeze(&mut handle, &mount).expect("FIFREEZE");
    let freeze_time = started.elapsed();
    // Frozen for real: a second freeze is refused with EBUSY.
    let again = freezer
        .freeze(&mut handle, &mount)
        .expect_err("second freeze");
    assert_eq!(again.errno, nix::errno::Errno::EBUSY);
    let mut writer = Writer::start(&fs.mount_point);
    assert!(
        !writer.finished_within(Duration::from_millis(800)),
        "a write completed on a frozen filesystem"
    );
    let started = Instant::now();
    freezer.thaw(&mut handle, &mount).expect("FITHAW");
    let thaw_time = started.elapsed();
    report(&format!(
        "{} ({}): FIFREEZE {} us, FITHAW {} us",
        mount.fs_type,
        mount.source,
        freeze_time.as_micros(),
        thaw_time.as_micros()
    ));
    assert!(
        writer.finished_within(Duration::from_secs(10)),
        "the blocked write did not complete after thaw"
    );
    let text = std::fs::read_to_string(fs.mount_point.join("written-while-frozen")).unwrap();
    assert_eq!(text, "payload\n");
    // Not frozen any more: a second thaw has nothing to do and says so.
    freezer
        .thaw(&mut handle, &mount)
        .expect("a thaw of a thawed filesystem is done");
    assert!(!is_frozen(&fs.mount_point));
}

#[test]
fn ext4_write_blocks_while_frozen_and_completes_after_thaw() {
    let dir = scratch();
    let fs = or_skip!(LoopFs::new(dir.path(), "ext4", 64));
    assert_write_blocks_while_frozen_then_completes(&fs);
}

#[test]
fn xfs_write_blocks_while_frozen_and_completes_after_thaw() {
    // mkfs.xfs refuses images under 300 MB.
    let dir = scratch();
    let fs = or_skip!(LoopFs::new(dir.path(), "xfs", 320));
    assert_write_blocks_while_frozen_then_completes(&fs);
}

/// A mount point that no longer shows the planned filesystem (unmounted
/// since planning, another filesystem underneath) is refused, never frozen
/// or thawed in its place.
#[test]
fn a_mount_point_showing_another_filesystem_is_neither_frozen_nor_thawed() {
    let dir = scratch();
    let fs = or_skip!(LoopFs::new(dir.path(), "ext4", 64));
    let mut freezer = PlatformFreezer::default();
    let real = fs.mount();
    let planned = Mount {
        fs_id: FsId([real.fs_id.0[0], real.fs_id.0[1] + 1]),
        ..real.clone()
    };
    let refused = freezer
        .open(&planned)
        .expect_err("open of the wrong filesystem");
    assert_eq!(refused.errno, nix::errno::Errno::ESTALE);
    assert!(
        refused
            .to_string()
            .contains("no longer the planned filesystem")
    );
    assert!(
        !is_frozen(&fs.mount_point),
        "the filesystem underneath was frozen"
    );

    // Frozen by somebody else: a leftover record naming another filesystem
    // at that path must not thaw it, nor count it as thawed.
    let mut handle = freezer.open(&real).unwrap();
    freezer.freeze(&mut handle, &real).expect("FIFREEZE");
    let refused = freezer
        .thaw_leftover(&fs.mount_point, planned.fs_id)
        .expect_err("not that filesystem");
    assert_eq!(refused.errno, nix::errno::Errno::ESTALE);
    assert!(
        is_frozen(&fs.mount_point),
        "thawed a freeze that was not ours"
    );
    assert_eq!(
        freezer.thaw_leftover(&fs.mount_point, real.fs_id),
        Ok(Leftover::Thawed)
    );
    assert!(!is_frozen(&fs.mount_point));
    assert_eq!(
        freezer.thaw_leftover(&fs.mount_point, real.fs_id),
        Ok(Leftover::NotFrozen)
    );
}

/// The thaw goes through the descriptor opened before the freeze: a mount
/// point covered by another mount while frozen (its path now shows the
/// other filesystem) is thawed all the same.
#[test]
fn a_frozen_filesystem_whose_mount_point_was_covered_is_thawed_through_its_descriptor() {
    let dir = scratch();
    let fs = or_skip!(LoopFs::new(dir.path(), "ext4", 64));
    let mut freezer = PlatformFreezer::default();
    let mount = fs.mount();
    let mut handle = freezer.open(&mount).unwrap();
    freezer.freeze(&mut handle, &mount).expect("FIFREEZE");
    // A writer that already holds its directory open blocks on the freeze.
    let mut writer = Writer::start(&fs.mount_point);
    assert!(!writer.finished_within(Duration::from_millis(300)));
    let point = fs.mount_point.to_str().unwrap();
    run("mount", &["-t", "tmpfs", "cover", point]).expect("cover the mount point with a tmpfs");
    let covered = Uncover(fs.mount_point.clone());
    freezer
        .thaw(&mut handle, &mount)
        .expect("thaw through the descriptor");
    drop(covered);
    assert!(
        writer.finished_within(Duration::from_secs(10)),
        "the blocked write did not complete after the thaw"
    );
}

/// Unmounts what covers a mount point, also when the test fails.
struct Uncover(PathBuf);

impl Drop for Uncover {
    fn drop(&mut self) {
        if let Some(point) = self.0.to_str() {
            let _ = run("umount", &["-l", point]);
        }
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hvvss-daemon-")
        .tempdir()
        .expect("tempdir")
}

fn engine_for(parent: &Path, files: &Path) -> Engine<PlatformFreezer, SystemClock> {
    let config = Config::parse(&format!(
        "include = {}/*-mnt\nhooks_dir = {1}/hooks.d\npid_file = {1}/pid\n\
         status_file = {1}/status\nstate_file = {1}/frozen\n",
        parent.display(),
        files.display()
    ))
    .unwrap();
    Engine::new(
        config,
        PlatformFreezer::default(),
        SystemClock,
        Log::stderr(true),
        Box::new(mounts::discover),
        0,
    )
}

/// One request as the device loop serves it.
fn serve(
    engine: &mut Engine<PlatformFreezer, SystemClock>,
    op: DeviceOperation,
    msgid: u64,
) -> DeviceStatus {
    let status = engine.handle(op, msgid, engine.now());
    engine.after_answer();
    status
}

fn is_frozen(path: &Path) -> bool {
    // Probe without side effects: FIFREEZE on a frozen fs gives EBUSY; on a
    // thawed one it freezes, so thaw again right away. Only the filesystem
    // mounted at `path` is probed (the freezer checks its id), never the one
    // underneath.
    let mut freezer = PlatformFreezer::default();
    let Some(mount) = mounts::discover()
        .expect("mountinfo")
        .into_iter()
        .find(|m| m.path == path)
    else {
        return false;
    };
    let mut handle = freezer.open(&mount).expect("open for the probe");
    match freezer.freeze(&mut handle, &mount) {
        Ok(()) => {
            freezer.thaw(&mut handle, &mount).expect("thaw probe");
            false
        }
        Err(e) => e.errno == nix::errno::Errno::EBUSY,
    }
}

#[test]
fn the_engine_freezes_ext4_and_xfs_and_a_restart_thaws_after_a_crash() {
    let dir = scratch();
    let ext4 = or_skip!(LoopFs::new(dir.path(), "ext4", 64));
    let xfs = or_skip!(LoopFs::new(dir.path(), "xfs", 320));
    let files = tempfile::tempdir().unwrap();
    // `include` names only this test's two mounts.
    let parent = dir.path().to_owned();

    let mut engine = engine_for(&parent, files.path());
    assert_eq!(
        serve(&mut engine, DeviceOperation::Check, 1),
        DeviceStatus::Success
    );
    assert!(!is_frozen(&ext4.mount_point));
    let started = Instant::now();
    assert_eq!(
        serve(&mut engine, DeviceOperation::Freeze, 2),
        DeviceStatus::Success
    );
    let freeze_time = started.elapsed();
    let mut frozen = engine.frozen_paths();
    frozen.sort();
    let mut expected = vec![ext4.mount_point.clone(), xfs.mount_point.clone()];
    expected.sort();
    assert_eq!(frozen, expected, "exactly our two mounts are frozen");
    assert!(is_frozen(&ext4.mount_point) && is_frozen(&xfs.mount_point));
    let started = Instant::now();
    assert_eq!(
        serve(&mut engine, DeviceOperation::Thaw, 3),
        DeviceStatus::Success
    );
    report(&format!(
        "engine FREEZE of ext4+xfs (incl. sync(2), status and state files) {} ms, THAW {} ms",
        freeze_time.as_millis(),
        started.elapsed().as_millis()
    ));
    assert!(!is_frozen(&ext4.mount_point) && !is_frozen(&xfs.mount_point));

    // Freeze again and "crash": the engine goes away without thawing.
    assert_eq!(
        serve(&mut engine, DeviceOperation::Freeze, 4),
        DeviceStatus::Success
    );
    drop(engine);
    assert!(is_frozen(&xfs.mount_point), "FIFREEZE outlives its process");
    assert!(files.path().join("frozen").exists());
    let mut next = engine_for(&parent, files.path());
    next.recover();
    assert!(!is_frozen(&ext4.mount_point) && !is_frozen(&xfs.mount_point));
    assert!(!files.path().join("frozen").exists());
}
