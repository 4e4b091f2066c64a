//! `hv_vssctl`: the administrator's command for hv_vssd(8), in the manner
//! of FreeBSD's own *ctl tools: `status`, `check` and `test`. See
//! hv_vssctl(8).

use std::path::PathBuf;
use std::process::ExitCode;

use hv_vssd::config::{Config, DEFAULT_CONFIG_PATH};
use hv_vssd::device;
use hv_vssd::freezer;
use hv_vssd::pidfile;
use hv_vssd::status::{Report, Status, unix_now};

use hv_vssctl::cli::{self, Args, Command, exit};
use hv_vssctl::{check, test_freeze};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match cli::parse(&args) {
        Ok(Args {
            command: Command::Help,
            ..
        }) => {
            print!("{}", cli::USAGE);
            exit::OK
        }
        Ok(args) => run(&args),
        Err(e) => {
            eprint!("hv_vssctl: {e}\n{}", cli::USAGE);
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
            eprintln!("hv_vssctl: {e} (fix it, then run hv_vssctl check again)");
            return exit::CONFIG;
        }
    };
    match args.command {
        Command::Status { json } => status(&config, json),
        Command::Check { json } => {
            if let Err(e) = freezer::check_platform_config(&config) {
                eprintln!("hv_vssctl: {}: {e}", config_path.display());
                return exit::CONFIG;
            }
            let device_dir = device::device_dir(args.device_dir.as_deref());
            let report = check::check(&config, &config_path, &device_dir);
            if json {
                print_json(&report);
            } else {
                print!("{}", report.to_text());
            }
            if report.problems.is_empty() {
                exit::OK
            } else {
                exit::NO
            }
        }
        Command::Test { hold } => {
            if let Err(e) = freezer::check_platform_config(&config) {
                eprintln!("hv_vssctl: {}: {e}", config_path.display());
                return exit::CONFIG;
            }
            match test_freeze::run(config, hold) {
                Ok((timeline, ok)) => {
                    print!("{timeline}");
                    if ok { exit::OK } else { exit::NO }
                }
                Err(refused) => {
                    eprintln!("hv_vssctl: {}", refused.message);
                    refused.code
                }
            }
        }
        Command::Help => exit::OK,
    }
}

/// Reads the pid file and the status file only: works while filesystems
/// are frozen (reads do not block on a frozen filesystem) and touches
/// nothing.
fn status(config: &Config, json: bool) -> i32 {
    let pid = pidfile::running(&config.pid_file);
    let (status, problem) = match Status::read(&config.status_file) {
        Ok(status) => (Some(status), None),
        Err(e) => (None, Some(e)),
    };
    let report = Report {
        freezing: hv_vssd::busy::is_held(&hv_vssd::busy::lock_path(&config.pid_file)),
        running: pid.is_some(),
        pid,
        status,
        problem,
    };
    if json {
        print_json(&report);
    } else {
        print!("{}", report.to_text(unix_now()));
    }
    if report.running { exit::OK } else { exit::NO }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("hv_vssctl: {e}"),
    }
}
