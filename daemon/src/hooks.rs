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
//! - each call has `hook_timeout` (cut to what is left of the request's
//!   deadline), then its process group gets SIGKILL;
//! - hooks must be regular files owned by root and not writable by group
//!   or others (as VMware Tools and the Azure snapshot extension require),
//!   otherwise they are refused and logged; names starting with `.` or
//!   ending in `~`, `.sample`, `.orig`, `.bak`, `.disabled` are ignored;
//! - a hook runs with the hooks directory as its working directory, the
//!   environment `PATH`, `HOME=/`, `HV_VSS_PHASE` (its argument) and
//!   `HV_VSS_CONFIG` (the configuration file), nothing else.
//!
//! Root runs these files, so nobody else may choose them:
//! - [`scan`] opens the hooks directory once per freeze by walking its path
//!   from `/`, one component at a time, without letting the kernel follow
//!   a symbolic link: every directory on the way must be owned by root (or
//!   the hook owner) and not writable by group or others, except a sticky
//!   directory such as /tmp when the next step is owned by root (or the
//!   hook owner), since the sticky bit stops others from renaming or
//!   removing it. A symbolic link is followed by hand, under the same rule
//!   for the directory that holds it. The hooks directory itself must be
//!   owned by the hook owner and not writable by group or others, sticky or
//!   not (a user who can add entries could add a hard link to any root
//!   program).
//! - Every [`Hook`] holds that directory descriptor, and is executed
//!   relative to it: the child changes into it with fchdir(2) and executes
//!   `./name`. Renaming or replacing a directory on the path afterwards
//!   changes nothing. (fexecve(2) of the opened file would be tighter for
//!   binaries, but a `#!` script is then handed to its interpreter as
//!   `/dev/fd/N`: FreeBSD's sys/kern/imgact_shell.c does that, and devfs
//!   only has /dev/fd/0-2 unless fdescfs(5) is mounted; on Linux it needs
//!   /proc. Hooks are mostly scripts.)
//! - Just before each call, at freeze and at thaw, the directory (through
//!   its descriptor) and the file are checked again; a hook that fails the
//!   check is not run and counts as failed.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

use crate::child::{self, Ending, Finished};
use crate::log::Escaped;

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

/// Environment variable naming the phase (the hook's argument).
pub const PHASE_ENV: &str = "HV_VSS_PHASE";
/// Environment variable naming the daemon's configuration file.
pub const CONFIG_ENV: &str = "HV_VSS_CONFIG";

/// Symbolic links followed on the way to the hooks directory, at most.
const MAX_LINKS: usize = 32;

/// The hooks directory as opened (and checked) by [`scan`].
#[derive(Debug)]
struct HooksDir {
    fd: OwnedFd,
    /// As configured, for messages.
    path: PathBuf,
    /// The uid hooks and the directory must belong to.
    owner: u32,
    /// What hooks get as `HV_VSS_CONFIG`.
    config_file: PathBuf,
}

/// An accepted hook, bound to the directory descriptor it was found in.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The configured directory joined with the file name, for messages.
    pub path: PathBuf,
    file_name: OsString,
    dir: Rc<HooksDir>,
}

impl PartialEq for Hook {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Eq for Hook {}

impl Hook {
    /// The file name, escaped for a log line.
    pub fn name(&self) -> String {
        Escaped(&self.file_name).to_string()
    }

    /// `./name phase`, run from the held directory.
    fn command(&self, phase: Phase) -> std::process::Command {
        let mut program = OsString::from("./");
        program.push(&self.file_name);
        let mut command = child::command(program);
        command
            .arg(phase.as_str())
            .env(PHASE_ENV, phase.as_str())
            .env(CONFIG_ENV, &self.dir.config_file);
        let dir = self.dir.fd.as_raw_fd();
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls fchdir(2), which is async-signal-safe; `dir` is open
        // (held by `self.dir`) until the spawn returns, and the child's copy
        // closes at exec (O_CLOEXEC).
        unsafe {
            command.pre_exec(move || {
                if libc::fchdir(dir) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        command
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

/// Opens and scans `dir` (see the module comment). `owner` is the uid hooks
/// must belong to (root in production; tests pass their own uid);
/// `config_file` is what hooks get as `HV_VSS_CONFIG`. A missing directory
/// means no hooks.
pub fn scan(dir: &Path, owner: u32, config_file: &Path) -> HookSet {
    let mut set = HookSet::default();
    let refuse = |reason: String| HookSet {
        hooks: Vec::new(),
        refused: vec![Refused {
            path: dir.to_owned(),
            reason,
        }],
    };
    let fd = match open_trusted(dir, owner) {
        Ok(Some(fd)) => fd,
        Ok(None) => return set,
        Err(reason) => return refuse(format!("hooks directory refused: {reason}")),
    };
    let names = match list(&fd) {
        Ok(names) => names,
        Err(e) => return refuse(format!("cannot read the hooks directory: {e}")),
    };
    let hooks_dir = Rc::new(HooksDir {
        fd,
        path: dir.to_owned(),
        owner,
        config_file: config_file.to_owned(),
    });
    for name in names {
        let bytes = name.as_bytes();
        if bytes.starts_with(b".")
            || IGNORED_SUFFIXES
                .iter()
                .any(|s| bytes.ends_with(s.as_bytes()))
        {
            continue;
        }
        let path = dir.join(&name);
        match insecure_hook(&hooks_dir.fd, &name, owner) {
            None => set.hooks.push(Hook {
                path,
                file_name: name,
                dir: Rc::clone(&hooks_dir),
            }),
            Some(reason) => set.refused.push(Refused { path, reason }),
        }
    }
    set
}

/// The entries of an open directory, sorted by their bytes.
fn list(dir: &OwnedFd) -> nix::Result<Vec<OsString>> {
    let mut listing = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    names.sort();
    Ok(names)
}

/// Opens `dir` by walking its path from `/` (see the module comment).
/// `Ok(None)`: it does not exist. `Err`: why it cannot be trusted.
fn open_trusted(dir: &Path, owner: u32) -> Result<Option<OwnedFd>, String> {
    let trusted = |uid: u32| uid == 0 || uid == owner;
    let open_root = || -> Result<(OwnedFd, FileStat), String> {
        let root = nix::fcntl::open(
            "/",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open /: {e}"))?;
        let stat = fstat(&root).map_err(|e| format!("cannot stat /: {e}"))?;
        Ok((root, stat))
    };
    if !dir.is_absolute() {
        return Err(format!("{} is not an absolute path", dir.display()));
    }
    let (mut current, mut current_stat) = open_root()?;
    let mut shown = PathBuf::from("/");
    if !trusted(current_stat.st_uid) {
        return Err(format!("/ is owned by uid {}", current_stat.st_uid));
    }
    let mut pending: Vec<OsString> = steps(dir);
    pending.reverse(); // popped from the end
    let mut links = 0;
    while let Some(name) = pending.pop() {
        let entry = match fstatat(&current, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(entry) => entry,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(format!("cannot stat {}: {e}", shown.join(&name).display())),
        };
        if let Some(reason) = untrusted_step(&current_stat, &entry, trusted) {
            return Err(format!(
                "{} {reason}, so another user could replace {}",
                shown.display(),
                Escaped(&name)
            ));
        }
        if kind(&entry) == SFlag::S_IFLNK {
            links += 1;
            if links > MAX_LINKS {
                return Err(format!("too many symbolic links in {}", dir.display()));
            }
            let target = readlinkat(&current, name.as_os_str()).map_err(|e| {
                format!("cannot read the link {}: {e}", shown.join(&name).display())
            })?;
            let target = PathBuf::from(target);
            if target.is_absolute() {
                (current, current_stat) = open_root()?;
                shown = PathBuf::from("/");
            }
            let mut more = steps(&target);
            more.reverse();
            pending.extend(more);
            continue;
        }
        if kind(&entry) != SFlag::S_IFDIR {
            return Err(format!(
                "{} is not a directory",
                shown.join(&name).display()
            ));
        }
        let next = match openat(
            &current,
            name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(next) => next,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(format!("cannot open {}: {e}", shown.join(&name).display())),
        };
        let next_stat =
            fstat(&next).map_err(|e| format!("cannot stat {}: {e}", shown.display()))?;
        if (next_stat.st_dev, next_stat.st_ino) != (entry.st_dev, entry.st_ino) {
            return Err(format!(
                "{} changed while it was checked",
                shown.join(&name).display()
            ));
        }
        if name == ".." {
            shown.pop();
        } else {
            shown.push(&name);
        }
        if !trusted(next_stat.st_uid) {
            return Err(format!(
                "{} is owned by uid {}",
                shown.display(),
                next_stat.st_uid
            ));
        }
        (current, current_stat) = (next, next_stat);
    }
    if let Some(reason) = insecure_dir(&current_stat, owner) {
        return Err(reason);
    }
    Ok(Some(current))
}

/// The components of `path` to walk: names and `..` (`/` and `.` dropped).
fn steps(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT
}

/// Why taking `entry` from the directory `parent` is not safe, if it is not:
/// `parent` is writable by group or others, and neither sticky nor holding
/// an entry owned by a trusted uid.
fn untrusted_step(
    parent: &FileStat,
    entry: &FileStat,
    trusted: impl Fn(u32) -> bool,
) -> Option<String> {
    let mode = parent.st_mode & 0o7777;
    if mode & 0o022 == 0 {
        return None;
    }
    let sticky = mode & 0o1000 != 0;
    if sticky && trusted(entry.st_uid) {
        return None;
    }
    Some(format!(
        "is writable by group or others (mode {mode:04o}{})",
        if sticky {
            format!(", sticky, but the entry is owned by uid {}", entry.st_uid)
        } else {
            String::new()
        }
    ))
}

/// Why the hooks directory itself must not be trusted, if it must not.
fn insecure_dir(stat: &FileStat, owner: u32) -> Option<String> {
    if kind(stat) == SFlag::S_IFDIR {
        foreign_or_shared(stat, owner)
    } else {
        Some("not a directory".to_owned())
    }
}

/// Why the entry `name` of the hooks directory must not be run, if it must
/// not. A symbolic link is refused rather than followed, so what is checked
/// is what runs.
fn insecure_hook(dir: &impl AsFd, name: &OsStr, owner: u32) -> Option<String> {
    let stat = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(e) => return Some(format!("cannot stat: {e}")),
    };
    if kind(&stat) != SFlag::S_IFREG {
        Some("not a regular file (symlinks are not followed)".to_owned())
    } else if stat.st_mode & 0o111 == 0 {
        Some("not executable (chmod 0755 it to enable it)".to_owned())
    } else {
        foreign_or_shared(&stat, owner)
    }
}

/// Why the hooks directory or a hook must not be trusted, if it must not:
/// owned by somebody else, or writable by group or others.
fn foreign_or_shared(stat: &FileStat, owner: u32) -> Option<String> {
    let mode = stat.st_mode & 0o7777;
    if stat.st_uid != owner {
        Some(format!(
            "owned by uid {}, must be owned by uid {owner}",
            stat.st_uid
        ))
    } else if mode & 0o022 != 0 {
        Some(format!(
            "mode {mode:04o} is writable by group or others (chmod go-w it)"
        ))
    } else {
        None
    }
}

/// Checks a hook again, through the held directory, just before it runs.
fn recheck(hook: &Hook) -> Result<(), String> {
    let dir = &hook.dir;
    let stat = fstat(&dir.fd).map_err(|e| format!("cannot stat the hooks directory: {e}"))?;
    if let Some(reason) = insecure_dir(&stat, dir.owner) {
        return Err(format!(
            "the hooks directory {} is now {reason}",
            dir.path.display()
        ));
    }
    match insecure_hook(&dir.fd, &hook.file_name, dir.owner) {
        None => Ok(()),
        Some(reason) => Err(format!("refused now: {reason}")),
    }
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

/// Runs `hook phase` with a time limit, after checking it again.
pub fn run(hook: &Hook, phase: Phase, limit: Duration) -> HookRun {
    let result = recheck(hook)
        .and_then(|()| child::run_command(hook.command(phase), limit).map_err(|e| e.to_string()));
    HookRun {
        hook: hook.clone(),
        phase,
        result,
    }
}

/// Runs `hook phase` with `limit` cut to what is left before `deadline`;
/// past the deadline it is not started and counts as failed.
fn run_within(hook: &Hook, phase: Phase, limit: Duration, deadline: Option<Instant>) -> HookRun {
    match child::time_for(limit, deadline) {
        Some(limit) => run(hook, phase, limit),
        None => HookRun {
            hook: hook.clone(),
            phase,
            result: Err("no time left in the request budget, not started".to_owned()),
        },
    }
}

/// Runs the freeze hooks in order until one fails. Returns every run; the
/// freeze may proceed only when all succeeded. The hooks to `thaw` on a veto
/// are those whose run succeeded (see [`thaw_order`]). Each hook gets
/// `limit`, cut to what is left before `deadline`.
pub fn run_freeze(hooks: &[Hook], limit: Duration, deadline: Option<Instant>) -> Vec<HookRun> {
    let mut runs = Vec::new();
    for hook in hooks {
        let run = run_within(hook, Phase::Freeze, limit, deadline);
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
/// hook runs even if an earlier one fails (or is reported as not started
/// once `deadline` has passed).
pub fn run_reverse(
    frozen: &[Hook],
    phase: Phase,
    limit: Duration,
    deadline: Option<Instant>,
) -> Vec<HookRun> {
    thaw_order(frozen)
        .map(|h| run_within(h, phase, limit, deadline))
        .collect()
}

/// Whether a run timed out (for the log).
pub fn timed_out(run: &HookRun) -> bool {
    matches!(&run.result, Ok(f) if matches!(f.ending, Ending::TimedOut | Ending::Unkillable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const CONFIG: &str = "/etc/test/hv_vssd.conf";

    fn uid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn scan_as_owner(dir: &Path) -> HookSet {
        scan(dir, uid(), Path::new(CONFIG))
    }

    /// Writes an executable hook that appends `name $1` to `journal`, then
    /// runs `body`.
    fn write_hook(dir: &Path, name: &str, journal: &Path, body: &str) {
        let path = dir.join(name);
        fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $1\" >> {}\n{body}\n",
                journal.display()
            ),
        )
        .unwrap();
        chmod(&path, 0o755);
    }

    /// A hooks dir whose hooks append `name phase` to a journal file.
    fn hooks_dir(names: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let journal = dir.path().join(".journal");
        for (name, body) in names {
            write_hook(dir.path(), name, &journal, body);
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

    const LONG: Duration = Duration::from_secs(5);

    #[test]
    fn freeze_runs_in_lexical_order_and_thaw_in_reverse() {
        let (dir, log) = hooks_dir(&[("20-b", ""), ("10-a", ""), ("30-c", "")]);
        let set = scan_as_owner(dir.path());
        assert!(set.refused.is_empty(), "{:?}", set.refused);
        let runs = run_freeze(&set.hooks, LONG, None);
        assert!(runs.iter().all(HookRun::succeeded));
        run_reverse(&set.hooks, Phase::Thaw, LONG, None);
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
        let set = scan_as_owner(dir.path());
        let runs = run_freeze(&set.hooks, LONG, None);
        assert_eq!(runs.len(), 2);
        assert!(!runs[1].succeeded());
        assert!(runs[1].summary().contains("exit status 1"));
        let ok: Vec<Hook> = runs
            .iter()
            .filter(|r| r.succeeded())
            .map(|r| r.hook.clone())
            .collect();
        run_reverse(&ok, Phase::Thaw, LONG, None);
        assert_eq!(journal(&log), ["10-a freeze", "20-b freeze", "10-a thaw"]);
    }

    #[test]
    fn a_hung_hook_is_killed_at_the_timeout_and_vetoes() {
        let (dir, _) = hooks_dir(&[("10-hang", "sleep 30")]);
        let set = scan_as_owner(dir.path());
        let started = Instant::now();
        let runs = run_freeze(&set.hooks, Duration::from_millis(300), None);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(timed_out(&runs[0]) && !runs[0].succeeded());
        assert!(runs[0].summary().contains("timed out"));
    }

    #[test]
    fn each_hook_gets_only_what_is_left_before_the_deadline() {
        let (dir, journal) = hooks_dir(&[("10-slow", "sleep 30"), ("20-never", "")]);
        let set = scan_as_owner(dir.path());
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
        assert!(
            past[0]
                .summary()
                .contains("no time left in the request budget")
        );
        let ran = fs::read_to_string(journal).unwrap_or_default();
        assert!(!ran.contains("20-never"), "{ran}");
    }

    #[test]
    fn hook_output_is_captured() {
        let (dir, _) = hooks_dir(&[("10-talk", "echo flushed 42 tables; echo oops >&2")]);
        let set = scan_as_owner(dir.path());
        let runs = run_freeze(&set.hooks, LONG, None);
        let output = &runs[0].result.as_ref().unwrap().output;
        assert!(output.contains("flushed 42 tables") && output.contains("oops"));
    }

    #[test]
    fn unsafe_hooks_are_refused_with_reasons() {
        let (dir, _) = hooks_dir(&[("10-ok", ""), ("20-groupw", ""), ("30-worldw", "")]);
        let p = dir.path();
        chmod(&p.join("20-groupw"), 0o775);
        chmod(&p.join("30-worldw"), 0o757);
        fs::write(p.join("40-noexec"), "#!/bin/sh\n").unwrap();
        chmod(&p.join("40-noexec"), 0o644);
        std::os::unix::fs::symlink("/bin/true", p.join("50-link")).unwrap();
        fs::write(p.join("60-db.sample"), "").unwrap();
        fs::write(p.join("old~"), "").unwrap();
        let set = scan_as_owner(p);
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
        let set = scan(dir.path(), uid().wrapping_add(1), Path::new(CONFIG));
        assert!(set.hooks.is_empty());
        assert!(set.refused[0].reason.contains("must be owned by uid"));
    }

    #[test]
    fn a_world_writable_hooks_directory_is_refused_whole() {
        let (dir, _) = hooks_dir(&[("10-ok", "")]);
        chmod(dir.path(), 0o777);
        let set = scan_as_owner(dir.path());
        assert!(set.hooks.is_empty());
        assert!(set.refused[0].reason.contains("hooks directory refused"));
        // Sticky does not help the hooks directory itself.
        chmod(dir.path(), 0o1777);
        assert!(scan_as_owner(dir.path()).hooks.is_empty());
    }

    #[test]
    fn a_missing_directory_means_no_hooks() {
        assert_eq!(
            scan(Path::new("/nonexistent/hooks.d"), 0, Path::new(CONFIG)),
            HookSet::default()
        );
    }

    #[test]
    fn an_ancestor_writable_by_others_refuses_the_directory_unless_sticky() {
        let top = tempfile::tempdir().unwrap();
        let open = top.path().join("open");
        let hooks = open.join("hooks.d");
        fs::create_dir_all(&hooks).unwrap();
        chmod(&hooks, 0o755);
        write_hook(&hooks, "10-ok", &top.path().join("journal"), "");
        chmod(&open, 0o777);
        let set = scan_as_owner(&hooks);
        assert!(set.hooks.is_empty(), "{set:?}");
        let reason = &set.refused[0].reason;
        assert!(
            reason.contains(&open.display().to_string())
                && reason.contains("writable by group or others (mode 0777)")
                && reason.contains("could replace hooks.d"),
            "{reason}"
        );
        chmod(&open, 0o775);
        assert!(scan_as_owner(&hooks).hooks.is_empty(), "group-writable too");
        // /tmp-like: sticky, and the next step is ours, so nobody else can
        // rename or remove it.
        chmod(&open, 0o1777);
        let set = scan_as_owner(&hooks);
        assert_eq!(set.hooks.len(), 1, "{:?}", set.refused);
    }

    #[test]
    fn an_ancestor_owned_by_another_user_refuses_the_directory() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP an_ancestor_owned_by_another_user: needs root to chown");
            return;
        }
        let top = tempfile::tempdir().unwrap();
        let theirs = top.path().join("theirs");
        let hooks = theirs.join("hooks.d");
        fs::create_dir_all(&hooks).unwrap();
        chmod(&theirs, 0o755);
        chmod(&hooks, 0o755);
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let set = scan(&hooks, 0, Path::new(CONFIG));
        assert!(set.hooks.is_empty());
        assert!(
            set.refused[0].reason.contains("is owned by uid 65534"),
            "{:?}",
            set.refused
        );
    }

    #[test]
    fn symbolic_links_on_the_way_are_followed_only_from_trusted_directories() {
        let top = tempfile::tempdir().unwrap();
        let real = top.path().join("real");
        fs::create_dir(&real).unwrap();
        chmod(&real, 0o755);
        write_hook(&real, "10-ok", &top.path().join("journal"), "");
        let safe_link = top.path().join("safe-link");
        std::os::unix::fs::symlink("real", &safe_link).unwrap();
        assert_eq!(scan_as_owner(&safe_link).hooks.len(), 1);
        let open = top.path().join("open");
        fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let risky_link = open.join("link");
        std::os::unix::fs::symlink(&real, &risky_link).unwrap();
        let set = scan_as_owner(&risky_link);
        assert!(set.hooks.is_empty());
        assert!(
            set.refused[0].reason.contains("could replace link"),
            "{set:?}"
        );
    }

    #[test]
    fn hooks_run_from_the_directory_opened_at_scan_time_even_after_a_swap() {
        let top = tempfile::tempdir().unwrap();
        let hooks = top.path().join("hooks.d");
        fs::create_dir(&hooks).unwrap();
        chmod(&hooks, 0o755);
        let journal_file = top.path().join("journal");
        write_hook(&hooks, "10-a", &journal_file, "");
        let set = scan_as_owner(&hooks);
        // Someone swaps the directory between the scan and the runs.
        fs::rename(&hooks, top.path().join("hooks.d.old")).unwrap();
        fs::create_dir(&hooks).unwrap();
        chmod(&hooks, 0o755);
        let marker = top.path().join("swapped-in-hook-ran");
        write_hook(
            &hooks,
            "10-a",
            &top.path().join("other-journal"),
            &format!("touch {}", marker.display()),
        );
        assert!(
            run_freeze(&set.hooks, LONG, None)
                .iter()
                .all(HookRun::succeeded)
        );
        run_reverse(&set.hooks, Phase::Thaw, LONG, None);
        assert_eq!(journal(&journal_file), ["10-a freeze", "10-a thaw"]);
        assert!(!marker.exists(), "the swapped-in hook ran");
    }

    #[test]
    fn a_hook_made_unsafe_after_the_scan_is_not_run_at_thaw() {
        let (dir, log) = hooks_dir(&[("10-a", "")]);
        let set = scan_as_owner(dir.path());
        assert!(run_freeze(&set.hooks, LONG, None)[0].succeeded());
        chmod(&dir.path().join("10-a"), 0o777);
        let runs = run_reverse(&set.hooks, Phase::Thaw, LONG, None);
        assert!(!runs[0].succeeded());
        assert!(
            runs[0].summary().contains("refused now"),
            "{}",
            runs[0].summary()
        );
        chmod(&dir.path().join("10-a"), 0o755);
        chmod(dir.path(), 0o777);
        let runs = run_reverse(&set.hooks, Phase::Thaw, LONG, None);
        assert!(
            runs[0].summary().contains("hooks directory"),
            "{}",
            runs[0].summary()
        );
        assert_eq!(journal(&log), ["10-a freeze"]);
    }

    #[test]
    fn hooks_get_a_minimal_environment_and_run_in_the_hooks_directory() {
        let (dir, _) = hooks_dir(&[("10-env", "env; echo cwd=$(pwd -P)")]);
        let set = scan_as_owner(dir.path());
        let runs = run_freeze(&set.hooks, LONG, None);
        let output = &runs[0].result.as_ref().unwrap().output;
        let lines: Vec<&str> = output.lines().collect();
        for expected in [
            "HV_VSS_PHASE=freeze",
            &format!("HV_VSS_CONFIG={CONFIG}"),
            "HOME=/",
            &format!("PATH={}", child::PATH),
            &format!("cwd={}", fs::canonicalize(dir.path()).unwrap().display()),
        ] {
            assert!(lines.contains(&expected), "{expected} missing: {lines:?}");
        }
        assert!(
            !lines.iter().any(|l| l.starts_with("CARGO")),
            "the daemon's environment leaked: {lines:?}"
        );
    }

    #[test]
    fn two_hundred_trivial_hooks_are_waited_for_by_events_not_timers() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        for i in 0..200 {
            let path = dir.path().join(format!("{i:03}-noop"));
            fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
            chmod(&path, 0o755);
        }
        let set = scan_as_owner(dir.path());
        assert_eq!(set.hooks.len(), 200);
        let started = Instant::now();
        let runs = run_freeze(&set.hooks, LONG, None);
        assert_eq!(runs.len(), 200);
        assert!(runs.iter().all(HookRun::succeeded));
        // Polling every 20 ms would wake at least once per hook that did not
        // exit within the first poll; waiting on the exit wakes never by a
        // timer (the limit is never reached).
        let timed: u32 = runs
            .iter()
            .map(|r| r.result.as_ref().map_or(0, |f| f.timed_wakeups))
            .sum();
        eprintln!(
            "200 trivial hooks: {} ms, {timed} timed wakeups",
            started.elapsed().as_millis()
        );
        assert_eq!(timed, 0, "waits ended by a timer, not by the hooks' exits");
    }

    #[test]
    fn hooks_past_the_request_deadline_are_not_started() {
        let (dir, log) = hooks_dir(&[("10-a", ""), ("20-b", "")]);
        let set = scan_as_owner(dir.path());
        let runs = run_freeze(&set.hooks, LONG, Some(Instant::now()));
        assert_eq!(runs.len(), 1, "the first failure stops the freeze hooks");
        assert!(!runs[0].succeeded());
        assert!(
            runs[0]
                .summary()
                .contains("no time left in the request budget")
        );
        let runs = run_reverse(&set.hooks, Phase::Thaw, LONG, Some(Instant::now()));
        assert_eq!(runs.len(), 2, "every thaw hook is reported");
        assert!(runs.iter().all(|r| !r.succeeded()));
        assert!(journal(&log).is_empty(), "{:?}", journal(&log));
    }

    #[test]
    fn a_hook_gets_at_most_the_time_left_before_the_deadline() {
        let (dir, _) = hooks_dir(&[("10-slow", "sleep 30")]);
        let set = scan_as_owner(dir.path());
        let started = Instant::now();
        let deadline = started + Duration::from_millis(400);
        let runs = run_freeze(&set.hooks, Duration::from_secs(30), Some(deadline));
        assert!(timed_out(&runs[0]), "{}", runs[0].summary());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn hook_names_are_escaped_in_summaries() {
        let (dir, _) = hooks_dir(&[("10-evil\nFREEZE msgid 9: success", "")]);
        let set = scan_as_owner(dir.path());
        let runs = run_freeze(&set.hooks, LONG, None);
        let summary = runs[0].summary();
        assert!(!summary.contains('\n'), "{summary}");
        assert!(
            summary.starts_with("hook 10-evil\\nFREEZE msgid 9: success freeze:"),
            "{summary}"
        );
    }
}
