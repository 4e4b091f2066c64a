//! Command-line flags, BSD style (getopts), compatible with the base
//! system's `hv_vssd [-dnh]`.

use getopts::Options;

/// sysexits(3) codes the daemon uses.
pub mod exit {
    pub const OK: i32 = 0;
    pub const USAGE: i32 = 64;
    /// The device is missing or busy, or another daemon runs.
    pub const UNAVAILABLE: i32 = 69;
    /// A system call failed (poll, the device went away).
    pub const OSERR: i32 = 71;
    /// Not allowed to open the device (not root).
    pub const NOPERM: i32 = 77;
    pub const CONFIG: i32 = 78;
}

pub const USAGE: &str = "usage: hv_vssd [-dn] [-c config] [-D devdir]\n       hv_vssd -t | -T [-c config]\n       hv_vssd -h\n";

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve the device (the default).
    Serve {
        /// `-n`: stay in the foreground, log to stderr.
        foreground: bool,
        /// `-d`: debug logging.
        debug: bool,
    },
    /// `-t`: check the configuration and exit.
    TestConfig,
    /// `-T`: check the configuration, print every key's effective value.
    PrintConfig,
    /// `-h`.
    Help,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub mode: Mode,
    /// `-c file`.
    pub config: Option<String>,
    /// `-D dir`: device directory (testing; also `HV_VSS_DEVICE_DIR`).
    pub device_dir: Option<String>,
}

/// Parses the arguments after the program name. The error is a message for
/// stderr, to be followed by the usage and exit status 64.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut options = Options::new();
    options
        .optflag("n", "", "foreground")
        .optflag("d", "", "debug")
        .optflag("h", "", "help")
        .optopt("c", "", "configuration file", "FILE")
        // Earlier releases' status flags, now `hv_vssctl status [-j]`.
        .optflag("s", "", "")
        .optflag("j", "", "")
        .optflag("t", "", "test the configuration")
        .optflag("T", "", "print the effective configuration")
        .optopt("D", "", "device directory", "DIR");
    let m = options.parse(args).map_err(|e| e.to_string())?;
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument `{extra}`"));
    }
    if m.opt_present("s") || m.opt_present("j") {
        return Err("the status is `hv_vssctl status` now (-j: `hv_vssctl status -j`)".to_owned());
    }
    let (test, print) = (m.opt_present("t"), m.opt_present("T"));
    if test && print {
        return Err("-t and -T exclude each other".to_owned());
    }
    let mode = if m.opt_present("h") {
        Mode::Help
    } else if test {
        Mode::TestConfig
    } else if print {
        Mode::PrintConfig
    } else {
        Mode::Serve {
            foreground: m.opt_present("n"),
            debug: m.opt_present("d"),
        }
    };
    Ok(Args {
        mode,
        config: m.opt_str("c"),
        device_dir: m.opt_str("D"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn base_flags_keep_their_base_meaning() {
        // -n is the foreground, -d is debug (the base man page swaps them).
        let serve = |foreground, debug| Mode::Serve { foreground, debug };
        assert_eq!(p(&[]).unwrap().mode, serve(false, false));
        assert_eq!(p(&["-n"]).unwrap().mode, serve(true, false));
        assert_eq!(p(&["-d"]).unwrap().mode, serve(false, true));
        assert_eq!(p(&["-nd"]).unwrap().mode, serve(true, true));
        assert_eq!(p(&["-h"]).unwrap().mode, Mode::Help);
    }

    #[test]
    fn new_flags() {
        let a = p(&["-t", "-c", "/x.conf"]).unwrap();
        assert_eq!(a.mode, Mode::TestConfig);
        assert_eq!(a.config.as_deref(), Some("/x.conf"));
        assert_eq!(p(&["-t", "-c/y"]).unwrap().mode, Mode::TestConfig);
        assert_eq!(p(&["-T"]).unwrap().mode, Mode::PrintConfig);
        assert_eq!(
            p(&["-D", "/tmp/dev"]).unwrap().device_dir.as_deref(),
            Some("/tmp/dev")
        );
    }

    #[test]
    fn bad_command_lines_are_errors() {
        assert!(p(&["-x"]).is_err());
        assert!(p(&["-c"]).is_err());
        assert!(p(&["-j"]).is_err());
        for old_status in [&["-s"][..], &["-s", "-j"][..]] {
            let err = p(old_status).unwrap_err();
            assert!(err.contains("hv_vssctl status"), "{err}");
        }
        assert!(p(&["-t", "-T"]).is_err());
        assert!(p(&["extra"]).is_err());
    }
}
