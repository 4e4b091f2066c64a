//! Sizes of the stripped FreeBSD release binaries, cross-built with
//! `cargo zigbuild` (see shared toolchain notes and `.ci/lib.sh`'s
//! `ensure_zig`). The release profile already strips symbols; this reports
//! the files exactly as the package would ship them.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const TARGET: &str = "x86_64-unknown-freebsd";

/// Binaries of the package: (cargo package, file).
pub(crate) const BINARIES: [(&str, &str); 3] = [
    ("hv-vssd", "hv_vssd"),
    ("hv-vssctl", "hv_vssctl"),
    ("hv-vss-app", "hv_vss_app"),
];

/// cargo-zigbuild on PATH, or in the venv `.ci/lib.sh` installs.
fn find_zigbuild() -> Option<PathBuf> {
    let tools = std::env::var_os("HVVSS_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hyperv-vss")));
    let venv_bin = tools.map(|t| t.join("venv/bin"));
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(venv_bin)
        .map(|dir| dir.join("cargo-zigbuild"))
        .find(|p| p.is_file())
}

/// Builds the binaries into `target_dir` and returns (file, bytes).
pub(crate) fn build_and_measure(
    workspace: &Path,
    target_dir: &Path,
) -> Result<Vec<(String, u64)>, String> {
    let zigbuild = find_zigbuild().ok_or(
        "cargo-zigbuild not found: run `. .ci/lib.sh && ensure_zig` (pip ziglang + \
         cargo-zigbuild in a venv) or put it on PATH",
    )?;
    let venv_bin = zigbuild.parent().map(Path::to_owned).unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(venv_bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .map_err(|e| e.to_string())?;
    let mut command = Command::new("cargo");
    command
        .current_dir(workspace)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["zigbuild", "--locked", "--release", "--target", TARGET]);
    for (package, _) in BINARIES {
        command.args(["-p", package]);
    }
    let status = command
        .status()
        .map_err(|e| format!("running cargo zigbuild: {e}"))?;
    if !status.success() {
        return Err(format!("cargo zigbuild failed ({status})"));
    }
    BINARIES
        .iter()
        .map(|(_, file)| {
            let path = target_dir.join(TARGET).join("release").join(file);
            std::fs::metadata(&path)
                .map(|m| ((*file).to_owned(), m.len()))
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}
