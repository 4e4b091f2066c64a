#!/bin/sh
# Packer provisioner (root, in the freshly installed FreeBSD guest):
#  1. pkg add the hyperv-vss package built by this repo (scripts/build-pkg);
#  2. build and install the kernel module from port/hyperv-vss-kmod, with the
#     FreeBSD ports framework, the release's kernel sources and rust;
#  3. check that both packages installed exactly the files listed in
#     expected-files (which CI checks against pkg-plist and the port), and
#     that pkg(8) agrees with their checksums;
#  4. load our module at the next boot (one loader.conf line) and make devd
#     read our rule now (service devd restart).
#
# Inputs uploaded by Packer: /tmp/hyperv-vss.pkg, /tmp/hyperv-vss-src.tar (git
# archive of the source tree, no top directory), /tmp/hvvss-expected-files,
# and the guest helpers in /usr/local/libexec/hvvss-test (lib.sh).
# Environment, both optional (empty: derived here):
#   HVVSS_DIST_SITE     directory holding src.txz; default: the running
#                       release's, when the installer did not already
#                       install src.txz from the ISO;
#   HVVSS_PORTS_BRANCH  ports branch for the framework; default: the one the
#                       configured pkg repository is built from.
set -eu

PKG_FILE=/tmp/hyperv-vss.pkg
SRC_TAR=/tmp/hyperv-vss-src.tar
EXPECTED=/tmp/hvvss-expected-files
WORK=/tmp/hvvss-build
# shellcheck source=tests/hyperv/guest/lib.sh
. "${HVVSS_LIB:-/usr/local/libexec/hvvss-test/lib.sh}"

# The files one package must own, from expected-files.
expected_of() {
	awk -v p="$1" '!/^#/ && $1 == p { print $2 }' "$EXPECTED" | sort
}

# Fails unless package $1 installed exactly the expected files, all present.
check_installed() {
	expected_of "$1" >"$WORK/want.$1"
	[ -s "$WORK/want.$1" ] || die "expected-files lists nothing for $1"
	pkg query '%Fp' "$1" | sort >"$WORK/have.$1" ||
		die "package $1 is not installed"
	if ! diff -u "$WORK/want.$1" "$WORK/have.$1"; then
		die "package $1 installed other files than tests/hyperv/expected-files lists (- expected, + installed)"
	fi
	while read -r path; do
		[ -e "$path" ] || die "$path is registered by $1 but missing"
	done <"$WORK/want.$1"
	# pkg(8) itself recomputes every file's checksum against the manifest.
	pkg check -s "$1" || die "pkg check -s $1: installed files differ from the package's checksums"
	log "$1: all $(wc -l <"$WORK/want.$1" | tr -d ' ') expected files installed, nothing else"
}

# Sets NAME="VALUE" in /boot/loader.conf, replacing an earlier setting.
set_loader_var() {
	sed -i '' -e "/^[[:space:]]*$1=/d" /boot/loader.conf
	printf '%s="%s"\n' "$1" "$2" >>/boot/loader.conf
}

# Kernel sources of exactly the running release in /usr/src: the module is
# built against them and must load into this kernel. bsdinstall installed
# src.txz from the ISO when the ISO carries it (packer/http/installerconfig);
# otherwise fetch the release's own from its distribution site.
install_kernel_sources() {
	running=$(uname -r)
	if [ ! -f /usr/src/sys/conf/kmod.mk ]; then
		site=${HVVSS_DIST_SITE:-$(dist_site "$running" "$(uname -m)" "$(uname -p)")}
		log "fetching kernel sources: $site/src.txz"
		fetch -o "$WORK/src.txz" "$site/src.txz"
		tar -xf "$WORK/src.txz" -C /
		rm -f "$WORK/src.txz"
	fi
	[ -f /usr/src/sys/conf/kmod.mk ] || die "no kernel sources in /usr/src/sys"
	sources=$(src_release /usr/src) || die "cannot read the release of /usr/src (sys/conf/newvers.sh)"
	[ "$sources" = "$running" ] ||
		die "/usr/src is $sources but the kernel is $running: a module built from it would not load (set -DistSite)"
	log "kernel sources /usr/src match the running kernel ($running)"
}

# The ports framework, from the branch the installed packages are built
# from, and only what the kmod port's build reads: Mk (the framework, with
# Uses/ and Scripts/), Templates and Keywords (plist and mtree data), the
# top-level files (cone mode keeps them) and lang/rust, whose version must
# be the installed rust's (same branch as the packages).
install_ports_framework() {
	branch=${HVVSS_PORTS_BRANCH:-}
	if [ -z "$branch" ]; then
		url=$(pkg -vv | sed -n 's/^[[:space:]]*url[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1)
		branch=$(ports_branch_for "$url" "$(date -u +%Y-%m)") ||
			die "cannot tell the ports branch of the pkg repository '$url' (set -PortsBranch)"
	fi
	if [ ! -f /usr/ports/Mk/bsd.port.mk ]; then
		log "checking out the ports framework (branch $branch, sparse)"
		rm -rf /usr/ports
		git clone -q --depth 1 --filter=blob:none --sparse --branch "$branch" \
			https://git.freebsd.org/ports.git /usr/ports
		git -C /usr/ports sparse-checkout set Mk Templates Keywords lang/rust
	fi
	ported=$(make -C /usr/ports/lang/rust -V PORTVERSION)
	installed=$(upstream_version "$(pkg query %v rust)")
	[ "$ported" = "$installed" ] ||
		die "ports branch $branch has rust $ported, the packages rust $installed: the ports tree and the packages differ (set -PortsBranch)"
	log "ports framework: branch $branch, rust $ported as installed"
}

for f in "$PKG_FILE" "$SRC_TAR" "$EXPECTED"; do
	[ -s "$f" ] || die "$f was not uploaded"
done
rm -rf "$WORK"
mkdir -p "$WORK"

export ASSUME_ALWAYS_YES=yes
log "bootstrapping pkg"
pkg bootstrap -f >/dev/null
pkg update -q

# --- 1. the package -------------------------------------------------------
log "pkg add $(pkg query -F "$PKG_FILE" '%n-%v')"
pkg add "$PKG_FILE"
check_installed hyperv-vss

# --- 2. the kernel module from its port -----------------------------------
log "installing the kmod port's build tools (rust, git)"
pkg install -y rust git-lite
# The port builds core for the kernel target from rust-src
# (kmod/build-engine.sh), which lang/rust installs.
[ -f /usr/local/lib/rustlib/src/rust/library/core/Cargo.toml ] ||
	die "the rust package has no rust-src (lib/rustlib/src); the kmod port cannot build core for the kernel"

install_kernel_sources
install_ports_framework

mkdir -p "$WORK/tree"
tar -xf "$SRC_TAR" -C "$WORK/tree"
port="$WORK/tree/port/hyperv-vss-kmod"
[ -f "$port/Makefile" ] || die "the source tarball has no port/hyperv-vss-kmod"

# The port fetches a GitHub release tarball of this project. Stand in for it
# with the uploaded tree (same top directory as WRKSRC), and record its
# checksum in the port's distinfo; the crates keep their real checksums.
distdir=$(make -C "$port" -V DISTDIR)
subdir=$(make -C "$port" -V DIST_SUBDIR)
distfile=$(make -C "$port" -V DISTNAME)$(make -C "$port" -V EXTRACT_SUFX)
wrksrc=$(basename "$(make -C "$port" -V WRKSRC)")
relname=${subdir:+$subdir/}$distfile
mkdir -p "$distdir/${subdir:-.}" "$WORK/dist/$wrksrc"
tar -xf "$SRC_TAR" -C "$WORK/dist/$wrksrc"
tar -czf "$distdir/$relname" -C "$WORK/dist" "$wrksrc"
sum=$(sha256 -q "$distdir/$relname")
size=$(stat -f %z "$distdir/$relname")
awk -v name="($relname)" '!(($1 == "SHA256" || $1 == "SIZE") && $2 == name)' \
	"$port/distinfo" >"$WORK/distinfo"
mv "$WORK/distinfo" "$port/distinfo"
printf 'SHA256 (%s) = %s\nSIZE (%s) = %s\n' "$relname" "$sum" "$relname" "$size" >>"$port/distinfo"
log "distfile $relname stands in for the release tarball ($size bytes)"

log "building and installing port/hyperv-vss-kmod"
make -C "$port" BATCH=yes install clean
check_installed hyperv-vss-kmod

# --- 3. our module at the next boot --------------------------------------------
# One line is the whole hand-over: our driver probes the VSS channel at
# BUS_PROBE_VENDOR and so beats the base driver's BUS_PROBE_DEFAULT
# (vmbus_ic_probe in sys/dev/hyperv/utilities/vmbus_ic.c), provided it is
# registered when vmbus probes its children, i.e. loaded by the loader, not
# by kldload after boot. No hint for the base driver: verify-boot.sh checks
# that our driver owns the channel without one.
ko=$(expected_of hyperv-vss-kmod | head -n 1)
module=$(basename "$ko" .ko)
set_loader_var "${module}_load" YES
log "/boot/loader.conf: ${module}_load=\"YES\""

# --- 4. devd reads rule files only when it starts ----------------------------
service devd restart
/usr/local/sbin/hv_vssd -t || die "hv_vssd -t rejects the installed configuration"

rm -rf "$WORK" "$PKG_FILE" "$SRC_TAR"
log "done; the next boot runs our module and daemon"
