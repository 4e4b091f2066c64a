#!/bin/sh
# Tests of guest/lib.sh on Linux, under a POSIX sh (dash in CI): every
# function the guest scripts decide with, fed the input FreeBSD would give.
# The `devinfo -v` lines follow usr.sbin/devinfo/devinfo.c (print_dev: name,
# " pnpinfo " and the bus's pnpinfo, unattached devices as "unknown") and
# vmbus_child_pnpinfo (sys/dev/hyperv/vmbus/vmbus.c: "classid=... deviceid=...").
#
# usage: sh ci/guest_lib_test.sh [LIB]   (default: ../guest/lib.sh)
set -u
here=$(dirname "$0")
# shellcheck source=tests/hyperv/guest/lib.sh
. "${1:-$here/../guest/lib.sh}"

failures=0
checks=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# expect NAME WANT GOT
expect() {
	checks=$((checks + 1))
	if [ "$2" != "$3" ]; then
		printf 'FAIL %s: expected "%s", got "%s"\n' "$1" "$2" "$3"
		failures=$((failures + 1))
	fi
}

# A vmbus with the KVP and VSS channels; $1 is the VSS channel's device name.
devinfo_with_vss() {
	cat <<EOF
nexus0
  vmbus0 pnpinfo  at ACPI
    hvkvp0 pnpinfo classid=a9a0f4e7-5a45-4d96-b827-8a841e8c03e6 deviceid=242ff919-07db-4180-9c2e-b86cb68c8c55
    $1 pnpinfo classid=35fa2e29-ea23-4236-96ae-3a6ebacba440 deviceid=2450ee40-33bf-4fbd-892e-9fb06e9214cf
    hn0 pnpinfo classid=f8615163-df3e-46c5-913f-f2d2f965ed0e deviceid=000d3a2e-1234-5678-9abc-def012345678
EOF
}

# --- which driver owns the VSS channel (verify-boot.sh) --------------------
expect "our driver's device" hvvss_rs0 "$(devinfo_with_vss hvvss_rs0 | vss_channel_device)"
expect "the base driver's device" hvvss0 "$(devinfo_with_vss hvvss0 | vss_channel_device)"
expect "an unattached channel" unknown "$(devinfo_with_vss unknown | vss_channel_device)"
expect "no VSS channel" "" "$(devinfo_with_vss hvvss_rs0 | grep -v 35fa2e29 | vss_channel_device)"
expect "driver of hvvss_rs0" hvvss_rs "$(driver_of hvvss_rs0)"
expect "driver of hvvss12" hvvss "$(driver_of hvvss12)"

# require_our_vss_driver passes for ours and fails, saying why, otherwise.
verdict() {
	devinfo_with_vss "$1" | (require_our_vss_driver 2>&1) | tr '\n' ' '
	return 0
}
expect "ours is accepted" "hvvss_rs0 " "$(verdict hvvss_rs0)"
case $(verdict hvvss0) in *"base driver (hvvss0) owns the VSS channel"*) r=ok ;; *) r=$(verdict hvvss0) ;; esac
expect "the base driver is refused" ok "$r"
case $(verdict unknown) in *"no driver attached"*) r=ok ;; *) r=$(verdict unknown) ;; esac
expect "an unattached channel is refused" ok "$r"
if (devinfo_with_vss hvvss0 | require_our_vss_driver) >/dev/null 2>&1; then r=passed; else r=failed; fi
expect "the base driver fails the check" failed "$r"

# --- where src.txz of the running release lives (provision.sh) ------------
expect "release" https://download.freebsd.org/releases/amd64/amd64/14.4-RELEASE \
	"$(dist_site 14.4-RELEASE amd64 amd64)"
expect "patched release" https://download.freebsd.org/releases/amd64/amd64/14.3-RELEASE \
	"$(dist_site 14.3-RELEASE-p5 amd64 amd64)"
expect "release candidate" https://download.freebsd.org/releases/amd64/amd64/14.4-RC1 \
	"$(dist_site 14.4-RC1 amd64 amd64)"
expect "stable snapshot" https://download.freebsd.org/snapshots/amd64/amd64/14.4-STABLE \
	"$(dist_site 14.4-STABLE amd64 amd64)"
expect "prerelease snapshot" https://download.freebsd.org/snapshots/arm64/aarch64/15.1-PRERELEASE \
	"$(dist_site 15.1-PRERELEASE arm64 aarch64)"

# --- the release of a source tree (provision.sh) ---------------------------
mkdir -p "$scratch/src/sys/conf"
cat >"$scratch/src/sys/conf/newvers.sh" <<'EOF'
TYPE="FreeBSD"
REVISION="14.4"
BRANCH="RELEASE"
if [ -n "${BRANCH_OVERRIDE}" ]; then
	BRANCH=${BRANCH_OVERRIDE}
fi
EOF
expect "newvers.sh" 14.4-RELEASE "$(src_release "$scratch/src")"
sed -i 's/^BRANCH=.*/BRANCH="RELEASE-p2"/' "$scratch/src/sys/conf/newvers.sh"
expect "newvers.sh of a patched tree" 14.4-RELEASE-p2 "$(src_release "$scratch/src")"
if src_release "$scratch/nowhere" >/dev/null; then r=passed; else r=failed; fi
expect "no sources" failed "$r"

# --- the ports branch of the packages (provision.sh) -----------------------
q=pkg+https://pkg.FreeBSD.org/FreeBSD:14:amd64/quarterly
expect "quarterly, January" 2027Q1 "$(ports_branch_for "$q" 2027-01)"
expect "quarterly, March" 2027Q1 "$(ports_branch_for "$q" 2027-03)"
expect "quarterly, April" 2027Q2 "$(ports_branch_for "$q" 2027-04)"
expect "quarterly, November" 2026Q4 "$(ports_branch_for "$q" 2026-11)"
expect "latest" main "$(ports_branch_for pkg+https://pkg.FreeBSD.org/FreeBSD:14:amd64/latest 2026-11)"
if ports_branch_for http://mirror.example/custom 2026-11 >/dev/null; then r=passed; else r=failed; fi
expect "an unknown repository" failed "$r"
expect "version with revision and epoch" 1.91.1 "$(upstream_version 1.91.1_2,1)"
expect "plain version" 1.91.1 "$(upstream_version 1.91.1)"

if [ "$failures" -ne 0 ]; then
	echo "guest/lib.sh: $failures of $checks checks failed"
	exit 1
fi
echo "guest/lib.sh: all $checks checks passed"
