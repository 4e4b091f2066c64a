"""No drift between the Hyper-V pipeline and the packaging.

tests/hyperv/expected-files lists every file the pipeline's provisioning
expects in the guest, by package; guest/provision.sh fails the image build
unless `pkg query %Fp <package>` in the guest lists exactly those. This
check fails CI unless that list is exactly what the packaging produces:

  hyperv-vss       pkg-plist (as pkg-rs and the port read it: PREFIX,
                   @sample, @dir, @cwd, option lines, PLIST_SUB values from
                   [workspace.metadata.freebsd-pkg] in Cargo.toml) plus the
                   rc.d scripts (rc-scripts there, USE_RC_SUBR in the port);
  hyperv-vss-kmod  PLIST_FILES of port/hyperv-vss-kmod/Makefile with KMODDIR, and the .ko
                   name agrees with KMOD= in kmod/Makefile when it exists.

It also checks that the daemon port and pkg-rs agree on the rc.d scripts
and on leaving the bundled module out, and what run.ps1 and the guest
scripts read from the daemon: the JSON fields of `hv_vssctl status -j`
(daemon/src/status.rs), the format of its per-request syslog line, and the
pidfile of the rc.d script. And the names the guest checks the channel
hand-over with: the VSS class GUID (proto/src/ic.rs) in guest/lib.sh and
run.ps1, our driver's name (kmod/glue), the module verify-boot.sh expects.

usage: python3 check_drift.py [--root REPO] [--expected FILE]
"""

import argparse
import re
import sys
import tomllib
from pathlib import Path

# Keywords that register no file of their own (pkg-create(8), Mk/Keywords).
NO_FILE_KEYWORDS = {
    "comment", "dir", "exec", "unexec", "preexec", "postexec",
    "preunexec", "postunexec", "mode", "owner", "group", "ldconfig",
    "rmtry", "info", "fc", "fcfontsdir", "fontsdir", "glib-schemas",
    "desktop-file-utils", "kld",
}


class Drift(Exception):
    """A difference that must fail CI; the message says what to fix."""


def plist_files(plist: Path, prefix: str, sub: dict, options: dict) -> set:
    """The files (absolute paths) a pkg-plist registers."""
    files = set()
    cwd = prefix
    for number, raw in enumerate(plist.read_text().splitlines(), 1):
        line = raw.strip()
        where = f"{plist}:{number}"
        # Option lines: %%OPT%% is removed when OPT is on, "@comment " when off.
        m = re.match(r"%%([A-Z0-9_]+)%%", line)
        while m and m.group(1) in options:
            if not options[m.group(1)]:
                line = ""
                break
            line = line[m.end() :]
            m = re.match(r"%%([A-Z0-9_]+)%%", line)
        for key, value in sub.items():
            line = line.replace(f"%%{key}%%", str(value))
        if not line:
            continue
        if "%%" in line:
            raise Drift(f"{where}: unknown substitution in {raw!r}: add it to plist-sub in Cargo.toml")
        if line.startswith("@"):
            keyword, _, rest = line[1:].partition(" ")
            rest = rest.strip()
            if keyword.startswith("("):  # @(owner,group,mode) file
                files.add(_join(cwd, rest))
            elif keyword == "cwd" or keyword == "cd":
                cwd = rest or prefix
            elif keyword == "sample":
                # The package registers the .sample; the copy is not registered.
                files.add(_join(cwd, rest.split()[0]))
            elif keyword == "shell":
                files.add(_join(cwd, rest))
            elif keyword in NO_FILE_KEYWORDS:
                continue
            else:
                raise Drift(f"{where}: keyword @{keyword} is not understood by this check; teach ci/check_drift.py")
        else:
            files.add(_join(cwd, line))
    return files


def _join(cwd: str, path: str) -> str:
    return path if path.startswith("/") else "/" + "/".join(p for p in (cwd.strip("/"), path) if p)


def make_var(makefile: Path, name: str) -> str | None:
    """The value of NAME= in a Makefile (with continuation lines), or None."""
    text = makefile.read_text().replace("\\\n", " ")
    m = re.search(rf"^{re.escape(name)}\??\+?=[ \t]*(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def plist_files_var(makefile: Path, prefix: str, sub: dict) -> set:
    """The files (absolute paths) a port's PLIST_FILES registers; ${VAR}s
    from `sub`, relative paths under PREFIX, as bsd.port.mk does."""
    value = make_var(makefile, "PLIST_FILES")
    if value is None:
        raise Drift(f"{makefile} sets no PLIST_FILES")
    files = set()
    for word in value.split():
        for key, replacement in sub.items():
            word = word.replace("${" + key + "}", str(replacement))
        if "${" in word:
            raise Drift(f"{makefile}: PLIST_FILES entry {word!r} uses an unknown variable")
        files.add(_join(prefix, word))
    return files


def read_expected(path: Path) -> dict:
    expected = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].startswith("/"):
            raise Drift(f"{path}:{number}: expected '<package> <absolute path>', got {raw!r}")
        expected.setdefault(fields[0], set()).add(fields[1])
    return expected


def compare(what: str, expected: set, produced: set, fix: str) -> list:
    errors = []
    for path in sorted(expected - produced):
        errors.append(f"{what}: {path} is expected by tests/hyperv but not produced by {fix}")
    for path in sorted(produced - expected):
        errors.append(f"{what}: {path} is produced by {fix} but missing from tests/hyperv/expected-files")
    return errors


def check(root: Path, expected_file: Path) -> list:
    expected = read_expected(expected_file)
    unknown = set(expected) - {"hyperv-vss", "hyperv-vss-kmod"}
    if unknown:
        raise Drift(f"{expected_file}: unknown packages {sorted(unknown)}")
    errors = []

    # --- hyperv-vss: pkg-plist as pkg-rs reads it ---------------------------
    meta = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["metadata"]["freebsd-pkg"]
    prefix = meta.get("prefix", "/usr/local")
    options = meta.get("options", {})
    produced = plist_files(root / meta.get("plist", "pkg-plist"), prefix, meta.get("plist-sub", {}), options)
    rc_scripts = list(meta.get("rc-scripts", []))
    produced |= {f"{prefix}/etc/rc.d/{name}" for name in rc_scripts}
    errors += compare("hyperv-vss", expected.get("hyperv-vss", set()), produced,
                      "pkg-plist + rc-scripts in Cargo.toml")

    # The port builds the same package: same rc.d scripts, no bundled module.
    port_mk = root / "port/hyperv-vss/Makefile"
    if port_mk.exists():
        use_rc = (make_var(port_mk, "USE_RC_SUBR") or "").split()
        if sorted(use_rc) != sorted(rc_scripts):
            errors.append(f"{port_mk}: USE_RC_SUBR={use_rc} but Cargo.toml rc-scripts={rc_scripts}")
        plist_sub = make_var(port_mk, "PLIST_SUB") or ""
        for option, on in options.items():
            off_in_port = re.search(rf'\b{option}="@comment "', plist_sub) is not None
            if off_in_port == bool(on):
                errors.append(f"{port_mk}: option {option} is {'off' if off_in_port else 'on'} in PLIST_SUB "
                              f"but {'on' if on else 'off'} in Cargo.toml")
    else:
        errors.append(f"{port_mk} is missing")

    # --- hyperv-vss-kmod: its port's PLIST_FILES (USES=kmod ports list them so)
    kmod_port = root / "port/hyperv-vss-kmod"
    kmoddir = (make_var(kmod_port / "Makefile", "KMODDIR") or "/boot/modules").strip("/")
    kmod_files = plist_files_var(kmod_port / "Makefile", prefix, {"KMODDIR": "/" + kmoddir})
    errors += compare("hyperv-vss-kmod", expected.get("hyperv-vss-kmod", set()), kmod_files,
                      "PLIST_FILES in port/hyperv-vss-kmod/Makefile")
    kos = sorted(Path(p).name for p in kmod_files if p.endswith(".ko"))
    if len(kos) != 1:
        errors.append(f"port/hyperv-vss-kmod installs {kos}: the pipeline expects exactly one .ko")
    kmod_mk = root / "kmod/Makefile"
    if kmod_mk.exists() and kos:
        kmod = make_var(kmod_mk, "KMOD")
        if kmod is None:
            errors.append(f"{kmod_mk} sets no KMOD=")
        elif f"{kmod}.ko" != kos[0]:
            errors.append(f"{kmod_mk}: KMOD={kmod} builds {kmod}.ko, the kmod port installs {kos[0]}")
    elif kos:
        print(f"note: {kmod_mk} does not exist yet; {kos[0]} checked against the kmod port only")
    return errors


# What run.ps1 reads from `hv_vssctl status -j`: struct -> fields.
STATUS_FIELDS = {
    "Report": ["running", "status"],
    "Status": ["state", "frozen", "counters", "recent"],
    "Counters": ["freeze_ok", "thaw_ok", "freeze_failed", "thaw_failed", "rollbacks", "watchdog_thaws"],
    "Transaction": ["op", "success", "frozen", "skipped", "duration_ms"],
}
# run.ps1 matches 'FREEZE msgid \d+: success in (\d+) ms' in syslog.
SUMMARY_FORMAT = '"{} msgid {}: {} in {} ms'
PIDFILE = "/var/run/hv_vssd.pid"


def check_daemon_contract(root: Path) -> list:
    """The daemon interfaces run.ps1 and guest/*.sh depend on."""
    errors = []
    status_rs = root / "daemon/src/status.rs"
    if not status_rs.exists():
        return [f"{status_rs} is missing: run.ps1 parses the JSON it defines"]
    source = status_rs.read_text()
    for struct, fields in STATUS_FIELDS.items():
        m = re.search(rf"pub struct {struct} \{{(.*?)\n\}}", source, re.DOTALL)
        if m is None:
            errors.append(f"{status_rs}: no struct {struct}; run.ps1 reads its fields {fields}")
            continue
        declared = set(re.findall(r"pub (\w+):", m.group(1)))
        for field in fields:
            if field not in declared:
                errors.append(f"{status_rs}: {struct} has no field {field}, which run.ps1 reads")
    if SUMMARY_FORMAT not in source or '"success"' not in source:
        errors.append(f"{status_rs}: the summary line is no longer 'OP msgid N: success in N ms', "
                      "which run.ps1 (Assert-FreezeThawLog) matches in syslog")
    rc = root / "files/hv_vssd.in"
    if rc.exists() and f'pidfile="{PIDFILE}"' not in rc.read_text():
        errors.append(f"{rc}: pidfile is not {PIDFILE}, which guest/verify-boot.sh reads")
    return errors


def shell_var(path: Path, name: str) -> str | None:
    m = re.search(rf"^{name}=(\S+)$", path.read_text(), re.MULTILINE)
    return m.group(1).strip('"') if m else None


def glue_driver_name(text):
    """The name in the glue's driver_t: a string, or a macro #defined as one."""
    d = re.search(r"static driver_t \w+ = \{\s*(?:\"(\w+)\"|(\w+))", text)
    if d is None or d.group(1):
        return d.group(1) if d else None
    m = re.search(rf"^#define\s+{d.group(2)}\s+\"(\w+)\"", text, re.MULTILINE)
    return m.group(1) if m else None


def check_guest_names(root: Path, expected_file: Path) -> list:
    """The names guest/ and run.ps1 use for the VSS channel and our driver."""
    errors = []
    hv = root / "tests/hyperv"
    lib = hv / "guest/lib.sh"
    ic = (root / "proto/src/ic.rs").read_text()
    m = re.search(r'VSS_CLASS_GUID_STR: &str = "([0-9a-f-]+)"', ic)
    if m is None:
        return ["proto/src/ic.rs: no VSS_CLASS_GUID_STR"]
    guid = m.group(1)
    if shell_var(lib, "VSS_CLASSID") != guid:
        errors.append(f"{lib}: VSS_CLASSID is {shell_var(lib, 'VSS_CLASSID')}, proto/src/ic.rs says {guid}")
    ps = re.search(r"^\$VssClassId = '([0-9a-f-]+)'", (hv / "run.ps1").read_text(), re.MULTILINE)
    if ps is None or ps.group(1) != guid:
        errors.append(f"run.ps1: $VssClassId is {ps.group(1) if ps else None}, proto/src/ic.rs says {guid}")
    glue = root / "kmod/glue/hv_vss_rs.c"
    if glue.exists():
        name = glue_driver_name(glue.read_text())
        if name != shell_var(lib, "OUR_DRIVER"):
            errors.append(f"{lib}: OUR_DRIVER is {shell_var(lib, 'OUR_DRIVER')}, {glue} names its driver "
                          f"{name or '(not found)'}")
    kos = [Path(p).stem for p in read_expected(expected_file).get("hyperv-vss-kmod", set()) if p.endswith(".ko")]
    verify = hv / "guest/verify-boot.sh"
    if [shell_var(verify, "module")] != kos:
        errors.append(f"{verify}: module={shell_var(verify, 'module')}, expected-files installs {kos}")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--root", type=Path, default=here.parents[2])
    parser.add_argument("--expected", type=Path, default=here.parent / "expected-files")
    args = parser.parse_args()
    try:
        errors = (check(args.root, args.expected) + check_daemon_contract(args.root)
                  + check_guest_names(args.root, args.expected))
    except Drift as e:
        errors = [str(e)]
    for error in errors:
        print(f"DRIFT: {error}")
    if errors:
        print(f"{len(errors)} differences between tests/hyperv and the packaging")
        return 1
    print("no drift: tests/hyperv/expected-files matches pkg-plist, the rc.d scripts and the kmod port;")
    print("          the daemon's status JSON, syslog line and pidfile are what run.ps1 and guest/ read;")
    print("          the VSS class GUID, our driver's and module's names are what guest/ and run.ps1 check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
