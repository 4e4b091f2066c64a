//! Hooks: executables in the hooks directory that let applications take
//! part in a backup (flush a database, stop a writer).
//!
//! Contract (also in hv_vssd(8)):
//! - `hook freeze` runs before anything is frozen, hooks in lexical order
//!   of their file names; a non-zero exit, a signal or a timeout vetoes the
//!   freeze, and the hooks whose `freeze` already succeeded get `thaw`;
//! - `hook thaw` runs after the filesystems are thawed, in reverse order;
//! - `hook freeze-fail` runs, in reverse order, when filesystems could not
//!   be frozen after the freeze hooks succeeded (everything is rolled back);
//! - each call has `hook_timeout`, then its process group gets SIGKILL;
//! - hooks must be regular files owned by root and not writable by group
//!   or others (as VMware Tools and the Azure snapshot extension require),
//!   otherwise they are refused and logged; names starting with `.` or
//!   ending in `~`, `.sample`, `.orig`, `.bak`, `.disabled` are ignored.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::child::{self, Ending, Finished};

/// The argument a hook is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Freeze,
    Thaw,
    FreezeFail,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Freeze => "freeze",
            Self::Thaw => "thaw",
            Self::FreezeFail => "freeze-fail",
        }
    }
}

/// An accepted hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub path: PathBuf,
}

impl Hook {
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }
}

/// A hook that was not accepted, and why (logged as is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: PathBuf,
    pub reason: String,
}

/// The hooks directory, scanned: accepted hooks in lexical order plus
/// refusals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookSet {
    pub hooks: Vec<Hook>,
    pub refused: Vec<Refused>,
}

const IGNORED_SUFFIXES: &[&str] = &["~", ".sample", ".orig", ".bak", ".disabled", ".dpkg-old"];

/// Scans `dir`. `owner` is the uid hooks must belong to (root in production;
/// tests pass their own uid). A missing directory means no hooks.
pub fn scan(dir: &Path, owner: u32) -> HookSet {
    let mut set = HookSet::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return set,
        Err(e) => {
            set.refused.push(Refused {
                path: dir.to_owned(),
                reason: format!("cannot read the hooks directory: {e}"),
            });
            return set;
        }
    };
    if let Some(reason) = insecure(dir, owner, true) {
        set.refused.push(Refused {
            path: dir.to_owned(),
            reason: format!("hooks directory refused: {reason}"),
        });
        return set;
    }
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        if name.starts_with('.') || IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            continue;
        }
        match insecure(&path, owner, false) {
            None => set.hooks.push(Hook { path }),
            Some(reason) => set.refused.push(Refused { path, reason }),
        }
    }
    set
}

/// Why `path` must not be run (or trusted as the hooks directory).
fn insecure(path: &Path, owner: u32, is_dir: bool) -> Option<String> {
    // symlink_metadata: a symlink is refused rather than followed, so
    // what is checked is what runs.
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => return Some(format!("cannot stat: {e}")),
    };
    let mode = meta.permissions().mode();
    if is_dir {
        if !meta.is_dir() {
            return Some("not a directory".to_owned());
        }
    } else if !meta.is_file() {
        return Some("not a regular file (symlinks are not followed)".to_owned());
    } else if mode & 0o111 == 0 {
        return Some("not executable (chmod 0755 it to enable it)".to_owned());
    }
    if meta.uid() != owner {
        return Some(format!(
            "owned by uid {}, must be owned by uid {owner}",
            meta.uid()
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "mode {:04o} is writable by group or others (chmod go-w it)",
            mode & 0o7777
        ));
    }
    None
}

/// One hook call and how it went.
#[derive(Debug, Clone)]
pub struct HookRun {
    pub hook: Hook,
    pub phase: Phase,
    pub result: Result<Finished, String>,
}

impl HookRun {
    pub fn succeeded(&self) -> bool {
        matches!(&self.result, Ok(f) if f.ending.success())
    }

    /// One log line: `hook 10-db freeze: exit status 0 in 12 ms`.
    pub fn summary(&self) -> String {
        match &self.result {
            Ok(f) => format!(
                "hook {} {}: {} in {} ms",
                self.hook.name(),
                self.phase.as_str(),
                f.ending,
                f.elapsed.as_millis()
            ),
            Err(e) => format!(
                "hook {} {}: cannot run: {e}",
                self.hook.name(),
                self.phase.as_str()
            ),
        }
    }
}

/// Runs `hook phase` with a time limit.
pub fn run(hook: &Hook, phase: Phase, limit: Duration) -> HookRun {
    HookRun {
        hook: hook.clone(),
        phase,
        result: child::run(&hook.path, &[phase.as_str()], limit).map_err(|e| e.to_string()),
    }
}

/// The limit for the next hook: its own `limit`, cut to what is left before
/// `deadline` (the request budget); `None` when nothing is left.
fn limit_before(limit: Duration, deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(limit),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| limit.min(left))
        }
    }
}

/// A run that never started: the request budget was spent.
fn out_of_time(hook: &Hook, phase: Phase) -> HookRun {
    HookRun {
        hook: hook.clone(),
        phase,
        result: Err("not started: no time left in request_budget".to_owned()),
    }
}

/// Runs the freeze hooks in order until one fails. Returns every run; the
/// freeze may proceed only when all succeeded. The hooks to `thaw` on a veto
/// are those whose run succeeded (see [`thaw_order`]). Each hook gets at
/// most `limit`, and none runs past `deadline`.
pub fn run_freeze(hooks: &[Hook], limit: Duration, deadline: Option<Instant>) -> Vec<HookRun> {
    let mut runs = Vec::new();
    for hook in hooks {
        let run = match limit_before(limit, deadline) {
            Some(limit) => run(hook, Phase::Freeze, limit),
            None => out_of_time(hook, Phase::Freeze),
        };
        let ok = run.succeeded();
        runs.push(run);
        if !ok {
            break;
        }
    }
    runs
}

/// The hooks to call after a freeze, last frozen first.
pub fn thaw_order(frozen: &[Hook]) -> impl Iterator<Item = &Hook> {
    frozen.iter().rev()
}

/// Runs `phase` (thaw or freeze-fail) on `frozen` in reverse order; every
/// hook runs even if an earlier one fails.
pub fn run_reverse(frozen: &[Hook], phase: Phase, limit: Duration) -> Vec<HookRun> {
    thaw_order(frozen).map(|h| run(h, phase, limit)).collect()
}

/// Whether a run timed out (for the log).
pub fn timed_out(run: &HookRun) -> bool {
    matches!(&run.result, Ok(f) if f.ending == Ending::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn uid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    /// A hooks dir whose hooks append `name phase` to a journal file.
    fn hooks_dir(names: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let journal = dir.path().join(".journal");
        for (name, body) in names {
            let path = dir.path().join(name);
            fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"{name} $1\" >> {}\n{body}\n",
                    journal.display()
                ),
            )
            .unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        (dir, journal)
    }

    fn journal(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn freeze_runs_in_lexical_order_and_thaw_in_reverse() {
        let (dir, log) = hooks_dir(&[("20-b", ""), ("10-a", ""), ("30-c", "")]);
        let set = scan(dir.path(), uid());
        assert!(set.refused.is_empty(), "{:?}", set.refused);
        let runs = run_freeze(&set.hooks, Duration::from_secs(5), None);
        assert!(runs.iter().all(HookRun::succeeded));
        run_reverse(&set.hooks, Phase::Thaw, Duration::from_secs(5));
        assert_eq!(
            journal(&log),
            [
                "10-a freeze",
                "20-b freeze",
                "30-c freeze",
                "30-c thaw",
                "20-b thaw",
                "10-a thaw"
            ]
        );
    }

    #[test]
    fn a_failing_freeze_hook_stops_the_rest_and_only_earlier_hooks_are_thawed() {
        let (dir, log) = hooks_dir(&[("10-a", ""), ("20-b", "exit 1"), ("30-c", "")]);
        let set = scan(dir.path(), uid());
        let runs = run_freeze(&set.hooks, Duration::from_secs(5), None);
        assert_eq!(runs.len(), 2);
        assert!(!runs[1].succeeded());
        assert!(runs[1].summary().contains("exit status 1"));
        let ok: Vec<Hook> = runs
            .iter()
            .filter(|r| r.succeeded())
            .map(|r| r.hook.clone())
            .collect();
        run_reverse(&ok, Phase::Thaw, Duration::from_secs(5));
        assert_eq!(journal(&log), ["10-a freeze", "20-b freeze", "10-a thaw"]);
    }

    #[test]
    fn a_hung_hook_is_killed_at_the_timeout_and_vetoes() {
        let (dir, _) = hooks_dir(&[("10-hang", "sleep 30")]);
        let set = scan(dir.path(), uid());
        let started = std::time::Instant::now();
        let runs = run_freeze(&set.hooks, Duration::from_millis(300), None);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(timed_out(&runs[0]) && !runs[0].succeeded());
        assert!(runs[0].summary().contains("timed out"));
    }

    #[test]
    fn no_hook_starts_after_the_deadline_and_each_gets_only_what_is_left() {
        let (dir, journal) = hooks_dir(&[("10-slow", "sleep 30"), ("20-never", "")]);
        let set = scan(dir.path(), uid());
        let started = std::time::Instant::now();
        let deadline = started + Duration::from_millis(400);
        let runs = run_freeze(&set.hooks, Duration::from_secs(20), Some(deadline));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the 20 s limit won"
        );
        assert!(timed_out(&runs[0]), "{}", runs[0].summary());
        assert_eq!(runs.len(), 1, "a veto stops the freeze hooks");
        let past = run_freeze(&set.hooks[1..], Duration::from_secs(5), Some(started));
        assert!(!past[0].succeeded());
        assert!(past[0].summary().contains("no time left in request_budget"));
        let ran = fs::read_to_string(journal).unwrap_or_default();
        assert!(!ran.contains("20-never"), "{ran}");
    }

    #[test]
    fn hook_output_is_captured() {
        let (dir, _) = hooks_dir(&[("10-talk", "echo flushed 42 tables; echo oops >&2")]);
        let set = scan(dir.path(), uid());
        let runs = run_freeze(&set.hooks, Duration::from_secs(5), None);
        let output = &runs[0].result.as_ref().unwrap().output;
        assert!(output.contains("flushed 42 tables") && output.contains("oops"));
    }

    #[test]
    fn unsafe_hooks_are_refused_with_reasons() {
        let (dir, _) = hooks_dir(&[("10-ok", ""), ("20-groupw", ""), ("30-worldw", "")]);
        let p = dir.path();
        fs::set_permissions(p.join("20-groupw"), fs::Permissions::from_mode(0o775)).unwrap();
        fs::set_permissions(p.join("30-worldw"), fs::Permissions::from_mode(0o757)).unwrap();
        fs::write(p.join("40-noexec"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(p.join("40-noexec"), fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink("/bin/true", p.join("50-link")).unwrap();
        fs::write(p.join("60-db.sample"), "").unwrap();
        fs::write(p.join("old~"), "").unwrap();
        let set = scan(p, uid());
        let names: Vec<String> = set.hooks.iter().map(Hook::name).collect();
        assert_eq!(names, ["10-ok"]);
        let reason = |n: &str| {
            set.refused
                .iter()
                .find(|r| r.path.ends_with(n))
                .map_or_else(|| panic!("{n} not refused"), |r| r.reason.clone())
        };
        assert!(reason("20-groupw").contains("0775"));
        assert!(reason("30-worldw").contains("writable by group or others"));
        assert!(reason("40-noexec").contains("not executable"));
        assert!(reason("50-link").contains("symlink"));
        assert_eq!(
            set.refused.len(),
            4,
            "samples and backups are ignored silently"
        );
    }

    #[test]
    fn hooks_of_another_owner_are_refused() {
        let (dir, _) = hooks_dir(&[]);
        // The directory itself is owned by us, not by the required owner.
        let set = scan(dir.path(), uid().wrapping_add(1));
        assert!(set.hooks.is_empty());
        assert!(set.refused[0].reason.contains("must be owned by uid"));
    }

    #[test]
    fn a_world_writable_hooks_directory_is_refused_whole() {
        let (dir, _) = hooks_dir(&[("10-ok", "")]);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let set = scan(dir.path(), uid());
        assert!(set.hooks.is_empty());
        assert!(set.refused[0].reason.contains("hooks directory refused"));
    }

    #[test]
    fn a_missing_directory_means_no_hooks() {
        assert_eq!(
            scan(Path::new("/nonexistent/hooks.d"), 0),
            HookSet::default()
        );
    }
}
