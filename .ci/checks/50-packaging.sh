#!/usr/bin/env bash
# Packaging (issue 7): lint what the package installs, keep the ports in
# sync with Cargo.lock, build the project's .pkg and read it back with
# readers that share no code with pkg-rs (bsdtar + Python, repopulator).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

ensure_apt libarchive-tools shellcheck mandoc openssl file python3-venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

banner "packaging: shellcheck"
hooks=()
for hook in files/examples/hooks.d/*; do
	[ "$(basename "$hook")" = README ] || hooks+=("$hook")
done
shellcheck -s sh "${hooks[@]}"
# rc.subr is sourced at run time (SC1091) and sets variables rc.subr reads (SC2034).
shellcheck -s sh -e SC1091,SC2034 files/hv_vssd.in
shellcheck -x scripts/build-pkg scripts/port .ci/checks/50-packaging.sh
echo "shellcheck: ${#hooks[@]} hooks, the rc.d script and the packaging scripts are clean"

banner "packaging: mandoc -Tlint"
pages=()
for page in man4/*.4 man7/*.7 man8/*.8; do
	[ -e "$page" ] && pages+=("$page")
done
mandoc -Tlint -W warning "${pages[@]}"
echo "mandoc: ${pages[*]} clean"

banner "packaging: devd rule and pkg-message"
python3 devd/devd_conf_check.py --self-test
python3 devd/devd_conf_check.py devd/hyperv.conf
python3 - files/pkg-message.in port/hyperv-vss-kmod/files/pkg-message <<'EOF'
# pkg-message is UCL; ours is written in its JSON subset so json can check it.
# SUB_FILES substitutes the .in template's %%PREFIX%% and %%EXAMPLESDIR%%.
import json, sys
for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read().replace("%%PREFIX%%", "/usr/local")
    text = text.replace("%%EXAMPLESDIR%%", "/usr/local/share/examples/hyperv-vss")
    messages = json.loads(text)
    assert isinstance(messages, list) and messages, f"{path}: not a non-empty array"
    for m in messages:
        assert set(m) <= {"message", "type", "minimum_version", "maximum_version"}, f"{path}: keys {set(m)}"
        assert m.get("message"), f"{path}: empty message"
        assert m.get("type", "install") in ("install", "remove", "upgrade"), f"{path}: type {m.get('type')}"
        assert "%%" not in m["message"], f"{path}: unsubstituted %%KEY%%"
    print(f"pkg-message: {path}: {len(messages)} messages ({', '.join(m.get('type', 'always') for m in messages)})")
EOF

banner "packaging: ports vs Cargo.lock"
scripts/port check
scripts/port assemble "$work/ports" --tag HEAD
for file in Makefile Makefile.crates distinfo pkg-descr pkg-plist files/pkg-message.in files/hv_vssd.in; do
	test -s "$work/ports/sysutils/hyperv-vss/$file"
done
for file in Makefile Makefile.crates distinfo pkg-descr files/pkg-message; do
	test -s "$work/ports/sysutils/hyperv-vss-kmod/$file"
done
# The module port lists its files in PLIST_FILES (as USES=kmod ports do).
test ! -e "$work/ports/sysutils/hyperv-vss-kmod/pkg-plist"
grep -q "^SHA256 (hyperv-vss-hyperv-vss-v.*_GH0.tar.gz) = " "$work/ports/sysutils/hyperv-vss-kmod/distinfo"
echo "ports: sysutils/hyperv-vss and sysutils/hyperv-vss-kmod assemble completely, distinfo included"

banner "packaging: pkg-rs tests with every reader"
venv="$HVVSS_TOOLS/pkg-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import repopulator, zstandard' 2>/dev/null; then
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q 'repopulator>=2,<3' 'zstandard>=0.22'
fi
FREEBSD_PKG_PYTHON="$venv/bin/python" HVVSS_REQUIRE_PKG_READERS=1 \
	cargo test --locked -q -p cargo-freebsd-pkg --test fixture_package

banner "packaging: the project's package"
scripts/build-pkg --out "$work/dist"
pkg=$(ls "$work"/dist/hyperv-vss-*.pkg)
bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/x86_64-unknown-freebsd/release"
python3 pkg-rs/tests/project_readback.py "$pkg" "$PWD" "$bin_dir"
"$venv/bin/python" pkg-rs/tests/repopulator_check.py "$pkg" "$work/repopulator"

# Nothing built or written for the package may be left out of pkg-plist.
listing=$(bsdtar -tf "$pkg")
left_out=0
for file in files/examples/hooks.d/* man4/*.4 man7/*.7 man8/*.8; do
	[ -e "$file" ] || continue
	case "$file" in
	files/examples/*) want="/usr/local/share/examples/hyperv-vss/${file#files/examples/}" ;;
	*) want="/usr/local/share/man/$(dirname "$file")/$(basename "$file").gz" ;;
	esac
	if ! grep -qxF "$want" <<<"$listing"; then
		echo "packaging: $file is not in the package (expected $want): add it to pkg-plist" >&2
		left_out=1
	fi
done
for bin in hv_vssd hv_vss_app; do
	grep -qxF "/usr/local/sbin/$bin" <<<"$listing" || { echo "packaging: $bin missing" >&2; left_out=1; }
done
[ "$left_out" = 0 ]
echo "packaging: every hook example, man page and binary is in $(basename "$pkg")"

# The bundled-module variant (FreeBSD builds pass a real hv_vss_rs.ko): a
# stand-in file proves the plist's BUNDLED_KMOD lines and kldxref scripts.
mkdir -p "$work/kmod" "$work/dist-kmod"
printf 'stand-in for a hv_vss_rs.ko built on FreeBSD\n' >"$work/kmod/hv_vss_rs.ko"
scripts/build-pkg --no-build --kmod "$work/kmod" --out "$work/dist-kmod"
python3 pkg-rs/tests/project_readback.py "$work"/dist-kmod/hyperv-vss-*.pkg "$PWD" "$bin_dir" --kmod "$work/kmod"

mkdir -p "$work/repo/All"
cp "$pkg" "$work/repo/All/"
cargo run --locked -q -p cargo-freebsd-pkg -- freebsd-pkg repo "$work/repo"
bsdtar -xOf "$work/repo/packagesite.pkg" packagesite.yaml | python3 -c '
import json, sys
entries = [json.loads(l) for l in sys.stdin if l.strip()]
assert [e["name"] for e in entries] == ["hyperv-vss"], entries
assert entries[0]["path"].startswith("All/hyperv-vss-"), entries[0]["path"]
print("repo: packagesite.yaml lists", entries[0]["name"], entries[0]["version"], entries[0]["pkgsize"], "bytes")'
printf 'packaging: %s, %s bytes, %s files, %s directories\n' "$(basename "$pkg")" \
	"$(stat -c %s "$pkg")" "$(bsdtar -tvf "$pkg" | grep -c '^-.* /')" "$(bsdtar -tvf "$pkg" | grep -c '^d')"
