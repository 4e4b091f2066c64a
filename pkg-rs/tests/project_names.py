#!/usr/bin/env python3
"""Names an administrator types must be ours, and must exist (issue 13).

1. No path in the package, nor in the packing list of either port, has a
   file name that FreeBSD base installs (freebsd-base-names.txt beside this
   script): base's /usr/sbin, /usr/share/man and /etc/devd come first, so a
   shared name runs or shows base's file instead of ours.
2. Every page referenced as NAME(SECTION) or `.Xr NAME SECTION` in the
   documentation, and every command-like word `hv_vss...`, names something
   the package installs (a program, an rc.d service, a page, a module), the
   kernel-module port installs, or base installs (where base's own program
   or page is meant). Nothing here lists our names: they come from the
   package and the ports' packing lists, so new programs and pages are
   checked as soon as they are packaged.

usage: project_names.py PKG MAIN_PORT_DIR KMOD_PORT_DIR BASE_NAMES DOC...
  PKG             the built package (read with bsdtar)
  *_PORT_DIR      ports as `scripts/port assemble` writes them: pkg-plist,
                  or PLIST_FILES / USE_RC_SUBR in the Makefile
  DOC             README.md, man pages, pkg-message (files or directories)
"""

import os
import re
import subprocess
import sys

# Identifiers shaped like our names that are not commands: rc.conf(5)
# variables and loader.conf(5) knobs built from a service or module name.
NOT_A_COMMAND = re.compile(r"_(enable|flags|config|load|program|user|group)$")
COMMAND_WORD = re.compile(r"(?<![\w.-])(?<!struct )(hv_vss[a-z_]*)(?![\w.(-])")
PAGE_REF = re.compile(r"(?<![\w.-])((?:hv_|hyperv)[\w.-]*?)\(([1-9])\)")
XR_REF = re.compile(r"^\.Xr\s+((?:hv_|hyperv)\S*)\s+([1-9])", re.M)


def fail(problems):
    for problem in problems:
        print(f"names: FAIL: {problem}", file=sys.stderr)
    sys.exit(1)


class Installed:
    """What a set of installed paths provides to type or read."""

    def __init__(self):
        self.paths = set()

    def add(self, path):
        self.paths.add(os.path.normpath(path))

    def commands(self):
        out = set()
        for p in self.paths:
            parent, name = os.path.split(p)
            if parent.endswith(("/sbin", "/bin", "/etc/rc.d", "/libexec/hyperv")):
                out.add(name)
            if name.endswith(".ko"):
                out.add(name[:-3])
        return out

    def pages(self):
        out = set()
        for p in self.paths:
            m = re.search(r"/man/man([1-9])/([^/]+)\.\1(?:\.gz)?$", p)
            if m:
                out.add((m.group(2), m.group(1)))
        return out

    def file_names(self):
        return {os.path.basename(p).removesuffix(".gz") for p in self.paths}


def package_paths(pkg):
    listing = subprocess.run(["bsdtar", "-tf", pkg], check=True, capture_output=True, text=True).stdout
    installed = Installed()
    for path in listing.splitlines():
        if path.startswith("+"):
            continue
        installed.add(path)
        if path.endswith(".sample"):
            installed.add(path[: -len(".sample")])  # what @sample creates
    return installed


def expand(text):
    """Drop option markers and substitute the few variables paths use."""
    text = re.sub(r"%%[A-Z_]+%%(?=@)", "", text)  # %%OPT%%@keyword
    text = re.sub(r"^%%[A-Z_]+%%(?=[^%])", "", text)
    return text.replace("%%KMODDIR%%", "boot/modules").replace("${KMODDIR}", "/boot/modules")


def port_paths(port_dir, prefix="/usr/local"):
    """Paths a port installs: its pkg-plist, PLIST_FILES and USE_RC_SUBR."""
    installed = Installed()
    cwd = prefix

    def add(entry):
        installed.add(entry if entry.startswith("/") else os.path.join(cwd, entry))

    plist = os.path.join(port_dir, "pkg-plist")
    if os.path.exists(plist):
        for raw in open(plist, encoding="utf-8"):
            line = expand(raw.strip())
            if not line or line.startswith("@comment"):
                continue
            if line.startswith("@cwd") or line.startswith("@cd"):
                arg = line.split(None, 1)[1] if " " in line else ""
                cwd = arg or prefix
                continue
            if line.startswith("@sample"):
                sample = line.split()[1]
                add(sample)
                add(sample.removesuffix(".sample"))
                continue
            if line.startswith("@dir"):
                add(line.split(None, 1)[1])
                continue
            if line.startswith("@"):
                continue  # script keywords
            add(line)
    makefile = open(os.path.join(port_dir, "Makefile"), encoding="utf-8").read()
    joined = re.sub(r"\\\n", " ", makefile)
    for var, value in re.findall(r"^(PLIST_FILES|USE_RC_SUBR)\+?=\s*(.*)$", joined, re.M):
        for word in value.split():
            word = expand(word.replace("${PREFIX}/", ""))
            if var == "USE_RC_SUBR":
                add(f"etc/rc.d/{word}")
            else:
                add(word)
    return installed


def base_paths(path):
    installed = Installed()
    for line in open(path, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if line:
            installed.add(line)
    return installed


def documents(paths):
    for path in paths:
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                yield os.path.join(path, name)
        else:
            yield path


def main():
    if len(sys.argv) < 6:
        fail([__doc__])
    pkg, main_port, kmod_port, base_list, *docs = sys.argv[1:]
    ours = {"the package": package_paths(pkg), "port hyperv-vss": port_paths(main_port),
            "port hyperv-vss-kmod": port_paths(kmod_port)}
    base = base_paths(base_list)
    problems = []

    # 1. No file name base installs.
    base_names = base.file_names()
    for where, installed in ours.items():
        for path in sorted(installed.paths):
            name = os.path.basename(path).removesuffix(".gz")
            if name in base_names:
                problems.append(f"{where} installs {path}, a name FreeBSD base installs too: rename it")
    checked = sum(len(i.paths) for i in ours.values())

    # 2. Every command and page the documentation names exists.
    commands = set().union(*(i.commands() for i in ours.values()), base.commands())
    pages = set().union(*(i.pages() for i in ours.values()), base.pages())
    page_names = {name for name, _ in pages}
    seen_commands, seen_pages = set(), set()
    for doc in documents(docs):
        text = open(doc, encoding="utf-8").read()
        for name, section in PAGE_REF.findall(text) + XR_REF.findall(text):
            seen_pages.add((name, section))
            if (name, section) not in pages:
                problems.append(f"{doc}: {name}({section}) is not a page of the package, the "
                                "kmod port or FreeBSD base")
        for name in COMMAND_WORD.findall(text):
            if NOT_A_COMMAND.search(name):
                continue
            seen_commands.add(name)
            if name not in commands and name not in page_names:
                problems.append(f"{doc}: `{name}` is no program, service, module or page that "
                                "the package, the kmod port or FreeBSD base installs")
    if problems:
        fail(problems)
    print(f"names: {checked} packaged paths, none with a name FreeBSD base installs "
          f"({len(base_names)} base names)")
    print(f"names: {len(seen_pages)} page references and {len(seen_commands)} command names "
          f"({', '.join(sorted(seen_commands))}) all exist")


if __name__ == "__main__":
    main()
