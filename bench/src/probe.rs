//! Reading the records of the `LD_PRELOAD` shim (`bench/probe`), which
//! stamps every FIFREEZE/FITHAW made inside `hv_vssd` and `qemu-ga`.
//! The 32-byte little-endian layout is documented in `bench/probe/src/lib.rs`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The environment variable the shim reads (must match the shim).
pub(crate) const LOG_VAR: &str = "HV_VSS_BENCH_PROBE_LOG";
/// The shim's file name in the cargo target directory.
pub(crate) const LIBRARY: &str = "libhv_vss_bench_probe.so";

const RECORD_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Freeze,
    Thaw,
    /// The VSS device's READ ioctl (a request handed to the daemon).
    DeviceRead,
    /// The VSS device's WRITE ioctl (the daemon's answer).
    DeviceWrite,
}

/// One FIFREEZE or FITHAW made by a probed process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) call: Call,
    pub(crate) succeeded: bool,
    pub(crate) errno: i32,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
}

impl Record {
    fn parse(bytes: &[u8; RECORD_LEN]) -> Option<Record> {
        let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let long = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let call = match u32::from_le_bytes(word(0)) {
            1 => Call::Freeze,
            2 => Call::Thaw,
            3 => Call::DeviceRead,
            4 => Call::DeviceWrite,
            _ => return None,
        };
        Some(Record {
            call,
            succeeded: i32::from_le_bytes(word(4)) == 0,
            errno: i32::from_le_bytes(word(8)),
            start_ns: long(16),
            end_ns: long(24),
        })
    }
}

/// What the probed process did during one cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FreezeSpan {
    /// Successful freezes and thaws.
    pub(crate) froze: usize,
    pub(crate) thawed: usize,
    /// Every FITHAW call, including ones that failed (not frozen).
    pub(crate) thaw_calls: usize,
    /// When the first successful FIFREEZE was called.
    pub(crate) first_freeze_start: Option<u64>,
    /// When the last successful FIFREEZE returned.
    pub(crate) last_freeze_end: Option<u64>,
    /// When the last successful FITHAW returned.
    pub(crate) last_thaw_end: Option<u64>,
}

impl FreezeSpan {
    pub(crate) fn of(records: &[Record]) -> FreezeSpan {
        let mut span = FreezeSpan::default();
        for r in records {
            match (r.call, r.succeeded) {
                (Call::Freeze, true) => {
                    span.froze += 1;
                    span.first_freeze_start = Some(
                        span.first_freeze_start
                            .map_or(r.start_ns, |t| t.min(r.start_ns)),
                    );
                    span.last_freeze_end =
                        Some(span.last_freeze_end.map_or(r.end_ns, |t| t.max(r.end_ns)));
                }
                (Call::Thaw, true) => {
                    span.thawed += 1;
                    span.thaw_calls += 1;
                    span.last_thaw_end =
                        Some(span.last_thaw_end.map_or(r.end_ns, |t| t.max(r.end_ns)));
                }
                (Call::Thaw, false) => span.thaw_calls += 1,
                (Call::Freeze, false) | (Call::DeviceRead | Call::DeviceWrite, _) => {}
            }
        }
        span
    }
}

/// Where the time of one host request went inside the guest, from the
/// host's send to its receipt of the reply (`from` → `to`):
/// `deliver` (engine, device wakeup, daemon's READ), `before` (daemon work
/// before the first freeze/thaw call), `work` (the FIFREEZE/FITHAW calls),
/// `after` (daemon work after the last one, until its WRITE), `reply`
/// (WRITE, engine, reply to the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PhaseProfile {
    pub(crate) deliver: u64,
    pub(crate) before: u64,
    pub(crate) work: u64,
    pub(crate) after: u64,
    pub(crate) reply: u64,
}

impl PhaseProfile {
    /// `None` if the records do not show READ, `call`s and WRITE in order.
    pub(crate) fn of(records: &[Record], call: Call, from: u64, to: u64) -> Option<PhaseProfile> {
        // By start time: the host may have the reply before the daemon's
        // WRITE ioctl has returned to it.
        let inside = |r: &&Record| r.start_ns >= from && r.start_ns <= to && r.succeeded;
        let read = records
            .iter()
            .filter(inside)
            .find(|r| r.call == Call::DeviceRead)?;
        let calls: Vec<&Record> = records
            .iter()
            .filter(inside)
            .filter(|r| r.call == call && r.start_ns >= read.end_ns)
            .collect();
        let first = calls.iter().map(|r| r.start_ns).min()?;
        let last = calls.iter().map(|r| r.end_ns).max()?;
        let write = records
            .iter()
            .filter(inside)
            .find(|r| r.call == Call::DeviceWrite && r.start_ns >= last)?;
        Some(PhaseProfile {
            deliver: read.end_ns.saturating_sub(from),
            before: first.saturating_sub(read.end_ns),
            work: last.saturating_sub(first),
            after: write.start_ns.saturating_sub(last),
            reply: to.saturating_sub(write.start_ns),
        })
    }
}

/// The record file of one probed process, read incrementally.
#[derive(Debug)]
pub(crate) struct ProbeLog {
    path: PathBuf,
    offset: u64,
}

impl ProbeLog {
    pub(crate) fn new(path: &Path) -> std::io::Result<ProbeLog> {
        File::create(path)?;
        Ok(ProbeLog {
            path: path.to_owned(),
            offset: 0,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Records appended since the last call.
    pub(crate) fn take_new(&mut self) -> std::io::Result<Vec<Record>> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let whole = bytes.len() - bytes.len() % RECORD_LEN;
        self.offset += whole as u64;
        Ok(bytes[..whole]
            .chunks_exact(RECORD_LEN)
            .filter_map(|chunk| <&[u8; RECORD_LEN]>::try_from(chunk).ok())
            .filter_map(Record::parse)
            .collect())
    }
}

/// Finds the shim next to the running executable (`target/<profile>/`).
pub(crate) fn find_library(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(format!("{} is not a file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(LIBRARY))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "cannot find {LIBRARY} next to {}: build it with \
                 `cargo build --release -p hv-vss-bench-probe` (same profile and target \
                 directory as hv-vss-bench), or pass --probe PATH",
                exe.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, ret: i32, start: u64, end: u64) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&kind.to_le_bytes());
        b[4..8].copy_from_slice(&ret.to_le_bytes());
        b[8..12].copy_from_slice(&(if ret == 0 { 0i32 } else { 22 }).to_le_bytes());
        b[12..16].copy_from_slice(&42u32.to_le_bytes());
        b[16..24].copy_from_slice(&start.to_le_bytes());
        b[24..32].copy_from_slice(&end.to_le_bytes());
        b
    }

    #[test]
    fn reads_records_incrementally_and_spans_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut log = ProbeLog::new(&path).expect("create");
        let mut bytes = Vec::new();
        bytes.extend(record(1, 0, 100, 150));
        bytes.extend(record(1, 0, 160, 200));
        bytes.extend(record(2, 0, 300, 320));
        bytes.extend(record(2, -1, 330, 331));
        bytes.extend(record(2, 0, 340, 390));
        bytes.extend(&[9u8; 7]); // a torn record: left for the next read
        std::fs::write(&path, &bytes).expect("write");
        let records = log.take_new().expect("read");
        assert_eq!(records.len(), 5);
        assert!(!records[3].succeeded);
        assert_eq!(records[3].errno, 22);
        let span = FreezeSpan::of(&records);
        assert_eq!(span.froze, 2);
        assert_eq!(span.thawed, 2);
        assert_eq!(span.thaw_calls, 3);
        assert_eq!(span.first_freeze_start, Some(100));
        assert_eq!(span.last_freeze_end, Some(200));
        assert_eq!(span.last_thaw_end, Some(390));
        assert!(log.take_new().expect("read again").is_empty());
    }

    #[test]
    fn profiles_a_request_between_read_and_write() {
        let parse = |b: [u8; 32]| Record::parse(&b).expect("valid record");
        let records = [
            parse(record(3, 0, 110, 120)),
            parse(record(1, 0, 150, 170)),
            parse(record(1, 0, 175, 190)),
            parse(record(4, 0, 200, 270)),
        ];
        let profile = PhaseProfile::of(&records, Call::Freeze, 100, 260).expect("complete");
        assert_eq!(
            profile,
            PhaseProfile {
                deliver: 20,
                before: 30,
                work: 40,
                after: 10,
                reply: 60
            }
        );
        assert!(PhaseProfile::of(&records, Call::Thaw, 100, 260).is_none());
    }

    #[test]
    fn unknown_kinds_are_ignored() {
        assert!(Record::parse(&record(7, 0, 1, 2)).is_none());
        assert_eq!(
            Record::parse(&record(4, 0, 1, 2)).map(|r| r.call),
            Some(Call::DeviceWrite)
        );
    }
}
