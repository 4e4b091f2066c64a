//! `hv-vss-sim backup`: one full backup as Hyper-V runs it, against real
//! scratch filesystems and the real daemon, printed as a timeline.
//!
//! Steps: negotiate, HOT_BACKUP (check), FREEZE, prove every freezable
//! filesystem is frozen and that a write to each blocks (and, on FreeBSD,
//! that the ZFS pool was synced and the read-only and nullfs mounts were
//! skipped), THAW, prove the writes complete and nothing stays frozen.
//! Cleanup happens in every path because the [`Simulation`] owns every
//! resource.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hv_vss_proto::HostOperation;

use crate::host::Reply;
use crate::loopfs::{
    FsType, LoopFilesystem, Treatment, Unavailable, parse_fs_list, select_available,
};
use crate::simulation::{Simulation, SimulationError, SimulationOptions};

/// How long the host waits for each reply; above the engine's 15 s chain
/// deadline so that a failure reply is seen rather than a host timeout.
pub const HOST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write must stay blocked to count as "blocked by the freeze".
pub const BLOCKED_PROOF: Duration = Duration::from_millis(500);
/// How long writes may take to complete after THAW.
const WRITE_COMPLETION_TIMEOUT: Duration = Duration::from_secs(10);

/// How "is it frozen?" is asked, for the timeline.
#[cfg(target_os = "linux")]
const FROZEN_PROBE: &str = "FIFREEZE probe: EBUSY";
#[cfg(target_os = "freebsd")]
const FROZEN_PROBE: &str = "UFSSUSPEND probe: EBUSY";

/// The filesystems a backup runs on, and the defaults left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsChoice {
    pub filesystems: Vec<FsType>,
    /// Defaults this machine cannot make (only when `--fs` was not given).
    pub left_out: Vec<Unavailable>,
}

/// Why no backup can run on the filesystems asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsChoiceError {
    /// `--fs` could not be parsed, or was empty.
    #[error("{0}")]
    Usage(String),
    /// A filesystem asked for (or every default) cannot be made here.
    #[error("{0}")]
    Unavailable(String),
}

/// The filesystems for `hv-vss-sim backup`: those of `--fs` (each must be
/// available: a missing tool is an error naming it), else the platform's
/// defaults that this machine can make (at least one). `missing` says why
/// a type cannot be made ([`crate::environment::fs_missing`]).
pub fn choose_filesystems(
    fs_flag: Option<&str>,
    missing: impl Fn(FsType) -> Option<String>,
) -> Result<FsChoice, FsChoiceError> {
    if let Some(list) = fs_flag {
        let filesystems = parse_fs_list(list).map_err(|e| FsChoiceError::Usage(e.to_string()))?;
        if filesystems.is_empty() {
            return Err(FsChoiceError::Usage(
                "--fs needs at least one filesystem".to_owned(),
            ));
        }
        if let Some(reason) = filesystems.iter().find_map(|&fs| missing(fs)) {
            return Err(FsChoiceError::Unavailable(reason));
        }
        return Ok(FsChoice {
            filesystems,
            left_out: Vec::new(),
        });
    }
    let (filesystems, left_out) = select_available(FsType::BACKUP_DEFAULTS, missing);
    if filesystems.is_empty() {
        let reasons: Vec<String> = left_out.iter().map(|u| u.reason.clone()).collect();
        return Err(FsChoiceError::Unavailable(reasons.join("; ")));
    }
    Ok(FsChoice {
        filesystems,
        left_out,
    })
}

/// One line of the timeline.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub duration: Duration,
    pub ok: bool,
    pub detail: String,
}

/// What a backup run produced.
#[derive(Debug, Default)]
pub struct Timeline {
    pub steps: Vec<Step>,
    /// The host's view: every reply it got, in order.
    pub host_result: Vec<(HostOperation, String)>,
    pub succeeded: bool,
    pub frozen_for: Option<Duration>,
    /// When a step failed: the engine's log and the daemon's output.
    pub diagnostics: Option<String>,
    daemon_started: bool,
}

impl Timeline {
    fn step(&mut self, name: &str, started: Instant, ok: bool, detail: impl Into<String>) -> bool {
        self.steps.push(Step {
            name: name.to_owned(),
            duration: started.elapsed(),
            ok,
            detail: detail.into(),
        });
        ok
    }

    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "  #  step                          duration  result");
        for (index, step) in self.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:>3}  {:<28} {:>9}  {} {}",
                index + 1,
                step.name,
                format_duration(step.duration),
                if step.ok { "ok  " } else { "FAIL" },
                step.detail
            );
        }
        let total: Duration = self.steps.iter().map(|s| s.duration).sum();
        let _ = writeln!(out, "     {:<28} {:>9}", "total", format_duration(total));
        let replies: Vec<String> = self
            .host_result
            .iter()
            .map(|(op, status)| format!("{} {status}", op.name()))
            .collect();
        let _ = writeln!(
            out,
            "\nhost-visible result: {} ({})",
            if self.succeeded {
                "BACKUP SUCCEEDED"
            } else {
                "BACKUP FAILED"
            },
            if replies.is_empty() {
                "no VSS request was answered".to_owned()
            } else {
                replies.join(", ")
            }
        );
        if let Some(diagnostics) = &self.diagnostics {
            let _ = write!(out, "\n{diagnostics}");
        }
        if let Some(frozen) = self.frozen_for {
            let _ = writeln!(
                out,
                "filesystems were frozen for {} (FREEZE reply to THAW reply)",
                format_duration(frozen)
            );
        }
        out
    }
}

pub fn format_duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else if d < Duration::from_secs(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn describe(reply: &Reply) -> String {
    let mut text = format!(
        "{} after {}",
        reply.status_text(),
        format_duration(reply.latency)
    );
    if let Some(flags) = reply.vss_flags() {
        let _ = write!(text, ", flags {flags:#x}");
    }
    text
}

/// A write to a frozen filesystem, running in its own thread because it
/// blocks until the thaw.
struct BlockedWrite {
    target: PathBuf,
    done: mpsc::Receiver<Result<Instant, String>>,
    thread: JoinHandle<()>,
}

fn start_write(target: PathBuf) -> BlockedWrite {
    let (tx, done) = mpsc::channel();
    let path = target.clone();
    let thread = std::thread::spawn(move || {
        let result = std::fs::File::create(&path)
            .and_then(|mut file| {
                use std::io::Write;
                file.write_all(b"written during the snapshot\n")?;
                file.sync_all()
            })
            .map(|()| Instant::now())
            .map_err(|e| e.to_string());
        let _ = tx.send(result);
    });
    BlockedWrite {
        target,
        done,
        thread,
    }
}

/// Runs the whole backup. Errors are setup failures (no root, no daemon
/// binary); a backup that fails is a `Timeline` with `succeeded == false`.
pub fn run(options: &SimulationOptions) -> Result<Timeline, SimulationError> {
    let mut timeline = Timeline::default();

    let started = Instant::now();
    let mut sim = Simulation::new(options)?;
    let names: Vec<String> = sim
        .filesystems
        .iter()
        .map(|fs| {
            format!(
                "{} on {}",
                fs.fs_type(),
                fs.loop_device()
                    .map_or_else(String::new, |d| d.display().to_string())
            )
        })
        .collect();
    timeline.step(
        "create filesystems + devices",
        started,
        true,
        format!("{} ({})", names.join(", "), sim.device_dir().display()),
    );

    scenario(&mut timeline, &mut sim);
    finish(&mut timeline, &mut sim);

    let started = Instant::now();
    let dirs = [
        sim.scratch_dir().to_owned(),
        sim.filesystems.dir().to_owned(),
    ];
    drop(sim);
    let leftovers = leftovers(&dirs);
    let ok = leftovers.is_empty();
    timeline.step(
        "cleanup",
        started,
        ok,
        if ok {
            "thawed, unmounted, loop devices detached, devices unmounted, scratch removed"
                .to_owned()
        } else {
            format!("left behind: {}", leftovers.join(", "))
        },
    );
    timeline.succeeded = timeline.steps.iter().all(|s| s.ok) && timeline.host_result.len() == 3;
    Ok(timeline)
}

/// The backup proper; returns early at the first failed step.
fn scenario(timeline: &mut Timeline, sim: &mut Simulation) {
    let started = Instant::now();
    let daemon = sim.start_daemon();
    let detail = match &daemon {
        Ok(_) => format!("{} opened hv_fsvss_dev", sim.daemon_setup.binary.display()),
        Err(e) => e.to_string(),
    };
    if !timeline.step("start hv_vssd", started, daemon.is_ok(), detail) {
        return;
    }
    timeline.daemon_started = true;
    if !negotiate_step(timeline, sim) {
        return;
    }
    // HOT_BACKUP, then FREEZE: each must succeed for the backup to go on.
    if !host_step(
        timeline,
        sim,
        HostOperation::HotBackup,
        "HOT_BACKUP (check)",
    ) || !host_step(timeline, sim, HostOperation::Freeze, "FREEZE")
    {
        return;
    }
    let frozen_at = Instant::now();

    check_frozen(timeline, sim);

    let writes = prove_writes_block(timeline, sim);
    if host_step(timeline, sim, HostOperation::Thaw, "THAW") {
        timeline.frozen_for = Some(frozen_at.elapsed());
    }
    prove_writes_complete(timeline, writes);
    // After the THAW: the daemon holds its log lines while frozen.
    check_not_frozen_but_handled(timeline, sim);
}

/// The simulation's filesystems the daemon must freeze.
fn freezable(sim: &Simulation) -> impl Iterator<Item = &LoopFilesystem> {
    sim.filesystems.iter().filter(|fs| fs.fs_type().freezes())
}

/// Every freezable filesystem is frozen now.
fn check_frozen(timeline: &mut Timeline, sim: &Simulation) {
    let started = Instant::now();
    let expected: Vec<PathBuf> = freezable(sim)
        .map(|fs| fs.mount_point().to_owned())
        .collect();
    let frozen = sim.filesystems.frozen();
    let all_frozen = matches!(&frozen, Ok(list) if *list == expected);
    let detail = match &frozen {
        Ok(list) => format!(
            "{} of {} frozen ({FROZEN_PROBE})",
            list.len(),
            expected.len()
        ),
        Err(e) => e.to_string(),
    };
    timeline.step("check: all frozen", started, all_frozen, detail);
}

/// The filesystems the daemon must not freeze were handled as the policy
/// says: a ZFS pool synced (`zpool sync <pool>` in the daemon's log), a
/// read-only or nullfs mount skipped (`skipping <mount point> (`). No
/// step when there are none (Linux's ext4/xfs are all frozen).
fn check_not_frozen_but_handled(timeline: &mut Timeline, sim: &Simulation) {
    let started = Instant::now();
    let log = sim.daemon_log();
    let mut handled = Vec::new();
    let mut problems = Vec::new();
    for fs in &sim.filesystems {
        let mount = fs.mount_point().display().to_string();
        let (seen, what) = match fs.fs_type().treatment() {
            Treatment::Frozen => continue,
            Treatment::Synced => {
                let pool = fs.pool().unwrap_or("?");
                (
                    log.contains(&format!("zpool sync {pool}")),
                    format!("{pool} synced"),
                )
            }
            Treatment::Skipped => (
                log.contains(&format!("skipping {mount} (")),
                format!("{} skipped", fs.fs_type()),
            ),
        };
        if seen {
            handled.push(what);
        } else {
            problems.push(format!("{} not {what}", fs.fs_type()));
        }
    }
    if handled.is_empty() && problems.is_empty() {
        return;
    }
    let ok = problems.is_empty();
    timeline.step(
        "check: synced and skipped",
        started,
        ok,
        if ok {
            handled.join(", ")
        } else {
            problems.join("; ")
        },
    );
}

fn negotiate_step(timeline: &mut Timeline, sim: &mut Simulation) -> bool {
    let started = Instant::now();
    match sim.host.negotiate(HOST_TIMEOUT) {
        Ok(reply) => {
            let detail = match reply.negotiated() {
                Some(chosen) => format!(
                    "framework {}.{}, message {}.{} ({})",
                    chosen.framework.major,
                    chosen.framework.minor,
                    chosen.message.major,
                    chosen.message.minor,
                    describe(&reply)
                ),
                None => describe(&reply),
            };
            timeline.step("negotiate versions", started, reply.succeeded(), detail)
        }
        Err(e) => timeline.step("negotiate versions", started, false, e.to_string()),
    }
}

/// Sends `operation`, records the host-visible result; true on HV_S_OK.
fn host_step(
    timeline: &mut Timeline,
    sim: &mut Simulation,
    operation: HostOperation,
    label: &str,
) -> bool {
    let started = Instant::now();
    match sim.host.request(operation, HOST_TIMEOUT) {
        Ok(reply) => {
            timeline.host_result.push((operation, reply.status_text()));
            timeline.step(label, started, reply.succeeded(), describe(&reply))
        }
        Err(e) => {
            timeline
                .host_result
                .push((operation, "no reply".to_owned()));
            timeline.step(label, started, false, e.to_string())
        }
    }
}

/// Starts one write per filesystem and checks that none completes.
fn prove_writes_block(timeline: &mut Timeline, sim: &Simulation) -> Vec<BlockedWrite> {
    let started = Instant::now();
    let writes: Vec<BlockedWrite> = freezable(sim)
        .map(|fs| start_write(fs.mount_point().join("written-while-frozen")))
        .collect();
    std::thread::sleep(BLOCKED_PROOF);
    let finished_early: Vec<String> = writes
        .iter()
        .filter(|w| w.done.try_recv().is_ok())
        .map(|w| w.target.display().to_string())
        .collect();
    let detail = if finished_early.is_empty() {
        format!(
            "{} writers still blocked after {}",
            writes.len(),
            format_duration(BLOCKED_PROOF)
        )
    } else {
        format!("completed while frozen: {}", finished_early.join(", "))
    };
    timeline.step(
        "check: writes block",
        started,
        finished_early.is_empty(),
        detail,
    );
    writes
}

/// Waits for the blocked writes to complete after the thaw.
fn prove_writes_complete(timeline: &mut Timeline, writes: Vec<BlockedWrite>) {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut failures = Vec::new();
    for write in writes {
        match write.done.recv_timeout(WRITE_COMPLETION_TIMEOUT) {
            Ok(Ok(at)) => slowest = slowest.max(at.saturating_duration_since(started)),
            Ok(Err(e)) => failures.push(format!("{}: {e}", write.target.display())),
            Err(_) => failures.push(format!("{}: still blocked", write.target.display())),
        }
        // A writer still blocked is released by the cleanup's thaw.
        if write.thread.is_finished() {
            let _ = write.thread.join();
        }
    }
    let detail = if failures.is_empty() {
        format!(
            "all completed {} after the THAW reply",
            format_duration(slowest)
        )
    } else {
        failures.join("; ")
    };
    timeline.step(
        "check: writes complete",
        started,
        failures.is_empty(),
        detail,
    );
}

/// Final checks shared by every path: nothing frozen, daemon stopped cleanly.
fn finish(timeline: &mut Timeline, sim: &mut Simulation) {
    let started = Instant::now();
    let frozen = sim.filesystems.frozen();
    let none_frozen = matches!(&frozen, Ok(list) if list.is_empty());
    timeline.step(
        "check: nothing frozen",
        started,
        none_frozen,
        match frozen {
            Ok(list) if list.is_empty() => "every filesystem thawed".to_owned(),
            Ok(list) => format!("still frozen: {list:?}"),
            Err(e) => e.to_string(),
        },
    );

    let started = Instant::now();
    let status = sim.stop_daemon();
    let (ok, detail) = match status {
        Some(status) => (status.success(), format!("SIGTERM: {status}")),
        None if timeline.daemon_started => (false, "had exited before the end".to_owned()),
        None => (true, "was never running".to_owned()),
    };
    timeline.step("stop hv_vssd", started, ok, detail);

    sim.host.drain(Duration::from_millis(200));
    let problems = sim.host.answered_exactly_once();
    if !problems.is_empty() || timeline.steps.iter().any(|s| !s.ok) {
        let indent = |lines: Vec<String>| {
            if lines.is_empty() {
                "  (nothing)".to_owned()
            } else {
                lines
                    .iter()
                    .map(|l| format!("  {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        timeline.diagnostics = Some(format!(
            "kernel engine log:\n{}\nhv_vssd output:\n{}\n",
            indent(sim.kernel().log()),
            indent(sim.daemon_log().lines().map(str::to_owned).collect())
        ));
    }
    timeline.step(
        "check: one reply per request",
        Instant::now(),
        problems.is_empty(),
        if problems.is_empty() {
            format!(
                "{} requests, {} replies",
                sim.host.ledger().len(),
                sim.host
                    .ledger()
                    .values()
                    .map(|s| s.replies.len())
                    .sum::<usize>()
            )
        } else {
            problems.join("; ")
        },
    );
}

/// What is left of a run in `dirs`: mounts, loop or md devices backed by a
/// file there, the directories themselves, and (FreeBSD) this process's
/// ZFS pools.
fn leftovers(dirs: &[PathBuf]) -> Vec<String> {
    let mounts = mount_table();
    let backings = disk_backings();
    let mut found = Vec::new();
    for dir in dirs {
        let dir_text = dir.to_string_lossy();
        found.extend(
            mounts
                .lines()
                .filter(|line| line.contains(dir_text.as_ref()))
                .map(|line| format!("mount {line}")),
        );
        found.extend(
            backings
                .iter()
                .filter(|(_, backing)| backing.contains(dir_text.as_ref()))
                .map(|(device, _)| format!("/dev/{device}")),
        );
        if dir.exists() {
            found.push(dir.display().to_string());
        }
    }
    found.extend(own_pools().into_iter().map(|pool| format!("zpool {pool}")));
    found
}

/// The mount table, one mount per line.
#[cfg(target_os = "linux")]
fn mount_table() -> String {
    std::fs::read_to_string("/proc/self/mounts").unwrap_or_default()
}

#[cfg(target_os = "freebsd")]
fn mount_table() -> String {
    crate::loopfs::run_tool("mount", &["-p"]).unwrap_or_default()
}

/// (device name, backing file) of every loop device.
#[cfg(target_os = "linux")]
fn disk_backings() -> Vec<(String, String)> {
    std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            Some((entry.file_name().to_string_lossy().into_owned(), backing))
        })
        .collect()
}

/// (device name, the rest of its `mdconfig -l -v` line) of every md device.
#[cfg(target_os = "freebsd")]
fn disk_backings() -> Vec<(String, String)> {
    crate::loopfs::run_tool("mdconfig", &["-l", "-v"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (unit, rest) = line.split_once(char::is_whitespace)?;
            Some((unit.to_owned(), rest.to_owned()))
        })
        .collect()
}

/// ZFS pools this process created that still exist.
#[cfg(target_os = "linux")]
fn own_pools() -> Vec<String> {
    Vec::new()
}

#[cfg(target_os = "freebsd")]
fn own_pools() -> Vec<String> {
    let prefix = crate::loopfs::freebsd::pool_prefix();
    crate::loopfs::run_tool("zpool", &["list", "-H", "-o", "name"])
        .unwrap_or_default()
        .lines()
        .filter(|pool| pool.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine without mkfs.xfs (the probe is injected).
    fn no_xfs(fs_type: FsType) -> Option<String> {
        (fs_type == FsType::Xfs).then(|| format!("mkfs.xfs not found: {}", fs_type.install_hint()))
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn without_mkfs_xfs_the_default_backup_runs_on_ext4_and_says_how_to_add_xfs() {
        let choice = choose_filesystems(None, no_xfs).unwrap();
        assert_eq!(choice.filesystems, vec![FsType::Ext4]);
        assert_eq!(choice.left_out.len(), 1);
        assert_eq!(choice.left_out[0].fs_type, FsType::Xfs);
        assert!(
            choice.left_out[0]
                .reason
                .contains("apt-get install xfsprogs"),
            "{:?}",
            choice.left_out
        );
    }

    #[test]
    fn an_explicit_fs_without_its_mkfs_is_an_error_naming_the_tool() {
        let error = choose_filesystems(Some("xfs"), no_xfs).unwrap_err();
        assert!(
            matches!(&error, FsChoiceError::Unavailable(reason)
                if reason.contains("mkfs.xfs not found") && reason.contains("xfsprogs")),
            "{error:?}"
        );
    }

    #[test]
    fn an_explicit_list_is_taken_as_given_when_every_tool_is_there() {
        let choice = choose_filesystems(Some("ext4,xfs,ext4"), |_| None).unwrap();
        assert_eq!(
            choice.filesystems,
            vec![FsType::Ext4, FsType::Xfs, FsType::Ext4]
        );
        assert!(choice.left_out.is_empty());
    }

    #[test]
    fn bad_or_empty_lists_are_usage_errors() {
        assert!(matches!(
            choose_filesystems(Some("ext5"), |_| None),
            Err(FsChoiceError::Usage(_))
        ));
        assert!(matches!(
            choose_filesystems(Some(" , "), |_| None),
            Err(FsChoiceError::Usage(_))
        ));
    }

    #[test]
    fn with_no_default_available_the_error_says_why_for_each() {
        let error = choose_filesystems(None, |fs_type| Some(format!("no {fs_type}"))).unwrap_err();
        let FsChoiceError::Unavailable(reasons) = error else {
            panic!("{error:?}");
        };
        for fs_type in FsType::BACKUP_DEFAULTS {
            assert!(reasons.contains(&format!("no {fs_type}")), "{reasons}");
        }
    }
}
