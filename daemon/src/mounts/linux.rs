//! Linux: /proc/self/mountinfo (proc(5)). Used for development and tests.
//!
//! Mount points are bytes: a path such as `caf\xe9` is a valid mount point,
//! and one such line must not make every request fail.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{FsId, Mount, MountError, MountTable, unescape_octal};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Filesystem types that live on another machine.
const NETWORK_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "9p",
    "ceph",
    "glusterfs",
    "afs",
    "lustre",
];

pub fn discover() -> Result<Vec<Mount>, MountError> {
    parse_mountinfo(std::fs::read(MOUNTINFO)?)
}

/// The filesystem `path` is on, as mountinfo names it (major:minor).
pub fn filesystem_of(path: &std::path::Path) -> std::io::Result<FsId> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path)?.dev();
    Ok(FsId([
        i64::from(libc::major(dev)),
        i64::from(libc::minor(dev)),
    ]))
}

/// The filesystem an open file is on.
pub fn filesystem_of_fd(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<FsId> {
    let dev = nix::sys::stat::fstat(fd)?.st_dev;
    Ok(FsId([
        i64::from(libc::major(dev)),
        i64::from(libc::minor(dev)),
    ]))
}

/// The mount table with change notification: the kernel marks an open
/// mountinfo file POLLPRI when the namespace's mounts change
/// (fs/proc_namespace.c, mounts_poll), so an unchanged table costs one
/// zero-timeout poll(2) instead of generating and parsing the whole text.
#[derive(Debug)]
pub struct WatchedMountinfo {
    file: File,
}

impl WatchedMountinfo {
    pub fn open() -> Result<Self, MountError> {
        Ok(Self {
            file: File::open(MOUNTINFO)?,
        })
    }

    /// Consumes a pending change notification; true if there was one.
    /// mounts_poll reports a change once, then forgets it.
    fn changed(&self) -> bool {
        let mut fds = [PollFd::new(
            self.file.as_fd(),
            PollFlags::POLLPRI | PollFlags::POLLERR,
        )];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(ready) => ready > 0,
            // An error counts as a change: the caller reads the table again.
            Err(_) => true,
        }
    }
}

impl MountTable for WatchedMountinfo {
    fn list(&mut self) -> Result<Vec<Mount>, MountError> {
        // Consume the notification first: a change after this point is
        // either in the text read below or reported by the next check.
        self.changed();
        self.file.seek(SeekFrom::Start(0))?;
        let mut text = Vec::new();
        self.file.read_to_end(&mut text)?;
        parse_mountinfo(text)
    }

    fn may_have_changed(&mut self) -> bool {
        self.changed()
    }
}

/// Parses mountinfo text:
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
pub fn parse_mountinfo(text: impl AsRef<[u8]>) -> Result<Vec<Mount>, MountError> {
    text.as_ref()
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| {
            parse_line(l).map_err(|problem| MountError::Parse {
                source_name: MOUNTINFO,
                line: i + 1,
                problem,
            })
        })
        .collect()
}

fn parse_line(line: &[u8]) -> Result<Mount, String> {
    let separator = line
        .windows(3)
        .position(|w| w == b" - ")
        .ok_or_else(|| "no ` - ` separator".to_owned())?;
    let (before, after) = (&line[..separator], &line[separator + 3..]);
    let fields: Vec<&[u8]> = before.split(|&b| b == b' ').collect();
    let tail: Vec<&[u8]> = after.split(|&b| b == b' ').collect();
    let [_, _, dev, _, mount_point, mount_options, ..] = fields[..] else {
        return Err("fewer than 6 fields before the separator".to_owned());
    };
    let [fs_type, source, super_options, ..] = tail[..] else {
        return Err("fewer than 3 fields after the separator".to_owned());
    };
    let text = |field: &[u8]| String::from_utf8_lossy(field).into_owned();
    let (fs_type, dev) = (text(fs_type), text(dev));
    let (major, minor) = dev
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
        .ok_or_else(|| format!("bad device number `{dev}`"))?;
    let read_only = has_option(mount_options, b"ro") || has_option(super_options, b"ro");
    let base_type = fs_type.split('.').next().unwrap_or(&fs_type);
    let local = !NETWORK_TYPES.contains(&base_type) && !fs_type.starts_with("fuse.sshfs");
    Ok(Mount {
        path: PathBuf::from(OsString::from_vec(unescape_octal(mount_point))),
        source: String::from_utf8_lossy(&unescape_octal(source)).into_owned(),
        fs_type,
        read_only,
        local,
        fs_id: FsId([major, minor]),
    })
}

fn has_option(options: &[u8], wanted: &[u8]) -> bool {
    options.split(|&b| b == b',').any(|o| o == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:5 / /dev rw,nosuid - devtmpfs udev rw,size=4096k
90 22 7:3 / /mnt/my\\040disk rw,relatime shared:40 - xfs /dev/loop3 rw,attr2
91 22 7:3 / /srv/bind rw,relatime shared:40 - xfs /dev/loop3 rw,attr2
92 22 0:50 / /mnt/nfs rw - nfs4 server:/export rw,vers=4.2
93 22 7:4 / /mnt/ro ro,relatime - ext4 /dev/loop4 ro
";

    #[test]
    fn parses_types_paths_flags_and_ids() {
        let mounts = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(mounts.len(), 7);
        let root = &mounts[0];
        assert_eq!(root.path, Path::new("/"));
        assert_eq!(root.fs_type, "ext4");
        assert_eq!(root.source, "/dev/sda1");
        assert!(!root.read_only && root.local);
        assert_eq!(root.fs_id, FsId([8, 1]));
        assert_eq!(mounts[3].path, Path::new("/mnt/my disk"));
        assert_eq!(mounts[3].fs_id, mounts[4].fs_id);
        assert!(!mounts[5].local);
        assert!(mounts[6].read_only);
    }

    #[test]
    fn a_mount_point_that_is_not_utf8_keeps_its_bytes() {
        let mut line = b"94 22 7:5 / /mnt/caf".to_vec();
        line.push(0xe9);
        line.extend_from_slice(b" rw - ext4 /dev/loop5 rw\n");
        let mut text = SAMPLE.as_bytes().to_vec();
        text.extend_from_slice(&line);
        let mounts = parse_mountinfo(&text).unwrap();
        assert_eq!(mounts.len(), 8);
        assert_eq!(mounts[7].path.as_os_str().as_bytes(), b"/mnt/caf\xe9");
        assert_eq!(mounts[7].fs_id, FsId([7, 5]));
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        let err = parse_mountinfo("22 1 8:1 / / rw - ext4 /dev/sda1 rw\ngarbage\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse_mountinfo("1 2 x:y / / rw - ext4 a rw").is_err());
    }

    #[test]
    fn this_machine_has_a_root_mount() {
        let mounts = discover().unwrap();
        assert!(mounts.iter().any(|m| m.path == Path::new("/")));
        let mut watched = WatchedMountinfo::open().unwrap();
        assert_eq!(watched.list().unwrap(), mounts);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(text in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_mountinfo(&text);
        }

        #[test]
        fn escaped_paths_round_trip(path in proptest::collection::vec(proptest::num::u8::ANY, 1..20)) {
            let path: Vec<u8> = std::iter::once(b'/')
                .chain(path.into_iter().filter(|&b| b != 0 && b != b'\n'))
                .collect();
            let mut escaped = Vec::new();
            for &b in &path {
                if matches!(b, b' ' | b'\t' | b'\\') {
                    escaped.extend_from_slice(format!("\\{b:03o}").as_bytes());
                } else {
                    escaped.push(b);
                }
            }
            let mut line = b"1 0 8:1 / ".to_vec();
            line.extend_from_slice(&escaped);
            line.extend_from_slice(b" rw - ext4 /dev/sda1 rw");
            let mounts = parse_mountinfo(&line).unwrap();
            proptest::prop_assert_eq!(mounts[0].path.as_os_str().as_bytes(), &path[..]);
        }
    }
}
