//! `hv_vssctl test`: a real freeze and thaw of this machine's filesystems
//! through exactly the code a host FREEZE and THAW run in hv_vssd (the
//! plan, the hooks, rollback, the watchdog, the request budget), held for a
//! while, with a timeline of what happened. It takes the daemon's freeze
//! lock, so it is refused while the daemon serves a host freeze, and a host
//! FREEZE that comes meanwhile is refused by the daemon.
//!
//! Like the daemon, this process is single-threaded (UFSSUSPEND refuses
//! others) and holds no descriptor open for writing on what it freezes.

use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hv_vss_proto::{DeviceOperation, DeviceStatus};
use hv_vssd::busy::{self, FreezeLock};
use hv_vssd::config::Config;
use hv_vssd::engine::Engine;
use hv_vssd::freezer::PlatformFreezer;
use hv_vssd::hardening;
use hv_vssd::log::Log;
use hv_vssd::mounts::{self, PlatformMountTable};
use hv_vssd::pidfile;
use hv_vssd::policy;
use hv_vssd::watchdog::SystemClock;

use crate::cli::exit;

/// Why a test did not start.
#[derive(Debug)]
pub struct Refused {
    pub message: String,
    pub code: i32,
}

fn refused(code: i32, message: impl Into<String>) -> Refused {
    Refused {
        message: message.into(),
        code,
    }
}

/// One line of the timeline.
struct Step {
    what: &'static str,
    took: Duration,
    status: Option<bool>,
    detail: String,
}

/// Runs the test; returns the timeline text and whether it succeeded.
pub fn run(config: Config, hold: Duration) -> Result<(String, bool), Refused> {
    if !nix::unistd::geteuid().is_root() {
        return Err(refused(
            exit::NOPERM,
            "test freezes filesystems: run it as root",
        ));
    }
    // As the daemon does before anything can be frozen: no inherited
    // descriptor (UFSSUSPEND refuses a process writing to the filesystem)
    // and no core dump (one written onto a suspended root never ends).
    hardening::close_inherited_descriptors().map_err(|e| {
        refused(
            exit::OSERR,
            format!("cannot close inherited descriptors: {e}"),
        )
    })?;
    if let Some(note) = hardening::forbid_core_dumps()
        .map_err(|e| refused(exit::OSERR, format!("cannot turn core dumps off: {e}")))?
    {
        eprintln!("hv_vssctl: {note}");
    }
    let mut lock = FreezeLock::open(&busy::lock_path(&config.pid_file)).map_err(|e| {
        refused(
            exit::OSERR,
            format!(
                "cannot open the freeze lock next to {}: {e}",
                config.pid_file.display()
            ),
        )
    })?;
    match lock.try_lock() {
        Ok(true) => {}
        Ok(false) => {
            let who = pidfile::running(&config.pid_file).map_or_else(
                || "another process".to_owned(),
                |pid| format!("hv_vssd (pid {pid})"),
            );
            return Err(refused(
                exit::TEMPFAIL,
                format!(
                    "refused: {who} is in the middle of a host request (FREEZE..THAW); \
                     try again when it is idle"
                ),
            ));
        }
        Err(e) => return Err(refused(exit::OSERR, format!("cannot lock: {e}"))),
    }
    refuse_output_on_frozen_filesystems(&config)?;
    let table = PlatformMountTable::open().map_err(|e| refused(exit::OSERR, e.to_string()))?;
    let mut engine = Engine::new(
        config,
        PlatformFreezer::default(),
        SystemClock,
        Log::stderr(false),
        Box::new(table),
        0,
    );
    engine.set_freeze_lock(lock);
    // The status file is the daemon's: the test prints its own timeline.
    engine.without_status_file();
    Ok(timeline(&mut engine, hold))
}

/// A standard output or error that is a file on a filesystem about to be
/// frozen would make the suspension fail (EDEADLK on FreeBSD) or block the
/// test on its first line: refuse that up front.
fn refuse_output_on_frozen_filesystems(config: &Config) -> Result<(), Refused> {
    let listed = mounts::discover().map_err(|e| refused(exit::OSERR, e.to_string()))?;
    let plan = policy::plan(&listed, config);
    for (name, fd) in [
        (
            "standard output",
            std::io::stdout().as_fd().try_clone_to_owned(),
        ),
        (
            "standard error",
            std::io::stderr().as_fd().try_clone_to_owned(),
        ),
    ] {
        let Ok(fd) = fd else { continue };
        let file = std::fs::File::from(fd);
        let Ok(meta) = file.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let Ok(fs) = mounts::filesystem_of_fd(file.as_fd()) else {
            continue;
        };
        if let Some(mount) = plan.freeze.iter().find(|m| m.fs_id == fs) {
            return Err(refused(
                exit::USAGE,
                format!(
                    "{name} is a file on {}, which the test freezes: write it to a \
                     terminal, a pipe or a file elsewhere",
                    hv_vssd::log::Escaped(mount.path.as_os_str())
                ),
            ));
        }
    }
    Ok(())
}

fn timeline(engine: &mut Engine<PlatformFreezer, SystemClock>, hold: Duration) -> (String, bool) {
    let mut steps = Vec::new();
    let check = request(engine, DeviceOperation::Check, 1);
    steps.push(check);
    let freeze = request(engine, DeviceOperation::Freeze, 2);
    let froze = freeze.status == Some(true);
    steps.push(freeze);
    let mut ok = froze;
    if froze {
        steps.push(hold_frozen(engine, hold));
        let thaw = request(engine, DeviceOperation::Thaw, 3);
        ok &= thaw.status == Some(true);
        steps.push(thaw);
    }
    let mut out = String::new();
    for (number, step) in steps.iter().enumerate() {
        let status = match step.status {
            Some(true) => "ok",
            Some(false) => "FAIL",
            None => "",
        };
        let _ = writeln!(
            out,
            "{:>3}  {:<10} {:>10}  {:<4} {}",
            number + 1,
            step.what,
            format_duration(step.took),
            status,
            step.detail
        );
    }
    let verdict = if ok {
        "TEST FREEZE SUCCEEDED: a host backup would freeze and thaw the same way"
    } else {
        "TEST FREEZE FAILED: a host backup would fail the same way (see the log above)"
    };
    let _ = writeln!(out, "result: {verdict}");
    (out, ok)
}

/// One request, answered and followed by the after-answer work, as the
/// daemon's device loop does.
fn request(
    engine: &mut Engine<PlatformFreezer, SystemClock>,
    operation: DeviceOperation,
    msgid: u64,
) -> Step {
    let started = Instant::now();
    let status = engine.handle(operation, msgid, engine.now());
    let took = started.elapsed();
    engine.after_answer();
    let detail = engine
        .status()
        .recent
        .back()
        .map(hv_vssd::status::Transaction::summary)
        .unwrap_or_default();
    Step {
        what: match operation {
            DeviceOperation::Check => "CHECK",
            DeviceOperation::Freeze => "FREEZE",
            DeviceOperation::Thaw => "THAW",
            DeviceOperation::None => "NONE",
        },
        took,
        status: Some(status == DeviceStatus::Success),
        detail,
    }
}

/// Waits `hold` with the filesystems frozen, letting the watchdog act as
/// the daemon's loop would.
fn hold_frozen(engine: &mut Engine<PlatformFreezer, SystemClock>, hold: Duration) -> Step {
    let started = Instant::now();
    let frozen = engine.frozen_paths().len();
    loop {
        let left = hold.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let nap = engine.next_timeout().map_or(left, |t| t.min(left));
        std::thread::sleep(nap);
        engine.on_timer();
    }
    let detail = if engine.is_frozen() {
        format!("{frozen} filesystems held frozen")
    } else {
        format!("{frozen} filesystems frozen until the watchdog thawed them (freeze_limit)")
    };
    Step {
        what: "hold",
        took: started.elapsed(),
        status: None,
        detail,
    }
}

fn format_duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}
