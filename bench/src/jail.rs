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

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// The subcommand name (`hv-vss-bench jail --keep M ... -- PROGRAM ARGS`).
pub(crate) const SUBCOMMAND: &str = "jail";

/// One line of /proc/self/mountinfo, the parts the jail needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    major: u32,
    mount_point: PathBuf,
    fs_type: String,
}

/// Parses /proc/self/mountinfo (see proc(5)); octal escapes (`\040`) in
/// mount points are decoded.
fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let device = fields.nth(2)?;
            let mount_point = unescape(fields.nth(1)?);
            let mut rest = fields.skip_while(|f| *f != "-");
            rest.next()?;
            let fs_type = rest.next()?.to_owned();
            let major = device.split(':').next()?.parse().ok()?;
            Some(MountEntry {
                major,
                mount_point: PathBuf::from(mount_point),
                fs_type,
            })
        })
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(value) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|octal| u8::from_str_radix(octal, 8).ok())
            {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts to detach: freezable-looking (block-backed: major != 0) or FUSE,
/// except `/`, the kept ones and their ancestors. Deepest first.
fn to_detach(entries: &[MountEntry], keep: &[PathBuf]) -> Vec<PathBuf> {
    let mut detach: Vec<PathBuf> = entries
        .iter()
        .filter(|e| e.major != 0 || e.fs_type.starts_with("fuse"))
        .filter(|e| e.mount_point != Path::new("/"))
        .filter(|e| !keep.iter().any(|k| k.starts_with(&e.mount_point)))
        .map(|e| e.mount_point.clone())
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
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    for path in to_detach(&parse_mountinfo(&mountinfo), &keep) {
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
        let entries = parse_mountinfo(MOUNTINFO);
        assert_eq!(entries.len(), 8);
        assert_eq!(entries[4].mount_point, PathBuf::from("/tmp/bench/fs 1"));
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
        let entries = parse_mountinfo("30 1 8:1 / /srv rw - ext4 /dev/sda1 rw\n");
        assert!(to_detach(&entries, &[PathBuf::from("/srv/bench/fs0")]).is_empty());
    }
}
