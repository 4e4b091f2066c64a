//! `hv-vss-sim backup`: one full backup as Hyper-V runs it, against real
//! loop-mounted filesystems and the real daemon, printed as a timeline.
//!
//! Steps: negotiate, HOT_BACKUP (check), FREEZE, prove every filesystem is
//! frozen and that a write to each blocks, THAW, prove the writes complete
//! and nothing stays frozen. Cleanup happens in every path because the
//! [`Simulation`] owns every resource.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hv_vss_proto::HostOperation;

use crate::host::Reply;
use crate::simulation::{Simulation, SimulationError, SimulationOptions};

/// How long the host waits for each reply; above the engine's 15 s chain
/// deadline so that a failure reply is seen rather than a host timeout.
pub const HOST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write must stay blocked to count as "blocked by the freeze".
pub const BLOCKED_PROOF: Duration = Duration::from_millis(500);
/// How long writes may take to complete after THAW.
const WRITE_COMPLETION_TIMEOUT: Duration = Duration::from_secs(10);

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

    let started = Instant::now();
    let frozen = sim.filesystems.frozen();
    let all_frozen = matches!(&frozen, Ok(list) if list.len() == sim.filesystems.len());
    let detail = match &frozen {
        Ok(list) => format!(
            "{} of {} frozen (FIFREEZE probe: EBUSY)",
            list.len(),
            sim.filesystems.len()
        ),
        Err(e) => e.to_string(),
    };
    timeline.step("check: all frozen", started, all_frozen, detail);

    let writes = prove_writes_block(timeline, sim);
    if host_step(timeline, sim, HostOperation::Thaw, "THAW") {
        timeline.frozen_for = Some(frozen_at.elapsed());
    }
    prove_writes_complete(timeline, writes);
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
    let writes: Vec<BlockedWrite> = sim
        .filesystems
        .iter()
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

/// What is left of a run in `dirs`: mounts, loop devices backed by a file
/// there, or the directories themselves.
fn leftovers(dirs: &[PathBuf]) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let backing_files: Vec<(String, String)> = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            Some((entry.file_name().to_string_lossy().into_owned(), backing))
        })
        .collect();
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
            backing_files
                .iter()
                .filter(|(_, backing)| backing.contains(dir_text.as_ref()))
                .map(|(device, _)| format!("/dev/{device}")),
        );
        if dir.exists() {
            found.push(dir.display().to_string());
        }
    }
    found
}
