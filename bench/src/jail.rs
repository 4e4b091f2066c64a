//! `hv-vss-bench jail`: runs a program (qemu-ga) in a private mount
//! namespace where the only freezable filesystems are the benchmark's own.
//!
//! Why: qemu-ga's `guest-fsfreeze-thaw` does not thaw what it froze; it
//! issues FITHAW on *every* mounted filesystem it can see, repeatedly,
//! until each says "not frozen". On a machine where other tests freeze
//! their own loop filesystems, that would thaw them under their feet. In
//! the jail, every block-backed or FUSE mount other than the kept ones is
//! detached (in the jail only; the rest of the machine is untouched), so
//! qemu-ga sees our mounts, `/` and pseudo filesystems, which cannot be
//! frozen by anyone else here. Mount events do not propagate into the jail
//! (private propagation), so later mounts stay invisible too.
//!
//! Runs single-threaded, before anything else in `main`, then execs.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hv_vssd::mounts::{Mount, discover};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// The subcommand name (`hv-vss-bench jail --keep M ... -- PROGRAM ARGS`).
pub(crate) const SUBCOMMAND: &str = "jail";

/// Mounts to detach: freezable-looking (block-backed: major != 0) or FUSE,
/// except `/`, the kept ones and their ancestors. Deepest first.
fn to_detach(mounts: &[Mount], keep: &[PathBuf]) -> Vec<PathBuf> {
    let mut detach: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| m.fs_id.0[0] != 0 || m.fs_type.starts_with("fuse"))
        .filter(|m| m.path != Path::new("/"))
        .filter(|m| !keep.iter().any(|k| k.starts_with(&m.path)))
        .map(|m| m.path.clone())
        .collect();
    detach.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    detach.dedup();
    detach
}

/// Entry point of the subcommand; only returns on error.
pub(crate) fn run(args: &[OsString]) -> Result<std::convert::Infallible, String> {
    let mut keep = Vec::new();
    let mut rest = args.iter();
    let program = loop {
        match rest.next().map(|a| a.to_str()) {
            Some(Some("--keep")) => keep.push(PathBuf::from(
                rest.next().ok_or("--keep needs a mount point")?,
            )),
            Some(Some("--")) => break rest.next().ok_or("missing the program after --")?,
            other => return Err(format!("unexpected jail argument {other:?}")),
        }
    };
    if keep.is_empty() {
        return Err("jail: no --keep mount point given".to_owned());
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private in the jail: {e}"))?;
    let mounts = discover().map_err(|e| e.to_string())?;
    for path in to_detach(&mounts, &keep) {
        // EINVAL: already gone with a detached parent.
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(format!("detaching {} in the jail: {e}", path.display())),
        }
    }
    let error = Command::new(program).args(rest).exec();
    Err(format!("exec {}: {error}", Path::new(program).display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hv_vssd::mounts::parse_mountinfo;

    const MOUNTINFO: &str = "\
22 1 253:0 / / rw,relatime - ext4 /dev/vda rw
23 22 0:5 / /proc rw - proc proc rw
24 22 0:6 / /dev rw - devtmpfs udev rw
40 22 7:3 / /tmp/bench/fs0 rw - ext4 /dev/loop3 rw
41 22 7:4 / /tmp/bench/fs\\0401 rw - xfs /dev/loop4 rw
50 22 7:9 / /tmp/other/fs0 rw - ext4 /dev/loop9 rw
51 22 0:60 / /tmp/other/dev rw - fuse /dev/fuse rw
52 22 0:61 / /run/user rw - tmpfs tmpfs rw
";

    #[test]
    fn detaches_foreign_freezable_and_fuse_mounts_only() {
        let entries = parse_mountinfo(MOUNTINFO).unwrap();
        assert_eq!(entries.len(), 8);
        assert_eq!(entries[4].path, PathBuf::from("/tmp/bench/fs 1"));
        let keep = vec![
            PathBuf::from("/tmp/bench/fs0"),
            PathBuf::from("/tmp/bench/fs 1"),
        ];
        let detach = to_detach(&entries, &keep);
        assert_eq!(
            detach,
            vec![
                PathBuf::from("/tmp/other/fs0"),
                PathBuf::from("/tmp/other/dev")
            ]
        );
    }

    #[test]
    fn never_detaches_an_ancestor_of_a_kept_mount() {
        let entries = parse_mountinfo("30 1 8:1 / /srv rw - ext4 /dev/sda1 rw\n").unwrap();
        assert!(to_detach(&entries, &[PathBuf::from("/srv/bench/fs0")]).is_empty());
    }
}
