#!/bin/sh
# Packer provisioner, after the reboot that follows provision.sh: checks
# that this boot really runs the hyperv-vss stack and not the base one.
#  - our kernel module is loaded and the base driver (hvvss) did not attach;
#  - both VSS devices exist (our module created them);
#  - devd started our daemon (/usr/local/sbin, not the base /usr/sbin one),
#    and it answers `hv_vssd -s`.
set -eu

die() {
	printf 'verify-boot: ERROR: %s\n' "$*" >&2
	exit 1
}
log() { printf '==> verify-boot: %s\n' "$*"; }

module=$(sed -n 's/^\([A-Za-z0-9_]*\)_load="YES"$/\1/p' /boot/loader.conf | grep '^hv_vss' | head -n 1)
[ -n "$module" ] || die "no hv_vss*_load line in /boot/loader.conf"
kldstat -q -n "$module.ko" || die "$module.ko is not loaded"
log "$module.ko is loaded"

# The base driver's instance would be hvvss0 under vmbus.
if devinfo | grep -qw 'hvvss0'; then
	die "the base driver hvvss0 attached: hint.hvvss.0.disabled did not take effect"
fi

for dev in /dev/hv_fsvss_dev /dev/hv_appvss_dev; do
	[ -c "$dev" ] || die "$dev does not exist"
done
log "/dev/hv_fsvss_dev and /dev/hv_appvss_dev exist"

# devd starts the daemon when the device appears; give it a moment.
tries=0
until hv_vssd -s >/dev/null 2>&1; do
	tries=$((tries + 1))
	[ "$tries" -lt 30 ] || die "hv_vssd is not running 30 s after boot"
	sleep 1
done
pid=$(cat /var/run/hv_vssd.pid)
binary=$(procstat -b "$pid" | awk 'NR == 2 { print $NF }')
[ "$binary" = /usr/local/sbin/hv_vssd ] ||
	die "the running daemon is $binary, not /usr/local/sbin/hv_vssd (base devd rule won?)"
log "devd started /usr/local/sbin/hv_vssd (pid $pid)"
hv_vssd -s
