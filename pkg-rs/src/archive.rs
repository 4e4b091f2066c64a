//! The `.pkg` container: a tar archive, compressed or not, whose first members
//! are `+COMPACT_MANIFEST` and `+MANIFEST`, then the files under their absolute
//! paths, then the directories (the order `pkg create` writes).

use std::io::{self, Read, Write};
use std::str::FromStr;

/// How the tar stream is compressed. pkg recognises each by its magic bytes,
/// whatever the file is called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// zstd (`tzst`), pkg's default since 1.17.
    #[default]
    Zstd,
    /// xz (`txz`), readable by every pkg release.
    Xz,
    /// Plain tar.
    None,
}

impl Compression {
    /// The name pkg uses in `meta.conf`'s `packing_format`.
    pub fn packing_format(self) -> &'static str {
        match self {
            Self::Zstd => "tzst",
            Self::Xz => "txz",
            Self::None => "tar",
        }
    }

    /// Detect from the first bytes of a file.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Self::Xz
        } else {
            Self::None
        }
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zstd" | "tzst" => Ok(Self::Zstd),
            "xz" | "txz" => Ok(Self::Xz),
            "none" | "tar" => Ok(Self::None),
            _ => Err(format!("unknown compression `{s}`: use zstd, xz or none")),
        }
    }
}

/// What a member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberKind {
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A directory.
    Directory,
}

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Name in the archive: absolute install paths, or `+MANIFEST` etc.
    pub path: String,
    /// File or directory.
    pub kind: MemberKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner name.
    pub uname: String,
    /// Group name.
    pub gname: String,
}

/// Write `members` in order as a (compressed) tar stream; every member gets
/// `mtime`.
pub fn write<W: Write>(
    out: W,
    compression: Compression,
    mtime: u64,
    members: &[Member],
) -> io::Result<W> {
    match compression {
        Compression::Zstd => {
            let mut encoder = zstd::stream::Encoder::new(out, 19)?;
            write_tar(&mut encoder, mtime, members)?;
            encoder.finish()
        }
        Compression::Xz => {
            let mut encoder = xz2::write::XzEncoder::new(out, 6);
            write_tar(&mut encoder, mtime, members)?;
            encoder.finish()
        }
        Compression::None => {
            let mut out = out;
            write_tar(&mut out, mtime, members)?;
            Ok(out)
        }
    }
}

fn write_tar<W: Write>(out: W, mtime: u64, members: &[Member]) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    for member in members {
        let mut header = tar::Header::new_ustar();
        // The tar crate refuses absolute names (a safety rule for unpacking), but
        // pkg archives carry absolute paths, so the name fields are filled here.
        set_ustar_name(&mut header, &member.path)?;
        header.set_mode(member.mode);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username(&member.uname)?;
        header.set_groupname(&member.gname)?;
        match &member.kind {
            MemberKind::File(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                header.set_cksum();
                builder.append(&header, data.as_slice())?;
            }
            MemberKind::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_cksum();
                builder.append(&header, io::empty())?;
            }
        }
    }
    builder.into_inner()?.flush()
}

/// ustar stores up to 100 bytes in `name` and 155 more in `prefix`, split at a `/`.
fn set_ustar_name(header: &mut tar::Header, path: &str) -> io::Result<()> {
    let too_long = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path too long for a ustar header: {path}"),
        )
    };
    let bytes = path.as_bytes();
    let (prefix, name) = if bytes.len() <= 100 {
        (&[][..], bytes)
    } else {
        let split = (0..bytes.len())
            .rev()
            .find(|&i| bytes[i] == b'/' && i <= 155 && bytes.len() - i - 1 <= 100 && i > 0)
            .ok_or_else(too_long)?;
        (&bytes[..split], &bytes[split + 1..])
    };
    let ustar = header.as_ustar_mut().ok_or_else(too_long)?;
    ustar.name = [0; 100];
    ustar.name[..name.len()].copy_from_slice(name);
    ustar.prefix = [0; 155];
    ustar.prefix[..prefix.len()].copy_from_slice(prefix);
    Ok(())
}

/// Decompress a package (any of the three formats) into a tar reader.
pub fn open<R: Read + 'static>(mut input: R) -> io::Result<tar::Archive<Box<dyn Read>>> {
    let mut head = [0u8; 6];
    let mut filled = 0;
    while filled < head.len() {
        let n = input.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let whole = io::Cursor::new(head[..filled].to_vec()).chain(input);
    let reader: Box<dyn Read> = match Compression::sniff(&head[..filled]) {
        Compression::Zstd => Box::new(zstd::stream::Decoder::new(whole)?),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new(whole)),
        Compression::None => Box::new(whole),
    };
    Ok(tar::Archive::new(reader))
}

/// Read the first member called `name` from a package stream.
pub fn read_member<R: Read + 'static>(input: R, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut archive = open(input)?;
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path_bytes().as_ref() == name.as_bytes() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            return Ok(Some(data));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Member> {
        vec![
            Member {
                path: "+MANIFEST".into(),
                kind: MemberKind::File(b"{}\n".to_vec()),
                mode: 0o644,
                uname: "root".into(),
                gname: "wheel".into(),
            },
            Member {
                path: format!("/usr/local/{}/file", "d".repeat(120)),
                kind: MemberKind::File(b"data".to_vec()),
                mode: 0o555,
                uname: "root".into(),
                gname: "wheel".into(),
            },
            Member {
                path: "/usr/local/etc/x".into(),
                kind: MemberKind::Directory,
                mode: 0o750,
                uname: "root".into(),
                gname: "operator".into(),
            },
        ]
    }

    #[test]
    fn every_compression_round_trips_names_modes_and_owners() {
        for compression in [Compression::Zstd, Compression::Xz, Compression::None] {
            let bytes = write(Vec::new(), compression, 1_700_000_000, &members()).unwrap();
            assert_eq!(Compression::sniff(&bytes), compression);
            let mut archive = open(io::Cursor::new(bytes)).unwrap();
            let mut seen = Vec::new();
            for entry in archive.entries().unwrap() {
                let entry = entry.unwrap();
                let header = entry.header();
                seen.push((
                    String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
                    header.mode().unwrap(),
                    header.username().unwrap().unwrap().to_owned(),
                    header.groupname().unwrap().unwrap().to_owned(),
                    header.mtime().unwrap(),
                ));
            }
            let expected: Vec<_> = members()
                .into_iter()
                .map(|m| (m.path, m.mode, m.uname, m.gname, 1_700_000_000))
                .collect();
            assert_eq!(seen, expected, "{compression:?}");
        }
    }

    #[test]
    fn read_member_finds_the_manifest() {
        let bytes = write(Vec::new(), Compression::Zstd, 0, &members()).unwrap();
        let found = read_member(io::Cursor::new(bytes), "+MANIFEST").unwrap();
        assert_eq!(found.as_deref(), Some(&b"{}\n"[..]));
    }

    #[test]
    fn overlong_path_is_an_error() {
        let mut m = members();
        m[1].path = format!("/{}", "x".repeat(300));
        assert!(write(Vec::new(), Compression::None, 0, &m).is_err());
    }
}
