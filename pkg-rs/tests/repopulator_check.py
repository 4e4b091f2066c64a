#!/usr/bin/env python3
"""Second independent reader: PyPI's repopulator indexes a .pkg into a
signed FreeBSD repository; we then read its catalogue back and compare it
with the package's own manifest and file.

usage: repopulator_check.py PKG OUT_DIR
Needs: repopulator, zstandard (pip), openssl (to make a throw-away signing key).
"""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

from repopulator import FreeBSDRepo, PkiSigner


def main():
    pkg, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    key = os.path.join(out_dir, "signing.key")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)

    repo = FreeBSDRepo()
    package = repo.add_package(pkg)
    repo.export(os.path.join(out_dir, "repo"), PkiSigner(key, None))

    with open(os.path.join(out_dir, "repo", "packagesite.pkg"), "rb") as f:
        with tarfile.open(fileobj=io.BytesIO(f.read()), mode="r:xz") as tar:
            site = tar.extractfile("packagesite.yaml").read().decode()
    entries = [json.loads(line) for line in site.splitlines() if line]
    if len(entries) != 1:
        sys.exit(f"repopulator: expected one catalogue entry, got {len(entries)}")
    entry = entries[0]

    fields = package.fields
    with open(pkg, "rb") as f:
        data = f.read()
    checks = {
        "sum": (fields["sum"], hashlib.sha256(data).hexdigest()),
        "pkgsize": (fields["pkgsize"], len(data)),
        "name": (fields["name"], entry["name"]),
        "version": (fields["version"], entry["version"]),
        "abi": (fields["abi"], entry["abi"]),
        "arch": (fields["arch"], entry["arch"]),
        "flatsize": (fields["flatsize"], entry["flatsize"]),
    }
    for name, (got, want) in checks.items():
        if got != want:
            sys.exit(f"repopulator: {name} is {got!r}, expected {want!r}")
    if not entry["arch"].startswith("freebsd:") or ":" not in entry["abi"]:
        sys.exit(f"repopulator: odd abi/arch {entry['abi']} {entry['arch']}")
    print(f"repopulator: indexed {entry['name']}-{entry['version']} ({len(data)} bytes, sum {fields['sum'][:16]}...) OK")


if __name__ == "__main__":
    main()
