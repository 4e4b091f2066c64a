//! Linux: /proc/self/mountinfo (proc(5)). Used for development and tests.

use std::path::PathBuf;

use super::{FsId, Mount, MountError};

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
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    parse_mountinfo(&text)
}

/// Parses mountinfo text:
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
pub fn parse_mountinfo(text: &str) -> Result<Vec<Mount>, MountError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l).map_err(|problem| MountError::Parse {
                source_name: "/proc/self/mountinfo",
                line: i + 1,
                problem,
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<Mount, String> {
    let (before, after) = line
        .split_once(" - ")
        .ok_or_else(|| "no ` - ` separator".to_owned())?;
    let fields: Vec<&str> = before.split(' ').collect();
    let tail: Vec<&str> = after.split(' ').collect();
    let [_, _, dev, _, mount_point, mount_options, ..] = fields[..] else {
        return Err("fewer than 6 fields before the separator".to_owned());
    };
    let [fs_type, source, super_options, ..] = tail[..] else {
        return Err("fewer than 3 fields after the separator".to_owned());
    };
    let (major, minor) = dev
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
        .ok_or_else(|| format!("bad device number `{dev}`"))?;
    let read_only = has_option(mount_options, "ro") || has_option(super_options, "ro");
    let base_type = fs_type.split('.').next().unwrap_or(fs_type);
    Ok(Mount {
        path: PathBuf::from(unescape(mount_point)),
        fs_type: fs_type.to_owned(),
        source: unescape(source),
        read_only,
        local: !NETWORK_TYPES.contains(&base_type) && !fs_type.starts_with("fuse.sshfs"),
        fs_id: FsId([major, minor]),
    })
}

fn has_option(options: &str, wanted: &str) -> bool {
    options.split(',').any(|o| o == wanted)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn malformed_lines_are_errors_with_line_numbers() {
        let err = parse_mountinfo("22 1 8:1 / / rw - ext4 /dev/sda1 rw\ngarbage\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse_mountinfo("1 2 x:y / / rw - ext4 a rw").is_err());
    }

    #[test]
    fn this_machine_has_a_root_mount() {
        let mounts = discover().unwrap();
        assert!(mounts.iter().any(|m| m.path == Path::new("/")));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(text in "\\PC{0,300}") {
            let _ = parse_mountinfo(&text);
        }

        #[test]
        fn escaped_paths_round_trip(path in "/[a-z \\\\\t]{0,20}") {
            let escaped = path
                .replace('\\', "\\134")
                .replace(' ', "\\040")
                .replace('\t', "\\011");
            let line = format!("1 0 8:1 / {escaped} rw - ext4 /dev/sda1 rw");
            let mounts = parse_mountinfo(&line).unwrap();
            proptest::prop_assert_eq!(mounts[0].path.to_string_lossy(), path);
        }
    }
}
