# shellcheck shell=sh
# Shared by the guest scripts of the Hyper-V pipeline (provision.sh,
# verify-boot.sh, hvvss-test.sh). Installed in the box as
# /usr/local/libexec/hvvss-test/lib.sh by the Packer template (and again by
# the Vagrantfile on every `vagrant up`). Definitions only: sourcing it runs
# nothing, so CI sources it on Linux and tests every function
# (ci/guest_lib_test.sh).

# The VSS channel's VMBus class as `devinfo -v` prints it: pnpinfo
# "classid=<guid>" (vmbus_child_pnpinfo in sys/dev/hyperv/vmbus/vmbus.c,
# formatted by hyperv_guid2str). The same GUID as VSS_CLASS_GUID_STR in
# proto/src/ic.rs; ci/check_drift.py keeps the two equal.
VSS_CLASSID=35fa2e29-ea23-4236-96ae-3a6ebacba440
# Our driver's name (the driver_t of kmod/glue/hv_vss_rs.c) and the base
# system's (sys/dev/hyperv/utilities/hv_snapshot.c).
# shellcheck disable=SC2034 # read by the scripts that source this file
OUR_DRIVER=hvvss_rs
# shellcheck disable=SC2034 # read by the scripts that source this file
BASE_DRIVER=hvvss

die() {
	printf '%s: ERROR: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

log() { printf '==> %s: %s\n' "${0##*/}" "$*"; }

# The daemon's status report, as text and as JSON (the fields run.ps1
# reads are kept in step by ci/check_drift.py); exit status 0 while the
# daemon runs. The only place that names the status command.
daemon_status() {
	/usr/local/sbin/hv_vssctl status
}

daemon_status_json() {
	/usr/local/sbin/hv_vssctl status -j
}

# Reads `devinfo -v` on stdin and prints the device that sits on the VSS
# channel: "hvvss_rs0" (our driver won), "hvvss0" (the base driver won) or
# "unknown" (the channel exists, no driver attached). Prints nothing when
# there is no VSS channel at all (the host's VSS integration service is off).
vss_channel_device() {
	awk -v id="classid=$VSS_CLASSID" '
		{ for (i = 2; i <= NF; i++) if ($i == id) { print $1; exit } }
	'
}

# The driver name of a device name: hvvss_rs0 -> hvvss_rs.
driver_of() {
	printf '%s\n' "$1" | sed 's/[0-9]*$//'
}

# Reads `devinfo -v` on stdin. Prints the device on the VSS channel when it
# is our driver's; otherwise fails saying who has the channel, if anyone.
require_our_vss_driver() {
	device=$(vss_channel_device)
	case $(driver_of "$device") in
	"$OUR_DRIVER") printf '%s\n' "$device" ;;
	"$BASE_DRIVER") die "the base driver ($device) owns the VSS channel: our driver did not win the probe" ;;
	unknown) die "no driver attached to the VSS channel" ;;
	"") die "no VSS channel (no device with classid=$VSS_CLASSID): is the VM's VSS integration service enabled?" ;;
	*) die "unexpected driver $device on the VSS channel" ;;
	esac
}

# FreeBSD's distribution directory for RELEASE (`uname -r`) on MACHINE
# (`uname -m`) and MACHINE_ARCH (`uname -p`): the site that holds that
# release's src.txz. Composed the way bsdinstall composes its distribution
# site (usr.sbin/bsdinstall/scripts/mirrorselect): the patch level is
# dropped (distribution sets exist per release), development branches live
# under snapshots/.
dist_site() {
	release=${1%-p*}
	case $release in
	*-ALPHA* | *-CURRENT | *-STABLE | *-PRERELEASE) tree=snapshots ;;
	*) tree=releases ;;
	esac
	printf 'https://download.freebsd.org/%s/%s/%s/%s\n' "$tree" "$2" "$3" "$release"
}

# The release a kernel source tree builds: REVISION-BRANCH from
# SRC/sys/conf/newvers.sh, e.g. "14.4-RELEASE" (what `uname -r` prints for
# a kernel built from it).
src_release() {
	newvers=$1/sys/conf/newvers.sh
	[ -f "$newvers" ] || return 1
	revision=$(sed -n 's/^REVISION="\(.*\)"$/\1/p' "$newvers")
	branch=$(sed -n 's/^BRANCH="\(.*\)"$/\1/p' "$newvers")
	[ -n "$revision" ] && [ -n "$branch" ] || return 1
	printf '%s-%s\n' "$revision" "$branch"
}

# The ports branch the binary packages are built from, given the pkg
# repository URL and today's date (YYYY-MM): the quarterly repository is
# built from the branch of the current quarter (2026Q4), "latest" from main.
ports_branch_for() {
	case $1 in
	*/quarterly) ;;
	*/latest) echo main && return 0 ;;
	*) return 1 ;;
	esac
	year=${2%-*}
	month=${2#*-}
	month=${month#0}
	printf '%sQ%s\n' "$year" $(((month + 2) / 3))
}

# A package version without its port revision and epoch: 1.91.1_2,1 -> 1.91.1.
upstream_version() {
	v=${1%,*}
	printf '%s\n' "${v%_*}"
}
