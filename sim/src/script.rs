//! Host scripts for `hv-vss-sim host`: a list of steps such as
//! `negotiate hot-backup freeze sleep:2000 thaw`, parsed once into
//! [`HostStep`]s and run against the simulated guest.

use std::fmt;
use std::time::Duration;

use hv_vss_proto::{HostOperation, IC_HEADER_LEN};

use crate::host::{Host, HostError};

/// One thing the scripted host does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostStep {
    /// Negotiate versions as Hyper-V does.
    Negotiate,
    /// Send a VSS operation (with `payload` extra body bytes) and wait.
    Operation {
        operation: HostOperation,
        payload: usize,
    },
    /// Send an operation cut to `len` bytes (malformed) and wait.
    Truncated {
        operation: HostOperation,
        len: usize,
    },
    /// Send a VSS message with an operation code the protocol does not know.
    UnknownOperation(u8),
    /// Send arbitrary bytes and wait.
    Raw(Vec<u8>),
    /// Do nothing for a while.
    Sleep(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad step {step:?}: {problem}")]
pub struct StepError {
    pub step: String,
    pub problem: String,
}

fn operation_named(name: &str) -> Option<HostOperation> {
    Some(match name {
        "create" => HostOperation::Create,
        "delete" => HostOperation::Delete,
        "hot-backup" | "check" => HostOperation::HotBackup,
        "get-dm-info" => HostOperation::GetDmInfo,
        "bu-complete" => HostOperation::BuComplete,
        "freeze" => HostOperation::Freeze,
        "thaw" => HostOperation::Thaw,
        "auto-recover" => HostOperation::AutoRecover,
        _ => return None,
    })
}

/// The step syntax, for usage messages.
pub const STEP_HELP: &str = "\
steps:
  negotiate                 version negotiation as Hyper-V sends it
  hot-backup | check        HOT_BACKUP (the guest asks its parties: can you quiesce?)
  freeze | thaw             FREEZE / THAW
  get-dm-info | create | delete | bu-complete | auto-recover
  OP+N                      OP with N extra body bytes (LUN data), e.g. freeze+6000
  truncated:OP:LEN          OP cut to LEN bytes
  unknown:CODE              a VSS message with operation code CODE (0-255)
  raw:HEX                   arbitrary bytes, e.g. raw:00ff
  sleep:MS                  wait MS milliseconds";

impl std::str::FromStr for HostStep {
    type Err = StepError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |problem: &str| StepError {
            step: text.to_owned(),
            problem: problem.to_owned(),
        };
        let number = |s: &str| s.parse::<usize>().map_err(|_| fail("expected a number"));
        if text == "negotiate" {
            return Ok(HostStep::Negotiate);
        }
        if let Some(ms) = text.strip_prefix("sleep:") {
            return Ok(HostStep::Sleep(Duration::from_millis(number(ms)? as u64)));
        }
        if let Some(hex) = text.strip_prefix("raw:") {
            if hex.len() % 2 != 0 {
                return Err(fail("odd number of hex digits"));
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| fail("not hexadecimal"))?;
            return Ok(HostStep::Raw(bytes));
        }
        if let Some(code) = text.strip_prefix("unknown:") {
            let code = code
                .parse::<u8>()
                .map_err(|_| fail("expected a code 0-255"))?;
            return Ok(HostStep::UnknownOperation(code));
        }
        if let Some(rest) = text.strip_prefix("truncated:") {
            let (name, len) = rest
                .split_once(':')
                .ok_or_else(|| fail("expected OP:LEN"))?;
            let operation = operation_named(name).ok_or_else(|| fail("unknown operation"))?;
            return Ok(HostStep::Truncated {
                operation,
                len: number(len)?,
            });
        }
        let (name, payload) = match text.split_once('+') {
            Some((name, extra)) => (name, number(extra)?),
            None => (text, 0),
        };
        let operation = operation_named(name).ok_or_else(|| fail("unknown step"))?;
        Ok(HostStep::Operation { operation, payload })
    }
}

impl fmt::Display for HostStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostStep::Negotiate => f.write_str("NEGOTIATE"),
            HostStep::Operation {
                operation,
                payload: 0,
            } => f.write_str(operation.name()),
            HostStep::Operation { operation, payload } => {
                write!(f, "{} (+{payload} bytes)", operation.name())
            }
            HostStep::Truncated { operation, len } => {
                write!(f, "{} truncated to {len} bytes", operation.name())
            }
            HostStep::UnknownOperation(code) => write!(f, "unknown operation {code}"),
            HostStep::Raw(bytes) => write!(f, "raw packet ({} bytes)", bytes.len()),
            HostStep::Sleep(d) => write!(f, "sleep {} ms", d.as_millis()),
        }
    }
}

/// Sends what `step` says; `None` for steps that send nothing.
pub fn send(
    host: &mut Host,
    step: &HostStep,
) -> Result<Option<crate::host::TransactionId>, HostError> {
    let what = step.to_string();
    Ok(Some(match step {
        HostStep::Negotiate => host.send_negotiate(
            &crate::host::HOST_FRAMEWORK_VERSIONS,
            &crate::host::HOST_MESSAGE_VERSIONS,
        )?,
        HostStep::Operation { operation, payload } => host.send_operation(*operation, *payload)?,
        HostStep::Truncated { operation, len } => {
            let mut packet = Host::build_operation(*operation)?;
            packet.truncate(*len);
            host.send_raw(&what, &packet)
        }
        HostStep::UnknownOperation(code) => {
            let mut packet = Host::build_operation(HostOperation::Create)?;
            // The operation byte follows the IC header (proto's VssMessage).
            if let Some(byte) = packet.get_mut(IC_HEADER_LEN) {
                *byte = *code;
            }
            host.send_raw(&what, &packet)
        }
        HostStep::Raw(bytes) => host.send_raw(&what, bytes),
        HostStep::Sleep(duration) => {
            std::thread::sleep(*duration);
            return Ok(None);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_into_what_they_say() {
        let parse = |s: &str| s.parse::<HostStep>().unwrap();
        assert_eq!(parse("negotiate"), HostStep::Negotiate);
        assert_eq!(
            parse("freeze+6000"),
            HostStep::Operation {
                operation: HostOperation::Freeze,
                payload: 6000
            }
        );
        assert_eq!(
            parse("check"),
            HostStep::Operation {
                operation: HostOperation::HotBackup,
                payload: 0
            }
        );
        assert_eq!(
            parse("truncated:thaw:30"),
            HostStep::Truncated {
                operation: HostOperation::Thaw,
                len: 30
            }
        );
        assert_eq!(parse("raw:00ff10"), HostStep::Raw(vec![0, 0xff, 0x10]));
        assert_eq!(parse("unknown:9"), HostStep::UnknownOperation(9));
        assert_eq!(
            parse("sleep:250"),
            HostStep::Sleep(Duration::from_millis(250))
        );
    }

    #[test]
    fn bad_steps_are_rejected_with_the_reason() {
        for bad in [
            "frieze",
            "raw:0",
            "raw:zz",
            "sleep:x",
            "truncated:thaw",
            "unknown:300",
        ] {
            assert!(bad.parse::<HostStep>().is_err(), "{bad}");
        }
    }
}
