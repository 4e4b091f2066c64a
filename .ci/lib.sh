# shellcheck shell=bash
# Shared helpers for .ci/run and .ci/checks/*.sh. Source it; do not run it.
# Everything CI needs is installed from here, so a fresh machine passes too.

# Where CI keeps tools it installs itself (zig venv), outside the checkout.
HVVSS_TOOLS="${HVVSS_TOOLS:-$HOME/.cache/hyperv-vss}"
export HVVSS_TOOLS

# Print a visible banner for a CI step.
banner() {
	printf '\n=== %s\n' "$*"
}

# Install Debian packages that are not installed yet. `apt-get update` runs
# at most once per CI run and only when something is missing.
ensure_apt() {
	local missing=()
	local pkg
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$pkg")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	if [ -z "${HVVSS_APT_UPDATED:-}" ]; then
		apt-get update -qq
		export HVVSS_APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Install every package listed in .ci/apt-packages (one per line, # comments).
ensure_apt_list() {
	local pkgs
	mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' .ci/apt-packages)
	ensure_apt "${pkgs[@]}"
}

# ensure_venv NAME CHECK SPEC...: the virtualenv $HVVSS_TOOLS/NAME with
# `pip install SPEC...`, unless its python already runs the statement CHECK
# (the imports the caller needs). Prints the venv's directory.
ensure_venv() {
	local venv="$HVVSS_TOOLS/$1" check=$2
	shift 2
	if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "$check" 2>/dev/null; then
		# Explicit: `set -e` does not reach into the caller's $(...).
		python3 -m venv "$venv" >&2 && "$venv/bin/pip" install -q "$@" >&2 || return 1
	fi
	echo "$venv"
}

# zig (from PyPI's ziglang) and cargo-zigbuild: the only way to link FreeBSD
# binaries here (see shared/research/toolchain.md). ziglang >= 0.17 writes the
# FreeBSD ABI note; older zig omits it and the binary claims release 0.
ensure_zig() {
	local venv="$HVVSS_TOOLS/venv"
	if [ ! -x "$venv/bin/cargo-zigbuild" ] || ! "$venv/bin/python3" -m ziglang version 2>/dev/null | grep -q '^0\.17'; then
		python3 -m venv "$venv"
		"$venv/bin/pip" install -q 'ziglang>=0.17,<0.18' 'cargo-zigbuild>=0.24,<0.25'
	fi
	export PATH="$venv/bin:$PATH"
}

# The FreeBSD userland target for clippy and the cross-link.
ensure_freebsd_target() {
	rustup target list --installed | grep -qx x86_64-unknown-freebsd ||
		rustup target add x86_64-unknown-freebsd
}

# Packages (one per line in .ci/freebsd-packages) that run on FreeBSD and are
# therefore linted for x86_64-unknown-freebsd too.
freebsd_package_args() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' -e 's/^/-p /' .ci/freebsd-packages | tr '\n' ' '
}

# Root, /dev/fuse and loop devices: what the end-to-end tests and the
# benchmark need. A missing one fails the calling check ($1 names it).
require_root_fuse_loop() {
	local check="$1"
	if [ "$(id -u)" -ne 0 ]; then
		echo "$check: must run as root (FUSE mounts, loop devices, FIFREEZE)" >&2
		exit 1
	fi
	local module node
	for module in fuse loop; do
		modprobe "$module" 2>/dev/null || true
	done
	for node in /dev/fuse /dev/loop-control; do
		if [ ! -e "$node" ]; then
			echo "$check: $node is missing; it cannot run here" >&2
			exit 1
		fi
	done
}
