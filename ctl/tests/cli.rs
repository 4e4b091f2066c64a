//! The command line as an administrator meets it: every mistake gets one
//! line naming what is wrong and a sysexits(3) status.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hv_vssctl"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn usage_errors_exit_64_with_one_line_and_the_usage() {
    for (args, needle) in [
        (&["frobnicate"][..], "unknown command `frobnicate`"),
        (&["test", "--hold", "soon"][..], "`soon` is not a duration"),
        (&["status", "-x"][..], "Unrecognized option"),
        (&[][..], "no command"),
    ] {
        let out = ctl(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = stderr(&out);
        let first = err.lines().next().unwrap();
        assert!(
            first.starts_with("hv_vssctl: ") && first.contains(needle),
            "{err}"
        );
        assert!(err.contains("usage: hv_vssctl"), "{err}");
    }
}

#[test]
fn a_configuration_that_does_not_parse_exits_78_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.conf");
    std::fs::write(&conf, "freeze_limit = 30\nhook_timeout = soon\n").unwrap();
    for command in ["check", "status", "test"] {
        let out = ctl(&["-c", conf.to_str().unwrap(), command]);
        assert_eq!(out.status.code(), Some(78), "{command}");
        let err = stderr(&out);
        assert!(
            err.contains("bad.conf, line 2") && err.contains("soon"),
            "{err}"
        );
    }
}

#[test]
fn status_of_a_daemon_that_is_not_running_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.conf");
    let d = dir.path().display();
    std::fs::write(
        &conf,
        format!("pid_file = {d}/pid\nstatus_file = {d}/status\nstate_file = {d}/frozen\n"),
    )
    .unwrap();
    let out = ctl(&["-c", conf.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hv_vssd is not running"));
    let out = ctl(&["-c", conf.to_str().unwrap(), "status", "-j"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["running"], false);
}

#[test]
fn test_as_a_user_exits_77() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.conf");
    let d = dir.path().display();
    std::fs::write(
        &conf,
        format!("include = {d}/mnt/*\npid_file = {d}/pid\nstatus_file = {d}/status\n"),
    )
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_hv_vssctl");
    let out = if nix::unistd::geteuid().is_root() {
        // As nobody, through util-linux setpriv (CI has it).
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", binary])
            .args(["-c", conf.to_str().unwrap(), "test"])
            .output()
            .unwrap()
    } else {
        ctl(&["-c", conf.to_str().unwrap(), "test"])
    };
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("run it as root"), "{}", stderr(&out));
}
