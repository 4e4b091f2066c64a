//! What the daemon does to itself at start, before anything can be frozen,
//! so that neither what it inherited nor a crash can keep a filesystem
//! frozen.
//!
//! - **No core dumps.** A core is written before the dying process's
//!   descriptors are closed (sys/kern/kern_sig.c: `sigexit` calls
//!   `coredump` first), and a write to a suspended UFS waits
//!   uninterruptibly: a SIGSEGV, a SIGABRT or a panic (`panic = "abort"`)
//!   while / is suspended would write the core onto the frozen root and
//!   never release the suspension. rc.subr starts daemons under login.conf
//!   limits, where the core size is unlimited. So: RLIMIT_CORE 0 (both
//!   systems), and on FreeBSD `procctl(PROC_TRACE_CTL_DISABLE)`, which
//!   also refuses ptrace attach (`coredump` returns early for P2_NOTRACE);
//!   on Linux `prctl(PR_SET_DUMPABLE, 0)`. Children (hooks, `zpool`)
//!   inherit the zero core limit, and on FreeBSD the trace block too
//!   (kern_fork.c copies P2_NOTRACE; only the
//!   `PROC_TRACE_CTL_DISABLE_EXEC` variant ends at exec, per procctl(2)).
//! - **No inherited descriptors.** daemon(3) only redirects 0-2, and
//!   UFSSUSPEND refuses (EDEADLK) a caller holding any descriptor open for
//!   writing on the filesystem (sys/ufs/ffs/ffs_suspend.c), so a log file
//!   leaked by the script that started the daemon would fail every FREEZE.
//!   Everything above 2 is closed: closefrom(2) on FreeBSD, close_range(2)
//!   on Linux (nix wraps neither).

/// Closes every descriptor above 2. Call first thing, while nothing in the
/// process owns a descriptor above 2.
pub fn close_inherited_descriptors() -> std::io::Result<()> {
    #[cfg(target_os = "freebsd")]
    {
        // SAFETY: called before the daemon opens anything; no Rust object
        // owns a descriptor above 2 yet, so none is closed under its owner.
        unsafe { libc::closefrom(3) };
        Ok(())
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as above; close_range only closes descriptors.
        let result = unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
        if result == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// Makes this process unable to dump core (and, on FreeBSD, to be traced).
/// `Err`: the core size limit could not be set to 0 (do not go on).
/// `Ok(Some(note))`: the limit is 0 but the platform's own switch failed,
/// for instance on FreeBSD while ktrace(1) or truss(1) traces the daemon
/// (EBUSY); worth a warning, not a refusal to run.
pub fn forbid_core_dumps() -> std::io::Result<Option<String>> {
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
    Ok(forbid_platform_dumps()
        .err()
        .map(|e| format!("core dumps are off (RLIMIT_CORE 0), but {PLATFORM_SWITCH} failed: {e}")))
}

#[cfg(target_os = "linux")]
const PLATFORM_SWITCH: &str = "prctl(PR_SET_DUMPABLE, 0)";
#[cfg(target_os = "freebsd")]
const PLATFORM_SWITCH: &str = "procctl(PROC_TRACE_CTL, PROC_TRACE_CTL_DISABLE)";

#[cfg(target_os = "linux")]
fn forbid_platform_dumps() -> std::io::Result<()> {
    // PR_SET_DUMPABLE 0: no core whatever the limit or core_pattern says
    // (a `|helper` core_pattern ignores RLIMIT_CORE). exec resets it, so
    // hooks are unaffected.
    nix::sys::prctl::set_dumpable(false).map_err(Into::into)
}

#[cfg(target_os = "freebsd")]
fn forbid_platform_dumps() -> std::io::Result<()> {
    // libc declares procctl(2) and the constants of sys/sys/procctl.h
    // (PROC_TRACE_CTL 7, PROC_TRACE_CTL_DISABLE 2); nix does not wrap it.
    let mut disable: libc::c_int = libc::PROC_TRACE_CTL_DISABLE;
    let pid = libc::id_t::from(std::process::id());
    // SAFETY: PROC_TRACE_CTL reads one int through the valid pointer.
    let result = unsafe {
        libc::procctl(
            libc::P_PID,
            pid,
            libc::PROC_TRACE_CTL,
            (&raw mut disable).cast(),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        // EBUSY: being traced right now (kern_procctl.c trace_ctl); the
        // core limit above still prevents a core.
        Err(std::io::Error::last_os_error())
    }
}
