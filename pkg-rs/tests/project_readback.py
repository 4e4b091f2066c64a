#!/usr/bin/env python3
"""Read back the project's own package (dist/hyperv-vss-<version>.pkg)
without cargo-freebsd-pkg: parse pkg-plist and the freebsd-pkg metadata of
Cargo.toml here (tomllib), write the expectations readback.py checks
(every plist entry present with mode, owner, checksum and content, nothing
else), then run it.  Also checks the binaries are FreeBSD executables.

usage: project_readback.py PKG REPO_ROOT BIN_DIR [--kmod DIR]
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib


def fail(message):
    print(f"project-readback: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def expand(line, subs, options):
    for name, on in options.items():
        line = line.replace(f"%%NO_{name}%%", "@comment " if on else "")
        line = line.replace(f"%%{name}%%", "" if on else "@comment ")
    for key, value in subs.items():
        line = line.replace(f"%%{key}%%", value)
    if "%%" in line:
        fail(f"unexpanded substitution in pkg-plist line {line!r}")
    return line


def port_mode(path, executable):
    """The mode the port's install macros give a file (Mk/bsd.port.mk):
    INSTALL_PROGRAM, INSTALL_SCRIPT and INSTALL_KLD 0555, INSTALL_MAN 0444,
    INSTALL_DATA 0644."""
    if executable or path.endswith(".ko"):
        return "0555"
    if re.search(r"/man/man[^/]+/[^/]+$", path):
        return "0444"
    return "0644"


def main():
    pkg, root, bin_dir = sys.argv[1:4]
    kmod_dir = sys.argv[5] if sys.argv[4:5] == ["--kmod"] else None
    meta = tomllib.load(open(os.path.join(root, "Cargo.toml"), "rb"))["workspace"]["metadata"]["freebsd-pkg"]
    prefix = meta.get("prefix", "/usr/local")
    subs = dict(meta.get("plist-sub", {}), PREFIX=prefix)
    options = dict(meta.get("options", {}))
    for name in options:
        options[name] = bool(kmod_dir) if name == "BUNDLED_KMOD" else options[name]
    sources = meta["sources"]
    variables = {"bin_dir": bin_dir, "kmod_dir": kmod_dir or "/nonexistent"}

    def source_for(key):
        if key in sources:
            template = sources[key]
        else:
            dirs = [k for k in sources if k.endswith("/") and key.startswith(k)]
            if not dirs:
                fail(f"no source for plist path {key}")
            best = max(dirs, key=len)
            template = sources[best].rstrip("/") + "/" + key[len(best):]
        for name, value in variables.items():
            template = template.replace("{" + name + "}", value)
        return template if os.path.isabs(template) else os.path.join(root, template)

    files, dirs = [], []
    cwd = prefix
    for raw in open(os.path.join(root, meta["plist"]), encoding="utf-8"):
        line = expand(raw.rstrip("\n"), subs, options).strip()
        if not line or line.startswith("@comment"):
            continue
        if line.startswith("@cwd"):
            arg = line[4:].strip()
            cwd = arg.rstrip("/") if arg and arg != "/" else ("/" if arg else prefix)
            continue
        if line.startswith(("@exec", "@unexec", "@kld")):
            continue
        if line.startswith("@dir"):
            dirs.append({"path": os.path.join(cwd, line.split(None, 1)[1].rstrip("/")),
                         "mode": "0755", "uname": "root", "gname": "wheel"})
            continue
        if line.startswith("@sample"):
            line = line.split(None, 1)[1]
        elif line.startswith("@"):
            fail(f"pkg-plist keyword this check does not know: {line}")
        source = source_for(line)
        path = os.path.join(cwd, line)
        entry = {"path": path, "mode": port_mode(path, os.access(source, os.X_OK)),
                 "uname": "root", "gname": "wheel", "source": os.path.relpath(source, root)}
        if line.endswith(".gz") and not source.endswith(".gz"):
            entry["gzip"] = True
        if source.endswith(".in"):
            # The ports' SUB_FILES: %%KEY%% from PLIST_SUB plus PREFIX.
            entry["substitute"] = {f"%%{k}%%": v for k, v in subs.items()}
        files.append(entry)
    for name in meta.get("rc-scripts", []):
        files.append({"path": f"{prefix}/etc/rc.d/{name}", "mode": "0555", "uname": "root",
                      "gname": "wheel", "rc_script": f"files/{name}.in"})

    expected = {"name": meta["name"], "version": None, "files": files, "kmod_files": [], "directories": dirs}
    version = tomllib.load(open(os.path.join(root, "Cargo.toml"), "rb"))["workspace"]["package"]["version"]
    expected["version"] = version
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(expected, f)
        expected_path = f.name
    min_pkg_version = meta.get("min-pkg-version", "2.8")
    try:
        result = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "readback.py"),
                                 pkg, expected_path, root, "--min-pkg-version", min_pkg_version]
                                + (["--kmod"] if kmod_dir else []))
    finally:
        os.unlink(expected_path)
    if result.returncode != 0:
        sys.exit(result.returncode)

    for binary in (e for e in files if e["path"].startswith(prefix + "/sbin/")):
        described = subprocess.run(["file", "-b", os.path.join(root, binary["source"])],
                                   capture_output=True, text=True).stdout
        if "ELF 64-bit" not in described or "FreeBSD" not in described:
            fail(f"{binary['path']} is not a FreeBSD amd64 executable: {described.strip()}")
    print(f"project-readback: {len(files)} files, {len(dirs)} directories; binaries are FreeBSD ELF; OK")


if __name__ == "__main__":
    main()
