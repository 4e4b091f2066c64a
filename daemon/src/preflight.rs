//! The configuration checked against this machine, for `hv_vssd -t` (which
//! refuses what is found) and at start (which logs it as warnings, after
//! recovery: refusing to start would leave an earlier freeze in place).
//!
//! - The pid, status and state files must be regular files (or not exist
//!   yet) in an existing directory: never a symbolic link, a device, a
//!   FIFO or a directory (see [`crate::safefile`]).
//! - Where a freeze outlives the daemon (Linux FIFREEZE), none of them may
//!   live on a filesystem FREEZE freezes: a daemon restarted after a crash
//!   must read the state file and lock the pidfile there before anything
//!   is thawed. (On FreeBSD a UFS suspension ends with the daemon, and the
//!   daemon writes these files only while nothing is frozen, so /var/run on
//!   the root filesystem is fine.)

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::log::Escaped;
use crate::mounts::{FsId, Mount};
use crate::policy;
use crate::safefile;

/// One problem, naming the configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: &'static str,
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{} = {}`: {}",
            self.key,
            Escaped(self.path.as_os_str()),
            self.problem
        )
    }
}

/// The files the daemon writes, by configuration key.
fn files(config: &Config) -> [(&'static str, &Path); 3] {
    [
        ("pid_file", &config.pid_file),
        ("status_file", &config.status_file),
        ("state_file", &config.state_file),
    ]
}

/// Everything wrong with the daemon's files on this machine: unusable
/// targets, and (when `freeze_outlives_process`) files on a filesystem the
/// freeze policy would freeze given `mounts`.
pub fn check_files(
    config: &Config,
    mounts: &[Mount],
    freeze_outlives_process: bool,
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = files(config)
        .into_iter()
        .filter_map(|(key, path)| {
            safefile::unusable_target(path).map(|problem| Finding {
                key,
                path: path.to_owned(),
                problem,
            })
        })
        .collect();
    if freeze_outlives_process {
        findings.extend(on_frozen_filesystems(config, mounts));
    }
    findings
}

/// The files that live on a filesystem FREEZE would freeze.
fn on_frozen_filesystems(config: &Config, mounts: &[Mount]) -> Vec<Finding> {
    let plan = policy::plan(mounts, config);
    let frozen: HashSet<FsId> = plan.freeze.iter().map(|m| m.fs_id).collect();
    files(config)
        .into_iter()
        .filter_map(|(key, path)| {
            let mount = mount_of(&resolved(path), mounts)?;
            frozen.contains(&mount.fs_id).then(|| Finding {
                key,
                path: path.to_owned(),
                problem: format!(
                    "it is on {} ({}, {}), a filesystem FREEZE freezes; a daemon restarted \
                     after a crash could not use it before thawing: move it to a \
                     filesystem that is never frozen",
                    Escaped(mount.path.as_os_str()),
                    mount.fs_type,
                    mount.source
                ),
            })
        })
        .collect()
}

/// `path` with its directory's symbolic links resolved (as far as it
/// exists), so it can be matched against mount points.
fn resolved(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            std::fs::canonicalize(dir).map_or_else(|_| path.to_owned(), |dir| dir.join(name))
        }
        _ => path.to_owned(),
    }
}

/// The mount that holds `path`: the longest mount point above it, the one
/// mounted last when several share that point (it hides the others).
fn mount_of<'a>(path: &Path, mounts: &'a [Mount]) -> Option<&'a Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.path))
        .max_by_key(|(order, m)| (m.path.components().count(), *order))
        .map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mount;

    fn config(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    fn keys(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.key).collect()
    }

    #[test]
    fn files_on_a_frozen_filesystem_are_found_by_key_and_mount() {
        let mounts = [
            mount("/", "ext4", 1),
            mount("/data", "ext4", 2),
            mount("/run", "tmpfs", 3),
        ];
        let c = config(
            "include = /data\npid_file = /data/hv.pid\nstatus_file = /run/hv.status\n\
             state_file = /run/hv.frozen\n",
        );
        let found = on_frozen_filesystems(&c, &mounts);
        assert_eq!(keys(&found), ["pid_file"]);
        let text = found[0].to_string();
        assert!(
            text.starts_with("`pid_file = /data/hv.pid`: it is on /data (ext4, /dev/disk2)"),
            "{text}"
        );
        // Root is not in `include`, so a file there is fine.
        let c = config("include = /data\npid_file = /var/hv.pid\n");
        assert!(on_frozen_filesystems(&c, &mounts).is_empty());
    }

    #[test]
    fn a_bind_mount_of_a_frozen_filesystem_counts_as_frozen() {
        let mounts = [
            mount("/", "ext4", 1),
            mount("/data", "xfs", 7),
            mount("/srv/bind", "xfs", 7),
        ];
        let c = config("include = /data\nstate_file = /srv/bind/hv.frozen\n");
        assert_eq!(keys(&on_frozen_filesystems(&c, &mounts)), ["state_file"]);
    }

    #[test]
    fn the_topmost_of_stacked_mounts_holds_the_file() {
        let mounts = [
            mount("/", "ext4", 1),
            mount("/m", "ext4", 2),
            mount("/m", "tmpfs", 3),
        ];
        assert_eq!(
            mount_of(Path::new("/m/x"), &mounts).unwrap().fs_id,
            FsId([3, 0])
        );
        assert_eq!(
            mount_of(Path::new("/mx/y"), &mounts).unwrap().fs_id,
            FsId([1, 0])
        );
    }

    #[test]
    fn frozen_filesystems_are_only_a_problem_where_a_freeze_outlives_the_daemon() {
        let mounts = [mount("/", "ufs", 1)];
        let dir = tempfile::tempdir().unwrap();
        let c = config(&format!(
            "pid_file = {0}/pid\nstatus_file = {0}/status\nstate_file = {0}/frozen\n",
            dir.path().display()
        ));
        // Everything is on the frozen root in this mount list.
        assert_eq!(check_files(&c, &mounts, true).len(), 3);
        assert!(check_files(&c, &mounts, false).is_empty());
    }

    #[test]
    fn unusable_targets_are_findings_on_every_platform() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(&format!(
            "pid_file = {0}\nstatus_file = /dev/null\nstate_file = {0}/missing/frozen\n",
            dir.path().display()
        ));
        let found = check_files(&c, &[], false);
        assert_eq!(keys(&found), ["pid_file", "status_file", "state_file"]);
        assert!(found[0].problem.contains("a directory"));
        assert!(found[1].problem.contains("character device"));
    }
}
