#!/bin/sh
# Guest side of tests/hyperv/run.ps1: the small steps the host asks for over
# `vagrant ssh`, one subcommand each, run as root (sudo). Installed with
# lib.sh in /usr/local/libexec/hvvss-test by the Packer template and again
# by the Vagrantfile on every `vagrant up`.
#
#   begin TAG                   mark the start of a step in syslog
#   log-since TAG               hv_vssd/hv_vss_app syslog lines since `begin TAG`
#   status                      the daemon's status as JSON (lib.sh: daemon_status_json)
#   flush-delay-raise           keep ZFS from committing a transaction group by
#                               itself for the next minutes (until the next boot)
#   marker-write TAG DIR...     write DIR/.hvvss-marker-TAG (no sync), print the token
#   marker-check TAG TOKEN DIR...  every marker exists and holds TOKEN
#   marker-absent TAG DIR...    no marker TAG in any DIR
#   writable DIR...             create and remove a file in each DIR
#   fs-health                   after a restore: ZFS pools healthy, UFS mounts read-write
#   disk2-setup MOUNTPOINT      partition, newfs and mount the hot-added empty disk
#   daemon-stop | daemon-start  stop or start hv_vssd through its rc.d script
#   app-start ok|veto           register hv_vss_app in the background: "ok" journals
#                               freeze and thaw, "veto" fails every freeze
#   app-stop                    stop it
#   app-journal                 print the journal of the "ok" app
#   info                        release, module, mounts (for the report)
set -eu
# sudo may hand over the caller's PATH; the tools below live in all of these.
PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin
export PATH
# shellcheck source=tests/hyperv/guest/lib.sh
. "${HVVSS_LIB:-$(dirname "$0")/lib.sh}"

JOURNAL=/var/tmp/hvvss-app.journal
APP_PID=/var/run/hvvss-app.pid
APP_LOG=/var/log/hvvss-app.log

marker() { printf '%s/.hvvss-marker-%s' "$1" "$2"; }

cmd=${1:-}
[ -n "$cmd" ] || die "usage: hvvss-test.sh COMMAND [ARGS] (see the header)"
shift

case "$cmd" in
begin)
	logger -t hvvss-test "BEGIN $1"
	;;
log-since)
	# Lines are in /var/log/messages (daemon.notice and above); the daemon
	# holds its lines while frozen and writes them after the thaw.
	awk -v begin="hvvss-test: BEGIN $1" '
		index($0, begin) > 0 && substr($0, length($0) - length(begin) + 1) == begin { on = 1; next }
		on && /(hv_vssd|hv_vss_app)(\[[0-9]+\])?:/ { print }
	' /var/log/messages
	;;
status)
	daemon_status_json
	;;
flush-delay-raise)
	# What the marker check needs: without a freeze nothing may put the
	# marker on disk before the checkpoint. ZFS commits a transaction group
	# every vfs.zfs.txg.timeout seconds (default 5; zfs_txg_timeout in
	# sys/contrib/openzfs/module/zfs/txg.c, writable at run time), so raise
	# it well past the cycle; the daemon's `zpool sync` still commits at the
	# freeze. A reboot (the restore, the control's power-off) resets it.
	# UFS needs nothing: the syncer writes a dirty file after kern.filedelay
	# (30 s) and cannot be made to wait longer (syncer_maxdelay in
	# sys/kern/vfs_subr.c); run.ps1's control case measures that the window
	# is short enough.
	if sysctl -n vfs.zfs.txg.timeout >/dev/null 2>&1; then
		sysctl vfs.zfs.txg.timeout=600
	fi
	echo "ok: flush delays raised until the next boot"
	;;
marker-write)
	tag=$1
	shift
	token="$tag.$(date +%s).$(jot -r 1 1 2000000000)"
	for dir in "$@"; do
		# No sync on purpose: the freeze must flush this to disk.
		printf '%s\n' "$token" >"$(marker "$dir" "$tag")"
	done
	printf '%s\n' "$token"
	;;
marker-check)
	tag=$1
	token=$2
	shift 2
	for dir in "$@"; do
		file=$(marker "$dir" "$tag")
		[ -f "$file" ] || die "$file is missing"
		[ "$(cat "$file")" = "$token" ] || die "$file holds '$(cat "$file")', expected '$token'"
		echo "ok: $file holds $token"
	done
	;;
marker-absent)
	tag=$1
	shift
	for dir in "$@"; do
		file=$(marker "$dir" "$tag")
		[ ! -e "$file" ] || die "$file exists (holds '$(cat "$file")')"
		echo "ok: $file absent"
	done
	;;
writable)
	for dir in "$@"; do
		probe="$dir/.hvvss-writable.$$"
		printf 'x\n' >"$probe" || die "$dir is not writable"
		rm -f "$probe"
		echo "ok: $dir writable"
	done
	;;
fs-health)
	if kldstat -q -m zfs && [ -n "$(zpool list -H -o name 2>/dev/null)" ]; then
		health=$(zpool status -x)
		[ "$health" = "all pools are healthy" ] || die "zpool status -x: $health"
		echo "ok: all ZFS pools healthy"
	fi
	ro=$(mount -p -t ufs | awk '$4 ~ /(^|,)ro(,|$)/ { print $2 }')
	[ -z "$ro" ] || die "UFS mounted read-only after the restore: $ro"
	echo "ok: every UFS mount read-write"
	;;
disk2-setup)
	mnt=$1
	# The host hot-added a disk to the SCSI controller; storvsc rescans on
	# the host's notice, camcontrol makes sure. The new disk is the one
	# without a partition table.
	camcontrol rescan all >/dev/null 2>&1 || true
	disk=
	tries=0
	while [ -z "$disk" ]; do
		for d in $(sysctl -n kern.disks); do
			case "$d" in da*) ;; *) continue ;; esac
			gpart show "$d" >/dev/null 2>&1 || disk=$d
		done
		[ -n "$disk" ] && break
		tries=$((tries + 1))
		[ "$tries" -lt 30 ] || die "no new empty da disk appeared within 30 s"
		sleep 1
	done
	gpart create -s gpt "$disk" >/dev/null
	gpart add -t freebsd-ufs -l hvvss-data2 "$disk" >/dev/null
	newfs -U /dev/gpt/hvvss-data2 >/dev/null
	mkdir -p "$mnt"
	# In fstab so the disk is mounted again after a checkpoint is restored.
	printf '/dev/gpt/hvvss-data2\t%s\tufs\trw\t2\t2\n' "$mnt" >>/etc/fstab
	mount "$mnt"
	echo "ok: /dev/$disk (gpt/hvvss-data2) mounted on $mnt"
	;;
daemon-stop)
	service hv_vssd onestop
	if daemon_status >/dev/null 2>&1; then
		die "hv_vssd still running"
	fi
	echo "ok: hv_vssd stopped"
	;;
daemon-start)
	service hv_vssd onestart
	daemon_status >/dev/null || die "hv_vssd did not start"
	echo "ok: hv_vssd running"
	;;
app-start)
	case "${1:-}" in
	ok)
		rm -f "$JOURNAL"
		freeze="echo freeze >>$JOURNAL"
		thaw="echo thaw >>$JOURNAL"
		;;
	veto) freeze="echo vetoing the freeze >&2; exit 1" thaw="true" ;;
	*) die "app-start ok|veto" ;;
	esac
	daemon -f -p "$APP_PID" -o "$APP_LOG" \
		/usr/local/sbin/hv_vss_app -v -T 8 -f "$freeze" -t "$thaw"
	# Registered once it holds the application device open.
	tries=0
	until fstat /dev/hv_appvss_dev 2>/dev/null | grep -q hv_vss_app; do
		tries=$((tries + 1))
		[ "$tries" -lt 20 ] || die "hv_vss_app did not open /dev/hv_appvss_dev (log: $(cat "$APP_LOG" 2>/dev/null))"
		sleep 0.5
	done
	echo "ok: hv_vss_app ($1) registered"
	;;
app-stop)
	if [ -f "$APP_PID" ]; then
		pkill -F "$APP_PID" || true
		rm -f "$APP_PID"
	fi
	echo "ok: hv_vss_app stopped"
	;;
app-journal)
	cat "$JOURNAL"
	;;
info)
	printf 'release: %s\n' "$(freebsd-version -ku | tr '\n' ' ')"
	printf 'modules: %s\n' "$(kldstat | awk 'NR > 1 && $NF ~ /hv_vss/ { print $NF }' | tr '\n' ' ')"
	mount -p | awk '{ printf "mount: %s %s %s\n", $2, $3, $1 }'
	;;
*)
	die "unknown command $cmd (see the header)"
	;;
esac
