//! The ports packing list (`pkg-plist`), parsed once into files, directories
//! and the scripts its keywords imply.
//!
//! Supported, as pkg-create(8) and the ports tree define them: plain paths
//! (relative to the prefix, or absolute), `%%KEY%%` substitution and option
//! markers (`%%OPT%%` / `%%NO_OPT%%`), `@comment`, `@cwd`/`@cd`, `@owner`,
//! `@group`, `@mode`, `@(owner,group,mode) path`, `@dir`, `@sample`, and the
//! script keywords `@exec`, `@unexec`, `@preexec`, `@postexec`, `@preunexec`,
//! `@postunexec`, and the ports tree's keywords `@sample` and `@kld`, expanded
//! into the scripts their keyword files attach (see [`crate::keywords`]),
//! because a package built outside the ports tree has no Keywords/ to read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::keywords::{self, KeywordPath};

/// What `%%KEY%%` expands to.
#[derive(Debug, Clone, Default)]
pub struct Substitutions {
    /// Plain variables, e.g. `PREFIX` → `/usr/local`.
    pub vars: BTreeMap<String, String>,
    /// Options: `%%OPT%%` is empty when on and `@comment ` when off;
    /// `%%NO_OPT%%` is the opposite.
    pub options: BTreeMap<String, bool>,
}

/// The directories bsd.port.mk gives relative to PREFIX in PLIST_SUB
/// (EXAMPLESDIR=${EXAMPLESDIR_REL}, ...) and absolute in SUB_LIST.
const PREFIXED_DIRS: [&str; 5] = ["DATADIR", "DOCSDIR", "EXAMPLESDIR", "WWWDIR", "ETCDIR"];

impl Substitutions {
    /// The substitutions for `.in` files and the message (the ports'
    /// SUB_LIST): the same, with the `*DIR` directories made absolute under
    /// PREFIX, as bsd.port.mk does, since those texts name installed paths.
    #[must_use]
    pub fn for_files(&self) -> Self {
        let mut files = self.clone();
        let prefix = self.vars.get("PREFIX").cloned().unwrap_or_default();
        for key in PREFIXED_DIRS {
            if let Some(dir) = files.vars.get_mut(key) {
                if !dir.starts_with('/') {
                    *dir = format!("{}/{dir}", prefix.trim_end_matches('/'));
                }
            }
        }
        files
    }

    /// Expand every `%%KEY%%` in `text`; `Err` names the first unknown key.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("%%") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("%%") else {
                // A lone "%%" is text (e.g. `%%` in a shell printf), keep it.
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let key = &after[..end];
            out.push_str(&self.lookup(key).ok_or_else(|| key.to_owned())?);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&self, key: &str) -> Option<String> {
        if let Some(value) = self.vars.get(key) {
            return Some(value.clone());
        }
        let comment = |off: bool| if off { "@comment " } else { "" }.to_owned();
        if let Some(&on) = self.options.get(key) {
            return Some(comment(!on));
        }
        let negated = key.strip_prefix("NO_")?;
        self.options.get(negated).map(|&on| comment(on))
    }
}

/// Owner, group and mode given in the plist; `None` means "the default".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// User name.
    pub owner: Option<String>,
    /// Group name.
    pub group: Option<String>,
    /// Permission bits.
    pub mode: Option<u32>,
}

impl Attributes {
    /// The owner, `root` when the plist names none (as the ports install).
    #[must_use]
    pub fn owner_or_root(&self) -> String {
        self.owner.clone().unwrap_or_else(|| "root".to_owned())
    }

    /// The group, `wheel` when the plist names none (as the ports install).
    #[must_use]
    pub fn group_or_wheel(&self) -> String {
        self.group.clone().unwrap_or_else(|| "wheel".to_owned())
    }
}

/// A file to package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlistFile {
    /// The path as written (after substitution): relative to the prefix or absolute.
    /// This is the key `sources` are looked up by.
    pub key: String,
    /// Absolute install path.
    pub path: String,
    /// Attributes from the plist.
    pub attributes: Attributes,
    /// 1-based line in the plist.
    pub line: usize,
}

/// A directory the package owns (`@dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlistDir {
    /// Absolute path.
    pub path: String,
    /// Attributes from the plist.
    pub attributes: Attributes,
    /// 1-based line in the plist.
    pub line: usize,
}

/// The kinds of pkg scripts, in manifest spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScriptKind {
    /// Before files are installed.
    PreInstall,
    /// After files are installed.
    PostInstall,
    /// Before files are removed.
    PreDeinstall,
    /// After files are removed.
    PostDeinstall,
}

impl ScriptKind {
    /// Every kind, in the order pkg runs them.
    pub const ALL: [Self; 4] = [
        Self::PreInstall,
        Self::PostInstall,
        Self::PreDeinstall,
        Self::PostDeinstall,
    ];

    /// The manifest key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreInstall => "pre-install",
            Self::PostInstall => "post-install",
            Self::PreDeinstall => "pre-deinstall",
            Self::PostDeinstall => "post-deinstall",
        }
    }

    /// Parse a manifest key.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ScriptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed packing list.
#[derive(Debug, Clone, Default)]
pub struct Plist {
    /// Files, in plist order.
    pub files: Vec<PlistFile>,
    /// `@dir` directories, in plist order.
    pub dirs: Vec<PlistDir>,
    /// Shell lines the keywords add to each script, in plist order.
    pub scripts: BTreeMap<ScriptKind, Vec<String>>,
    /// Lua scripts the keywords add (`@sample`), each one script, in plist order.
    pub lua_scripts: BTreeMap<ScriptKind, Vec<String>>,
    /// Paths on lines switched off by an option (`@comment path`): their
    /// sources are expected to be unused.
    pub disabled: BTreeSet<String>,
}

/// A plist line pkg-rs cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {problem}\nfix: {fix}")]
pub struct PlistError {
    /// The plist file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

const KEYWORDS: &str = "@comment, @cwd, @owner, @group, @mode, @(owner,group,mode), @dir, @sample, \
                        @kld, @exec, @unexec, @preexec, @postexec, @preunexec, @postunexec";

struct Parser<'a> {
    file: &'a Path,
    prefix: String,
    cwd: String,
    defaults: Attributes,
    last_file: Option<String>,
    seen: BTreeSet<String>,
    plist: Plist,
}

/// Parse plist text. `file` only names the plist in errors.
pub fn parse(
    text: &str,
    file: &Path,
    prefix: &str,
    subs: &Substitutions,
) -> Result<Plist, PlistError> {
    let mut parser = Parser {
        file,
        prefix: normalize_dir(prefix),
        cwd: normalize_dir(prefix),
        defaults: Attributes::default(),
        last_file: None,
        seen: BTreeSet::new(),
        plist: Plist::default(),
    };
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let expanded = subs.expand(raw).map_err(|key| PlistError {
            file: file.to_owned(),
            line,
            problem: format!("unknown substitution %%{key}%%"),
            fix: format!(
                "define {key} under plist-sub (a value) or options (true/false) in the \
                 freebsd-pkg metadata, or pass --var/--with/--without"
            ),
        })?;
        parser.line(expanded.trim_end(), line)?;
    }
    Ok(parser.plist)
}

impl Parser<'_> {
    fn error(&self, line: usize, problem: impl Into<String>, fix: impl Into<String>) -> PlistError {
        PlistError {
            file: self.file.to_owned(),
            line,
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    fn line(&mut self, text: &str, line: usize) -> Result<(), PlistError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        if !text.starts_with('@') {
            let attributes = self.defaults.clone();
            return self.file_entry(text, attributes, line);
        }
        let (keyword, argument) = match text.find(char::is_whitespace) {
            Some(at) => (&text[..at], text[at..].trim()),
            None => (text, ""),
        };
        // `@keyword(owner,group,mode)` carries attributes for this line only.
        let (name, attributes) = match keyword.find('(') {
            Some(open) => (
                &keyword[..open],
                Some(self.attributes(&keyword[open..], line)?),
            ),
            None => (keyword, None),
        };
        match (name, attributes) {
            ("@comment", None) => {
                if !argument.is_empty() && !argument.starts_with('@') {
                    self.plist.disabled.insert(argument.to_owned());
                }
                Ok(())
            }
            ("@", Some(attrs)) => {
                let attrs = self.merge(attrs);
                self.file_entry(argument, attrs, line)
            }
            ("@dir", attrs) => {
                let attrs = self.merge(attrs.unwrap_or_default());
                self.dir_entry(argument, attrs, line)
            }
            ("@sample", attrs) => {
                let attrs = self.merge(attrs.unwrap_or_default());
                self.sample(argument, attrs, line)
            }
            ("@kld", None) => self.kld(argument, line),
            ("@cwd" | "@cd", None) => {
                self.cwd = if argument.is_empty() {
                    self.prefix.clone()
                } else {
                    normalize_dir(argument)
                };
                Ok(())
            }
            ("@owner", None) => {
                self.defaults.owner = non_empty(argument);
                Ok(())
            }
            ("@group", None) => {
                self.defaults.group = non_empty(argument);
                Ok(())
            }
            ("@mode", None) => {
                self.defaults.mode = match non_empty(argument) {
                    Some(mode) => Some(self.mode(&mode, line)?),
                    None => None,
                };
                Ok(())
            }
            ("@exec" | "@postexec", None) => self.script(ScriptKind::PostInstall, argument, line),
            ("@preexec", None) => self.script(ScriptKind::PreInstall, argument, line),
            ("@unexec" | "@postunexec", None) => {
                self.script(ScriptKind::PostDeinstall, argument, line)
            }
            ("@preunexec", None) => self.script(ScriptKind::PreDeinstall, argument, line),
            _ => Err(self.error(
                line,
                format!("unsupported plist keyword `{keyword}`"),
                format!("use one of {KEYWORDS}"),
            )),
        }
    }

    /// Per-line attributes override the `@owner`/`@group`/`@mode` defaults field by field.
    fn merge(&self, line_attrs: Attributes) -> Attributes {
        Attributes {
            owner: line_attrs.owner.or_else(|| self.defaults.owner.clone()),
            group: line_attrs.group.or_else(|| self.defaults.group.clone()),
            mode: line_attrs.mode.or(self.defaults.mode),
        }
    }

    fn attributes(&self, spec: &str, line: usize) -> Result<Attributes, PlistError> {
        let fix = "write @(owner,group,mode), e.g. @(root,wheel,0555); fields may be empty";
        let inner = spec
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| self.error(line, format!("malformed attributes `{spec}`"), fix))?;
        let fields: Vec<&str> = inner.split(',').map(str::trim).collect();
        if fields.len() > 3 {
            return Err(self.error(line, format!("too many attribute fields in `{spec}`"), fix));
        }
        let field = |i: usize| fields.get(i).and_then(|f| non_empty(f));
        Ok(Attributes {
            owner: field(0),
            group: field(1),
            mode: match field(2) {
                Some(mode) => Some(self.mode(&mode, line)?),
                None => None,
            },
        })
    }

    fn mode(&self, text: &str, line: usize) -> Result<u32, PlistError> {
        u32::from_str_radix(text, 8)
            .ok()
            .filter(|&m| m <= 0o7777)
            .ok_or_else(|| {
                self.error(
                    line,
                    format!("invalid mode `{text}`"),
                    "give an octal mode of at most 4 digits, e.g. 0444 or 0555",
                )
            })
    }

    fn absolute(&self, path: &str, line: usize) -> Result<String, PlistError> {
        let full = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("{}/{path}", self.cwd.trim_end_matches('/'))
        };
        let bad = full
            .split('/')
            .skip(1)
            .any(|c| c.is_empty() || c == "." || c == "..");
        if !full.starts_with('/') || bad || full.contains('\'') || full.contains('\n') {
            return Err(self.error(
                line,
                format!("invalid path `{path}` (resolves to `{full}`)"),
                "write a normalized path without empty, `.` or `..` components or quotes",
            ));
        }
        Ok(full)
    }

    fn file_entry(
        &mut self,
        key: &str,
        attributes: Attributes,
        line: usize,
    ) -> Result<(), PlistError> {
        if key.is_empty() {
            return Err(self.error(line, "missing path", "write the path after the keyword"));
        }
        let path = self.absolute(key, line)?;
        if !self.seen.insert(path.clone()) {
            return Err(self.error(
                line,
                format!("`{path}` is listed twice"),
                "remove the duplicate line",
            ));
        }
        self.last_file = Some(key.to_owned());
        self.plist.files.push(PlistFile {
            key: key.to_owned(),
            path,
            attributes,
            line,
        });
        Ok(())
    }

    fn dir_entry(
        &mut self,
        dir: &str,
        attributes: Attributes,
        line: usize,
    ) -> Result<(), PlistError> {
        if dir.is_empty() {
            return Err(self.error(line, "@dir without a path", "write @dir <path>"));
        }
        let path = self.absolute(dir.trim_end_matches('/'), line)?;
        self.plist.dirs.push(PlistDir {
            path,
            attributes,
            line,
        });
        Ok(())
    }

    fn sample(
        &mut self,
        argument: &str,
        attributes: Attributes,
        line: usize,
    ) -> Result<(), PlistError> {
        let mut words = argument.split_whitespace();
        let (Some(sample), target, None) = (words.next(), words.next(), words.next()) else {
            return Err(self.error(
                line,
                "@sample needs one or two paths",
                "write @sample etc/foo.conf.sample [etc/foo.conf]",
            ));
        };
        let target = match target {
            Some(target) => target.to_owned(),
            None => sample
                .strip_suffix(".sample")
                .ok_or_else(|| {
                    self.error(
                        line,
                        format!("`{sample}` does not end in .sample"),
                        "name the sample file *.sample or give the target path as a second word",
                    )
                })?
                .to_owned(),
        };
        let sample_path = KeywordPath::new(&self.absolute(sample, line)?, &self.prefix);
        let target_path = KeywordPath::new(&self.absolute(&target, line)?, &self.prefix);
        self.file_entry(sample, attributes, line)?;
        self.push_lua(
            ScriptKind::PostInstall,
            keywords::sample_post_install(&sample_path, &target_path),
        );
        self.push_lua(
            ScriptKind::PreDeinstall,
            keywords::sample_pre_deinstall(&sample_path, &target_path),
        );
        Ok(())
    }

    /// `@kld DIR`: kldxref the module directory after install and removal.
    fn kld(&mut self, argument: &str, line: usize) -> Result<(), PlistError> {
        if argument.is_empty() || argument.contains(char::is_whitespace) {
            return Err(self.error(
                line,
                "@kld needs one directory",
                "write @kld /boot/modules (the directory holding the .ko files)",
            ));
        }
        let dir = self.absolute(argument.trim_end_matches('/'), line)?;
        self.push_script(ScriptKind::PostInstall, keywords::kld_post_install(&dir));
        self.push_script(
            ScriptKind::PostDeinstall,
            keywords::kld_post_deinstall(&dir, &self.prefix),
        );
        Ok(())
    }

    fn push_lua(&mut self, kind: ScriptKind, script: String) {
        self.plist.lua_scripts.entry(kind).or_default().push(script);
    }

    fn script(&mut self, kind: ScriptKind, command: &str, line: usize) -> Result<(), PlistError> {
        if command.is_empty() {
            return Err(self.error(
                line,
                "script keyword without a command",
                "write the shell command after the keyword",
            ));
        }
        let expanded = self.percent(command, line)?;
        self.push_script(kind, expanded);
        Ok(())
    }

    fn push_script(&mut self, kind: ScriptKind, text: String) {
        self.plist.scripts.entry(kind).or_default().push(text);
    }

    /// pkg-create(8)'s `%D` (cwd), `%F` (last file as written), `%f` (its base
    /// name), `%B` (its absolute directory) and `%%`.
    fn percent(&self, command: &str, line: usize) -> Result<String, PlistError> {
        let mut out = String::new();
        let mut chars = command.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let code = chars.next();
            let last = || {
                self.last_file.clone().ok_or_else(|| {
                    self.error(
                        line,
                        "%F, %f or %B before any file",
                        "move the line below the file it refers to",
                    )
                })
            };
            match code {
                Some('D') => out.push_str(&self.cwd),
                Some('%') => out.push('%'),
                Some('F') => out.push_str(&last()?),
                Some('f') => {
                    let file = last()?;
                    out.push_str(file.rsplit('/').next().unwrap_or(&file));
                }
                Some('B') => {
                    let absolute = self.absolute(&last()?, line)?;
                    out.push_str(absolute.rsplit_once('/').map_or("/", |(dir, _)| dir));
                }
                other => {
                    return Err(self.error(
                        line,
                        format!(
                            "unknown escape `%{}`",
                            other.map(String::from).unwrap_or_default()
                        ),
                        "use %D, %F, %f, %B or %% (write %% for a literal percent sign)",
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// `/usr/local/` → `/usr/local`, but `/` stays `/`.
fn normalize_dir(dir: &str) -> String {
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs() -> Substitutions {
        Substitutions {
            vars: BTreeMap::from([("KMODDIR".to_owned(), "boot/modules".to_owned())]),
            options: BTreeMap::from([("KMOD".to_owned(), false), ("DOCS".to_owned(), true)]),
        }
    }

    fn parse_ok(text: &str) -> Plist {
        parse(text, Path::new("pkg-plist"), "/usr/local", &subs()).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(text, Path::new("pkg-plist"), "/usr/local", &subs())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn files_see_the_port_directories_absolute_as_sub_list_gives_them() {
        let plist = Substitutions {
            vars: BTreeMap::from([
                ("PREFIX".to_owned(), "/usr/local".to_owned()),
                ("EXAMPLESDIR".to_owned(), "share/examples/x".to_owned()),
                ("ETCDIR".to_owned(), "/etc/x".to_owned()),
            ]),
            options: BTreeMap::new(),
        };
        assert_eq!(
            plist.expand("%%EXAMPLESDIR%%/a").unwrap(),
            "share/examples/x/a"
        );
        let files = plist.for_files();
        assert_eq!(
            files.expand("%%EXAMPLESDIR%%/a").unwrap(),
            "/usr/local/share/examples/x/a"
        );
        assert_eq!(files.expand("%%ETCDIR%%").unwrap(), "/etc/x");
    }

    #[test]
    fn plain_and_absolute_paths_resolve_against_prefix() {
        let plist = parse_ok("sbin/d\n/boot/x.ko\n\n@comment hi\n");
        let paths: Vec<_> = plist.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["/usr/local/sbin/d", "/boot/x.ko"]);
        assert_eq!(plist.files[0].key, "sbin/d");
        assert_eq!(plist.files[1].line, 2);
    }

    #[test]
    fn options_switch_lines_and_record_disabled_paths() {
        let plist = parse_ok(
            "%%KMOD%%@cwd /\n%%KMOD%%%%KMODDIR%%/a.ko\n%%NO_KMOD%%sbin/b\n%%DOCS%%share/doc/x\n",
        );
        let keys: Vec<_> = plist.files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["sbin/b", "share/doc/x"]);
        assert!(plist.disabled.contains("boot/modules/a.ko"));
    }

    #[test]
    fn attributes_merge_with_defaults() {
        let plist = parse_ok("@owner root\n@mode 0644\n@(,operator,0550) sbin/x\n@mode\nsbin/y\n");
        assert_eq!(
            plist.files[0].attributes,
            Attributes {
                owner: Some("root".into()),
                group: Some("operator".into()),
                mode: Some(0o550)
            }
        );
        assert_eq!(plist.files[1].attributes.mode, None);
    }

    #[test]
    fn sample_packages_the_sample_and_writes_lua_not_shell() {
        let plist = parse_ok("@sample etc/d.conf.sample\n@sample /etc/x.sample /etc/x.conf\n");
        assert_eq!(plist.files[0].path, "/usr/local/etc/d.conf.sample");
        assert_eq!(plist.files[1].path, "/etc/x.sample");
        assert!(plist.scripts.is_empty(), "{:?}", plist.scripts);
        let post = &plist.lua_scripts[&ScriptKind::PostInstall];
        assert_eq!(post.len(), 2);
        assert!(
            post[0].contains("pkg.prefixed_path(\"etc/d.conf\")"),
            "{}",
            post[0]
        );
        assert!(
            post[1].contains("local target = \"/etc/x.conf\""),
            "{}",
            post[1]
        );
        let pre = &plist.lua_scripts[&ScriptKind::PreDeinstall];
        assert!(pre[0].contains("pkg.filecmp(sample, target)"), "{}", pre[0]);
    }

    #[test]
    fn kld_writes_kldxref_under_pkg_rootdir() {
        let plist = parse_ok("@cwd /\nboot/modules/a.ko\n@kld /boot/modules\n");
        assert_eq!(
            plist.scripts[&ScriptKind::PostInstall],
            ["/usr/sbin/kldxref \"${PKG_ROOTDIR}/boot/modules\""]
        );
        assert_eq!(
            plist.scripts[&ScriptKind::PostDeinstall],
            ["/usr/sbin/kldxref \"${PKG_ROOTDIR}/boot/modules\""]
        );
        assert!(parse_err("@kld\n").contains("@kld needs one directory"));
    }

    #[test]
    fn exec_expands_percent_escapes() {
        let plist = parse_ok(
            "@cwd /\nboot/modules/a.ko\n@exec /usr/sbin/kldxref %B\n@unexec echo %f %D %%\n",
        );
        assert_eq!(
            plist.scripts[&ScriptKind::PostInstall],
            ["/usr/sbin/kldxref /boot/modules"]
        );
        assert_eq!(plist.scripts[&ScriptKind::PostDeinstall], ["echo a.ko / %"]);
    }

    #[test]
    fn dir_is_recorded_with_attributes() {
        let plist = parse_ok("@dir(root,wheel,0750) etc/hooks.d/\n");
        assert_eq!(plist.dirs[0].path, "/usr/local/etc/hooks.d");
        assert_eq!(plist.dirs[0].attributes.mode, Some(0o750));
    }

    #[test]
    fn errors_name_file_line_and_fix() {
        let err = parse_err("sbin/a\n@shell bin/sh\n");
        assert!(
            err.starts_with("pkg-plist:2: unsupported plist keyword `@shell`"),
            "{err}"
        );
        assert!(err.contains("\nfix: use one of @comment"), "{err}");

        let err = parse_err("%%NOPE%%sbin/a\n");
        assert!(
            err.starts_with("pkg-plist:1: unknown substitution %%NOPE%%"),
            "{err}"
        );
        assert!(err.contains("plist-sub"), "{err}");

        assert!(parse_err("@(root,wheel,999) sbin/a\n").contains("invalid mode `999`"));
        assert!(parse_err("sbin/../etc/x\n").contains("invalid path"));
        assert!(
            parse_err("sbin/a\nsbin/a\n")
                .starts_with("pkg-plist:2: `/usr/local/sbin/a` is listed twice")
        );
        assert!(parse_err("@sample etc/x.conf\n").contains("does not end in .sample"));
        assert!(parse_err("@exec echo %Q\n").contains("unknown escape `%Q`"));
    }
}
