#!/usr/bin/env bash
# Packaging (issues 7, 12, 13, 14): lint what the package installs, check
# the rc.d script and the devd rule, keep the ports in sync with Cargo.lock,
# build the project's .pkg and read it back with readers that share no code
# with pkg-rs (bsdtar + Python + readelf, repopulator), check that the port's
# substitution gives the same files, and that no name is FreeBSD base's.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

ensure_apt libarchive-tools shellcheck mandoc openssl file python3-venv binutils
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

banner "packaging: rc.d script (configtest, pidfile, devd knob) and pkg-message"
python3 files/rc_script_check.py files/hv_vssd.in
python3 devd/devd_conf_check.py --self-test
python3 - files/pkg-message.in port/hyperv-vss-kmod/pkg-message <<'EOF'
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
for file in Makefile Makefile.crates distinfo pkg-descr pkg-plist files/pkg-message.in files/hv_vssd.in \
	files/hyperv-vss-devd.conf.in; do
	test -s "$work/ports/sysutils/hyperv-vss/$file"
done
for file in Makefile Makefile.crates distinfo pkg-descr pkg-message; do
	test -s "$work/ports/sysutils/hyperv-vss-kmod/$file"
done
# The module port lists its files in PLIST_FILES (as USES=kmod ports do), and
# its plain pkg-message is where bsd.port.mk reads it (PKGMESSAGE is
# ${PKGDIR}/pkg-message), not in files/.
test ! -e "$work/ports/sysutils/hyperv-vss-kmod/pkg-plist"
test ! -e "$work/ports/sysutils/hyperv-vss-kmod/files"
grep -q "^SHA256 (hyperv-vss-hyperv-vss-v.*_GH0.tar.gz) = " "$work/ports/sysutils/hyperv-vss-kmod/distinfo"
echo "ports: sysutils/hyperv-vss and sysutils/hyperv-vss-kmod assemble completely, distinfo included"

# What bsd.port.mk's USE_RC_SUBR and SUB_FILES do to a FILESDIR template:
# sed with SUB_LIST (PREFIX LOCALBASE DATADIR DOCSDIR EXAMPLESDIR WWWDIR
# ETCDIR, Mk/bsd.port.mk) and drop "@comment " lines.
port_substitute() {
	local p=/usr/local
	sed -e "s!%%PREFIX%%!$p!g" -e "s!%%LOCALBASE%%!$p!g" \
		-e "s!%%DATADIR%%!$p/share/hyperv-vss!g" -e "s!%%DOCSDIR%%!$p/share/doc/hyperv-vss!g" \
		-e "s!%%EXAMPLESDIR%%!$p/share/examples/hyperv-vss!g" -e "s!%%WWWDIR%%!$p/www/hyperv-vss!g" \
		-e "s!%%ETCDIR%%!$p/etc/hyperv-vss!g" -e '/^@comment /d' "$1"
}

banner "packaging: pkg-rs tests with every reader"
venv=$(ensure_venv pkg-venv 'import repopulator, zstandard' 'repopulator>=2,<3' 'zstandard>=0.22')
FREEBSD_PKG_PYTHON="$venv/bin/python" HVVSS_REQUIRE_PKG_READERS=1 \
	cargo test --locked -q -p cargo-freebsd-pkg --test fixture_package

banner "packaging: the project's package"
scripts/build-pkg --help | grep -q 'freebsd-pkg repo' ||
	{ echo "packaging: scripts/build-pkg --help must name the catalogue command" >&2; exit 1; }
scripts/build-pkg --out "$work/dist"
pkg=$(ls "$work"/dist/hyperv-vss-*.pkg)
bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/x86_64-unknown-freebsd/release"
python3 pkg-rs/tests/project_readback.py "$pkg" "$PWD" "$bin_dir"
"$venv/bin/python" pkg-rs/tests/repopulator_check.py "$pkg" "$work/repopulator"

banner "packaging: the devd rule and rc.d script, as pkg-rs and as the port install them"
mkdir -p "$work/installed"
bsdtar -xf "$pkg" -C "$work/installed" /usr/local/etc/devd/hyperv-vss.conf.sample /usr/local/etc/rc.d/hv_vssd 2>/dev/null
rule="$work/installed/usr/local/etc/devd/hyperv-vss.conf.sample"
python3 devd/devd_conf_check.py --rule "$rule"
for pair in "hyperv-vss-devd.conf.in:$rule" "hv_vssd.in:$work/installed/usr/local/etc/rc.d/hv_vssd"; do
	# The assembled port's FILESDIR (files/, checked complete above).
	template="$work/ports/sysutils/hyperv-vss/files/${pair%%:*}"
	if ! diff -u <(port_substitute "$template") "${pair#*:}"; then
		echo "packaging: $template substituted as the port does differs from the package's ${pair#*:}" >&2
		exit 1
	fi
done
if grep -q '/usr/local' files/hv_vssd.in files/hyperv-vss-devd.conf.in; then
	echo "packaging: files/hv_vssd.in or files/hyperv-vss-devd.conf.in names /usr/local: write %%PREFIX%%" >&2
	exit 1
fi
echo "packaging: the devd rule and rc.d script are the same from pkg-rs and from the port's SUB_LIST (%%PREFIX%% → /usr/local)"

banner "packaging: names FreeBSD base does not install, commands and pages that exist"
python3 pkg-rs/tests/project_names.py "$pkg" "$work/ports/sysutils/hyperv-vss" \
	"$work/ports/sysutils/hyperv-vss-kmod" pkg-rs/tests/freebsd-base-names.txt \
	README.md man4 man7 man8 files/pkg-message.in port/hyperv-vss-kmod/pkg-message

# Nothing built or written for the package may be left out of pkg-plist.
# (man4 is the kernel module's: the kmod port installs it, PLIST_FILES.)
listing=$(bsdtar -tf "$pkg")
left_out=0
for file in files/examples/hooks.d/* man7/*.7 man8/*.8; do
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
for bin in hv_vssd hv_vssctl hv_vss_app; do
	grep -qxF "/usr/local/sbin/$bin" <<<"$listing" || { echo "packaging: $bin missing" >&2; left_out=1; }
done
for page in man4/*.4; do
	grep -q "share/man/man4/$(basename "$page").gz" port/hyperv-vss-kmod/Makefile ||
		{ echo "packaging: $page is not in the kmod port's PLIST_FILES" >&2; left_out=1; }
done
[ "$left_out" = 0 ]
echo "packaging: every hook example, man page and binary is in $(basename "$pkg") (man4 in the kmod port)"

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
assert entries[0]["sum"].startswith("2$"), entries[0]["sum"]
assert entries[0]["shlibs_required"] == ["libc.so.7", "libthr.so.3"], entries[0].get("shlibs_required")
print("repo: packagesite.yaml lists", entries[0]["name"], entries[0]["version"], entries[0]["pkgsize"], "bytes")'
bsdtar -xOf "$work/repo/data.pkg" data | python3 -c '
import json, sys
data = json.load(sys.stdin)
assert list(data) == ["groups", "expired_packages", "packages"], list(data)
print("repo: data has", ", ".join(data), "as pkg repo writes them")'
grep -qx 'filesite = "files";' "$work/repo/meta.conf"
printf 'packaging: %s, %s bytes, %s files, %s directories\n' "$(basename "$pkg")" \
	"$(stat -c %s "$pkg")" "$(bsdtar -tvf "$pkg" | grep -c '^-.* /')" "$(bsdtar -tvf "$pkg" | grep -c '^d')"
