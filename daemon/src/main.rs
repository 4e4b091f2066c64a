//! `hv_vssd`: see hv_vssd(8) and the crate documentation.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hv_vssd::busy::{self, FreezeLock};
use hv_vssd::cli::{self, Args, Mode, exit};
use hv_vssd::config::{Config, DEFAULT_CONFIG_PATH};
use hv_vssd::device::{self, CharDevice, OpenError};
use hv_vssd::engine::Engine;
use hv_vssd::freezer::{self, Freezer, PlatformFreezer};
use hv_vssd::log::{Escaped, Log};
use hv_vssd::pidfile::{Pidfile, PidfileError};
use hv_vssd::service::{self, Signals};
use hv_vssd::{hardening, hooks, mounts, preflight, watchdog};

/// The uid hooks must belong to.
const HOOK_OWNER: u32 = 0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match cli::parse(&args) {
        Ok(Args {
            mode: Mode::Help, ..
        }) => {
            print!("{}", cli::USAGE);
            exit::OK
        }
        Ok(args) => run(&args),
        Err(e) => {
            eprint!("hv_vssd: {e}\n{}", cli::USAGE);
            exit::USAGE
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn run(args: &Args) -> i32 {
    let config_path = PathBuf::from(args.config.as_deref().unwrap_or(DEFAULT_CONFIG_PATH));
    let config = match Config::load(&config_path, args.config.is_some()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hv_vssd: {e}");
            return exit::CONFIG;
        }
    };
    if let Err(e) = freezer::check_platform_config(&config) {
        eprintln!("hv_vssd: {}: {e}", config_path.display());
        return exit::CONFIG;
    }
    if let Mode::Serve { foreground, debug } = args.mode {
        serve(args, foreground, debug, config, &config_path)
    } else if args.mode == Mode::PrintConfig {
        print!("{}", config.effective());
        exit::OK
    } else {
        test_config(&config, &config_path)
    }
}

/// `-t`: the file, then the machine: where the daemon's files would live,
/// and which hooks it would run.
fn test_config(config: &Config, config_path: &Path) -> i32 {
    let mounts = match mounts::discover() {
        Ok(mounts) => mounts,
        Err(e) => {
            eprintln!("hv_vssd: {e}");
            return exit::OSERR;
        }
    };
    let outlives = PlatformFreezer::default().freeze_outlives_process();
    let findings = preflight::check_files(config, &mounts, outlives);
    for finding in &findings {
        eprintln!("hv_vssd: {}: {finding}", config_path.display());
    }
    let hooks = hooks::scan(&config.hooks_dir, HOOK_OWNER, &config.file);
    for hook in &hooks.hooks {
        println!("hv_vssd: hook {}: accepted", Escaped(hook.path.as_os_str()));
    }
    let mut directory_refused = false;
    for refused in &hooks.refused {
        eprintln!(
            "hv_vssd: hook {}: refused: {}",
            Escaped(refused.path.as_os_str()),
            refused.reason
        );
        directory_refused |= refused.path == config.hooks_dir;
    }
    if !findings.is_empty() || directory_refused {
        return exit::CONFIG;
    }
    println!("hv_vssd: {}: configuration OK", config_path.display());
    exit::OK
}

/// The start, in an order that matters:
/// 1. inherited descriptors closed and core dumps off, before anything can
///    be frozen ([`hardening`]);
/// 2. the pidfile locked, writing nothing, so a second instance stops
///    before it touches the first one's state;
/// 3. daemon(3), before the device is opened: the base driver remembers
///    the process that opened it and SIGKILLs it on detach
///    (sys/dev/hyperv/utilities/hv_snapshot.c), which must be the daemon,
///    not the parent that exits;
/// 4. recovery (thawing what an earlier daemon's state file lists) before
///    any other path is touched: the pidfile may be on a filesystem it left
///    frozen;
/// 5. the pid written, the configuration's files checked (warnings), the
///    device opened, signals, serving.
fn serve(args: &Args, foreground: bool, debug: bool, config: Config, config_path: &Path) -> i32 {
    let device_dir = device::device_dir(args.device_dir.as_deref());
    let (mut pidfile, core_note) = match before_anything(&config, &device_dir) {
        Ok(started) => started,
        Err(code) => return code,
    };
    if !foreground {
        // Forks: only the child returns. Must precede syslog (pid), the
        // pidfile's pid and the device.
        if let Err(e) = nix::unistd::daemon(false, false) {
            eprintln!("hv_vssd: cannot become a daemon: {e}");
            return exit::OSERR;
        }
    }
    let mut log = if foreground {
        Log::stderr(debug)
    } else {
        Log::syslog(debug)
    };
    if let Some(note) = core_note {
        log.warning(note);
    }
    let mount_table = match mounts::PlatformMountTable::open() {
        Ok(table) => table,
        Err(e) => {
            log.error(e.to_string());
            return exit::OSERR;
        }
    };
    let mut engine = Engine::new(
        config,
        PlatformFreezer::default(),
        watchdog::SystemClock,
        log,
        Box::new(mount_table),
        HOOK_OWNER,
    );
    engine.recover();
    // After recovery: the lock file is created next to the pidfile, which
    // may be on a filesystem an earlier daemon left frozen.
    match FreezeLock::open(&busy::lock_path(pidfile.path())) {
        Ok(lock) => engine.set_freeze_lock(lock),
        Err(e) => engine.log.warning(format!(
            "cannot open the freeze lock next to the pidfile ({e}): a local \
             `hv_vssctl test` is not kept from freezing at the same time"
        )),
    }
    let mut device = match after_recovery(&mut engine, &mut pidfile, &device_dir, config_path) {
        Ok(device) => device,
        Err(code) => return code,
    };
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            engine
                .log
                .error(format!("cannot install signal handlers: {e}"));
            return exit::OSERR;
        }
    };
    let freeze_limit = engine.config().freeze_limit.as_secs();
    engine.log.notice(format!(
        "started: device {}, config {}, pidfile {}, freeze_limit {freeze_limit} s",
        device_dir.display(),
        config_path.display(),
        pidfile.path().display(),
    ));
    engine.publish_status();
    // A reload needs the file, whatever the start found: a missing or
    // unreadable file keeps the whole running configuration.
    let mut reload = || {
        let config = Config::load(config_path, true).map_err(|e| e.to_string())?;
        freezer::check_platform_config(&config)?;
        Ok(config)
    };
    let result = service::serve(&mut device, &mut engine, &mut signals, &mut reload);
    match result {
        Ok(()) => {
            engine.log.notice("exiting");
            exit::OK
        }
        Err(e) => {
            engine.log.error(format!("{e}; exiting"));
            exit::OSERR
        }
    }
}

/// Steps 1 and 2 of [`serve`], on the terminal: descriptors, core dumps,
/// whether the device exists and may be opened (it is opened after
/// daemon(3)), the pidfile lock. `Err`: the exit status.
fn before_anything(config: &Config, device_dir: &Path) -> Result<(Pidfile, Option<String>), i32> {
    if let Err(e) = hardening::close_inherited_descriptors() {
        eprintln!("hv_vssd: cannot close inherited descriptors: {e}");
        return Err(exit::OSERR);
    }
    let core_note = hardening::forbid_core_dumps().map_err(|e| {
        eprintln!("hv_vssd: cannot turn core dumps off: {e}");
        exit::OSERR
    })?;
    let device_path = device_dir.join(hv_vss_proto::FS_DEVICE_NAME);
    let access = nix::unistd::access(
        &device_path,
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
    );
    match access {
        Err(nix::errno::Errno::ENOENT) => {
            eprintln!("hv_vssd: {}", OpenError::Missing(device_path));
            return Err(exit::UNAVAILABLE);
        }
        Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM) => {
            eprintln!("hv_vssd: {}", OpenError::Permission(device_path));
            return Err(exit::NOPERM);
        }
        _ => {}
    }
    let pidfile = Pidfile::lock(&config.pid_file).map_err(|e| {
        eprintln!("hv_vssd: {e}");
        pidfile_exit(&e)
    })?;
    Ok((pidfile, core_note))
}

/// Step 5 of [`serve`], once nothing an earlier daemon froze is left: the
/// pid, warnings about the configuration's files, the device. `Err`: the
/// exit status.
fn after_recovery<F: Freezer, C: watchdog::Clock>(
    engine: &mut Engine<F, C>,
    pidfile: &mut Pidfile,
    device_dir: &Path,
    config_path: &Path,
) -> Result<CharDevice, i32> {
    if let Err(e) = pidfile.write_pid() {
        engine.log.error(e.to_string());
        return Err(pidfile_exit(&e));
    }
    let outlives = PlatformFreezer::default().freeze_outlives_process();
    match mounts::discover() {
        Ok(mounts) => {
            for finding in preflight::check_files(engine.config(), &mounts, outlives) {
                engine
                    .log
                    .warning(format!("{}: {finding}", config_path.display()));
            }
        }
        Err(e) => engine.log.warning(e.to_string()),
    }
    CharDevice::open(device_dir).map_err(|e| {
        engine.log.error(e.to_string());
        match e {
            OpenError::Busy(_) | OpenError::Missing(_) => exit::UNAVAILABLE,
            OpenError::Permission(_) => exit::NOPERM,
            OpenError::Other { .. } => exit::OSERR,
        }
    })
}

fn pidfile_exit(e: &PidfileError) -> i32 {
    match e {
        PidfileError::Running { .. } | PidfileError::Starting(_) => exit::UNAVAILABLE,
        PidfileError::Io { .. } => exit::OSERR,
    }
}
