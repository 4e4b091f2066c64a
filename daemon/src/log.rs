//! Logging to syslog(3) (LOG_DAEMON, ident `hv_vssd`, with pid) or,
//! with `-n`, to stderr.
//!
//! While anything is frozen the lines are held in memory and written after
//! thaw: syslogd writing to a suspended root blocks, and a daemon blocked on
//! syslog would never thaw it (microsoft/backupessentials#1 is that deadlock
//! on Linux). The held lines are capped so a flood cannot exhaust memory.
//!
//! Every line is written with its control characters escaped: hook names,
//! hook output and mount paths come from others, and a newline or an
//! escape sequence in them must not forge a log line or drive a terminal.
//! [`Escaped`] renders such a name unambiguously, bytes that are not UTF-8
//! included (vis(3) style).

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;

use syslog::{Facility, Formatter3164, LoggerBackend};

/// Lines held while frozen, at most.
const MAX_HELD: usize = 10_000;

/// Severity, as syslog names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Notice => "notice",
            Self::Info => "info",
            Self::Debug => "debug",
        })
    }
}

type SyslogWriter = syslog::Logger<LoggerBackend, Formatter3164>;

enum Sink {
    Stderr,
    /// `None` while syslogd cannot be reached; reconnection is tried per line.
    Syslog(Option<SyslogWriter>),
    /// For tests: every written line, as `level: text`.
    Memory(Rc<RefCell<Vec<String>>>),
}

/// The daemon's logger.
pub struct Log {
    sink: Sink,
    debug: bool,
    held: Option<Vec<(Level, String)>>,
    dropped: usize,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("debug", &self.debug)
            .field("holding", &self.held.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

fn connect_syslog() -> Option<SyslogWriter> {
    syslog::unix(Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "hv_vssd".into(),
        pid: std::process::id(),
    })
    .ok()
}

impl Log {
    /// Logs to syslog. Call after daemonizing: the pid is fixed here.
    pub fn syslog(debug: bool) -> Self {
        Self::with_sink(Sink::Syslog(connect_syslog()), debug)
    }

    /// Logs to stderr (`-n`).
    pub fn stderr(debug: bool) -> Self {
        Self::with_sink(Sink::Stderr, debug)
    }

    /// Logs into memory; the returned handle sees every written line.
    pub fn memory(debug: bool) -> (Self, Rc<RefCell<Vec<String>>>) {
        let lines = Rc::new(RefCell::new(Vec::new()));
        (Self::with_sink(Sink::Memory(lines.clone()), debug), lines)
    }

    fn with_sink(sink: Sink, debug: bool) -> Self {
        Self {
            sink,
            debug,
            held: None,
            dropped: 0,
        }
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.log(Level::Error, text.into());
    }
    pub fn warning(&mut self, text: impl Into<String>) {
        self.log(Level::Warning, text.into());
    }
    pub fn notice(&mut self, text: impl Into<String>) {
        self.log(Level::Notice, text.into());
    }
    pub fn info(&mut self, text: impl Into<String>) {
        self.log(Level::Info, text.into());
    }
    pub fn debug(&mut self, text: impl Into<String>) {
        if self.debug {
            self.log(Level::Debug, text.into());
        }
    }

    pub fn log(&mut self, level: Level, text: String) {
        match &mut self.held {
            Some(held) if held.len() < MAX_HELD => held.push((level, text)),
            Some(_) => self.dropped += 1,
            None => self.write(level, &text),
        }
    }

    /// Holds lines in memory from now on (just before freezing).
    pub fn hold(&mut self) {
        if self.held.is_none() {
            self.held = Some(Vec::new());
        }
    }

    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Writes the held lines and stops holding (once everything is thawed).
    pub fn release(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        for (level, text) in held {
            self.write(level, &text);
        }
        if self.dropped > 0 {
            let text = format!("{} log lines dropped while frozen", self.dropped);
            self.dropped = 0;
            self.write(Level::Warning, &text);
        }
    }

    fn write(&mut self, level: Level, text: &str) {
        let text = &*escape_controls(text);
        match &mut self.sink {
            Sink::Stderr => eprintln!("hv_vssd: {level}: {text}"),
            Sink::Memory(lines) => lines.borrow_mut().push(format!("{level}: {text}")),
            Sink::Syslog(writer) => {
                if writer.is_none() {
                    *writer = connect_syslog();
                }
                let sent = writer
                    .as_mut()
                    .is_some_and(|w| send(w, level, text).is_ok());
                if !sent {
                    // syslogd restarted: reconnect once, else the line is lost
                    // (never block the daemon on logging).
                    *writer = connect_syslog();
                    if let Some(w) = writer.as_mut() {
                        let _ = send(w, level, text);
                    }
                }
            }
        }
    }
}

/// A name from outside (a mount path, a hook name) for a log line, as
/// vis(3) with `VIS_CSTYLE | VIS_OCTAL` would show it: printable characters
/// as they are, a backslash as `\\`, newline, tab and carriage return as
/// `\n`, `\t`, `\r`, every other control character and every byte that is
/// not part of valid UTF-8 as a three-digit octal escape (`caf\351`).
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a OsStr);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.as_bytes().utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '\\' {
                    f.write_str("\\\\")?;
                } else {
                    write_char_escaped(f, c)?;
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\{byte:03o}")?;
            }
        }
        Ok(())
    }
}

/// Writes `c`, or its escape when it is a control character.
fn write_char_escaped(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\t' => out.write_str("\\t"),
        '\r' => out.write_str("\\r"),
        c if c.is_control() => {
            let mut utf8 = [0u8; 4];
            for byte in c.encode_utf8(&mut utf8).as_bytes() {
                write!(out, "\\{byte:03o}")?;
            }
            Ok(())
        }
        c => out.write_char(c),
    }
}

/// `text` with its control characters escaped as [`Escaped`] does. Backslashes
/// are left alone, so a name already shown with [`Escaped`] stays readable.
fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        // Writing into a String cannot fail.
        let _ = write_char_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn send(w: &mut SyslogWriter, level: Level, text: &str) -> Result<(), syslog::Error> {
    match level {
        Level::Error => w.err(text),
        Level::Warning => w.warning(text),
        Level::Notice => w.notice(text),
        Level::Info => w.info(text),
        Level::Debug => w.debug(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_held_while_frozen_and_written_after_thaw_in_order() {
        let (mut log, lines) = Log::memory(false);
        log.info("before");
        log.hold();
        log.notice("frozen /");
        log.error("during");
        assert_eq!(
            lines.borrow().len(),
            1,
            "nothing may be written while frozen"
        );
        log.release();
        assert_eq!(
            *lines.borrow(),
            ["info: before", "notice: frozen /", "error: during"]
        );
        log.info("after");
        assert_eq!(lines.borrow().len(), 4);
    }

    #[test]
    fn debug_lines_only_with_debug() {
        let (mut log, lines) = Log::memory(false);
        log.debug("hidden");
        assert!(lines.borrow().is_empty());
        let (mut log, lines) = Log::memory(true);
        log.debug("shown");
        assert_eq!(*lines.borrow(), ["debug: shown"]);
    }

    #[test]
    fn escaped_shows_controls_backslashes_and_non_utf8_bytes_vis_style() {
        let shown = |bytes: &[u8]| Escaped(OsStr::from_bytes(bytes)).to_string();
        assert_eq!(shown(b"/mnt/data"), "/mnt/data");
        assert_eq!(shown(b"caf\xe9"), "caf\\351");
        assert_eq!(shown("café".as_bytes()), "café");
        assert_eq!(shown(b"a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(shown(b"\x1b[31mred"), "\\033[31mred");
        assert_eq!(shown(b"back\\slash"), "back\\\\slash");
        // A C1 control (U+009B, CSI) is escaped byte by byte.
        assert_eq!(shown("x\u{9b}y".as_bytes()), "x\\302\\233y");
    }

    #[test]
    fn every_written_line_has_its_control_characters_escaped() {
        let (mut log, lines) = Log::memory(false);
        log.info("hook 10-x output: done\nerror: forged line\x1b[2J");
        log.hold();
        log.warning("held\r\nline");
        log.release();
        assert_eq!(
            *lines.borrow(),
            [
                "info: hook 10-x output: done\\nerror: forged line\\033[2J",
                "warning: held\\r\\nline"
            ]
        );
    }

    #[test]
    fn held_lines_are_capped_and_the_drop_is_reported() {
        let (mut log, lines) = Log::memory(false);
        log.hold();
        for i in 0..MAX_HELD + 5 {
            log.info(format!("{i}"));
        }
        log.release();
        let lines = lines.borrow();
        assert_eq!(lines.len(), MAX_HELD + 1);
        assert_eq!(
            lines.last().unwrap(),
            "warning: 5 log lines dropped while frozen"
        );
    }
}
