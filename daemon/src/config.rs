//! The configuration file: a small `key = value` format.
//!
//! ```text
//! # comment
//! exclude = /mnt/scratch*, /var/tmp
//! freeze_limit = 60
//! ```
//! Blank lines and `#` comments are ignored; keys may appear once, except
//! `exclude` and `include`, which accumulate. Every error names the line and
//! the problem, and the daemon refuses to start with a bad file (on SIGHUP it
//! keeps the previous configuration, whole).
//!
//! The file is read without blocking and must be a regular file of at most
//! [`MAX_CONFIG_BYTES`]: a FIFO or a link to /dev/zero in its place must not
//! stall or exhaust the daemon (see [`crate::safefile::read_regular`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use glob::Pattern;

/// The per-request deadline of FreeBSD's VSS drivers, base and ours
/// (hv_snapshot.c arms a 15 s callout per host request).
pub const KERNEL_DEADLINE_SECS: u64 = 15;

use crate::safefile;

/// Where the configuration lives unless `-c` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/usr/local/etc/hv_vssd.conf";

/// The largest configuration file read (a real one is a few hundred bytes).
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// What to do with ZFS datasets, which no tool can freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZfsMode {
    /// `zpool sync` the pools that back mounted datasets before answering
    /// FREEZE: what was written before the snapshot is on disk, and ZFS is
    /// always transactionally consistent.
    Sync,
    /// Leave ZFS alone (logged as skipped).
    Off,
}

/// The daemon's settings, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Mounts never frozen (globs on the mount path).
    pub exclude: Vec<Pattern>,
    /// When not empty, only mounts matching one of these are considered.
    pub include: Vec<Pattern>,
    /// Thaw by ourselves when THAW does not come within this time of the
    /// first freeze.
    pub freeze_limit: Duration,
    /// How long one FREEZE may take from the moment it was read: hooks and
    /// `zpool sync` share it, and no freeze starts after it (the kernel
    /// driver answers the host with failure after 15 s).
    pub request_budget: Duration,
    /// Per-hook time limit, then SIGKILL of the hook's process group.
    pub hook_timeout: Duration,
    /// Time limit for `zpool sync`.
    pub zfs_sync_timeout: Duration,
    /// Refuse CHECK/FREEZE when a read-write local filesystem cannot be
    /// frozen (the base daemon's behaviour).
    pub strict: bool,
    pub zfs: ZfsMode,
    pub hooks_dir: PathBuf,
    pub pid_file: PathBuf,
    pub status_file: PathBuf,
    pub state_file: PathBuf,
    /// The file this configuration was read from (the default path when
    /// that file is missing); hooks get it as `HV_VSS_CONFIG`.
    pub file: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            exclude: Vec::new(),
            include: Vec::new(),
            freeze_limit: Duration::from_secs(60),
            request_budget: Duration::from_secs(12),
            hook_timeout: Duration::from_secs(10),
            zfs_sync_timeout: Duration::from_secs(10),
            strict: false,
            zfs: ZfsMode::Sync,
            hooks_dir: PathBuf::from("/usr/local/etc/hyperv-vss/hooks.d"),
            pid_file: PathBuf::from("/var/run/hv_vssd.pid"),
            status_file: PathBuf::from("/var/run/hv_vssd.status"),
            state_file: PathBuf::from("/var/run/hv_vssd.frozen"),
            file: PathBuf::from(DEFAULT_CONFIG_PATH),
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {problem}")]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

impl Config {
    /// Reads and parses `path`. A missing file at the default location means
    /// "all defaults"; a missing file named with `-c` is an error, and so
    /// is a missing file on reload (the running configuration stays).
    pub fn load(path: &Path, must_exist: bool) -> Result<Self, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = match safefile::read_regular(path, MAX_CONFIG_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Self {
                    file: path.to_owned(),
                    ..Self::default()
                });
            }
            Err(e) => return Err(read_error(e)),
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "it is not UTF-8 text",
            ))
        })?;
        let mut config = Self::parse(&text).map_err(|(line, problem)| ConfigError::Line {
            path: path.to_owned(),
            line,
            problem,
        })?;
        path.clone_into(&mut config.file);
        Ok(config)
    }

    /// Parses the text of a configuration file. The error is the 1-based line
    /// number and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut config = Self::default();
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            if raw.contains('\0') {
                return Err((line, "NUL byte in the line".to_owned()));
            }
            let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
            if content.is_empty() {
                continue;
            }
            let Some((key, value)) = content.split_once('=') else {
                return Err((line, format!("expected `key = value`, found `{content}`")));
            };
            let (key, value) = (key.trim(), value.trim());
            if key != "exclude" && key != "include" {
                if seen.iter().any(|&(k, _)| k == key) {
                    return Err((line, format!("`{key}` is set twice")));
                }
                seen.push((key, line));
            }
            config.set(key, value).map_err(|problem| (line, problem))?;
        }
        let line_of = |keys: &[&str]| {
            seen.iter()
                .filter(|(k, _)| keys.contains(k))
                .map(|&(_, line)| line)
                .max()
                .unwrap_or(0)
        };
        config
            .check_budget()
            .map_err(|(keys, problem)| (line_of(keys), problem))?;
        Ok(config)
    }

    /// Hooks and `zpool sync` must each fit in `request_budget` with
    /// FREEZE_RESERVE left for the freezes. The error names the keys.
    fn check_budget(&self) -> Result<(), (&'static [&'static str], String)> {
        let reserve = crate::engine::FREEZE_RESERVE;
        let room = self.request_budget.saturating_sub(reserve);
        let limits: [(&'static [&'static str], Duration); 2] = [
            (&["hook_timeout", "request_budget"], self.hook_timeout),
            (
                &["zfs_sync_timeout", "request_budget"],
                self.zfs_sync_timeout,
            ),
        ];
        for (keys, value) in limits {
            let key = keys[0];
            if value > room {
                return Err((
                    keys,
                    format!(
                        "`{key} = {}` cannot fit in `request_budget = {}`: a FREEZE must \
                         leave {} s of its budget to freeze the filesystems, so {key} can \
                         be at most {} (lower {key} or raise request_budget, which must \
                         stay below the kernel's {KERNEL_DEADLINE_SECS} s)",
                        value.as_secs(),
                        self.request_budget.as_secs(),
                        reserve.as_secs(),
                        room.as_secs()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "exclude" => self.exclude.extend(globs(value)?),
            "include" => self.include.extend(globs(value)?),
            "freeze_limit" => self.freeze_limit = seconds(value, 1, 3600)?,
            "request_budget" => {
                self.request_budget = seconds(value, 2, KERNEL_DEADLINE_SECS - 1).map_err(|e| {
                    format!(
                        "{e}: the kernel driver fails a request after {KERNEL_DEADLINE_SECS} s, \
                         so the budget must end before that"
                    )
                })?;
            }
            "hook_timeout" => self.hook_timeout = seconds(value, 1, 600)?,
            "zfs_sync_timeout" => self.zfs_sync_timeout = seconds(value, 1, 600)?,
            "strict" => self.strict = boolean(value)?,
            "zfs" => {
                self.zfs = if boolean(value)? {
                    ZfsMode::Sync
                } else {
                    ZfsMode::Off
                }
            }
            "hooks_dir" => self.hooks_dir = absolute_path(value)?,
            "pid_file" => self.pid_file = absolute_path(value)?,
            "status_file" => self.status_file = absolute_path(value)?,
            "state_file" => self.state_file = absolute_path(value)?,
            _ => {
                return Err(format!(
                    "unknown key `{key}` (known: exclude, include, freeze_limit, request_budget, \
                     hook_timeout, zfs_sync_timeout, strict, zfs, hooks_dir, pid_file, \
                     status_file, state_file)"
                ));
            }
        }
        Ok(())
    }

    /// The effective value of every key, one `key = value` line each, in
    /// the file's own syntax (`hv_vssd -T`, like sshd -T): what a script
    /// such as the rc.d script reads instead of repeating a default.
    pub fn effective(&self) -> String {
        let seconds = |d: Duration| d.as_secs().to_string();
        let globs = |patterns: &[Pattern]| {
            patterns
                .iter()
                .map(Pattern::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let entries = [
            ("exclude", globs(&self.exclude)),
            ("include", globs(&self.include)),
            ("freeze_limit", seconds(self.freeze_limit)),
            ("request_budget", seconds(self.request_budget)),
            ("hook_timeout", seconds(self.hook_timeout)),
            ("zfs_sync_timeout", seconds(self.zfs_sync_timeout)),
            ("strict", yes_no(self.strict).to_owned()),
            ("zfs", yes_no(self.zfs == ZfsMode::Sync).to_owned()),
            ("hooks_dir", self.hooks_dir.display().to_string()),
            ("pid_file", self.pid_file.display().to_string()),
            ("status_file", self.status_file.display().to_string()),
            ("state_file", self.state_file.display().to_string()),
        ];
        let mut text = String::new();
        // An empty glob list is the default; the file cannot spell it.
        for (key, value) in entries.iter().filter(|(_, value)| !value.is_empty()) {
            let _ = writeln!(text, "{key} = {value}");
        }
        text
    }

    /// Whether the mount at `path` is excluded by the `include`/`exclude` globs.
    pub fn excludes(&self, path: &Path) -> Option<String> {
        if let Some(why) = self.excluded_by_pattern(path) {
            return Some(why);
        }
        let text = path.to_string_lossy();
        if !self.include.is_empty() && !self.include.iter().any(|p| p.matches(&text)) {
            return Some("not matched by any `include` pattern".to_owned());
        }
        None
    }

    /// Whether an `exclude` glob names the mount at `path` (not `include`:
    /// a mount left out by `include` says nothing about the filesystem's
    /// other mounts).
    pub fn excluded_by_pattern(&self, path: &Path) -> Option<String> {
        let text = path.to_string_lossy();
        self.exclude
            .iter()
            .find(|p| p.matches(&text))
            .map(|pattern| format!("excluded by `exclude = {}`", pattern.as_str()))
    }
}

fn globs(value: &str) -> Result<Vec<Pattern>, String> {
    let patterns: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if patterns.is_empty() {
        return Err("expected one or more globs separated by commas".to_owned());
    }
    patterns
        .into_iter()
        .map(|p| Pattern::new(p).map_err(|e| format!("bad glob `{p}`: {e}")))
        .collect()
}

fn seconds(value: &str, min: u64, max: u64) -> Result<Duration, String> {
    // Plain digits only: `u64::from_str` would also take "+5".
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(n) if digits && (min..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "expected a whole number of seconds from {min} to {max}, found `{value}`"
        )),
    }
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" | "1" => Ok(true),
        "no" | "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected yes or no (or on/off), found `{value}`")),
    }
}

fn absolute_path(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("expected an absolute path, found `{value}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = Config::parse("\n# nothing\n   \n").unwrap();
        assert_eq!(c.freeze_limit, Duration::from_secs(60));
        assert_eq!(c.hook_timeout, Duration::from_secs(10));
        assert_eq!(c.request_budget, Duration::from_secs(12));
        assert!(!c.strict);
        assert_eq!(c.zfs, ZfsMode::Sync);
        assert_eq!(c.hooks_dir, Path::new("/usr/local/etc/hyperv-vss/hooks.d"));
        assert!(c.exclude.is_empty() && c.include.is_empty());
    }

    #[test]
    fn every_key_is_parsed() {
        let c = Config::parse(
            "exclude = /mnt/*, /var/tmp # scratch\nexclude=/data\ninclude = /tmp/t/*\n\
             freeze_limit = 20\nhook_timeout=5\nzfs_sync_timeout = 3\nstrict = yes\nzfs = off\n\
             hooks_dir = /h\npid_file = /p\nstatus_file = /s\nstate_file = /st\n",
        )
        .unwrap();
        let ex: Vec<&str> = c.exclude.iter().map(Pattern::as_str).collect();
        assert_eq!(ex, ["/mnt/*", "/var/tmp", "/data"]);
        assert_eq!(c.include.len(), 1);
        assert_eq!(c.freeze_limit, Duration::from_secs(20));
        assert_eq!(c.hook_timeout, Duration::from_secs(5));
        assert_eq!(c.zfs_sync_timeout, Duration::from_secs(3));
        assert!(c.strict);
        assert_eq!(c.zfs, ZfsMode::Off);
        assert_eq!(c.hooks_dir, Path::new("/h"));
        assert_eq!(c.pid_file, Path::new("/p"));
        assert_eq!(c.status_file, Path::new("/s"));
        assert_eq!(c.state_file, Path::new("/st"));
    }

    #[test]
    fn effective_text_parses_back_to_the_same_settings() {
        let c = Config::parse(
            "exclude = /mnt/*, /var/tmp\nfreeze_limit = 20\nstrict = yes\nzfs = off\n\
             pid_file = /run/x.pid\n",
        )
        .unwrap();
        let text = c.effective();
        assert!(text.contains("pid_file = /run/x.pid\n"), "{text}");
        assert!(text.contains("exclude = /mnt/*, /var/tmp\n"), "{text}");
        assert!(!text.contains("include"), "{text}");
        let again = Config::parse(&text).unwrap();
        assert_eq!(again.effective(), text);
        let defaults = Config::default().effective();
        assert!(
            defaults.contains("pid_file = /var/run/hv_vssd.pid\n"),
            "{defaults}"
        );
        assert_eq!(defaults.lines().count(), 10);
    }

    #[test]
    fn errors_name_the_line_and_problem() {
        let (line, problem) = Config::parse("strict = no\n\nfreeze_limit = soon\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(
            problem.contains("seconds") && problem.contains("soon"),
            "{problem}"
        );

        let (line, problem) = Config::parse("# c\nfrobnicate = 1").unwrap_err();
        assert_eq!(line, 2);
        assert!(problem.contains("unknown key `frobnicate`"), "{problem}");

        let (line, problem) = Config::parse("strict\n").unwrap_err();
        assert_eq!(line, 1);
        assert!(problem.contains("key = value"), "{problem}");

        let (line, _) = Config::parse("strict = yes\nstrict = no\n").unwrap_err();
        assert_eq!(line, 2);
        let (_, problem) = Config::parse("freeze_limit = 0").unwrap_err();
        assert!(problem.contains("from 1 to 3600"));
        let (_, problem) = Config::parse("hooks_dir = relative/dir").unwrap_err();
        assert!(problem.contains("absolute"));
        let (_, problem) = Config::parse("exclude = /a/[").unwrap_err();
        assert!(problem.contains("bad glob"));
        let (_, problem) = Config::parse("strict = maybe").unwrap_err();
        assert!(problem.contains("yes or no"));
    }

    #[test]
    fn a_budget_the_kernel_would_cut_short_or_timeouts_that_cannot_fit_are_refused() {
        let (line, problem) = Config::parse("request_budget = 15").unwrap_err();
        assert_eq!(line, 1);
        assert!(
            problem.contains("from 2 to 14") && problem.contains("15 s"),
            "{problem}"
        );
        let (line, problem) =
            Config::parse("hook_timeout = 12\n# x\nrequest_budget = 12\n").unwrap_err();
        assert_eq!(line, 3, "the later of the two keys' lines");
        assert!(
            problem.contains("hook_timeout = 12") && problem.contains("request_budget = 12"),
            "{problem}"
        );
        assert!(problem.contains("at most 11"), "{problem}");
        let (line, problem) = Config::parse("request_budget = 5").unwrap_err();
        assert_eq!(line, 1);
        assert!(problem.contains("`hook_timeout = 10`"), "{problem}");
        let (_, problem) = Config::parse("zfs_sync_timeout = 14").unwrap_err();
        assert!(problem.contains("zfs_sync_timeout"), "{problem}");
        let c =
            Config::parse("request_budget = 14\nhook_timeout = 13\nzfs_sync_timeout = 13").unwrap();
        assert_eq!(c.request_budget, Duration::from_secs(14));
    }

    #[test]
    fn numbers_are_plain_digits_and_nul_bytes_are_refused() {
        for value in ["+5", "-5", " 5x", "0x10", "5.0", "٥"] {
            let (_, problem) = Config::parse(&format!("freeze_limit = {value}")).unwrap_err();
            assert!(problem.contains("whole number"), "{value}: {problem}");
        }
        let (line, problem) = Config::parse("strict = no\npid_file = /run/a\0b\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(problem.contains("NUL"), "{problem}");
        assert!(Config::parse("# a comment with \0 is still a NUL\n").is_err());
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.conf");
        std::fs::write(&path, "zfs = perhaps\n").unwrap();
        let err = Config::load(&path, true).unwrap_err().to_string();
        assert!(err.contains("c.conf, line 1"), "{err}");
        let missing = dir.path().join("missing");
        assert_eq!(Config::load(&missing, false).unwrap().file, missing);
        assert!(Config::load(&missing, true).is_err());
        std::fs::write(&path, "strict = yes\n").unwrap();
        assert_eq!(Config::load(&path, true).unwrap().file, path);
    }

    #[test]
    fn a_fifo_a_device_or_a_huge_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.conf");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = Config::load(&fifo, true).unwrap_err().to_string();
        assert!(err.contains("FIFO"), "{err}");
        let zero = dir.path().join("zero.conf");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = Config::load(&zero, true).unwrap_err().to_string();
        assert!(err.contains("character device"), "{err}");
        let huge = dir.path().join("huge.conf");
        let line = "# padding\n".repeat(7000);
        std::fs::write(&huge, &line).unwrap();
        let err = Config::load(&huge, true).unwrap_err().to_string();
        assert!(err.contains("larger than 65536 bytes"), "{err}");
        std::fs::write(&huge, b"strict = \xff\n").unwrap();
        let err = Config::load(&huge, true).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn exclude_and_include_globs() {
        let c = Config::parse("exclude = /mnt/scratch*\ninclude = /mnt/*").unwrap();
        assert!(
            c.excludes(Path::new("/mnt/scratch2"))
                .unwrap()
                .contains("exclude")
        );
        assert!(c.excludes(Path::new("/mnt/data")).is_none());
        assert!(c.excludes(Path::new("/")).unwrap().contains("include"));
    }

    #[test]
    fn the_shipped_sample_parses_to_the_defaults() {
        let sample = include_str!("../hv_vssd.conf.sample");
        let c = Config::parse(sample).unwrap();
        let d = Config::default();
        assert_eq!(c.freeze_limit, d.freeze_limit);
        assert_eq!(c.hooks_dir, d.hooks_dir);
        // Every key the sample mentions (commented out) is a real key.
        for line in sample.lines() {
            if let Some((key, value)) = line.strip_prefix('#').and_then(|l| l.split_once(" = ")) {
                if !key.contains(' ') {
                    let (line_no, problem) = Config::parse(&format!("{key} = {value}"))
                        .err()
                        .map_or((0, String::new()), |e| e);
                    assert_eq!(line_no, 0, "sample line `{line}`: {problem}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(text in "\\PC{0,200}") {
            let _ = Config::parse(&text);
        }
    }
}
