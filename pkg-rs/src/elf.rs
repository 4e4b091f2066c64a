//! What `pkg create` learns from the ELF files it packs
//! (`pkg_analyse_files`, libpkg/pkg_abi.c and libpkg/pkg_elf.c):
//! the shared libraries each needs (`DT_NEEDED`, for `shlibs_required`),
//! the one it provides (`DT_SONAME`), and the FreeBSD release it was built
//! for (the `FreeBSD` `NT_VERSION` note, for the `FreeBSD_version`
//! annotation).

use object::read::elf::{FileHeader, SectionHeader};
use object::{Endianness, elf};

/// The operating system an ELF file is for, as pkg decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfOs {
    /// A `FreeBSD` note, or `EI_OSABI` FreeBSD without one.
    FreeBsd,
    /// Anything else: pkg assumes Linux for ELF files without a FreeBSD
    /// mark and leaves their libraries out of `shlibs_required`.
    Other,
}

/// The facts pkg takes from one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFacts {
    /// Target operating system.
    pub os: ElfOs,
    /// `e_machine`.
    pub machine: u16,
    /// `__FreeBSD_version` from the ABI note, if the file has one.
    pub freebsd_version: Option<u32>,
    /// `DT_NEEDED` entries pkg counts: relative names starting with `lib`.
    pub needed: Vec<String>,
    /// `DT_SONAME`, if it starts with `lib`.
    pub soname: Option<String>,
}

/// Read `data` as an ELF file; `None` when it is not one (a script, a man
/// page, a truncated file).
pub fn analyse(data: &[u8]) -> Option<ElfFacts> {
    match data.get(4) {
        Some(&c) if c == elf::ELFCLASS64.0 => analyse_as::<elf::FileHeader64<Endianness>>(data),
        Some(&c) if c == elf::ELFCLASS32.0 => analyse_as::<elf::FileHeader32<Endianness>>(data),
        _ => None,
    }
}

fn analyse_as<H: FileHeader<Endian = Endianness>>(data: &[u8]) -> Option<ElfFacts> {
    let header = H::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;

    let mut freebsd_version = None;
    for section in sections.iter() {
        let Ok(Some(mut notes)) = section.notes(endian, data) else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            // The ABI tag every FreeBSD binary carries (.note.tag, crt1's
            // `NT_FREEBSD_ABI_TAG`): name "FreeBSD", type 1, a 4-byte
            // __FreeBSD_version.
            if note.name() == b"FreeBSD" && note.n_type(endian).0 == elf::NT_VERSION {
                freebsd_version = note
                    .desc()
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(|b| match endian {
                        Endianness::Little => u32::from_le_bytes(b),
                        Endianness::Big => u32::from_be_bytes(b),
                    });
            }
        }
    }
    let os = if freebsd_version.is_some() || header.e_ident().os_abi == elf::ELFOSABI_FREEBSD {
        ElfOs::FreeBsd
    } else {
        ElfOs::Other
    };

    let mut needed = Vec::new();
    let mut soname = None;
    if let Ok(table) = sections.dynamic_table(endian, data) {
        for entry in &table {
            let Ok(name) = table.string(entry) else {
                continue;
            };
            let name = String::from_utf8_lossy(name).into_owned();
            // pkg skips names not starting with "lib" and absolute paths.
            if !name.starts_with("lib") {
                continue;
            }
            if entry.tag == elf::DT_NEEDED {
                needed.push(name);
            } else if entry.tag == elf::DT_SONAME {
                soname = Some(name);
            }
        }
    }
    Some(ElfFacts {
        os,
        machine: header.e_machine(endian).0,
        freebsd_version,
        needed,
        soname,
    })
}

/// The `e_machine` of native binaries for a pkg ABI's machine part
/// (`FreeBSD:14:amd64` → `amd64`); `None` when any machine is accepted.
pub fn machine_for_abi(abi_machine: &str) -> Option<u16> {
    let machine = match abi_machine {
        "amd64" => elf::EM_X86_64,
        "i386" => elf::EM_386,
        "aarch64" => elf::EM_AARCH64,
        "armv6" | "armv7" => elf::EM_ARM,
        "powerpc64" | "powerpc64le" => elf::EM_PPC64,
        "riscv64" => elf::EM_RISCV,
        _ => return None,
    };
    Some(machine.0)
}

// Shared with the integration tests, which build packages around it.
#[cfg(test)]
#[path = "../tests/support/tiny_elf.rs"]
mod tiny_elf;

#[cfg(test)]
mod tests {
    use super::tiny_elf::tiny_elf;
    use super::*;

    #[test]
    fn needed_soname_and_version_are_read() {
        let data = tiny_elf(
            &["libthr.so.3", "libc.so.7"],
            Some("libdemo.so.1"),
            Some(1_400_097),
        );
        let facts = analyse(&data).unwrap();
        assert_eq!(facts.os, ElfOs::FreeBsd);
        assert_eq!(facts.machine, elf::EM_X86_64.0);
        assert_eq!(facts.freebsd_version, Some(1_400_097));
        assert_eq!(facts.needed, ["libthr.so.3", "libc.so.7"]);
        assert_eq!(facts.soname.as_deref(), Some("libdemo.so.1"));
    }

    #[test]
    fn names_pkg_ignores_are_left_out() {
        let data = tiny_elf(
            &["/lib/libx.so.1", "ld-elf.so.1", "libm.so.5"],
            None,
            Some(1_500_000),
        );
        assert_eq!(analyse(&data).unwrap().needed, ["libm.so.5"]);
    }

    #[test]
    fn without_a_freebsd_mark_the_file_is_not_freebsds() {
        let facts = analyse(&tiny_elf(&["libc.so.6"], None, None)).unwrap();
        assert_eq!(facts.os, ElfOs::Other);
        assert_eq!(facts.freebsd_version, None);
    }

    #[test]
    fn non_elf_data_is_none() {
        assert_eq!(analyse(b"#!/bin/sh\necho hi\n"), None);
        assert_eq!(analyse(b"\x7fELF"), None);
        assert_eq!(analyse(b""), None);
    }
}
