//! The Lua that `@sample` becomes, run under a real Lua 5.4 (the version
//! pkg embeds) with a small `pkg` table that behaves like pkg's own
//! (libpkg/lua.c and lua_scripts.c at freebsd/pkg 13f9f98) over a temporary
//! root: every path resolves beneath the root, as pkg resolves it beneath
//! `rootfd` for `pkg -r ROOT`. Nothing else is reachable: `io`, `os.execute`,
//! `load*` and `require` are gone, and `pkg.exec` is not provided, so a
//! script that tried to touch the host would fail here.
// A panic in a test is a failed test: unwrap is the clearest form here.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use freebsd_pkg::plist::{self, ScriptKind, Substitutions};
use mlua::{Lua, MultiValue, Value};

const PREFIX: &str = "/usr/local";

/// A target root beside a stand-in for the host's own files, and what the
/// scripts asked the fake `pkg` for.
struct Machine {
    _dir: tempfile::TempDir,
    root: PathBuf,
    host: PathBuf,
    messages: Rc<RefCell<Vec<String>>>,
    escapes: Rc<RefCell<Vec<String>>>,
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let host = dir.path().join("host");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&host).unwrap();
        Self {
            root,
            host,
            _dir: dir,
            messages: Rc::default(),
            escapes: Rc::default(),
        }
    }

    /// `path` (absolute on the target) inside the root.
    fn in_root(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The host's file at the same absolute path: what a script that
    /// ignored the root would have touched.
    fn on_host(&self, path: &str) -> PathBuf {
        self.host.join(path.trim_start_matches('/'))
    }

    /// Run one Lua chunk the way pkg does: a fresh state, `pkg` and the
    /// root-relative `os.remove`, the globals lua_scripts.c sets.
    fn run(&self, chunk: &str, upgrade: bool) {
        let lua = Lua::new();
        let globals = lua.globals();
        for name in ["io", "dofile", "loadfile", "load", "require", "package"] {
            globals.set(name, Value::Nil).unwrap();
        }
        globals.set("pkg_upgrade", upgrade).unwrap();
        globals.set("pkg_prefix", PREFIX).unwrap();
        globals.set("pkg_name", "hyperv-vss").unwrap();
        globals
            .set("pkg_rootdir", self.root.to_str().unwrap())
            .unwrap();

        let root = self.root.clone();
        let escapes = Rc::clone(&self.escapes);
        // A ".." would climb out of rootfd in the real pkg: recorded.
        let resolve: Resolve = Rc::new(move |path: &str| {
            if path.split('/').any(|c| c == "..") || !path.starts_with('/') {
                escapes.borrow_mut().push(path.to_owned());
            }
            root.join(path.trim_start_matches('/'))
        });
        globals
            .set("pkg", pkg_table(&lua, &resolve, Rc::clone(&self.messages)))
            .unwrap();
        globals.set("os", os_table(&lua, &resolve)).unwrap();
        lua.load(chunk).exec().unwrap();
    }

    fn messages(&self) -> Vec<String> {
        self.messages.borrow().clone()
    }
}

fn put(file: &Path, content: &str, mode: u32) {
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(file, content).unwrap();
    fs::set_permissions(file, fs::Permissions::from_mode(mode)).unwrap();
}

/// How pkg resolves a script's path: RELATIVE_PATH(p) and openat(rootfd).
type Resolve = Rc<dyn Fn(&str) -> PathBuf>;

/// `pkg`: the functions of libpkg/lua.c that @sample uses.
fn pkg_table(lua: &Lua, resolve: &Resolve, messages: Rc<RefCell<Vec<String>>>) -> mlua::Table {
    let pkg = lua.create_table().unwrap();
    pkg.set(
        "prefixed_path",
        lua.create_function(|_, path: String| {
            Ok(if path.starts_with('/') {
                path
            } else {
                format!("{PREFIX}/{path}")
            })
        })
        .unwrap(),
    )
    .unwrap();
    let r = Rc::clone(resolve);
    pkg.set(
        "stat",
        lua.create_function(move |lua, path: String| {
            let Ok(meta) = fs::symlink_metadata(r(&path)) else {
                return Ok(Value::Nil);
            };
            let table = lua.create_table()?;
            table.set("size", meta.len())?;
            table.set("type", if meta.is_dir() { "dir" } else { "reg" })?;
            Ok(Value::Table(table))
        })
        .unwrap(),
    )
    .unwrap();
    let r = Rc::clone(resolve);
    // lua_pkg_copy: O_CREAT|O_EXCL with the source's mode; nothing
    // returned on success, 2 when either side fails.
    pkg.set(
        "copy",
        lua.create_function(move |_, (src, dst): (String, String)| {
            let (src, dst) = (r(&src), r(&dst));
            let copied = fs::read(&src).and_then(|data| {
                let mode = fs::metadata(&src)?.permissions().mode();
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&dst)?;
                out.write_all(&data)?;
                fs::set_permissions(&dst, fs::Permissions::from_mode(mode))
            });
            Ok(match copied {
                Ok(()) => MultiValue::new(),
                Err(_) => MultiValue::from_vec(vec![Value::Integer(2)]),
            })
        })
        .unwrap(),
    )
    .unwrap();
    let r = Rc::clone(resolve);
    // lua_pkg_filecmp: 0 equal, 1 different, 2 when either is missing.
    pkg.set(
        "filecmp",
        lua.create_function(move |_, (a, b): (String, String)| {
            Ok(match (fs::read(r(&a)), fs::read(r(&b))) {
                (Ok(x), Ok(y)) => i64::from(x != y),
                _ => 2,
            })
        })
        .unwrap(),
    )
    .unwrap();
    pkg.set(
        "print_msg",
        lua.create_function(move |_, text: String| {
            messages.borrow_mut().push(text);
            Ok(())
        })
        .unwrap(),
    )
    .unwrap();
    pkg
}

/// `os` as lua_override_ios leaves it for scripts: remove beneath rootfd,
/// nothing that runs commands.
fn os_table(lua: &Lua, resolve: &Resolve) -> mlua::Table {
    let os = lua.create_table().unwrap();
    let r = Rc::clone(resolve);
    os.set(
        "remove",
        lua.create_function(move |_, path: String| {
            Ok(match fs::remove_file(r(&path)) {
                Ok(()) => (Some(true), None),
                Err(e) => (None, Some(e.to_string())),
            })
        })
        .unwrap(),
    )
    .unwrap();
    os
}

/// The @sample pairs of the project's pkg-plist with their Lua, and where
/// each sample's content comes from in this repository.
struct ProjectSample {
    sample: String,
    target: String,
    source: PathBuf,
    install: String,
    remove: String,
}

fn project_samples() -> Vec<ProjectSample> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let loaded = freebsd_pkg::metadata::load(&workspace.join("Cargo.toml")).unwrap();
    let meta = &loaded.metadata;
    let mut vars = meta.plist_sub.clone();
    vars.insert("PREFIX".to_owned(), meta.prefix.clone());
    let subs = Substitutions {
        vars,
        options: meta.options.clone(),
    };
    let plist_path = workspace.join(&meta.plist);
    let text = fs::read_to_string(&plist_path).unwrap();
    let parsed = plist::parse(&text, &plist_path, &meta.prefix, &subs).unwrap();
    let installs = &parsed.lua_scripts[&ScriptKind::PostInstall];
    let removes = &parsed.lua_scripts[&ScriptKind::PreDeinstall];
    let samples: Vec<_> = parsed
        .files
        .iter()
        .filter(|f| f.key.ends_with(".sample"))
        .collect();
    assert_eq!(samples.len(), installs.len());
    samples
        .iter()
        .zip(installs.iter().zip(removes))
        .map(|(file, (install, remove))| {
            let source = workspace.join(meta.sources[&file.key].as_str());
            ProjectSample {
                target: file.path.trim_end_matches(".sample").to_owned(),
                sample: file.path.clone(),
                source,
                install: install.clone(),
                remove: remove.clone(),
            }
        })
        .collect()
}

/// Every sample installed into the root, with the mode the package gives it.
fn installed(machine: &Machine, samples: &[ProjectSample]) {
    for s in samples {
        let content = fs::read_to_string(&s.source).unwrap();
        put(&machine.in_root(&s.sample), &content, 0o644);
    }
}

/// The host has its own files at the same paths, which must stay as they are.
fn host_has_its_own(machine: &Machine, samples: &[ProjectSample]) -> BTreeMap<PathBuf, String> {
    samples
        .iter()
        .flat_map(|s| [&s.sample, &s.target])
        .map(|path| {
            let file = machine.on_host(path);
            put(&file, "the host's own file\n", 0o600);
            (file, "the host's own file\n".to_owned())
        })
        .collect()
}

fn assert_host_untouched(machine: &Machine, host: &BTreeMap<PathBuf, String>) {
    for (file, content) in host {
        assert_eq!(
            &fs::read_to_string(file).unwrap(),
            content,
            "{}",
            file.display()
        );
    }
    assert!(
        machine.escapes.borrow().is_empty(),
        "{:?}",
        machine.escapes.borrow()
    );
}

#[test]
fn the_project_ships_both_configuration_files_as_samples() {
    let targets: Vec<_> = project_samples().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        [
            "/usr/local/etc/hv_vssd.conf",
            "/usr/local/etc/devd/hyperv-vss.conf"
        ]
    );
}

#[test]
fn install_creates_each_configuration_from_its_sample() {
    let machine = Machine::new();
    let samples = project_samples();
    let host = host_has_its_own(&machine, &samples);
    installed(&machine, &samples);
    for s in &samples {
        machine.run(&s.install, false);
        let target = machine.in_root(&s.target);
        assert_eq!(
            fs::read(&target).unwrap(),
            fs::read(machine.in_root(&s.sample)).unwrap()
        );
        // Writable by root: pkg.copy keeps the sample's 0644.
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
    assert!(machine.messages().is_empty(), "{:?}", machine.messages());
    assert_host_untouched(&machine, &host);
}

#[test]
fn install_keeps_a_configuration_that_already_exists() {
    let machine = Machine::new();
    let samples = project_samples();
    installed(&machine, &samples);
    for s in &samples {
        put(&machine.in_root(&s.target), "# mine\n", 0o600);
        machine.run(&s.install, false);
        assert_eq!(
            fs::read_to_string(machine.in_root(&s.target)).unwrap(),
            "# mine\n"
        );
    }
}

#[test]
fn delete_removes_an_unchanged_configuration() {
    let machine = Machine::new();
    let samples = project_samples();
    let host = host_has_its_own(&machine, &samples);
    installed(&machine, &samples);
    for s in &samples {
        machine.run(&s.install, false);
        machine.run(&s.remove, false);
        assert!(!machine.in_root(&s.target).exists(), "{}", s.target);
    }
    assert!(machine.messages().is_empty(), "{:?}", machine.messages());
    assert_host_untouched(&machine, &host);
}

#[test]
fn delete_keeps_a_modified_configuration_and_says_so() {
    let machine = Machine::new();
    let samples = project_samples();
    let host = host_has_its_own(&machine, &samples);
    installed(&machine, &samples);
    for s in &samples {
        machine.run(&s.install, false);
        let target = machine.in_root(&s.target);
        let edited = fs::read_to_string(&target).unwrap() + "# edited by the administrator\n";
        fs::write(&target, &edited).unwrap();
        machine.run(&s.remove, false);
        assert_eq!(fs::read_to_string(&target).unwrap(), edited);
    }
    let messages = machine.messages();
    assert_eq!(messages.len(), samples.len(), "{messages:?}");
    for (message, s) in messages.iter().zip(&samples) {
        assert!(
            message.starts_with(&format!("Keeping modified {}", s.target)),
            "{message}"
        );
    }
    assert_host_untouched(&machine, &host);
}

#[test]
fn upgrade_keeps_an_edit_quietly_and_refreshes_an_unedited_file() {
    let machine = Machine::new();
    let samples = project_samples();
    installed(&machine, &samples);
    let (edited, unedited) = (&samples[1], &samples[0]);
    for s in &samples {
        machine.run(&s.install, false);
    }
    let edited_target = machine.in_root(&edited.target);
    fs::write(&edited_target, "# disabled by the administrator\n").unwrap();
    // pkg upgrade: the old package's pre-deinstall, the new files, then the
    // new package's post-install (libpkg/pkg_add.c, pkg_add_cleanup_old).
    for s in &samples {
        machine.run(&s.remove, true);
    }
    for s in &samples {
        put(&machine.in_root(&s.sample), "# version 2\n", 0o644);
        machine.run(&s.install, true);
    }
    assert_eq!(
        fs::read_to_string(&edited_target).unwrap(),
        "# disabled by the administrator\n"
    );
    assert_eq!(
        fs::read_to_string(machine.in_root(&unedited.target)).unwrap(),
        "# version 2\n"
    );
    assert!(machine.messages().is_empty(), "{:?}", machine.messages());
}

#[test]
fn a_script_reaching_past_the_fake_would_fail() {
    // The harness is only a proof if it refuses what pkg's Lua lacks.
    let machine = Machine::new();
    let escaped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        machine.run("io.open('/etc/passwd')", false);
    }));
    assert!(escaped.is_err());
    machine.run("pkg.stat('/../x')", false);
    assert_eq!(*machine.escapes.borrow(), ["/../x"]);
}
