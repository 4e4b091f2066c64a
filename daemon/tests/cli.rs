//! The real binary: flags, exit statuses, config errors, status output, and
//! a foreground run on a FIFO standing in for the device (pollable, never
//! readable), stopped with SIGTERM.

// Helpers outside #[test] fns panic too; a panic here is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: this package's, unless `HV_VSSD_BIN` names
/// another (for instance an older build, to see a test fail without a fix).
fn bin() -> String {
    std::env::var("HV_VSSD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hv_vssd").to_owned())
}

fn daemon(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("HV_VSS_DEVICE_DIR")
        .output()
        .expect("run hv_vssd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temp dir with a config that keeps every file inside it.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("daemon.conf"),
            format!(
                "include = {d}/mnt/*\nhooks_dir = {d}/hooks.d\npid_file = {d}/pid\n\
                 status_file = {d}/status\nstate_file = {d}/frozen\n{extra}"
            ),
        )
        .unwrap();
        Self { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn config(&self) -> String {
        self.path("daemon.conf").display().to_string()
    }
}

#[test]
fn unknown_flag_prints_usage_and_exits_64() {
    let out = daemon(&["-x"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("usage: hv_vssd"));
    assert!(out.stdout.is_empty());
}

#[test]
fn help_prints_usage_and_exits_0() {
    let out = daemon(&["-h"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("usage: hv_vssd"));
}

#[test]
fn t_accepts_a_good_config_and_names_the_line_of_a_bad_one() {
    let sandbox = Sandbox::new("freeze_limit = 30\n");
    let out = daemon(&["-t", "-c", &sandbox.config()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration OK"));

    let bad = Sandbox::new("freeze_limit = 30\nhook_timeout = forever\n");
    let out = daemon(&["-t", "-c", &bad.config()]);
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert!(
        err.contains("daemon.conf, line 7") && err.contains("forever"),
        "{err}"
    );

    let out = daemon(&["-t", "-c", "/nonexistent/hv.conf"]);
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn print_config_gives_the_pid_file_the_rc_script_reads() {
    let sandbox = Sandbox::new("");
    let out = daemon(&["-T", "-c", &sandbox.config()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let pid_file = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid_file = "))
        .unwrap_or_default();
    assert_eq!(
        pid_file,
        sandbox.path("pid").display().to_string(),
        "{stdout}"
    );
    let out = daemon(&["-T", "-c", "/nonexistent/hv.conf"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stdout).is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn linux_refuses_to_run_without_include() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.conf");
    std::fs::write(&conf, "freeze_limit = 10\n").unwrap();
    let out = daemon(&["-t", "-c", &conf.display().to_string()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("include"));
}

#[test]
fn the_old_status_flags_name_the_new_command() {
    for args in [&["-s"][..], &["-s", "-j"][..]] {
        let out = daemon(args);
        assert_eq!(out.status.code(), Some(64));
        assert!(
            text(&out.stderr).contains("hv_vssctl status"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_missing_device_exits_69_with_a_clear_message() {
    let sandbox = Sandbox::new("");
    let out = daemon(&["-n", "-c", &sandbox.config(), "-D", "/nonexistent-devdir"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
}

/// Kills the daemon if a test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Collects the daemon's stderr lines on a thread, so the test can wait for
/// a given line.
struct Lines {
    receiver: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(stderr: std::process::ChildStderr) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            receiver,
            seen: Vec::new(),
        }
    }

    /// Waits up to 10 s for a line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.receiver.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line containing `{needle}` in {:#?}", self.seen);
    }
}

#[test]
fn runs_in_the_foreground_reloads_on_sighup_and_exits_0_on_sigterm() {
    use nix::sys::signal::{Signal, kill};
    let sandbox = Sandbox::new("");
    let devdir = sandbox.path("dev");
    std::fs::create_dir(&devdir).unwrap();
    nix::unistd::mkfifo(
        &devdir.join(hv_vss_proto::FS_DEVICE_NAME),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["-n", "-d", "-c", &sandbox.config()])
        .env("HV_VSS_DEVICE_DIR", &devdir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::spawn(child.stderr.take().unwrap());
    let mut running = Running(child);
    let pid = running.0.id();
    let nix_pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    lines.wait_for("hv_vssd: notice: started");
    assert!(
        wait_for(&sandbox.path("status"), Duration::from_secs(10)),
        "no status file"
    );

    // What `hv_vssctl status` reads: the locked pidfile and the status.
    assert_eq!(hv_vssd::pidfile::running(&sandbox.path("pid")), Some(pid));
    let status = hv_vssd::status::Status::read(&sandbox.path("status")).unwrap();
    assert_eq!(status.state, hv_vssd::status::State::Idle);
    assert_eq!(status.pid, pid);

    // A second daemon is refused by the pidfile lock (a FIFO has no
    // single-opener rule, the real device does).
    let second = Command::new(bin())
        .args(["-n", "-c", &sandbox.config()])
        .env("HV_VSS_DEVICE_DIR", &devdir)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(69));
    assert!(text(&second.stderr).contains("another hv_vssd is running"));

    // SIGHUP with a broken file keeps the old configuration...
    let good = std::fs::read_to_string(sandbox.config()).unwrap();
    std::fs::write(sandbox.config(), format!("{good}strict = perhaps\n")).unwrap();
    kill(nix_pid, Signal::SIGHUP).unwrap();
    let line = lines.wait_for("SIGHUP: keeping the old configuration");
    assert!(line.contains("line 6"), "{line}");
    // ...and with a good one reloads.
    std::fs::write(sandbox.config(), format!("{good}strict = yes\n")).unwrap();
    kill(nix_pid, Signal::SIGHUP).unwrap();
    lines.wait_for("configuration reloaded");

    kill(nix_pid, Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    lines.wait_for("terminating on signal");
    lines.wait_for("exiting");
}

/// A foreground daemon on a FIFO device in `sandbox`, its stderr collected;
/// `before_exec` runs in the child before exec (limits, descriptors).
fn start_foreground(
    sandbox: &Sandbox,
    before_exec: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) -> (Running, Lines) {
    use std::os::unix::process::CommandExt;
    let devdir = sandbox.path("dev");
    std::fs::create_dir_all(&devdir).unwrap();
    let device = devdir.join(hv_vss_proto::FS_DEVICE_NAME);
    if !device.exists() {
        nix::unistd::mkfifo(&device, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
    let mut command = Command::new(bin());
    command
        .args(["-n", "-d", "-c", &sandbox.config()])
        .env("HV_VSS_DEVICE_DIR", &devdir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closures given here only make async-signal-safe calls
    // (setrlimit, dup2).
    unsafe {
        command.pre_exec(before_exec);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = Lines::spawn(child.stderr.take().unwrap());
    let running = Running(child);
    lines.wait_for("hv_vssd: notice: started");
    (running, lines)
}

fn pid_of(running: &Running) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(running.0.id()).unwrap())
}

/// SIGTERM, then the exit status.
fn stop(running: &mut Running) -> std::process::ExitStatus {
    nix::sys::signal::kill(pid_of(running), nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn t_refuses_pid_status_and_state_files_that_are_not_regular_files() {
    let sandbox = Sandbox::new("");
    let dir = sandbox.dir.path().display().to_string();
    let cases = [
        (
            "status_file = /dev/null",
            "`status_file = /dev/null`: is a character device",
        ),
        (&*format!("pid_file = {dir}"), "`pid_file = "),
        (
            &*format!("state_file = {dir}/no/such/dir/frozen"),
            "`state_file = ",
        ),
    ];
    for (line, expected) in cases {
        // A key may appear once: drop the sandbox's line for it.
        let key = line.split(' ').next().unwrap();
        let mut lines: Vec<String> = std::fs::read_to_string(sandbox.config())
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with(key))
            .map(str::to_owned)
            .collect();
        lines.push(format!("{line}\n"));
        let conf = sandbox.path("case.conf");
        std::fs::write(&conf, lines.join("\n")).unwrap();
        let out = daemon(&["-t", "-c", &conf.display().to_string()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{line}: {err}");
        assert!(err.contains(expected), "{line}: {err}");
    }
    let link = sandbox.path("link");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    let conf = sandbox.path("link.conf");
    let base = std::fs::read_to_string(sandbox.config()).unwrap().replace(
        &format!("status_file = {dir}/status"),
        &format!("status_file = {}", link.display()),
    );
    std::fs::write(&conf, base).unwrap();
    let out = daemon(&["-t", "-c", &conf.display().to_string()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("symbolic link"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn t_refuses_signs_in_numbers_and_nul_bytes_in_paths() {
    for extra in [
        "freeze_limit = +5\n",
        "hooks_dir = /usr/local/etc/hooks\0.d\n",
    ] {
        let sandbox = Sandbox::new(extra);
        let out = daemon(&["-t", "-c", &sandbox.config()]);
        assert_eq!(out.status.code(), Some(78), "{extra:?}");
        assert!(
            text(&out.stderr).contains("line 6"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn t_refuses_a_hooks_directory_others_can_write_and_lists_accepted_hooks() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new("");
    let hooks = sandbox.path("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    let hook = hooks.join("10-flush");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = daemon(&["-t", "-c", &sandbox.config()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("hooks directory refused"),
        "{}",
        text(&out.stderr)
    );
    if nix::unistd::geteuid().is_root() {
        // Root owns the sandbox, so the hook owner (root) is satisfied.
        std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = daemon(&["-t", "-c", &sandbox.config()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("hook "), "{}", text(&out.stdout));
        assert!(text(&out.stdout).contains("10-flush: accepted"));
    }
}

/// 12.2: whatever core size limit the daemon inherits (rc.subr starts it
/// under login.conf's, where it is unlimited), it runs with 0.
#[cfg(target_os = "linux")]
#[test]
fn the_running_daemon_has_a_core_size_limit_of_zero() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_CORE).unwrap();
    let inherited = hard.min(1 << 20);
    assert!(
        inherited > 0,
        "the hard core limit is 0 here: nothing to prove"
    );
    let sandbox = Sandbox::new("");
    let (mut running, _lines) = start_foreground(&sandbox, move || {
        setrlimit(Resource::RLIMIT_CORE, inherited, hard).map_err(Into::into)
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", running.0.id())).unwrap();
    let core: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(core[4..6], ["0", "0"], "{limits}");
    assert_eq!(stop(&mut running).code(), Some(0));
}

/// 12.4: a descriptor leaked by whoever started the daemon is closed.
#[cfg(target_os = "linux")]
#[test]
fn an_inherited_descriptor_is_closed_at_start() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let sandbox = Sandbox::new("");
    let leaked = std::fs::File::create(sandbox.path("leaked.log")).unwrap();
    let leaked_fd = leaked.as_raw_fd();
    let (mut running, _lines) = start_foreground(&sandbox, move || {
        // SAFETY: dup2 is async-signal-safe; the new descriptor 9 has no
        // close-on-exec flag, as a careless parent would leave it.
        if unsafe { libc::dup2(leaked_fd, 9) } == 9 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    });
    let leaked_inode = {
        let meta = leaked.metadata().unwrap();
        (meta.dev(), meta.ino())
    };
    let fds = std::fs::read_dir(format!("/proc/{}/fd", running.0.id())).unwrap();
    for fd in fds {
        let fd = fd.unwrap();
        if let Ok(meta) = std::fs::metadata(fd.path()) {
            assert_ne!(
                (meta.dev(), meta.ino()),
                leaked_inode,
                "descriptor {:?} is the leaked file",
                fd.file_name()
            );
        }
    }
    assert_eq!(stop(&mut running).code(), Some(0));
}

/// 18.6: a FIFO or a link to /dev/zero in place of the configuration on
/// SIGHUP neither blocks nor exhausts the daemon, and the whole running
/// configuration stays.
#[test]
fn sighup_with_a_fifo_or_dev_zero_as_the_configuration_keeps_the_old_one() {
    use nix::sys::signal::{Signal, kill};
    let sandbox = Sandbox::new("");
    let (mut running, mut lines) = start_foreground(&sandbox, || Ok(()));
    let good = std::fs::read_to_string(sandbox.config()).unwrap();
    std::fs::remove_file(sandbox.config()).unwrap();
    nix::unistd::mkfifo(
        &sandbox.path("daemon.conf"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    kill(pid_of(&running), Signal::SIGHUP).unwrap();
    let line = lines.wait_for("SIGHUP: keeping the old configuration");
    assert!(line.contains("a FIFO"), "{line}");
    std::fs::remove_file(sandbox.config()).unwrap();
    std::os::unix::fs::symlink("/dev/zero", sandbox.path("daemon.conf")).unwrap();
    kill(pid_of(&running), Signal::SIGHUP).unwrap();
    lines.seen.clear();
    let line = lines.wait_for("SIGHUP: keeping the old configuration");
    assert!(line.contains("character device"), "{line}");
    // Still serving signals.
    std::fs::remove_file(sandbox.config()).unwrap();
    std::fs::write(sandbox.config(), &good).unwrap();
    kill(pid_of(&running), Signal::SIGHUP).unwrap();
    lines.wait_for("configuration reloaded");
    assert_eq!(stop(&mut running).code(), Some(0));
}

/// 12.3 / 18.4: a second instance stops at the pidfile lock, before it
/// could "recover" (thaw and delete) the first one's state file.
#[test]
fn a_second_instance_stops_before_touching_the_first_ones_state() {
    let sandbox = Sandbox::new("");
    let (mut running, _lines) = start_foreground(&sandbox, || Ok(()));
    let state = sandbox.path("frozen");
    let record = r#"{"pid":1,"frozen":[{"path":"/nonexistent-hv-vss-test","fs_id":[1,2]}]}"#;
    std::fs::write(&state, record).unwrap();
    let second = Command::new(bin())
        .args(["-n", "-c", &sandbox.config()])
        .env("HV_VSS_DEVICE_DIR", sandbox.path("dev"))
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(69), "{}", text(&second.stderr));
    assert!(text(&second.stderr).contains("another hv_vssd is running"));
    assert!(
        !text(&second.stderr).contains("thaw"),
        "{}",
        text(&second.stderr)
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap(), record);
    assert_eq!(stop(&mut running).code(), Some(0));
}

/// Not allowed to open the device: still exit 77, on the terminal, although
/// the device is now opened only after daemon(3).
#[test]
fn a_user_who_may_not_open_the_device_gets_77_before_anything_else() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP a_user_who_may_not_open_the_device: needs root for setpriv");
        return;
    }
    let sandbox = Sandbox::new("");
    let devdir = sandbox.path("dev");
    std::fs::create_dir(&devdir).unwrap();
    nix::unistd::mkfifo(
        &devdir.join(hv_vss_proto::FS_DEVICE_NAME),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    for path in [sandbox.dir.path(), &devdir] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(sandbox.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["-n", "-c", &sandbox.config(), "-D"])
        .arg(&devdir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}",
        text(&out.stderr)
    );
    assert!(!sandbox.path("pid").exists(), "a pidfile was created");
}
