//! What a process costs, from /proc: context switches (each one a wakeup
//! or a preemption), CPU time and resident memory. All threads are summed.

use std::path::Path;
use std::time::Duration;

/// A snapshot of one process's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProcSample {
    pub(crate) voluntary_switches: u64,
    pub(crate) involuntary_switches: u64,
    /// utime + stime, in clock ticks.
    pub(crate) cpu_ticks: u64,
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
}

impl ProcSample {
    /// Reads `/proc/<pid>/{status,stat}` and every `/proc/<pid>/task/*/status`.
    pub(crate) fn read(pid: u32) -> std::io::Result<ProcSample> {
        let base = Path::new("/proc").join(pid.to_string());
        let status = std::fs::read_to_string(base.join("status"))?;
        let stat = std::fs::read_to_string(base.join("stat"))?;
        let mut sample = ProcSample {
            rss_kib: status_field(&status, "VmRSS:").unwrap_or(0),
            hwm_kib: status_field(&status, "VmHWM:").unwrap_or(0),
            cpu_ticks: cpu_ticks(&stat).unwrap_or(0),
            ..ProcSample::default()
        };
        // The process-level status counts only the main thread's switches.
        for task in std::fs::read_dir(base.join("task"))? {
            let Ok(task) = task else { continue };
            let Ok(text) = std::fs::read_to_string(task.path().join("status")) else {
                continue; // the thread exited meanwhile
            };
            sample.voluntary_switches +=
                status_field(&text, "voluntary_ctxt_switches:").unwrap_or(0);
            sample.involuntary_switches +=
                status_field(&text, "nonvoluntary_ctxt_switches:").unwrap_or(0);
        }
        Ok(sample)
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub(crate) fn ticks_to_duration(ticks: u64) -> Duration {
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0)
        .unwrap_or(100);
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// `Key:   123 kB` or `key:\t5` → 123 / 5.
fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// utime (field 14) + stime (field 15) of /proc/<pid>/stat; the command
/// name (field 2) may hold spaces and parentheses, so count after the last ')'.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // after ')': field 3 is state; utime is field 14 → index 11 here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\thv_vssd\nVmHWM:\t    2048 kB\nVmRSS:\t    1536 kB\n\
                      voluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t2\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(1536));
        assert_eq!(status_field(status, "VmHWM:"), Some(2048));
        assert_eq!(status_field(status, "voluntary_ctxt_switches:"), Some(7));
        assert_eq!(status_field(status, "nonvoluntary_ctxt_switches:"), Some(2));
        let stat = "1234 (odd) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 4 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(stat), Some(21));
    }

    #[test]
    fn reads_this_process() {
        let sample = ProcSample::read(std::process::id()).expect("own /proc entry");
        assert!(sample.rss_kib > 0);
        assert!(sample.voluntary_switches + sample.involuntary_switches > 0);
    }
}
