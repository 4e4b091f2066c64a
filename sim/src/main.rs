//! `hv-vss-sim`: the Hyper-V host simulator's command line.
//!
//! - `hv-vss-sim backup`: a full backup against real scratch filesystems
//!   (loop-mounted on Linux, md(4)-backed on FreeBSD) and the real daemon,
//!   printed as a timeline;
//! - `hv-vss-sim host`: expose the simulated devices in a directory and
//!   run a script of host requests against whatever opens them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hv_vss_sim::backup::{self, FsChoiceError};
use hv_vss_sim::device_nodes::DeviceMount;
use hv_vss_sim::devices::{DeviceBackend, DeviceKind};
use hv_vss_sim::host::Host;
use hv_vss_sim::kernel::{KernelOptions, SimKernel};
use hv_vss_sim::script::{self, HostStep, STEP_HELP};
use hv_vss_sim::simulation::{SimulationError, SimulationOptions};

const EXIT_USAGE: u8 = 64;
/// sysexits(3) EX_UNAVAILABLE: the machine lacks what the command needs.
const EXIT_UNAVAILABLE: u8 = 69;

const USAGE: &str = "\
usage: hv-vss-sim backup [--fs type,...] [--daemon path] [--freeze-limit seconds]
       hv-vss-sim host [--dir dir | --system] [--wait-daemon seconds] [--timeout seconds] step ...
       hv-vss-sim help

backup  run one Hyper-V backup (negotiate, HOT_BACKUP, FREEZE, THAW) against
        scratch filesystems and the real hv_vssd; needs root. --fs types:
        Linux ext4, xfs (default: both, xfs only with mkfs.xfs); FreeBSD
        ufs-suj, ufs-su, ufs, zfs, ufs-ro, nullfs (default: all, zfs only
        with ZFS loaded).
host    mount the simulated hv_fsvss_dev and hv_appvss_dev on --dir (default: a
        temporary directory, printed), wait for a daemon to open hv_fsvss_dev
        (start one with `hv_vssd -n -D dir`), then send the steps. FreeBSD:
        --system creates /dev/hv_fsvss_dev and /dev/hv_appvss_dev themselves,
        so devd(8) and `service hv_vssd` see them as a driver's (never send
        freeze to a daemon whose configuration includes real filesystems).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("backup") => backup_command(&args[1..]),
        Some("host") => host_command(&args[1..]),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}\n\n{STEP_HELP}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("hv-vss-sim: {message}\n{USAGE}");
    ExitCode::from(EXIT_USAGE)
}

fn seconds(matches: &getopts::Matches, name: &str) -> Result<Option<Duration>, String> {
    matches
        .opt_str(name)
        .map(|text| {
            text.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("--{name} {text:?}: expected whole seconds"))
        })
        .transpose()
}

fn backup_command(args: &[String]) -> ExitCode {
    let mut opts = getopts::Options::new();
    opts.optopt("", "fs", "filesystems to create", "LIST");
    opts.optopt("", "daemon", "hv_vssd binary", "PATH");
    opts.optopt("", "freeze-limit", "daemon watchdog", "SECONDS");
    let matches = match opts.parse(args) {
        Ok(m) if m.free.is_empty() => m,
        Ok(m) => return usage_error(&format!("unexpected argument {:?}", m.free[0])),
        Err(e) => return usage_error(&e.to_string()),
    };
    let mut options = SimulationOptions::default();
    let fs_flag = matches.opt_str("fs");
    match backup::choose_filesystems(fs_flag.as_deref(), hv_vss_sim::environment::fs_missing) {
        Ok(choice) => {
            for left_out in &choice.left_out {
                println!(
                    "hv-vss-sim backup: {} skipped: {}",
                    left_out.fs_type, left_out.reason
                );
            }
            options.filesystems = choice.filesystems;
        }
        Err(FsChoiceError::Usage(e)) => return usage_error(&e),
        Err(FsChoiceError::Unavailable(missing)) => return unavailable(&missing),
    }
    options.daemon_binary = matches.opt_str("daemon").map(PathBuf::from);
    match seconds(&matches, "freeze-limit") {
        Ok(limit) => options.freeze_limit = limit,
        Err(e) => return usage_error(&e),
    }
    let names: Vec<&str> = options.filesystems.iter().map(|f| f.name()).collect();
    println!(
        "hv-vss-sim backup: {} filesystem(s) ({}), real hv_vssd, simulated Hyper-V host\n",
        names.len(),
        names.join(", ")
    );
    match backup::run(&options) {
        Ok(timeline) => {
            print!("{}", timeline.render());
            if timeline.succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(SimulationError::Environment(missing)) => unavailable(&missing.to_string()),
        Err(e) => {
            eprintln!("hv-vss-sim backup: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What `backup` needs, for a machine that lacks some of it.
#[cfg(target_os = "linux")]
const BACKUP_NEEDS: &str = "It creates sparse loop-mounted ext4/xfs images in a temporary \
    directory, mounts the simulated devices with FUSE and lets hv_vssd freeze those \
    filesystems (FIFREEZE): that needs root, /dev/fuse, /dev/loop-control and mkfs.ext4 \
    (mkfs.xfs for xfs).";
#[cfg(target_os = "freebsd")]
const BACKUP_NEEDS: &str = "It creates md(4)-backed UFS2 and ZFS filesystems in a temporary \
    directory, makes the simulated devices with CUSE and lets hv_vssd suspend them \
    (UFSSUSPEND): that needs root, /dev/cuse (kldload cuse), /dev/mdctl and, for zfs, \
    /dev/zfs (kldload zfs).";

fn unavailable(missing: &str) -> ExitCode {
    eprintln!(
        "hv-vss-sim backup: cannot run here: {missing}\n{BACKUP_NEEDS} Nothing else on the \
         machine is touched."
    );
    ExitCode::from(EXIT_UNAVAILABLE)
}

fn host_command(args: &[String]) -> ExitCode {
    let mut opts = getopts::Options::new();
    opts.optopt("", "dir", "where to mount the devices", "DIR");
    opts.optflag("", "system", "FreeBSD: make /dev/hv_fsvss_dev itself");
    opts.optopt(
        "",
        "wait-daemon",
        "wait for hv_fsvss_dev to be opened",
        "SECONDS",
    );
    opts.optopt("", "timeout", "how long to wait for each reply", "SECONDS");
    let matches = match opts.parse(args) {
        Ok(m) => m,
        Err(e) => return usage_error(&e.to_string()),
    };
    let steps: Vec<HostStep> = match matches.free.iter().map(|s| s.parse()).collect() {
        Ok(steps) => steps,
        Err(e) => return usage_error(&format!("{e}\n{STEP_HELP}")),
    };
    let (wait_daemon, timeout) = match (
        seconds(&matches, "wait-daemon"),
        seconds(&matches, "timeout"),
    ) {
        (Ok(w), Ok(t)) => (w, t.unwrap_or(backup::HOST_TIMEOUT)),
        (Err(e), _) | (_, Err(e)) => return usage_error(&e),
    };
    if let Err(missing) = hv_vss_sim::environment::check_devices() {
        eprintln!("hv-vss-sim host: cannot run here: {missing}");
        return ExitCode::from(EXIT_UNAVAILABLE);
    }
    if matches.opt_present("system") && matches.opt_present("dir") {
        return usage_error("--system and --dir exclude each other");
    }
    let kernel = SimKernel::start(&KernelOptions::default());
    let backend: std::sync::Arc<dyn DeviceBackend> = kernel.clone();
    let temporary;
    let mount = if matches.opt_present("system") {
        system_devices(&backend)
    } else {
        let dir = match matches.opt_str("dir") {
            Some(dir) => PathBuf::from(dir),
            None => match tempfile::Builder::new().prefix("hv-vss-sim-dev.").tempdir() {
                Ok(dir) => {
                    temporary = dir;
                    temporary.path().to_owned()
                }
                Err(e) => {
                    eprintln!("hv-vss-sim host: temporary directory: {e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        DeviceMount::new(&dir, &backend).map_err(|e| e.to_string())
    };
    let mount = match mount {
        Ok(mount) => mount,
        Err(e) => {
            eprintln!("hv-vss-sim host: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "devices: {} and {}",
        mount.path(DeviceKind::Fs).display(),
        mount.path(DeviceKind::App).display()
    );
    if let Some(wait) = wait_daemon {
        println!(
            "waiting up to {}s for a daemon to open {} ...",
            wait.as_secs(),
            DeviceKind::Fs
        );
        if !kernel.wait_until(wait, |k| k.is_open(DeviceKind::Fs)) {
            eprintln!("hv-vss-sim host: nobody opened {} in time", DeviceKind::Fs);
            return ExitCode::FAILURE;
        }
    }
    let mut host = Host::new(kernel.clone(), kernel.take_host_replies());
    let all_ok = run_script(&mut host, &steps, timeout);
    drop(mount);
    kernel.shutdown();
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The devices at their real paths under /dev (FreeBSD's CUSE only).
#[cfg(target_os = "freebsd")]
fn system_devices(backend: &std::sync::Arc<dyn DeviceBackend>) -> Result<DeviceMount, String> {
    DeviceMount::at_system_paths(backend).map_err(|e| e.to_string())
}

#[cfg(not(target_os = "freebsd"))]
fn system_devices(_backend: &std::sync::Arc<dyn DeviceBackend>) -> Result<DeviceMount, String> {
    Err("--system exists on FreeBSD only (CUSE makes real /dev nodes)".to_owned())
}

/// Sends each step, prints the reply with its timing; false if a request
/// went unanswered or was answered more than once.
fn run_script(host: &mut Host, steps: &[HostStep], timeout: Duration) -> bool {
    let started = Instant::now();
    let mut all_ok = true;
    for step in steps {
        let at = backup::format_duration(started.elapsed());
        match script::send(host, step) {
            Ok(None) => println!("{at:>9}  {step}"),
            Ok(Some(transaction)) if !host.answerable(transaction) => {
                // Shorter than an IC header: the guest can only drop it.
                let reply = host.wait(transaction, Duration::from_millis(200));
                let outcome = if reply.is_ok() {
                    all_ok = false;
                    "answered, but no reply was possible"
                } else {
                    "no reply, as expected (shorter than the IC header)"
                };
                println!("{at:>9}  {step:<28} -> {outcome}");
            }
            Ok(Some(transaction)) => match host.wait(transaction, timeout) {
                Ok(reply) => {
                    let flags = reply
                        .vss_flags()
                        .map_or_else(String::new, |f| format!(" flags {f:#x}"));
                    println!(
                        "{at:>9}  {step:<28} -> {}{flags} in {} ({} bytes)",
                        reply.status_text(),
                        backup::format_duration(reply.latency),
                        reply.bytes.len()
                    );
                }
                Err(e) => {
                    all_ok = false;
                    println!("{at:>9}  {step:<28} -> {e}");
                }
            },
            Err(e) => {
                all_ok = false;
                println!("{at:>9}  {step:<28} -> {e}");
            }
        }
    }
    host.drain(Duration::from_millis(200));
    for problem in host.answered_exactly_once() {
        all_ok = false;
        println!("problem: {problem}");
    }
    all_ok
}
