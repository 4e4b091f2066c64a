//! Finding the real binaries the simulator drives (`hv_vssd`,
//! `hv_vss_app`): an explicit path, else an environment variable, else the
//! cargo target directory the simulator itself was built into.

use std::path::{Path, PathBuf};

/// A program of the workspace the simulator runs as a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Daemon,
    App,
    /// `hv_vssctl`, the administrator's command.
    Ctl,
}

impl Program {
    pub fn file_name(self) -> &'static str {
        match self {
            Program::Daemon => "hv_vssd",
            Program::App => "hv_vss_app",
            Program::Ctl => "hv_vssctl",
        }
    }

    /// Environment variable that overrides where the binary is.
    pub fn env_var(self) -> &'static str {
        match self {
            Program::Daemon => "HV_VSSD_BIN",
            Program::App => "HV_VSS_APP_BIN",
            Program::Ctl => "HV_VSSCTL_BIN",
        }
    }

    pub fn package(self) -> &'static str {
        match self {
            Program::Daemon => "hv-vssd",
            Program::App => "hv-vss-app",
            Program::Ctl => "hv-vssctl",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("{path} (from {origin}) is not an executable file")]
    NotExecutable { path: PathBuf, origin: String },
    #[error(
        "cannot find {name}: looked in {searched}. Build it first with \
         `cargo build -p {package}` (same profile and target directory as the simulator), \
         or point {env} at it"
    )]
    NotFound {
        name: &'static str,
        searched: String,
        package: &'static str,
        env: &'static str,
    },
}

/// Finds `program`: `explicit` if given, else `$HV_VSS_*_BIN`, else next to
/// the running executable (and one level up, for test binaries that live
/// in `target/<profile>/deps`).
pub fn find(program: Program, explicit: Option<&Path>) -> Result<PathBuf, FindError> {
    if let Some(path) = explicit {
        return checked(path, "the command line");
    }
    if let Some(path) = std::env::var_os(program.env_var()) {
        return checked(Path::new(&path), program.env_var());
    }
    build_with_cargo_if_run_by_cargo(program);
    let mut searched = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join(program.file_name());
            if is_executable(&candidate) {
                return Ok(candidate);
            }
            searched.push(dir.display().to_string());
        }
    }
    Err(FindError::NotFound {
        name: program.file_name(),
        searched: searched.join(", "),
        package: program.package(),
        env: program.env_var(),
    })
}

fn checked(path: &Path, origin: &str) -> Result<PathBuf, FindError> {
    if is_executable(path) {
        Ok(path.to_owned())
    } else {
        Err(FindError::NotExecutable {
            path: path.to_owned(),
            origin: origin.to_owned(),
        })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Under `cargo run` (cargo sets `$CARGO` for what it runs), builds
/// `program` into the simulator's own target directory and profile first,
/// so `cargo run -p hv-vss-sim -- backup` works from a fresh clone and never
/// runs a stale daemon. Failures are left to the search that follows.
fn build_with_cargo_if_run_by_cargo(program: Program) {
    let (Some(cargo), Ok(exe)) = (std::env::var_os("CARGO"), std::env::current_exe()) else {
        return;
    };
    // target/<profile>/hv-vss-sim
    let Some(profile_dir) = exe.parent() else {
        return;
    };
    let Some(target_dir) = profile_dir.parent() else {
        return;
    };
    if !target_dir.join("CACHEDIR.TAG").exists() {
        // Not a cargo target directory (an installed copy): do nothing.
        return;
    }
    let mut build = std::process::Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", program.package()])
        .env("CARGO_TARGET_DIR", target_dir);
    if let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        build.current_dir(manifest_dir);
    }
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    }
    eprintln!(
        "hv-vss-sim: building {} (cargo build -p {})",
        program.file_name(),
        program.package()
    );
    match build.status() {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!(
            "hv-vss-sim: cargo build -p {} failed: {status}",
            program.package()
        ),
        Err(e) => eprintln!("hv-vss-sim: cannot run cargo: {e}"),
    }
}
