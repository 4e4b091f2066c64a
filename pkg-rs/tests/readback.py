#!/usr/bin/env python3
"""Independent read-back of a FreeBSD .pkg: bsdtar (libarchive) lists and
extracts it, Python's json and hashlib check it. Nothing here uses
cargo-freebsd-pkg code, so a bug in the writer cannot hide itself.

usage: readback.py PKG EXPECTED_JSON SOURCE_DIR [--kmod] [--min-pkg-version X.Y]

EXPECTED_JSON lists every file and directory the package must hold, with
mode, owner, group and the source it comes from (see fixtures/demo/expected.json).
--min-pkg-version (default 2.8) says which manifest form pkg create of that
version writes: files as "1$<sha256>" strings before 2.4, objects with
owner/group/perm/mtime from 2.4, BLAKE2b "2$" sums from 2.8 (freebsd/pkg
libpkg/pkg_manifest.c, pkg_checksum.c). shlibs_required and the
FreeBSD_version annotation are checked against binutils' readelf.
Prints one line per check group and exits non-zero on the first mismatch.
"""

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

# pkg's base32 alphabet (libpkg/pkg_checksum.c): bytes read as one
# little-endian bit stream, 5 bits at a time from the lowest.
PKG_B32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


def pkg_base32(data):
    out, bits, count = [], 0, 0
    for byte in data:
        bits |= byte << count
        count += 8
        while count >= 5:
            out.append(PKG_B32[bits & 31])
            bits >>= 5
            count -= 5
    if count:
        out.append(PKG_B32[bits & 31])
    return "".join(out)


def file_sum(data, version):
    if version >= (2, 8):
        return "2$" + pkg_base32(hashlib.blake2b(data, digest_size=64).digest())
    return "1$" + hashlib.sha256(data).hexdigest()


def perm_string(mode):
    """C's %#4.4o, as pkg writes perm."""
    text = f"{mode:04o}"
    return text if text.startswith("0") else "0" + text


def elf_facts(path):
    """(is_freebsd, needed, freebsd_version) from binutils readelf, or None."""
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return None
    out = subprocess.run(["readelf", "-h", "-d", "-n", path], capture_output=True, text=True).stdout
    needed = [n for n in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
              if n.startswith("lib")]
    version = None
    m = re.search(r"^\s*FreeBSD\s+0x0*4\s+NT_VERSION[^\n]*?(?:\n\s*)?description data: ((?:[0-9a-f]{2} ?){4})",
                  out, re.M)
    if m:
        version = int.from_bytes(bytes.fromhex(m.group(1).replace(" ", "")), "little")
    freebsd = version is not None or re.search(r"OS/ABI:\s+UNIX - FreeBSD", out) is not None
    return freebsd, needed, version


def fail(message):
    print(f"readback: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def pkg_urlencode(path):
    """libpkg's urlencode: '%' and non-ASCII bytes become %xx."""
    out = []
    for byte in path.encode():
        if byte == ord("%") or byte >= 0x80:
            out.append(f"%{byte:02x}")
        else:
            out.append(chr(byte))
    return "".join(out)


def pkg_urldecode(text):
    raw = bytearray()
    i = 0
    data = text.encode()
    while i < len(data):
        if data[i] == ord("%") and i + 3 <= len(data):
            try:
                raw.append(int(data[i + 1:i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        raw.append(data[i])
        i += 1
    return raw.decode()


def mode_bits(text):
    """'-r-xr-xr-x' -> 0o555 (permission bits only)."""
    perms = text[1:10]
    value = 0
    for i, ch in enumerate(perms):
        if ch != "-":
            value |= 1 << (8 - i)
    return value


def listing(pkg):
    out = subprocess.run(["bsdtar", "-tvf", pkg], check=True, capture_output=True).stdout.decode()
    members = []
    for line in out.splitlines():
        # perms links uname gname size month day year-or-time name
        fields = line.split(None, 8)
        if len(fields) != 9:
            fail(f"unexpected bsdtar line: {line!r}")
        members.append({
            "type": fields[0][0],
            "mode": mode_bits(fields[0]),
            "uname": fields[2],
            "gname": fields[3],
            "size": int(fields[4]),
            "path": fields[8],
        })
    return members


def main():
    if len(sys.argv) < 4:
        fail(__doc__)
    pkg, expected_path, source_dir = sys.argv[1:4]
    options = sys.argv[4:]
    with_kmod = "--kmod" in options
    version = (2, 8)
    if "--min-pkg-version" in options:
        version = tuple(int(p) for p in options[options.index("--min-pkg-version") + 1].split(".")[:2])
    objects = version >= (2, 4)
    expected = json.load(open(expected_path, encoding="utf-8"))
    want_files = list(expected["files"]) + (expected["kmod_files"] if with_kmod else [])
    want_dirs = expected["directories"]

    members = listing(pkg)
    names = [m["path"] for m in members]
    if names[:2] != ["+COMPACT_MANIFEST", "+MANIFEST"]:
        fail(f"first members are {names[:2]}, pkg needs +COMPACT_MANIFEST then +MANIFEST")
    by_path = {m["path"]: m for m in members}
    print(f"readback: {len(members)} members, manifests first")

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bsdtar", "-xf", pkg, "-C", tmp, "--no-same-owner"], check=True, capture_output=True)

        def extracted(path):
            with open(os.path.join(tmp, path.lstrip("/")), "rb") as f:
                return f.read()

        # bsdtar -x keeps each member's mtime.
        mtimes = {m["path"]: int(os.lstat(os.path.join(tmp, m["path"].lstrip("/"))).st_mtime)
                  for m in members if m["type"] == "-"}
        manifest = json.loads(extracted("+MANIFEST"))
        compact = json.loads(extracted("+COMPACT_MANIFEST"))

        # Identity and ABI.
        for key in ("name", "version"):
            if manifest[key] != expected[key]:
                fail(f"{key} is {manifest[key]!r}, expected {expected[key]!r}")
        for key in ("origin", "comment", "maintainer", "www", "abi", "arch", "prefix", "flatsize", "desc"):
            if key not in manifest:
                fail(f"+MANIFEST lacks {key}")
        # What pkg_emit_object leaves out of the compact form.
        reduced = {k: v for k, v in manifest.items()
                   if k not in ("files", "config", "directories", "scripts", "lua_scripts")}
        if reduced != compact:
            fail(f"+COMPACT_MANIFEST differs from +MANIFEST without files/dirs/scripts:\n{compact}\n{reduced}")
        print("readback: +COMPACT_MANIFEST equals +MANIFEST minus files, directories, scripts")

        # Every expected file: present once, right mode/owner/group, right checksum, right content.
        files = manifest["files"]
        flatsize = 0
        for want in want_files:
            path = want["path"]
            member = by_path.get(path)
            if member is None:
                fail(f"{path} is not in the archive")
            if member["type"] != "-":
                fail(f"{path} is not a regular file")
            if member["mode"] != int(want["mode"], 8) or member["uname"] != want["uname"] or member["gname"] != want["gname"]:
                fail(f"{path}: archive says {oct(member['mode'])} {member['uname']}:{member['gname']}, expected {want['mode']} {want['uname']}:{want['gname']}")
            data = extracted(path)
            flatsize += len(data)
            key = pkg_urlencode(path)
            digest = file_sum(data, version)
            entry = files.get(key)
            if objects:
                # pkg >= 2.4: the object pkg create writes; owner and mode as in the tar header.
                want_entry = {"sum": digest, "uname": member["uname"], "gname": member["gname"],
                              "perm": perm_string(member["mode"]), "mtime": mtimes[path]}
                if entry != want_entry:
                    fail(f"{path}: manifest entry {entry!r} != {want_entry!r}")
            elif entry != digest:
                fail(f"{path}: manifest checksum {entry!r} != {digest}")
            if "source" in want:
                source = open(os.path.join(source_dir, want["source"]), "rb").read()
                for key, value in want.get("substitute", {}).items():
                    source = source.replace(key.encode(), value.encode())
                content = gzip.decompress(data) if want.get("gzip") else data
                if content != source:
                    fail(f"{path}: content differs from {want['source']}")
            if "rc_script" in want:
                text = data.decode()
                if "%%" in text or "/usr/local/" not in text:
                    fail(f"{path}: %%PREFIX%% was not substituted")
        form = "objects" if objects else "strings"
        kind = "2$blake2b" if version >= (2, 8) else "1$sha256"
        print(f"readback: {len(want_files)} files ({form}, {kind}) with mode, owner, group and content checked")

        wanted = {pkg_urlencode(w["path"]) for w in want_files}
        if set(files) != wanted:
            fail(f"manifest files differ: extra {sorted(set(files) - wanted)}, missing {sorted(wanted - set(files))}")
        archived_files = {m["path"] for m in members if m["type"] == "-"} - {"+COMPACT_MANIFEST", "+MANIFEST"}
        if archived_files != {w["path"] for w in want_files}:
            fail(f"archive files differ from expected: {sorted(archived_files ^ {w['path'] for w in want_files})}")
        if manifest["flatsize"] != flatsize:
            fail(f"flatsize {manifest['flatsize']} != {flatsize}")
        print(f"readback: nothing extra, nothing missing; flatsize {flatsize}")

        # Directories.
        dirs = manifest.get("directories", {})
        for want in want_dirs:
            member = by_path.get(want["path"]) or by_path.get(want["path"] + "/")
            if member is None or member["type"] != "d":
                fail(f"directory {want['path']} is not in the archive")
            if member["mode"] != int(want["mode"], 8) or member["uname"] != want["uname"] or member["gname"] != want["gname"]:
                fail(f"directory {want['path']}: wrong mode or owner")
            want_dir = ({"uname": want["uname"], "gname": want["gname"], "perm": want["mode"]}
                        if objects else "y")
            if dirs.get(pkg_urlencode(want["path"])) != want_dir:
                fail(f"directory {want['path']}: manifest says {dirs.get(pkg_urlencode(want['path']))!r}, expected {want_dir!r}")
        if len(dirs) != len(want_dirs):
            fail(f"manifest has {len(dirs)} directories, expected {len(want_dirs)}")
        print(f"readback: {len(want_dirs)} directories checked")

        # Description and scripts decode to text.
        desc = pkg_urldecode(manifest["desc"])
        if not desc or "%25" in desc:
            fail("desc did not URL-decode")
        scripts = {k: pkg_urldecode(v) for k, v in manifest.get("scripts", {}).items()}
        for kind in scripts:
            if kind not in ("pre-install", "post-install", "pre-deinstall", "post-deinstall", "install", "deinstall"):
                fail(f"unknown script kind {kind}")
        # @sample: Lua (rootdir-safe, as Keywords/sample.ucl), never shell.
        lua = manifest.get("lua_scripts", {})
        for kind, chunks in lua.items():
            if kind not in ("pre-install", "post-install", "pre-deinstall", "post-deinstall"):
                fail(f"unknown lua script kind {kind}")
            if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
                fail(f"lua_scripts[{kind}] is not an array of strings")
        samples = [w["path"] for w in want_files if w["path"].endswith(".sample")]
        for sample in samples:
            target = sample[:-len(".sample")]
            relative = os.path.relpath(target, manifest["prefix"])
            mentions = (f'"{relative}"', f'"{target}"')
            if not any(any(m in c for m in mentions) and "pkg.copy(" in c for c in lua.get("post-install", [])):
                fail(f"{sample}: no post-install Lua creates {target}")
            if not any(any(m in c for m in mentions) and "os.remove(" in c for c in lua.get("pre-deinstall", [])):
                fail(f"{sample}: no pre-deinstall Lua removes an unchanged {target}")
            if any(target in text for text in scripts.values()):
                fail(f"{target} is handled by a shell script, which is not rootdir-safe")
        if with_kmod:
            for kind in ("post-install", "post-deinstall"):
                if not re.search(r'kldxref "\$\{PKG_ROOTDIR\}/', scripts.get(kind, "")):
                    fail(f"kernel module packaged without a {kind} kldxref under ${{PKG_ROOTDIR}}")
        for text in scripts.values():
            for line in text.splitlines():
                if "kldxref" in line and "PKG_ROOTDIR" not in line:
                    fail(f"script line ignores PKG_ROOTDIR: {line}")

        # shlibs_required and FreeBSD_version, as readelf sees the binaries.
        required, versions = set(), []
        for want in want_files:
            facts = elf_facts(os.path.join(tmp, want["path"].lstrip("/")))
            if facts and facts[0]:
                required.update(facts[1])
                if facts[2] is not None:
                    versions.append(facts[2])
        if manifest.get("shlibs_required", []) != sorted(required):
            fail(f"shlibs_required {manifest.get('shlibs_required')} != readelf's {sorted(required)}")
        annotation = manifest.get("annotations", {}).get("FreeBSD_version")
        major = int(manifest["abi"].split(":")[1])
        want_version = str(max(versions)) if versions else str(major * 100000)
        if expected.get("freebsd_version"):
            want_version = expected["freebsd_version"]
        if annotation != want_version:
            fail(f"FreeBSD_version annotation {annotation!r} != {want_version!r} (readelf)")
        for message in manifest.get("messages", []):
            if not message.get("message"):
                fail(f"empty message {message}")
        print(f"readback: desc, {len(scripts)} script(s), {sum(map(len, lua.values()))} Lua chunk(s), "
              f"{len(manifest.get('messages', []))} message(s) decode")
        print(f"readback: shlibs_required {manifest.get('shlibs_required', [])} and FreeBSD_version "
              f"{annotation} match readelf")
    print("readback: OK")


if __name__ == "__main__":
    main()
