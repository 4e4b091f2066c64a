//! The scripts the ports tree's keyword files attach to `@sample` and
//! `@kld` (freebsd-ports Keywords/sample.ucl and Keywords/kld.ucl), written
//! out by pkg-rs because a package built outside the ports tree has no
//! Keywords/ directory to expand them.
//!
//! Every path they touch is relative to the root pkg installs into, so
//! `pkg -r ROOT` (and a chroot) never reaches the host's files:
//! - `@sample` is Lua: pkg runs it with `rootfd` open on the target root and
//!   its `pkg.stat`, `pkg.copy`, `pkg.filecmp` and the `os.remove` it
//!   replaces resolve every path beneath it (libpkg/lua.c);
//! - `@kld` is shell, which pkg runs with `PKG_ROOTDIR` set
//!   (libpkg/scripts.c), so kldxref gets `${PKG_ROOTDIR}/<dir>`.

/// Where a keyword's path points: inside the package prefix (written
/// relative, so `pkg.prefixed_path` follows a relocated prefix, as the
/// ports' `%1` does) or elsewhere (absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordPath {
    /// The absolute install path.
    pub absolute: String,
    /// The same path relative to the prefix, when it is inside it.
    pub in_prefix: Option<String>,
}

impl KeywordPath {
    /// Classify `absolute` against `prefix`.
    pub fn new(absolute: &str, prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        let in_prefix = absolute
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty() && !prefix.is_empty())
            .map(str::to_owned);
        Self {
            absolute: absolute.to_owned(),
            in_prefix,
        }
    }

    /// A Lua expression for the path on the target system.
    fn lua(&self) -> String {
        match &self.in_prefix {
            Some(relative) => format!("pkg.prefixed_path({})", lua_string(relative)),
            None => lua_string(&self.absolute),
        }
    }
}

/// `@sample`'s post-install Lua: create the configuration from the sample
/// unless it exists. `pkg.copy` keeps the sample's mode and owner, and
/// returns nothing on success, a number on failure.
pub fn sample_post_install(sample: &KeywordPath, target: &KeywordPath) -> String {
    format!(
        "-- @sample {sample_abs}: create {target_abs} from it unless it exists\n\
         local sample = {sample}\n\
         local target = {target}\n\
         if not pkg.stat(target) then\n\
         \tif pkg.copy(sample, target) ~= nil then\n\
         \t\tpkg.print_msg(\"Could not create \" .. target .. \" from \" .. sample)\n\
         \tend\n\
         end\n",
        sample_abs = sample.absolute,
        target_abs = target.absolute,
        sample = sample.lua(),
        target = target.lua(),
    )
}

/// `@sample`'s pre-deinstall Lua: remove the configuration when it still
/// equals the sample, keep it (and say so, except during an upgrade, whose
/// new post-install leaves it alone) when the administrator changed it.
pub fn sample_pre_deinstall(sample: &KeywordPath, target: &KeywordPath) -> String {
    format!(
        "-- @sample {sample_abs}: remove {target_abs} unless it was changed\n\
         local sample = {sample}\n\
         local target = {target}\n\
         if pkg.filecmp(sample, target) == 0 then\n\
         \tos.remove(target)\n\
         elseif pkg.stat(target) and not pkg_upgrade then\n\
         \tpkg.print_msg(\"Keeping modified \" .. target .. \": remove it by hand when it is no longer needed.\")\n\
         end\n",
        sample_abs = sample.absolute,
        target_abs = target.absolute,
        sample = sample.lua(),
        target = target.lua(),
    )
}

/// `@kld`'s post-install shell: rebuild the module directory's linker.hints
/// inside the target root.
pub fn kld_post_install(dir: &str) -> String {
    format!("/usr/sbin/kldxref \"${{PKG_ROOTDIR}}{dir}\"")
}

/// `@kld`'s post-deinstall shell: rebuild linker.hints, and remove the
/// directory when it is the package's own and now empty (kld.ucl keeps
/// `/boot/modules` and directories inside the prefix).
pub fn kld_post_deinstall(dir: &str, prefix: &str) -> String {
    let install = kld_post_install(dir);
    let in_prefix = dir.starts_with(&format!("{}/", prefix.trim_end_matches('/')));
    if dir == "/boot/modules" || in_prefix {
        install
    } else {
        format!("{install}\nrmdir -p \"${{PKG_ROOTDIR}}{dir}\" 2>/dev/null || true")
    }
}

/// A Lua string literal: `\` and `"` escaped, control and non-ASCII bytes
/// as decimal escapes, so any path is one literal.
fn lua_string(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(byte));
            }
            0x20..=0x7e => out.push(char::from(byte)),
            _ => {
                let _ = write!(out, "\\{byte:03}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_the_prefix_use_prefixed_path_others_stay_absolute() {
        let inside = KeywordPath::new("/usr/local/etc/x.conf", "/usr/local");
        assert_eq!(inside.lua(), "pkg.prefixed_path(\"etc/x.conf\")");
        let outside = KeywordPath::new("/etc/x.conf", "/usr/local");
        assert_eq!(outside.lua(), "\"/etc/x.conf\"");
        assert_eq!(
            KeywordPath::new("/usr/localx/y", "/usr/local").in_prefix,
            None
        );
    }

    #[test]
    fn lua_strings_escape_quotes_backslashes_and_bytes() {
        assert_eq!(lua_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(lua_string("caf\u{e9}"), "\"caf\\195\\169\"");
    }

    #[test]
    fn sample_scripts_use_only_root_relative_calls() {
        let sample = KeywordPath::new("/usr/local/etc/d.conf.sample", "/usr/local");
        let target = KeywordPath::new("/usr/local/etc/d.conf", "/usr/local");
        let install = sample_post_install(&sample, &target);
        assert!(install.contains("pkg.copy(sample, target)"), "{install}");
        let remove = sample_pre_deinstall(&sample, &target);
        assert!(remove.contains("os.remove(target)"), "{remove}");
        for script in [&install, &remove] {
            assert!(!script.contains("io."), "{script}");
            assert!(!script.contains("os.execute"), "{script}");
            assert!(!script.contains("pkg.exec"), "{script}");
        }
    }

    #[test]
    fn kld_scripts_prefix_the_directory_with_pkg_rootdir() {
        assert_eq!(
            kld_post_install("/boot/modules"),
            "/usr/sbin/kldxref \"${PKG_ROOTDIR}/boot/modules\""
        );
        assert!(!kld_post_deinstall("/boot/modules", "/usr/local").contains("rmdir"));
        assert!(!kld_post_deinstall("/usr/local/lib/mods", "/usr/local").contains("rmdir"));
        assert!(
            kld_post_deinstall("/boot/demo", "/usr/local")
                .ends_with("rmdir -p \"${PKG_ROOTDIR}/boot/demo\" 2>/dev/null || true")
        );
    }
}
