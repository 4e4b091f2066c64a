#!/usr/bin/env python3
"""Independent read-back of a FreeBSD .pkg: bsdtar (libarchive) lists and
extracts it, Python's json and hashlib check it. Nothing here uses
cargo-freebsd-pkg code, so a bug in the writer cannot hide itself.

usage: readback.py PKG EXPECTED_JSON SOURCE_DIR [--kmod]

EXPECTED_JSON lists every file and directory the package must hold, with
mode, owner, group and the source it comes from (see fixtures/demo/expected.json).
Prints one line per check group and exits non-zero on the first mismatch.
"""

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile


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
    with_kmod = "--kmod" in sys.argv[4:]
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
            digest = "1$" + hashlib.sha256(data).hexdigest()
            if files.get(key) != digest:
                fail(f"{path}: manifest checksum {files.get(key)!r} != {digest}")
            if "source" in want:
                source = open(os.path.join(source_dir, want["source"]), "rb").read()
                content = gzip.decompress(data) if want.get("gzip") else data
                if content != source:
                    fail(f"{path}: content differs from {want['source']}")
            if "rc_script" in want:
                text = data.decode()
                if "%%" in text or "/usr/local/" not in text:
                    fail(f"{path}: %%PREFIX%% was not substituted")
        print(f"readback: {len(want_files)} files with mode, owner, group, 1$sha256 and content checked")

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
            if dirs.get(pkg_urlencode(want["path"])) != "y":
                fail(f"directory {want['path']} missing from manifest directories: {dirs}")
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
        if expected.get("sample_scripts", True) and any(w["path"].endswith(".sample") for w in want_files):
            if "cp -p" not in scripts.get("post-install", "") or "cmp -s" not in scripts.get("pre-deinstall", ""):
                fail("@sample did not produce install/deinstall scripts")
        if with_kmod and "kldxref" not in scripts.get("post-install", ""):
            fail("kernel module packaged without a kldxref post-install")
        for message in manifest.get("messages", []):
            if not message.get("message"):
                fail(f"empty message {message}")
        print(f"readback: desc, {len(scripts)} script(s), {len(manifest.get('messages', []))} message(s) decode")
    print("readback: OK")


if __name__ == "__main__":
    main()
