//! A minimal FreeBSD ELF file for tests, written byte by byte so no
//! toolchain is needed. Included by src/elf.rs's unit tests and by the
//! integration tests (`#[path]` modules), so it has one copy.

/// A minimal little-endian ELF64 x86-64 shared object with the given
/// `DT_NEEDED`, `DT_SONAME` and FreeBSD ABI note, written byte by byte
/// so tests need no toolchain. Sections: null, .dynstr, .dynamic,
/// .note.tag, .shstrtab.
pub(crate) fn tiny_elf(needed: &[&str], soname: Option<&str>, osversion: Option<u32>) -> Vec<u8> {
    // Layout: ELF header (64), two program headers (2 × 56), then the
    // sections' contents at file offset = virtual address, then the section
    // headers. PT_LOAD maps the whole file at address 0 and PT_DYNAMIC
    // points at .dynamic, as readelf -d (which follows DT_STRTAB) needs;
    // pkg and the object crate read the section headers.
    const DATA_START: usize = 64 + 2 * 56;
    let mut dynstr = vec![0u8];
    let mut entries: Vec<(u64, u64)> = Vec::new();
    for (tag, name) in needed
        .iter()
        .map(|n| (1u64, *n))
        .chain(soname.map(|s| (14u64, s)))
    {
        entries.push((tag, dynstr.len() as u64));
        dynstr.extend_from_slice(name.as_bytes());
        dynstr.push(0);
    }
    let dynstr_at = DATA_START as u64;
    entries.push((5, dynstr_at)); // DT_STRTAB
    entries.push((10, dynstr.len() as u64)); // DT_STRSZ
    entries.push((0, 0)); // DT_NULL
    let dynamic: Vec<u8> = entries
        .iter()
        .flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes()))
        .collect();
    let note: Vec<u8> = match osversion {
        Some(v) => [8u32, 4, 1]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .chain(*b"FreeBSD\0")
            .chain(v.to_le_bytes())
            .collect(),
        None => Vec::new(),
    };
    let shstrtab = b"\0.dynstr\0.dynamic\0.note.tag\0.shstrtab\0".to_vec();

    let mut out = vec![0u8; DATA_START];
    let place = |out: &mut Vec<u8>, bytes: &[u8]| {
        while out.len() % 8 != 0 {
            out.push(0);
        }
        let at = out.len() as u64;
        out.extend_from_slice(bytes);
        at
    };
    assert_eq!(place(&mut out, &dynstr), dynstr_at);
    let dynamic_at = place(&mut out, &dynamic);
    let note_at = place(&mut out, &note);
    let shstrtab_at = place(&mut out, &shstrtab);
    let shoff = place(&mut out, &[]);
    let sections = [
        Section::default(),
        Section::new(1, 3, 2, (dynstr_at, dynstr.len()), 0, 1, 0),
        Section::new(9, 6, 2, (dynamic_at, dynamic.len()), 1, 8, 16),
        Section::new(18, 7, 2, (note_at, note.len()), 0, 4, 0),
        Section::new(28, 3, 0, (shstrtab_at, shstrtab.len()), 0, 1, 0),
    ];
    for section in sections {
        section.write(&mut out);
    }
    let file_size = out.len() as u64;
    let mut header = Vec::with_capacity(DATA_START);
    header.extend_from_slice(b"\x7fELF\x02\x01\x01");
    header.push(if osversion.is_some() { 9 } else { 0 }); // EI_OSABI
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    header.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&0u64.to_le_bytes()); // entry
    header.extend_from_slice(&64u64.to_le_bytes()); // phoff
    header.extend_from_slice(&shoff.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes()); // flags
    header.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    header.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    header.extend_from_slice(&2u16.to_le_bytes()); // phnum
    header.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    header.extend_from_slice(&5u16.to_le_bytes()); // shnum
    header.extend_from_slice(&4u16.to_le_bytes()); // shstrndx
    // type, flags (R = 4), offset, vaddr, paddr, filesz, memsz, align
    for (kind, offset, size, align) in [
        (1u32, 0u64, file_size, 0x1000u64),
        (2, dynamic_at, dynamic.len() as u64, 8),
    ] {
        header.extend_from_slice(&kind.to_le_bytes());
        header.extend_from_slice(&4u32.to_le_bytes());
        for value in [offset, offset, offset, size, size, align] {
            header.extend_from_slice(&value.to_le_bytes());
        }
    }
    out[..DATA_START].copy_from_slice(&header);
    out
}

/// One ELF64 section header; address = file offset for allocated sections.
#[derive(Default)]
struct Section {
    name: u32,
    kind: u32,
    flags: u64,
    offset: u64,
    size: u64,
    link: u32,
    align: u64,
    entsize: u64,
}

impl Section {
    fn new(
        name: u32,
        kind: u32,
        flags: u64,
        (offset, size): (u64, usize),
        link: u32,
        align: u64,
        entsize: u64,
    ) -> Self {
        Self {
            name,
            kind,
            flags,
            offset,
            size: size as u64,
            link,
            align,
            entsize,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let address = if self.flags == 0 { 0 } else { self.offset };
        out.extend_from_slice(&self.name.to_le_bytes());
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&address.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.link.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // info
        out.extend_from_slice(&self.align.to_le_bytes());
        out.extend_from_slice(&self.entsize.to_le_bytes());
    }
}
