//! The freeze policy: one pure function from the mounted filesystems and the
//! configuration to a [`FreezePlan`]. CHECK answers from the plan alone;
//! FREEZE carries it out.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{Config, ZfsMode};
use crate::log::Escaped;
use crate::mounts::{FsId, Mount};

/// Types frozen by the platform freezer (UFSSUSPEND on FreeBSD, FIFREEZE on
/// Linux). Names do not overlap between the two systems, so one table serves.
const FREEZABLE: &[&str] = &[
    "ufs", "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "nilfs2",
];

/// Pseudo and derived filesystems: no data of their own to make consistent
/// (nullfs/bind mounts show a filesystem that is handled through its own mount).
const PSEUDO: &[&str] = &[
    "devfs",
    "procfs",
    "fdescfs",
    "tmpfs",
    "nullfs",
    "unionfs",
    "mqueuefs",
    "linprocfs",
    "linsysfs",
    "tarfs",
    "autofs",
    "fusefs",
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "efivarfs",
    "ramfs",
    "rpc_pipefs",
    "nsfs",
    "overlay",
    "squashfs",
];

/// Why a mount is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A pseudo or memory filesystem.
    Pseudo,
    /// Another machine's filesystem.
    Network,
    ReadOnly,
    /// The config's `exclude`/`include` globs (text says which), also when
    /// they name another mount of the same filesystem.
    Excluded(String),
    /// Same filesystem as an earlier mount (bind or nullfs).
    SameAs(PathBuf),
    /// Mounted over later (at the same path or an ancestor): its mount
    /// point shows the other filesystem, so it cannot be reached to freeze.
    Hidden(PathBuf),
    /// ZFS: flushed with `zpool sync` of this pool instead of frozen.
    ZfsSynced(String),
    /// ZFS with `zfs = off`.
    ZfsOff,
    /// A read-write local filesystem nothing can freeze (msdosfs, ...);
    /// only sync(2) flushes it.
    NotFreezable,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pseudo => f.write_str("pseudo filesystem"),
            Self::Network => f.write_str("network filesystem"),
            Self::ReadOnly => f.write_str("read-only"),
            Self::Excluded(why) => f.write_str(why),
            Self::SameAs(path) => write!(f, "same filesystem as {}", Escaped(path.as_os_str())),
            Self::Hidden(by) => write!(
                f,
                "hidden by the later mount on {}, cannot be reached",
                Escaped(by.as_os_str())
            ),
            Self::ZfsSynced(pool) => write!(f, "ZFS: pool {pool} is flushed with zpool sync"),
            Self::ZfsOff => f.write_str("ZFS and `zfs = off`"),
            Self::NotFreezable => f.write_str("cannot be frozen, flushed with sync(2) only"),
        }
    }
}

/// A mount the plan leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub mount: Mount,
    pub reason: SkipReason,
}

/// What FREEZE will do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FreezePlan {
    /// Mounts to freeze, in freeze order: reverse mount order, so children
    /// before parents and root last. Thaw goes the other way.
    pub freeze: Vec<Mount>,
    /// ZFS pools to `zpool sync` before freezing.
    pub zfs_pools: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// Set when the operation must be refused (`strict`): the reason.
    pub veto: Option<String>,
}

/// Builds the plan. `mounts` is in mount order (parents first), as both
/// getmntinfo(3) and mountinfo list them.
pub fn plan(mounts: &[Mount], config: &Config) -> FreezePlan {
    let mut plan = FreezePlan::default();
    let hidden = hidden_by(mounts);
    let excluded = excluded_filesystems(mounts, config);
    let mut first_mount_of: HashMap<FsId, PathBuf> = HashMap::new();
    let mut frozen_in_mount_order = Vec::new();
    for (index, mount) in mounts.iter().enumerate() {
        let base_type = mount.fs_type.split('.').next().unwrap_or(&mount.fs_type);
        let reason = if PSEUDO.contains(&base_type) || base_type == "fuse" {
            Some(SkipReason::Pseudo)
        } else if !mount.local {
            Some(SkipReason::Network)
        } else if mount.read_only {
            Some(SkipReason::ReadOnly)
        } else if let Some(why) = config.excludes(&mount.path) {
            Some(SkipReason::Excluded(why))
        } else if base_type == "zfs" {
            Some(match config.zfs {
                ZfsMode::Sync => SkipReason::ZfsSynced(pool_of(&mount.source)),
                ZfsMode::Off => SkipReason::ZfsOff,
            })
        } else if !FREEZABLE.contains(&base_type) {
            Some(SkipReason::NotFreezable)
        } else if let Some(why) = excluded.get(&mount.fs_id) {
            Some(SkipReason::Excluded(why.clone()))
        } else if let Some(by) = &hidden[index] {
            Some(SkipReason::Hidden(by.clone()))
        } else {
            first_mount_of
                .get(&mount.fs_id)
                .map(|first| SkipReason::SameAs(first.clone()))
        };
        match reason {
            None => {
                first_mount_of.insert(mount.fs_id, mount.path.clone());
                frozen_in_mount_order.push(mount.clone());
            }
            Some(reason) => {
                if let SkipReason::ZfsSynced(pool) = &reason {
                    if !plan.zfs_pools.contains(pool) {
                        plan.zfs_pools.push(pool.clone());
                    }
                }
                if config.strict
                    && plan.veto.is_none()
                    && matches!(
                        reason,
                        SkipReason::ZfsSynced(_) | SkipReason::ZfsOff | SkipReason::NotFreezable
                    )
                {
                    plan.veto = Some(format!(
                        "strict: {} ({}) is read-write and cannot be frozen",
                        Escaped(mount.path.as_os_str()),
                        mount.fs_type
                    ));
                }
                plan.skipped.push(Skipped {
                    mount: mount.clone(),
                    reason,
                });
            }
        }
    }
    frozen_in_mount_order.reverse();
    plan.freeze = frozen_in_mount_order;
    plan
}

/// For each mount, the later mount that covers it, if any: one mounted on
/// the same path or on an ancestor directory after it. Such a mount point
/// resolves to the covering filesystem, so freezing or thawing "by path"
/// would reach the wrong one (ESTALE at best). Mount order is list order.
fn hidden_by(mounts: &[Mount]) -> Vec<Option<PathBuf>> {
    let mut last_at: HashMap<&Path, usize> = HashMap::new();
    for (index, mount) in mounts.iter().enumerate() {
        last_at.insert(&mount.path, index);
    }
    mounts
        .iter()
        .enumerate()
        .map(|(index, mount)| {
            mount
                .path
                .ancestors()
                .filter_map(|dir| last_at.get(dir).map(|&i| (dir, i)))
                .find(|&(_, later)| later > index)
                .map(|(dir, _)| dir.to_owned())
        })
        .collect()
}

/// Filesystems excluded through any of their mounts: `exclude` names what
/// is mounted, so a bind mount of an excluded filesystem elsewhere does not
/// bring it back. The value says which mount and pattern excluded it.
fn excluded_filesystems(mounts: &[Mount], config: &Config) -> HashMap<FsId, String> {
    let mut excluded = HashMap::new();
    for mount in mounts {
        if let Some(why) = config.excluded_by_pattern(&mount.path) {
            excluded.entry(mount.fs_id).or_insert_with(|| {
                format!(
                    "same filesystem as {}, which is {why}",
                    Escaped(mount.path.as_os_str())
                )
            });
        }
    }
    excluded
}

/// `zroot/ROOT/default` lives in pool `zroot`.
fn pool_of(dataset: &str) -> String {
    dataset.split('/').next().unwrap_or(dataset).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::Path;

    fn mount(path: &str, fs_type: &str, source: &str, id: i64) -> Mount {
        Mount {
            path: PathBuf::from(path),
            fs_type: fs_type.to_owned(),
            source: source.to_owned(),
            read_only: false,
            local: true,
            fs_id: FsId([id, 0]),
        }
    }

    fn paths(mounts: &[Mount]) -> Vec<&Path> {
        mounts.iter().map(|m| m.path.as_path()).collect()
    }

    fn reason_for<'a>(plan: &'a FreezePlan, path: &str) -> &'a SkipReason {
        &plan
            .skipped
            .iter()
            .find(|s| s.mount.path == Path::new(path))
            .unwrap_or_else(|| panic!("{path} not skipped"))
            .reason
    }

    /// An Azure-like FreeBSD guest: UFS root, UFS resource disk, pseudo mounts.
    fn freebsd_ufs() -> Vec<Mount> {
        vec![
            mount("/", "ufs", "/dev/gpt/rootfs", 1),
            mount("/dev", "devfs", "devfs", 2),
            mount("/mnt/resource", "ufs", "/dev/da1p1", 3),
            mount("/tmp", "tmpfs", "tmpfs", 4),
            mount("/dev/fd", "fdescfs", "fdescfs", 5),
            mount("/proc", "procfs", "procfs", 6),
            mount("/var/db", "ufs", "/dev/da2p1", 7),
        ]
    }

    #[test]
    fn freezes_every_ufs_in_reverse_mount_order_root_last() {
        let plan = plan(&freebsd_ufs(), &Config::default());
        assert_eq!(
            paths(&plan.freeze),
            ["/var/db", "/mnt/resource", "/"].map(Path::new)
        );
        assert!(plan.veto.is_none());
        for p in ["/dev", "/tmp", "/dev/fd", "/proc"] {
            assert_eq!(reason_for(&plan, p), &SkipReason::Pseudo);
        }
    }

    #[test]
    fn zfs_pools_are_synced_once_instead_of_vetoing() {
        let mounts = vec![
            mount("/", "zfs", "zroot/ROOT/default", 1),
            mount("/home", "zfs", "zroot/home", 2),
            mount("/data", "zfs", "tank/data", 3),
            mount("/boot/efi", "msdosfs", "/dev/gpt/efiboot0", 4),
        ];
        let plan = plan(&mounts, &Config::default());
        assert!(plan.freeze.is_empty());
        assert_eq!(plan.zfs_pools, ["zroot", "tank"]);
        assert!(plan.veto.is_none());
        assert_eq!(reason_for(&plan, "/boot/efi"), &SkipReason::NotFreezable);
    }

    #[test]
    fn strict_restores_the_base_veto() {
        let mut mounts = freebsd_ufs();
        mounts.push(mount("/data", "zfs", "tank/data", 9));
        let config = Config::parse("strict = yes").unwrap();
        let plan = plan(&mounts, &config);
        let veto = plan.veto.unwrap();
        assert!(veto.contains("/data") && veto.contains("zfs"), "{veto}");
        // Pseudo filesystems hold no data: strict does not veto them.
        let plan = super::plan(&freebsd_ufs(), &config);
        assert!(plan.veto.is_none());
    }

    #[test]
    fn zfs_off_skips_without_sync() {
        let mounts = vec![mount("/", "zfs", "zroot/ROOT/default", 1)];
        let plan = plan(&mounts, &Config::parse("zfs = off").unwrap());
        assert!(plan.zfs_pools.is_empty());
        assert_eq!(reason_for(&plan, "/"), &SkipReason::ZfsOff);
    }

    #[test]
    fn read_only_network_and_excluded_mounts_are_skipped_with_reasons() {
        let mut ro = mount("/usr/src", "ufs", "/dev/da3", 10);
        ro.read_only = true;
        let mut nfs = mount("/net/home", "nfs", "server:/home", 11);
        nfs.local = false;
        let mounts = vec![
            mount("/", "ufs", "/dev/da0p2", 1),
            ro,
            nfs,
            mount("/mnt/scratch1", "ufs", "/dev/da4", 12),
        ];
        let plan = plan(&mounts, &Config::parse("exclude = /mnt/scratch*").unwrap());
        assert_eq!(paths(&plan.freeze), [Path::new("/")]);
        assert_eq!(reason_for(&plan, "/usr/src"), &SkipReason::ReadOnly);
        assert_eq!(reason_for(&plan, "/net/home"), &SkipReason::Network);
        assert!(
            matches!(reason_for(&plan, "/mnt/scratch1"), SkipReason::Excluded(w) if w.contains("/mnt/scratch*"))
        );
    }

    #[test]
    fn a_filesystem_mounted_twice_is_frozen_once() {
        let mounts = vec![
            mount("/", "ext4", "/dev/sda1", 1),
            mount("/mnt/a", "xfs", "/dev/loop3", 7),
            mount("/srv/bind", "xfs", "/dev/loop3", 7),
        ];
        let plan = plan(&mounts, &Config::default());
        assert_eq!(paths(&plan.freeze), ["/mnt/a", "/"].map(Path::new));
        assert_eq!(
            reason_for(&plan, "/srv/bind"),
            &SkipReason::SameAs(PathBuf::from("/mnt/a"))
        );
    }

    #[test]
    fn include_restricts_to_matching_mounts() {
        let mounts = vec![
            mount("/", "ext4", "/dev/sda1", 1),
            mount("/tmp/t/ext4", "ext4", "/dev/loop0", 2),
            mount("/tmp/t/xfs", "xfs", "/dev/loop1", 3),
        ];
        let plan = plan(&mounts, &Config::parse("include = /tmp/t/*").unwrap());
        assert_eq!(
            paths(&plan.freeze),
            ["/tmp/t/xfs", "/tmp/t/ext4"].map(Path::new)
        );
    }

    #[test]
    fn a_filesystem_mounted_over_later_is_hidden_and_skipped() {
        let mounts = vec![
            mount("/", "ext4", "/dev/sda1", 1),
            mount("/mnt/a", "ext4", "/dev/loop1", 2),
            mount("/mnt/b/deep", "ext4", "/dev/loop2", 3),
            mount("/mnt/a", "xfs", "/dev/loop3", 4),
            mount("/mnt/b", "ext4", "/dev/loop4", 5),
            // Mounted after its ancestor /mnt/b: visible.
            mount("/mnt/b/late", "ext4", "/dev/loop5", 6),
        ];
        let plan = plan(&mounts, &Config::default());
        assert_eq!(
            paths(&plan.freeze),
            ["/mnt/b/late", "/mnt/b", "/mnt/a", "/"].map(Path::new)
        );
        let hidden: Vec<_> = plan
            .skipped
            .iter()
            .map(|s| (s.mount.fs_id, s.reason.clone()))
            .collect();
        assert_eq!(
            hidden,
            [
                (FsId([2, 0]), SkipReason::Hidden(PathBuf::from("/mnt/a"))),
                (FsId([3, 0]), SkipReason::Hidden(PathBuf::from("/mnt/b"))),
            ]
        );
    }

    #[test]
    fn a_hidden_filesystem_is_frozen_through_a_visible_bind_mount() {
        let mounts = vec![
            mount("/", "ext4", "/dev/sda1", 1),
            mount("/srv/data", "ext4", "/dev/loop1", 2),
            mount("/mnt/view", "ext4", "/dev/loop1", 2),
            mount("/srv/data", "tmpfs", "tmpfs", 3),
        ];
        let plan = plan(&mounts, &Config::default());
        assert_eq!(paths(&plan.freeze), ["/mnt/view", "/"].map(Path::new));
    }

    #[test]
    fn excluding_one_mount_excludes_its_bind_mounts_too() {
        let mounts = vec![
            mount("/", "ext4", "/dev/sda1", 1),
            mount("/mnt/scratch", "xfs", "/dev/loop3", 7),
            mount("/srv/bind", "xfs", "/dev/loop3", 7),
            mount("/srv/early", "xfs", "/dev/loop4", 8),
            mount("/mnt/scratch2", "xfs", "/dev/loop4", 8),
        ];
        let plan = plan(&mounts, &Config::parse("exclude = /mnt/scratch*").unwrap());
        assert_eq!(paths(&plan.freeze), [Path::new("/")]);
        for bind in ["/srv/bind", "/srv/early"] {
            assert!(
                matches!(reason_for(&plan, bind), SkipReason::Excluded(w) if w.contains("same filesystem as /mnt/scratch")),
                "{bind}: {:?}",
                reason_for(&plan, bind)
            );
        }
    }

    #[test]
    fn a_bind_mount_outside_include_does_not_exclude_the_included_mount() {
        let mounts = vec![
            mount("/", "ext4", "/dev/sda1", 1),
            mount("/data", "xfs", "/dev/loop3", 7),
            mount("/srv/bind", "xfs", "/dev/loop3", 7),
        ];
        let plan = plan(&mounts, &Config::parse("include = /data").unwrap());
        assert_eq!(paths(&plan.freeze), [Path::new("/data")]);
    }

    fn arbitrary_mount() -> impl proptest::strategy::Strategy<Value = Mount> {
        use proptest::prelude::*;
        let types = prop::sample::select(vec![
            "ufs",
            "zfs",
            "devfs",
            "tmpfs",
            "nullfs",
            "msdosfs",
            "ext4",
            "xfs",
            "nfs",
            "fuse.sshfs",
        ]);
        (0u8..12, types, any::<bool>(), any::<bool>(), 0i64..6).prop_map(
            |(dir, fs_type, read_only, local, id)| Mount {
                path: PathBuf::from(format!("/m{dir}")),
                fs_type: fs_type.to_owned(),
                source: format!("pool{id}/ds"),
                read_only,
                local,
                fs_id: FsId([id, 0]),
            },
        )
    }

    proptest::proptest! {
        /// Whatever is mounted: only writable local freezable filesystems are
        /// frozen, each filesystem once, in reverse mount order, and every
        /// other mount is accounted for as skipped.
        #[test]
        fn plan_invariants(mounts in proptest::collection::vec(arbitrary_mount(), 0..12)) {
            let plan = plan(&mounts, &Config::default());
            proptest::prop_assert_eq!(plan.freeze.len() + plan.skipped.len(), mounts.len());
            let mut ids = HashSet::new();
            for m in &plan.freeze {
                proptest::prop_assert!(FREEZABLE.contains(&m.fs_type.as_str()));
                proptest::prop_assert!(!m.read_only && m.local);
                proptest::prop_assert!(ids.insert(m.fs_id), "frozen twice: {:?}", m.fs_id);
            }
            let positions: Vec<usize> = plan
                .freeze
                .iter()
                // The last of identical entries is the visible one.
                .map(|f| mounts.iter().rposition(|m| m == f).unwrap_or(usize::MAX))
                .collect();
            proptest::prop_assert!(positions.windows(2).all(|w| w[0] > w[1]), "{:?}", positions);
            proptest::prop_assert!(plan.veto.is_none());
            // Nothing frozen is covered by a later mount.
            for m in &plan.freeze {
                // The last identical entry is the visible one.
                let at = mounts.iter().rposition(|x| x == m).unwrap_or(0);
                proptest::prop_assert!(
                    !mounts[at + 1..].iter().any(|later| m.path.starts_with(&later.path)),
                    "{:?} is hidden", m.path
                );
            }
        }
    }
}
