//! The command line: `hv_vssctl [-c config] [-D devdir] command [options]`,
//! BSD style (getopts), with one-line errors that say how to fix them.

use std::time::Duration;

use getopts::{Options, ParsingStyle};

/// sysexits(3) codes, and 1 for "the answer is no".
pub mod exit {
    pub const OK: i32 = 0;
    /// `status`: the daemon is not running; `check`: problems found;
    /// `test`: the test freeze or thaw failed.
    pub const NO: i32 = 1;
    pub const USAGE: i32 = 64;
    pub const OSERR: i32 = 71;
    /// `test` while a freeze is under way: try again later.
    pub const TEMPFAIL: i32 = 75;
    /// `test` needs root.
    pub const NOPERM: i32 = 77;
    pub const CONFIG: i32 = 78;
}

pub const USAGE: &str = "\
usage: hv_vssctl [-c config] status [-j]
       hv_vssctl [-c config] check [-j]
       hv_vssctl [-c config] test [-H duration]
       hv_vssctl -h
";

/// The longest `test` hold: an hour, the longest freeze_limit.
const MAX_HOLD: Duration = Duration::from_secs(3600);

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The daemon's state, counters and last transactions.
    Status {
        json: bool,
    },
    /// The configuration and the plan for this machine.
    Check {
        json: bool,
    },
    /// A real freeze and thaw, held for `hold`.
    Test {
        hold: Duration,
    },
    Help,
}

/// The whole command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub command: Command,
    /// `-c file`.
    pub config: Option<String>,
    /// `-D dir`: the device directory (testing, as hv_vssd -D).
    pub device_dir: Option<String>,
}

/// Parses the arguments after the program name; the error is one line.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut global = Options::new();
    global
        .parsing_style(ParsingStyle::StopAtFirstFree)
        .optopt("c", "", "configuration file", "FILE")
        .optopt("D", "", "device directory", "DIR")
        .optflag("h", "", "help");
    let m = global.parse(args).map_err(|e| e.to_string())?;
    let (config, device_dir) = (m.opt_str("c"), m.opt_str("D"));
    if m.opt_present("h") {
        return Ok(Args {
            command: Command::Help,
            config,
            device_dir,
        });
    }
    let Some((name, rest)) = m.free.split_first() else {
        return Err("no command: give status, check or test".to_owned());
    };
    let command = match name.as_str() {
        "status" => Command::Status {
            json: json_flag("status", rest)?,
        },
        "check" => Command::Check {
            json: json_flag("check", rest)?,
        },
        "test" => Command::Test {
            hold: hold_option(rest)?,
        },
        "help" => Command::Help,
        other => {
            return Err(format!(
                "unknown command `{other}`: give status, check or test"
            ));
        }
    };
    Ok(Args {
        command,
        config,
        device_dir,
    })
}

fn json_flag(command: &str, rest: &[String]) -> Result<bool, String> {
    let mut options = Options::new();
    options.optflag("j", "json", "JSON output");
    let m = options.parse(rest).map_err(|e| format!("{command}: {e}"))?;
    if let Some(extra) = m.free.first() {
        return Err(format!("{command}: unexpected argument `{extra}`"));
    }
    Ok(m.opt_present("j"))
}

fn hold_option(rest: &[String]) -> Result<Duration, String> {
    let mut options = Options::new();
    options.optopt("H", "hold", "how long to hold the freeze", "DURATION");
    let m = options.parse(rest).map_err(|e| format!("test: {e}"))?;
    if let Some(extra) = m.free.first() {
        return Err(format!("test: unexpected argument `{extra}`"));
    }
    match m.opt_str("H") {
        None => Ok(Duration::from_secs(1)),
        Some(text) => parse_duration(&text).map_err(|e| format!("test: --hold: {e}")),
    }
}

/// `500ms`, `2s`, `1.5s`, `1m`, or a plain number of seconds; at most an
/// hour.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("`{text}` is not a duration: write a number with ms, s or m, e.g. 500ms, 2s, 1m")
    };
    let trimmed = text.trim();
    let (number, scale) = if let Some(n) = trimmed.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = trimmed.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = trimmed.strip_suffix('m') {
        (n, 60.0)
    } else {
        (trimmed, 1.0)
    };
    // Plain digits and one decimal point: no sign, exponent or "inf".
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let duration = Duration::try_from_secs_f64(value * scale).map_err(|_| bad())?;
    if duration > MAX_HOLD {
        return Err(format!("`{text}` is longer than the 1 hour limit"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn commands_and_their_flags() {
        assert_eq!(
            p(&["status"]).unwrap().command,
            Command::Status { json: false }
        );
        assert_eq!(
            p(&["status", "-j"]).unwrap().command,
            Command::Status { json: true }
        );
        let a = p(&["-c", "/x.conf", "check", "-j"]).unwrap();
        assert_eq!(a.command, Command::Check { json: true });
        assert_eq!(a.config.as_deref(), Some("/x.conf"));
        assert_eq!(
            p(&["test"]).unwrap().command,
            Command::Test {
                hold: Duration::from_secs(1)
            }
        );
        assert_eq!(
            p(&["test", "--hold", "250ms"]).unwrap().command,
            Command::Test {
                hold: Duration::from_millis(250)
            }
        );
        assert_eq!(
            p(&["test", "-H", "2"]).unwrap().command,
            Command::Test {
                hold: Duration::from_secs(2)
            }
        );
        assert_eq!(p(&["-h"]).unwrap().command, Command::Help);
    }

    #[test]
    fn bad_input_gets_one_line_naming_what_is_wrong() {
        for (args, needle) in [
            (&["frobnicate"][..], "unknown command `frobnicate`"),
            (&[][..], "no command"),
            (&["status", "-x"][..], "status: Unrecognized option"),
            (&["check", "extra"][..], "unexpected argument `extra`"),
            (&["test", "--hold", "soon"][..], "`soon` is not a duration"),
            (&["test", "--hold", "-5s"][..], "not a duration"),
            (&["test", "--hold", "2h"][..], "not a duration"),
            (&["test", "--hold", "61m"][..], "1 hour"),
            (&["-c"][..], "Argument to option 'c' missing"),
        ] {
            let err = p(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
            assert!(!err.contains('\n'), "{args:?}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "s", "1e3", "+5", "inf", "1..2s", "NaN"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
