//! What differs between Linux and FreeBSD for the end-to-end tests, in one
//! place: whether a freeze outlives its process, how to tell whether a
//! process is alive, how to run a command as an unprivileged user, and the
//! emergency release of a stuck test.

use std::process::Command;

/// Whether a freeze outlives the process that made it. Linux's FIFREEZE
/// does (the daemon records it and thaws at its next start); FreeBSD's
/// UFSSUSPEND ends when its descriptor closes, so a killed daemon has
/// thawed everything by the time it is reaped (sys/ufs/ffs/ffs_suspend.c).
pub const FREEZE_OUTLIVES_PROCESS: bool = cfg!(target_os = "linux");

/// The unprivileged user and group the refusal tests run as (`nobody`
/// and `nogroup`/`nobody`: 65534 on Debian and on FreeBSD).
pub const NOBODY: u32 = 65534;

/// `command` set up to run as [`NOBODY`] with no supplementary groups
/// (std drops them when a root parent sets a uid).
pub fn as_nobody(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    command.uid(NOBODY).gid(NOBODY)
}

/// Whether process `pid` is alive; a zombie is dead (it only waits to be
/// reaped).
#[cfg(target_os = "linux")]
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, s)| s.starts_with(" Z"))
    })
}

/// Whether process `pid` is alive; a zombie is dead. FreeBSD mounts no
/// procfs by default: ps(1) tells (state `Z` is a zombie).
#[cfg(target_os = "freebsd")]
pub fn alive(pid: i32) -> bool {
    Command::new("ps")
        .args(["-o", "state=", "-p", &pid.to_string()])
        .output()
        .is_ok_and(|out| {
            let state = String::from_utf8_lossy(&out.stdout);
            out.status.success() && !state.trim().is_empty() && !state.trim().starts_with('Z')
        })
}

/// For a test past its deadline: thaws every filesystem the simulator
/// made and kills this process's children (daemons, apps, and on FreeBSD
/// the children holding suspensions), so the test body's own cleanup can
/// finish.
pub fn emergency_release() {
    thaw_simulator_filesystems();
    kill_children();
}

/// Linux: FIFREEZE outlives its process, so each simulator mount is
/// thawed explicitly.
#[cfg(target_os = "linux")]
fn thaw_simulator_filesystems() {
    use std::os::fd::AsRawFd;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let Some(mount_point) = line.split_whitespace().nth(1) else {
            continue;
        };
        if mount_point.contains(hv_vss_sim::loopfs::SCRATCH_PREFIX) {
            if let Ok(dir) = std::fs::File::open(mount_point) {
                let mut unused: libc::c_int = 0;
                // SAFETY: FITHAW (_IOWR('X', 120, int)) on an open directory;
                // the argument is ignored by the kernel.
                unsafe {
                    libc::ioctl(
                        dir.as_raw_fd(),
                        nix::request_code_readwrite!(b'X', 120, size_of::<libc::c_int>()),
                        &raw mut unused,
                    );
                }
            }
        }
    }
}

/// FreeBSD: every suspension belongs to a live process (the daemon, or a
/// harness child holding one), and ends when it dies: [`kill_children`]
/// thaws.
#[cfg(target_os = "freebsd")]
fn thaw_simulator_filesystems() {}

/// SIGKILLs every child of this process.
fn kill_children() {
    for pid in children() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(target_os = "linux")]
fn children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            (after_comm.split_whitespace().nth(1) == Some(me.as_str()))
                .then(|| entry.file_name().to_string_lossy().parse::<i32>().ok())
                .flatten()
        })
        .collect()
}

/// pgrep(1) is in FreeBSD's base system.
#[cfg(target_os = "freebsd")]
fn children() -> Vec<i32> {
    Command::new("pgrep")
        .args(["-P", &std::process::id().to_string()])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
