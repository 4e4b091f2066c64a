//! `hv_vssd`: see hv_vssd(8) and the crate documentation.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hv_vssd::busy::{self, FreezeLock};
use hv_vssd::cli::{self, Args, Mode, exit};
use hv_vssd::config::{Config, DEFAULT_CONFIG_PATH};
use hv_vssd::device::{self, CharDevice, OpenError};
use hv_vssd::engine::Engine;
use hv_vssd::freezer::{self, PlatformFreezer};
use hv_vssd::log::Log;
use hv_vssd::pidfile::{self, Pidfile, PidfileError};
use hv_vssd::service::{self, Signals};
use hv_vssd::status::{Report, Status, unix_now};
use hv_vssd::{mounts, watchdog};

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
    if let Mode::Status { json } = args.mode {
        return print_status(&config, json);
    }
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
        println!("hv_vssd: {}: configuration OK", config_path.display());
        exit::OK
    }
}

fn print_status(config: &Config, json: bool) -> i32 {
    let pid = pidfile::running(&config.pid_file);
    let (status, problem) = match Status::read(&config.status_file) {
        Ok(status) => (Some(status), None),
        Err(e) => (None, Some(e)),
    };
    let report = Report {
        running: pid.is_some(),
        pid,
        status,
        problem,
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("hv_vssd: {e}");
                return exit::OSERR;
            }
        }
    } else {
        print!("{}", report.to_text(unix_now()));
    }
    if report.running {
        exit::OK
    } else {
        exit::NOT_RUNNING
    }
}

fn serve(args: &Args, foreground: bool, debug: bool, config: Config, config_path: &Path) -> i32 {
    // The device first: it is single-opener, so a second daemon stops here,
    // before it could touch the first one's state file.
    let device_dir = device::device_dir(args.device_dir.as_deref());
    let mut device = match CharDevice::open(&device_dir) {
        Ok(device) => device,
        Err(e) => {
            eprintln!("hv_vssd: {e}");
            return match e {
                OpenError::Busy(_) | OpenError::Missing(_) => exit::UNAVAILABLE,
                OpenError::Permission(_) => exit::NOPERM,
                OpenError::Other { .. } => exit::OSERR,
            };
        }
    };
    if !foreground {
        // Forks: only the child returns. Must precede syslog (pid) and the pidfile.
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
    let pidfile = match Pidfile::create(&config.pid_file) {
        Ok(pidfile) => pidfile,
        Err(e) => {
            log.error(e.to_string());
            return match e {
                PidfileError::Running { .. } => exit::UNAVAILABLE,
                PidfileError::Io { .. } => exit::OSERR,
            };
        }
    };
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            log.error(format!("cannot install signal handlers: {e}"));
            return exit::OSERR;
        }
    };
    log.notice(format!(
        "started: device {}, config {}, pidfile {}, freeze_limit {} s",
        device_dir.display(),
        config_path.display(),
        pidfile.path().display(),
        config.freeze_limit.as_secs()
    ));
    let hook_owner = 0; // root
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
        hook_owner,
    );
    match FreezeLock::open(&busy::lock_path(pidfile.path())) {
        Ok(lock) => engine.set_freeze_lock(lock),
        Err(e) => engine.log.warning(format!(
            "cannot open the freeze lock next to the pidfile ({e}): a local \
             `hv_vssctl test` is not kept from freezing at the same time"
        )),
    }
    engine.recover();
    engine.publish_status();
    let explicit = args.config.is_some();
    let mut reload = || {
        let config = Config::load(config_path, explicit).map_err(|e| e.to_string())?;
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
