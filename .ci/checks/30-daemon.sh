#!/usr/bin/env bash
# hv_vssd and hv_vssctl: man page lint, and a real cross-link of the FreeBSD binaries
# with zig (the only linker for FreeBSD here, see shared/research/toolchain.md).
# Unit tests and the root-only loop-device freeze tests run in `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

banner "daemon: mandoc lint of hv_vssd(8) and hv_vssctl(8)"
ensure_apt mandoc file binutils
mandoc -Tlint -W warning man8/hv_vssd.8 man8/hv_vssctl.8

banner "daemon: cross-link for x86_64-unknown-freebsd (cargo zigbuild)"
ensure_freebsd_target
ensure_zig
cargo zigbuild --locked --target x86_64-unknown-freebsd --release -p hv-vssd -p hv-vssctl
for name in hv_vssd hv_vssctl; do
	bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-freebsd/release/$name"
	description=$(file -b "$bin")
	echo "$name: $description"
	case "$description" in
	*"ELF 64-bit LSB"*"x86-64"*"for FreeBSD 14.0"*) ;;
	*)
		echo "FAIL: $bin is not an x86-64 FreeBSD ELF with a 14.0 ABI note" >&2
		exit 1
		;;
	esac
	case "$description" in
	*", stripped"*) ;;
	*)
		echo "FAIL: $bin is not stripped (profile.release strip = \"symbols\")" >&2
		exit 1
		;;
	esac
	# Only base-system libraries (no libgcc_s: zig links its unwinder statically).
	needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
	echo "$name NEEDED: $needed"
	for lib in $needed; do
		case "$lib" in
		libc.so.7 | libthr.so.3 | libm.so.5 | libutil.so.9 | librt.so.1 | libexecinfo.so.1) ;;
		*)
			echo "FAIL: unexpected shared library dependency $lib of $name" >&2
			exit 1
			;;
		esac
	done
	echo "$name for FreeBSD, stripped: $(stat -c %s "$bin") bytes"
done
