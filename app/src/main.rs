//! `hv_vss_app`: run a command when Hyper-V freezes the guest for a backup,
//! and another when it thaws. See hv_vss_app(8).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hv_vss_app::command::{self, CommandResult};
use hv_vss_app::{AppDevice, AppError, Outcome, Request};
use hv_vss_proto::DeviceOperation;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// sysexits(3) EX_USAGE.
const EXIT_USAGE: u8 = 64;
/// Default time a command may take. The kernel gives the whole chain
/// (application, then filesystems) 15 seconds, so leave room for the rest.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the wait wakes up to look at the shutdown flag.
const WAIT_SLICE: Duration = Duration::from_millis(500);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

#[derive(Debug)]
struct Options {
    device: String,
    check: Option<String>,
    freeze: Option<String>,
    thaw: Option<String>,
    timeout: Duration,
    verbose: bool,
}

fn usage(program: &str) -> String {
    format!(
        "usage: {program} [-v] [-c check_command] [-f freeze_command] [-t thaw_command]\n\
         \x20                  [-T seconds] [-d device]"
    )
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let program = args.first().map_or("hv_vss_app", String::as_str);
    let mut opts = getopts::Options::new();
    opts.parsing_style(getopts::ParsingStyle::StopAtFirstFree);
    opts.optopt("c", "", "command run on CHECK", "command");
    opts.optopt("f", "", "command run on FREEZE", "command");
    opts.optopt("t", "", "command run on THAW", "command");
    opts.optopt("T", "", "seconds a command may run", "seconds");
    opts.optopt("d", "", "application device", "device");
    opts.optflag("v", "", "log every request");
    let matches = opts
        .parse(args.iter().skip(1))
        .map_err(|e| format!("{program}: {e}\n{}", usage(program)))?;
    if !matches.free.is_empty() {
        return Err(format!(
            "{program}: unexpected argument {:?}\n{}",
            matches.free[0],
            usage(program)
        ));
    }
    let timeout = match matches.opt_str("T") {
        None => DEFAULT_TIMEOUT,
        Some(text) => match text.parse::<u64>() {
            Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
            _ => {
                return Err(format!(
                    "{program}: -T {text:?}: expected a whole number of seconds above 0"
                ));
            }
        },
    };
    let options = Options {
        device: matches
            .opt_str("d")
            .unwrap_or_else(|| AppDevice::DEFAULT_PATH.to_owned()),
        check: matches.opt_str("c"),
        freeze: matches.opt_str("f"),
        thaw: matches.opt_str("t"),
        timeout,
        verbose: matches.opt_present("v"),
    };
    if options.check.is_none() && options.freeze.is_none() && options.thaw.is_none() {
        return Err(format!(
            "{program}: nothing to do: give at least one of -c, -f or -t\n{}",
            usage(program)
        ));
    }
    Ok(options)
}

fn install_signal_handlers() -> nix::Result<()> {
    // No SA_RESTART: a signal interrupts poll(2), and the loop sees STOP.
    let action = SigAction::new(
        SigHandler::Handler(request_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

fn log(message: &str) {
    eprintln!("hv_vss_app: {message}");
}

struct App {
    options: Options,
    /// The freeze command succeeded and no thaw has run since.
    quiesced: bool,
}

impl App {
    fn run_step(&self, command: Option<&String>, operation: DeviceOperation) -> Outcome {
        let Some(command) = command else {
            return Outcome::Success;
        };
        let result = command::run(command, operation.name(), self.options.timeout);
        if self.options.verbose || !result.succeeded() {
            log(&format!("{} command {result}", operation.name()));
        }
        if matches!(result, CommandResult::Succeeded) {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }

    fn handle(&mut self, device: &AppDevice, request: &Request) {
        let operation = request.operation();
        if self.options.verbose {
            log(&format!(
                "{} request (msgid {})",
                operation.name(),
                request.msgid()
            ));
        }
        let outcome = match operation {
            DeviceOperation::Check => self.run_step(self.options.check.as_ref(), operation),
            DeviceOperation::Freeze => {
                let outcome = self.run_step(self.options.freeze.as_ref(), operation);
                self.quiesced = outcome == Outcome::Success && self.options.freeze.is_some();
                outcome
            }
            // Always run the thaw command: it must be safe to repeat, and the
            // application may have been quiesced before this process started.
            DeviceOperation::Thaw => {
                let outcome = self.run_step(self.options.thaw.as_ref(), operation);
                self.quiesced = false;
                outcome
            }
            DeviceOperation::None => return,
        };
        if let Err(e) = device.answer(request, outcome) {
            // Typically the kernel's deadline passed. If we are quiesced,
            // nobody will send THAW for this freeze: resume on our own.
            log(&format!("{e}"));
            self.resume_if_quiesced("the freeze answer was not accepted");
        }
    }

    fn resume_if_quiesced(&mut self, why: &str) {
        if self.quiesced {
            log(&format!("{why}: running the thaw command"));
            let _ = self.run_step(self.options.thaw.as_ref(), DeviceOperation::Thaw);
            self.quiesced = false;
        }
    }
}

fn run(options: Options) -> Result<(), AppError> {
    let device = AppDevice::open(options.device.as_ref())?;
    let mut app = App {
        options,
        quiesced: false,
    };
    if app.options.verbose {
        log(&format!("registered on {}", device.path().display()));
    }
    let result = loop {
        if STOP.load(Ordering::SeqCst) {
            break Ok(());
        }
        match device.wait(Some(WAIT_SLICE)) {
            Ok(None) => {}
            Ok(Some(request)) => app.handle(&device, &request),
            // Already answered with failure; keep serving.
            Err(e @ AppError::UnknownOperation { .. }) => log(&e.to_string()),
            Err(e) => break Err(e),
        }
    };
    // Never leave the application quiesced behind us.
    app.resume_if_quiesced("exiting while frozen");
    result
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = install_signal_handlers() {
        eprintln!("hv_vss_app: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hv_vss_app: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        std::iter::once("hv_vss_app")
            .chain(list.iter().copied())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn flags_are_parsed_bsd_style() {
        let options = parse_args(&args(&["-v", "-f", "fsync-db", "-tresume", "-T", "3"])).unwrap();
        assert_eq!(options.freeze.as_deref(), Some("fsync-db"));
        assert_eq!(options.thaw.as_deref(), Some("resume"));
        assert_eq!(options.timeout, Duration::from_secs(3));
        assert!(options.verbose);
        assert_eq!(options.device, AppDevice::DEFAULT_PATH);
    }

    #[test]
    fn nothing_to_do_and_bad_timeouts_are_usage_errors() {
        assert!(
            parse_args(&args(&[]))
                .unwrap_err()
                .contains("nothing to do")
        );
        assert!(parse_args(&args(&["-f", "x", "-T", "0"])).is_err());
        assert!(parse_args(&args(&["-f", "x", "-T", "soon"])).is_err());
        assert!(parse_args(&args(&["-f", "x", "extra"])).is_err());
        assert!(parse_args(&args(&["-x"])).unwrap_err().contains("usage:"));
    }
}
