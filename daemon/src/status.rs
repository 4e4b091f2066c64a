//! What `hv_vssd -s` shows: state, frozen mounts, counters, the last
//! transactions.
//!
//! The running daemon publishes it as a JSON file (`status_file`, default
//! /var/run/hv_vssd.status), replaced atomically through
//! [`safefile::write_atomically`] (a new file under a random name, renamed
//! over the old one; never through a symbolic link or over a device),
//! after the daemon has answered each request: the host does not wait for
//! it. While something is frozen it is written only if its directory is
//! not on a frozen filesystem (checked each time; /var/run is on the root
//! filesystem on FreeBSD, and a write there while root is suspended would
//! block the daemon until the thaw it is supposed to do), else right after
//! the thaw. A status that is late is harmless, a daemon stuck on a write
//! is not.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::safefile;

/// How many transactions the status keeps.
pub const RECENT: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Idle,
    Frozen,
}

/// Totals since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub check_ok: u64,
    pub check_failed: u64,
    pub freeze_ok: u64,
    pub freeze_failed: u64,
    pub thaw_ok: u64,
    pub thaw_failed: u64,
    /// Thaws done by the watchdog because THAW did not come in time.
    pub watchdog_thaws: u64,
    /// Freezes undone because a later mount failed.
    pub rollbacks: u64,
    pub hook_failures: u64,
}

/// One finished request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// CHECK, FREEZE, THAW, WATCHDOG or SHUTDOWN (thaws the daemon did by
    /// itself).
    pub op: String,
    pub msgid: u64,
    pub success: bool,
    /// Why it failed, or notes ("already thawed by the watchdog").
    pub detail: String,
    pub duration_ms: u64,
    /// Mounts frozen (FREEZE), thawed (THAW, WATCHDOG, SHUTDOWN) or that
    /// would be frozen (CHECK).
    pub frozen: usize,
    pub skipped: usize,
    /// Unix time, seconds.
    pub finished_at: u64,
}

impl Transaction {
    /// The one log line every transaction leaves, e.g.
    /// `FREEZE msgid 7: success in 42 ms, froze 2 mounts, skipped 5`.
    pub fn summary(&self) -> String {
        let verb = match self.op.as_str() {
            "CHECK" => "would freeze",
            "FREEZE" => "froze",
            _ => "thawed",
        };
        let mut line = format!(
            "{} msgid {}: {} in {} ms, {verb} {} mounts, skipped {}",
            self.op,
            self.msgid,
            if self.success { "success" } else { "FAILURE" },
            self.duration_ms,
            self.frozen,
            self.skipped
        );
        if !self.detail.is_empty() {
            let _ = write!(line, " ({})", self.detail);
        }
        line
    }
}

/// The published status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    pub started_at: u64,
    pub updated_at: u64,
    pub state: State,
    /// Mount points frozen now (also those whose thaw failed and is being
    /// retried), escaped for display.
    pub frozen: Vec<String>,
    /// Filesystems an earlier daemon left frozen that could not be reached
    /// to thaw them at start (state file); they may still be frozen.
    #[serde(default)]
    pub unreachable: Vec<String>,
    pub frozen_since: Option<u64>,
    pub freeze_limit_secs: u64,
    pub counters: Counters,
    /// Most recent last.
    pub recent: VecDeque<Transaction>,
}

impl Status {
    pub fn new(pid: u32, freeze_limit_secs: u64) -> Self {
        let now = unix_now();
        Self {
            pid,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: now,
            updated_at: now,
            state: State::Idle,
            frozen: Vec::new(),
            unreachable: Vec::new(),
            frozen_since: None,
            freeze_limit_secs,
            counters: Counters::default(),
            recent: VecDeque::new(),
        }
    }

    pub fn record(&mut self, transaction: Transaction) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(transaction);
    }

    /// Replaces `path` atomically. Never call while a filesystem is frozen.
    pub fn publish(&mut self, path: &Path) -> std::io::Result<()> {
        self.updated_at = unix_now();
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        safefile::write_atomically(path, &json)
    }

    /// Reads a published status: a regular file of bounded size, opened
    /// without blocking (`hv_vssctl status` must answer at once).
    pub fn read(path: &Path) -> Result<Self, String> {
        let bytes = crate::safefile::read_regular(path, 1 << 20)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a status file: {e}", path.display()))
    }
}

/// What `hv_vssctl status` prints: whether the daemon runs, and its last
/// published status.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub running: bool,
    pub pid: Option<u32>,
    /// The freeze lock is held: a freeze is under way right now (by the
    /// daemon, or `hv_vssctl test`), whatever the status file says (it is
    /// not written while its own filesystem is frozen).
    pub freezing: bool,
    pub status: Option<Status>,
    /// Why there is no status, when there is none.
    pub problem: Option<String>,
}

impl Report {
    /// Renders for people.
    pub fn to_text(&self, now: u64) -> String {
        let mut out = String::new();
        match (self.running, self.pid) {
            (true, Some(pid)) => {
                let _ = writeln!(out, "hv_vssd is running as pid {pid}.");
            }
            _ => out.push_str("hv_vssd is not running.\n"),
        }
        if let Some(problem) = &self.problem {
            let _ = writeln!(out, "No status: {problem}");
        }
        if self.freezing {
            out.push_str(
                "A freeze is under way now (the freeze lock is held); the status below \
                 is the last one published, which comes up to date after the thaw when \
                 the status file is on a frozen filesystem.\n",
            );
        }
        let Some(s) = &self.status else {
            return out;
        };
        let _ = writeln!(
            out,
            "Version {}, started {}, status updated {}.",
            s.version,
            utc(s.started_at),
            utc(s.updated_at)
        );
        match s.state {
            State::Idle => out.push_str("State: idle, nothing frozen.\n"),
            State::Frozen if !self.running => {
                let _ = writeln!(
                    out,
                    "Last published state: frozen ({}), but the daemon is not running: on \
                     FreeBSD its UFS suspensions ended with it; on Linux the next start \
                     thaws what its state file lists.",
                    s.frozen.join(", ")
                );
            }
            State::Frozen => {
                let since = s.frozen_since.unwrap_or(s.updated_at);
                let _ = writeln!(
                    out,
                    "State: FROZEN since {} ({} s ago; the watchdog thaws after {} s): {}",
                    utc(since),
                    now.saturating_sub(since),
                    s.freeze_limit_secs,
                    if s.frozen.is_empty() {
                        "no mounts (hooks and ZFS sync only)".to_owned()
                    } else {
                        s.frozen.join(", ")
                    }
                );
            }
        }
        if !s.unreachable.is_empty() {
            let _ = writeln!(
                out,
                "WARNING: an earlier daemon froze {} and it could not be reached to thaw it: \
                 it may still be frozen (see the state file).",
                s.unreachable.join(", ")
            );
        }
        let c = &s.counters;
        let _ = writeln!(
            out,
            "Counters (ok/failed): check {}/{}, freeze {}/{}, thaw {}/{}; watchdog thaws {}, \
             rollbacks {}, hook failures {}.",
            c.check_ok,
            c.check_failed,
            c.freeze_ok,
            c.freeze_failed,
            c.thaw_ok,
            c.thaw_failed,
            c.watchdog_thaws,
            c.rollbacks,
            c.hook_failures
        );
        if s.recent.is_empty() {
            out.push_str("No transactions yet.\n");
        } else {
            out.push_str("Recent transactions (oldest first):\n");
            for t in &s.recent {
                let _ = writeln!(out, "  {} {}", utc(t.finished_at), t.summary());
            }
        }
        out
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2026-11-25T09:01:02Z` from Unix seconds (proleptic Gregorian, UTC).
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transaction(op: &str, msgid: u64, success: bool) -> Transaction {
        Transaction {
            op: op.to_owned(),
            msgid,
            success,
            detail: String::new(),
            duration_ms: 42,
            frozen: 2,
            skipped: 5,
            finished_at: 1_795_000_000,
        }
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn keeps_only_the_most_recent_transactions() {
        let mut s = Status::new(1, 60);
        for i in 0..15 {
            s.record(transaction("CHECK", i, true));
        }
        assert_eq!(s.recent.len(), RECENT);
        assert_eq!(s.recent.front().unwrap().msgid, 5);
        assert_eq!(s.recent.back().unwrap().msgid, 14);
    }

    #[test]
    fn summary_line_has_op_msgid_result_duration_and_counts() {
        let mut t = transaction("FREEZE", 77, false);
        t.detail = "cannot freeze /var: EBUSY".to_owned();
        assert_eq!(
            t.summary(),
            "FREEZE msgid 77: FAILURE in 42 ms, froze 2 mounts, skipped 5 (cannot freeze /var: EBUSY)"
        );
    }

    #[test]
    fn publish_and_read_round_trip_and_text_shows_frozen_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        let mut s = Status::new(4242, 60);
        s.state = State::Frozen;
        s.frozen = vec!["/var".to_owned(), "/".to_owned()];
        s.frozen_since = Some(1_795_000_000);
        s.counters.freeze_ok = 1;
        s.record(transaction("FREEZE", 9, true));
        s.publish(&path).unwrap();
        let read = Status::read(&path).unwrap();
        assert_eq!(read, s);
        let report = Report {
            freezing: false,
            running: true,
            pid: Some(4242),
            status: Some(read),
            problem: None,
        };
        let text = report.to_text(1_795_000_012);
        assert!(text.contains("running as pid 4242"), "{text}");
        assert!(
            text.contains("FROZEN since 2026-11-18T11:06:40Z (12 s ago"),
            "{text}"
        );
        assert!(text.contains("/var, /"), "{text}");
        assert!(text.contains("freeze 1/0"), "{text}");
        assert!(text.contains("FREEZE msgid 9: success in 42 ms"), "{text}");
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["running"], true);
        assert_eq!(json["status"]["state"], "frozen");
        assert_eq!(json["status"]["frozen"][1], "/");
        assert_eq!(json["status"]["counters"]["freeze_ok"], 1);
    }

    #[test]
    fn a_missing_status_is_reported_not_running() {
        let report = Report {
            freezing: false,
            running: false,
            pid: None,
            status: None,
            problem: Some("cannot read /x".to_owned()),
        };
        let text = report.to_text(0);
        assert!(text.contains("not running") && text.contains("cannot read /x"));
    }

    #[test]
    fn a_stale_frozen_status_of_a_dead_daemon_is_not_shown_as_frozen() {
        let mut s = Status::new(1, 60);
        s.state = State::Frozen;
        s.frozen = vec!["/".to_owned()];
        let report = Report {
            freezing: false,
            running: false,
            pid: None,
            status: Some(s),
            problem: None,
        };
        let text = report.to_text(0);
        assert!(!text.contains("State: FROZEN"), "{text}");
        assert!(text.contains("daemon is not running"), "{text}");
    }
}
