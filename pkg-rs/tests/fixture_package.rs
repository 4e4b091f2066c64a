//! Build the demo fixture package and check it: golden manifest, read-back by
//! independent readers (bsdtar + Python, repopulator), the repository
//! catalogue, and the errors a user gets for broken inputs.
// A panic in a test is a failed test, not a crash: unwrap is the clearest form here.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use freebsd_pkg::format::PkgVersion;
use freebsd_pkg::{BuildOptions, Compression, build, metadata, repo};

#[path = "support/tiny_elf.rs"]
mod tiny_elf;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo")
}

/// `__FreeBSD_version` of the "built" daemon: 14.0-RELEASE.
const DAEMON_FREEBSD_VERSION: u32 = 1_400_097;

/// Copy the fixture into a scratch directory, with the modes a build would
/// leave (git may not keep the executable bit everywhere), plus what a
/// FreeBSD build would supply: the daemon (a FreeBSD ELF needing libthr and
/// libc) and a kernel module.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&fixture_dir(), dir.path());
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        fs::write(
            dir.path().join("bin/demo_daemon"),
            tiny_elf::tiny_elf(
                &["libthr.so.3", "libc.so.7"],
                None,
                Some(DAEMON_FREEBSD_VERSION),
            ),
        )
        .unwrap();
        for exe in ["bin/demo_daemon", "examples/hooks.d/10-flush-db"] {
            set_mode(&dir.path().join(exe), 0o755);
        }
        for data in ["examples/hooks.d/README", "doc/note.txt", "files/secret"] {
            set_mode(&dir.path().join(data), 0o644);
        }
        fs::create_dir_all(dir.path().join("kmod-build")).unwrap();
        fs::write(
            dir.path().join("kmod-build/demo.ko"),
            b"\x7fELF stand-in module\n",
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Build for pkg `version` from now on (`min-pkg-version` in the metadata).
    fn target_pkg(&self, version: &str) {
        let manifest = self.path().join("manifest.toml");
        let text = fs::read_to_string(&manifest).unwrap();
        let text = text.replace(
            "[package.metadata.freebsd-pkg]\n",
            &format!("[package.metadata.freebsd-pkg]\nmin-pkg-version = \"{version}\"\n"),
        );
        fs::write(manifest, text).unwrap();
    }

    fn options(&self, compression: Compression, kmod: bool) -> BuildOptions {
        BuildOptions {
            vars: BTreeMap::from([
                (
                    "bin_dir".to_owned(),
                    self.path().join("bin").display().to_string(),
                ),
                (
                    "kmod_dir".to_owned(),
                    self.path().join("kmod-build").display().to_string(),
                ),
            ]),
            options: BTreeMap::from([("KMOD".to_owned(), kmod)]),
            compression,
            mtime: 1_764_028_800,
            output_dir: self.path().join("out"),
        }
    }

    fn build(
        &self,
        compression: Compression,
        kmod: bool,
    ) -> Result<freebsd_pkg::BuiltPackage, String> {
        let loaded =
            metadata::load(&self.path().join("manifest.toml")).map_err(|e| e.to_string())?;
        build(&loaded, &self.options(compression, kmod)).map_err(|e| e.to_string())
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The readers are CI requirements (libarchive-tools, python3): a missing one
/// fails when HVVSS_REQUIRE_PKG_READERS is set and is a visible SKIP otherwise.
fn readers_available(what: &str) -> bool {
    if have("bsdtar") && have("python3") {
        return true;
    }
    assert!(
        std::env::var_os("HVVSS_REQUIRE_PKG_READERS").is_none(),
        "bsdtar or python3 missing: apt-get install libarchive-tools python3"
    );
    eprintln!("SKIP {what}: bsdtar (Debian libarchive-tools) or python3 not installed");
    false
}

fn readback(pkg: &Path, scratch: &Scratch, kmod: bool, pkg_version: PkgVersion) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readback.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(pkg)
        .arg(scratch.path().join("expected.json"))
        .arg(scratch.path())
        .arg("--min-pkg-version")
        .arg(pkg_version.to_string());
    if kmod {
        cmd.arg("--kmod");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "read-back failed for {}:\n{stdout}{stderr}",
        pkg.display()
    );
    assert!(stdout.contains("readback: OK"), "{stdout}");
}

#[test]
fn every_compression_reads_back_with_bsdtar_and_python() {
    if !readers_available("bsdtar read-back") {
        return;
    }
    let scratch = Scratch::new();
    for compression in [Compression::Zstd, Compression::Xz, Compression::None] {
        for kmod in [false, true] {
            let built = scratch.build(compression, kmod).unwrap();
            readback(&built.path, &scratch, kmod, PkgVersion::default());
        }
    }
}

/// Each target pkg gets the manifest its own `pkg create` writes, and the
/// independent reader recomputes every sum (SHA-256 or BLAKE2b in pkg's
/// base32) and the owner and mode of every file from the tar headers.
#[test]
fn every_target_pkg_version_reads_back() {
    if !readers_available("bsdtar read-back") {
        return;
    }
    for version in ["1.17", "2.4", "2.8"] {
        let scratch = Scratch::new();
        scratch.target_pkg(version);
        let built = scratch.build(Compression::Zstd, true).unwrap();
        readback(&built.path, &scratch, true, version.parse().unwrap());
        let first = built.manifest.contents.files.values().next().unwrap();
        let sum = first.sum();
        match version {
            "1.17" => assert!(
                matches!(first, freebsd_pkg::manifest::FileEntry::Sum(s) if s.starts_with("1$"))
            ),
            "2.4" => assert!(
                sum.starts_with("1$") && !matches!(first, freebsd_pkg::manifest::FileEntry::Sum(_))
            ),
            _ => assert!(sum.starts_with("2$"), "{sum}"),
        }
    }
}

#[test]
fn shlibs_and_freebsd_version_come_from_the_binaries() {
    let scratch = Scratch::new();
    let built = scratch.build(Compression::Zstd, false).unwrap();
    let compact = &built.manifest.compact;
    assert_eq!(compact.shlibs_required, ["libc.so.7", "libthr.so.3"]);
    assert_eq!(
        compact
            .annotations
            .get("FreeBSD_version")
            .map(String::as_str),
        Some("1400097")
    );
    // The compact manifest, which pkg reads before installing, has them too.
    let file = fs::File::open(&built.path).unwrap();
    let raw = freebsd_pkg::archive::read_member(std::io::BufReader::new(file), "+COMPACT_MANIFEST")
        .unwrap()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        value["shlibs_required"],
        serde_json::json!(["libc.so.7", "libthr.so.3"])
    );
    assert_eq!(value["annotations"]["FreeBSD_version"], "1400097");
}

#[test]
fn a_binary_for_another_release_than_abi_is_an_error() {
    let scratch = Scratch::new();
    fs::write(
        scratch.path().join("bin/demo_daemon"),
        tiny_elf::tiny_elf(&["libc.so.7"], None, Some(1_500_000)),
    )
    .unwrap();
    let err = scratch.build(Compression::Zstd, false).unwrap_err();
    assert!(err.contains("built for FreeBSD 15"), "{err}");
    assert!(err.contains("abi is \"FreeBSD:14:amd64\""), "{err}");
}

#[test]
fn manifest_matches_golden() {
    let scratch = Scratch::new();
    let built = scratch.build(Compression::Zstd, true).unwrap();
    let file = fs::File::open(&built.path).unwrap();
    let raw = freebsd_pkg::archive::read_member(std::io::BufReader::new(file), "+MANIFEST")
        .unwrap()
        .unwrap();
    let actual: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let golden_path = fixture_dir().join("golden-manifest.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(
            &golden_path,
            serde_json::to_string_pretty(&actual).unwrap() + "\n",
        )
        .unwrap();
    }
    let golden: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&golden_path).unwrap()).unwrap();
    assert_eq!(
        actual, golden,
        "re-run with UPDATE_GOLDEN=1 after checking the difference by eye"
    );
    // pkg's key order, compact JSON on one line.
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.starts_with("{\"name\":\"demo\",\"origin\":\"sysutils/demo\",\"version\":\"1.4.2\""),
        "{text}"
    );
    assert!(
        !text.contains('\n'),
        "one line, no newline, as pkg create writes it"
    );
}

#[test]
fn builds_are_reproducible() {
    let scratch = Scratch::new();
    let first = fs::read(scratch.build(Compression::Zstd, true).unwrap().path).unwrap();
    let second = fs::read(scratch.build(Compression::Zstd, true).unwrap().path).unwrap();
    assert_eq!(first, second);
}

#[test]
fn repository_catalogue_lists_the_package() {
    let scratch = Scratch::new();
    let built = scratch.build(Compression::Zstd, false).unwrap();
    let repo_dir = scratch.path().join("repo");
    fs::create_dir_all(repo_dir.join("All")).unwrap();
    fs::copy(&built.path, repo_dir.join("All/demo-1.4.2.pkg")).unwrap();
    let written =
        repo::write_catalogue(&repo_dir, Compression::Zstd, PkgVersion::default(), 0).unwrap();
    let read = repo::read_packagesite(&repo_dir).unwrap();
    assert_eq!(written, read);
    assert_eq!(read.len(), 1);
    let entry = &read[0];
    assert_eq!(entry.repo.path, "All/demo-1.4.2.pkg");
    assert_eq!(entry.repo.pkgsize, built.size);
    assert_eq!(entry.manifest, built.manifest.compact);
    let bytes = fs::read(&built.path).unwrap();
    assert_eq!(
        entry.repo.sum,
        freebsd_pkg::checksum::ChecksumKind::Blake2bBase32.package_sum(&bytes)
    );
    // A second run must not index its own catalogue archives as packages;
    // for pkg before 2.8 the sum is the bare SHA-256 hex.
    let older =
        repo::write_catalogue(&repo_dir, Compression::Xz, "2.4".parse().unwrap(), 0).unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].manifest, written[0].manifest);
    let sha = {
        use sha2::Digest;
        freebsd_pkg::checksum::hex(&sha2::Sha256::digest(&bytes))
    };
    assert_eq!(older[0].repo.sum, sha);
    let meta = fs::read_to_string(repo_dir.join("meta.conf")).unwrap();
    assert!(meta.contains("packing_format = \"txz\";"), "{meta}");
    assert!(meta.contains("filesite = \"files\";"), "{meta}");
    assert!(!meta.contains("data_archive"), "{meta}");
    let data = freebsd_pkg::archive::read_member(
        std::io::BufReader::new(fs::File::open(repo_dir.join("data.pkg")).unwrap()),
        "data",
    )
    .unwrap()
    .unwrap();
    let data: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(data["expired_packages"], serde_json::json!([]));
    assert_eq!(data["groups"], serde_json::json!([]));
    assert_eq!(data["packages"][0]["name"], "demo");
}

/// repopulator (PyPI, BSD-3) is a second, independent reader: it opens the
/// package with Python's tarfile + zstandard and indexes it. CI provides it
/// through FREEBSD_PKG_PYTHON (a venv python); elsewhere this is a SKIP.
#[test]
fn repopulator_indexes_the_package() {
    let Some(python) = std::env::var_os("FREEBSD_PKG_PYTHON") else {
        eprintln!(
            "SKIP repopulator read-back: set FREEBSD_PKG_PYTHON to a python with repopulator (the CI check does)"
        );
        return;
    };
    let scratch = Scratch::new();
    let pkg_dir = scratch.path().join("pkgs");
    for (compression, kmod) in [(Compression::Zstd, true), (Compression::Xz, false)] {
        let built = scratch.build(compression, kmod).unwrap();
        fs::create_dir_all(&pkg_dir).unwrap();
        let name = format!("demo-{compression:?}.pkg").to_lowercase();
        fs::copy(&built.path, pkg_dir.join(&name)).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/repopulator_check.py");
        let out = Command::new(&python)
            .arg(script)
            .arg(pkg_dir.join(&name))
            .arg(scratch.path().join(format!("repo-{name}")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "repopulator failed on {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_file(pkg_dir.join(&name)).unwrap();
    }
}

#[test]
fn missing_source_names_plist_line_and_fix() {
    let scratch = Scratch::new();
    fs::remove_file(scratch.path().join("files/secret")).unwrap();
    let err = scratch.build(Compression::Zstd, false).unwrap_err();
    assert!(
        err.contains("pkg-plist:5: `etc/demo/secret` comes from "),
        "{err}"
    );
    assert!(err.contains("files/secret, which cannot be read"), "{err}");
    assert!(err.contains("\nfix: build or write"), "{err}");
}

#[test]
fn bad_plist_line_names_plist_line_and_fix() {
    let scratch = Scratch::new();
    let plist = scratch.path().join("pkg-plist");
    let text = fs::read_to_string(&plist).unwrap() + "@fancy share/x\n";
    fs::write(&plist, text).unwrap();
    let err = scratch.build(Compression::Zstd, false).unwrap_err();
    assert!(
        err.contains("pkg-plist:14: unsupported plist keyword `@fancy`"),
        "{err}"
    );
    assert!(err.contains("\nfix: use one of"), "{err}");
}

#[test]
fn bad_metadata_key_names_file_line_and_fix() {
    let scratch = Scratch::new();
    let manifest = scratch.path().join("manifest.toml");
    let text = fs::read_to_string(&manifest)
        .unwrap()
        .replace("www =", "homepage =");
    fs::write(&manifest, text).unwrap();
    let err = scratch.build(Compression::Zstd, false).unwrap_err();
    assert!(
        err.contains("manifest.toml: invalid [*.metadata.freebsd-pkg]"),
        "{err}"
    );
    assert!(err.contains("line 12"), "{err}");
    assert!(err.contains("unknown field `homepage`"), "{err}");
    assert!(err.contains("\nfix:"), "{err}");
}

#[test]
fn file_in_plist_without_source_and_source_without_plist_line_are_errors() {
    let scratch = Scratch::new();
    let plist = scratch.path().join("pkg-plist");
    let original = fs::read_to_string(&plist).unwrap();
    fs::write(&plist, original.clone() + "sbin/unlisted\n").unwrap();
    let err = scratch.build(Compression::Zstd, false).unwrap_err();
    assert!(
        err.contains("pkg-plist:14: no source for `sbin/unlisted`"),
        "{err}"
    );

    fs::write(
        &plist,
        original.replace("@(root,operator,0640) etc/demo/secret\n", ""),
    )
    .unwrap();
    let err = scratch.build(Compression::Zstd, false).unwrap_err();
    assert!(
        err.contains("sources \"etc/demo/secret\" matches no line of pkg-plist"),
        "{err}"
    );
}

#[test]
fn unknown_option_is_an_error() {
    let scratch = Scratch::new();
    let loaded = metadata::load(&scratch.path().join("manifest.toml")).unwrap();
    let mut options = scratch.options(Compression::Zstd, false);
    options.options.insert("DEBUG".to_owned(), true);
    let err = build(&loaded, &options).unwrap_err().to_string();
    assert!(err.contains("option DEBUG is not declared"), "{err}");
    assert!(err.contains("KMOD"), "{err}");
}

#[test]
fn cli_builds_inspects_and_reports_errors_as_cargo_subcommand() {
    let scratch = Scratch::new();
    let exe = env!("CARGO_BIN_EXE_cargo-freebsd-pkg");
    let out = Command::new(exe)
        .args(["freebsd-pkg", "build", "--manifest-path"])
        .arg(scratch.path().join("manifest.toml"))
        .arg("--output-dir")
        .arg(scratch.path().join("cli-out"))
        .args(["--compression", "xz", "--timestamp", "0", "--with", "KMOD"])
        .arg("--var")
        .arg(format!("bin_dir={}", scratch.path().join("bin").display()))
        .arg("--var")
        .arg(format!(
            "kmod_dir={}",
            scratch.path().join("kmod-build").display()
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("demo-1.4.2.pkg") && stdout.contains("9 files"),
        "{stdout}"
    );

    let pkg = scratch.path().join("cli-out/demo-1.4.2.pkg");
    let out = Command::new(exe)
        .args(["freebsd-pkg", "inspect"])
        .arg(&pkg)
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["name"], "demo");
    assert!(manifest["files"].get("/boot/modules/demo.ko").is_some());

    let out = Command::new(exe)
        .args(["freebsd-pkg", "build", "--manifest-path"])
        .arg(scratch.path().join("manifest.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.starts_with("cargo-freebsd-pkg: error: "), "{stderr}");
    assert!(
        stderr.contains("uses {kmod_dir}") || stderr.contains("comes from"),
        "{stderr}"
    );
}
