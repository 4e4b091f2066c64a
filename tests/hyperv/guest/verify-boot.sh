#!/bin/sh
# Packer provisioner, after the reboot that follows provision.sh: checks
# that this boot runs the hyperv-vss stack, handed over the way the module
# is designed to be (hv_vss_rs(4)): one loader.conf line, no hint.
#  - /boot/loader.conf loads our module and the kernel environment has no
#    hint disabling the base driver (so the test proves that none is needed);
#  - our module is loaded and its driver, not the base one, owns the VSS
#    channel (devinfo -v: the device with the channel's class GUID);
#  - both VSS devices exist (our module created them);
#  - devd started our daemon (/usr/local/sbin, not base's hv_vss_daemon) and
#    it answers its status command.
set -eu
# shellcheck source=tests/hyperv/guest/lib.sh
. "${HVVSS_LIB:-/usr/local/libexec/hvvss-test/lib.sh}"

module=hv_vss_rs
grep -qx "${module}_load=\"YES\"" /boot/loader.conf ||
	die "/boot/loader.conf has no ${module}_load=\"YES\" line"
if hint=$(kenv -q "hint.$BASE_DRIVER.0.disabled"); then
	die "hint.$BASE_DRIVER.0.disabled=\"$hint\" is set: this check must show that our module wins without it"
fi
kldstat -q -n "$module.ko" || die "$module.ko is not loaded"
log "$module.ko is loaded by the loader, no hint set"

device=$(devinfo -v | require_our_vss_driver)
log "the VSS channel belongs to $device (our driver)"

for dev in /dev/hv_fsvss_dev /dev/hv_appvss_dev; do
	[ -c "$dev" ] || die "$dev does not exist"
done
log "/dev/hv_fsvss_dev and /dev/hv_appvss_dev exist"

# devd starts the daemon when the device appears; give it a moment.
tries=0
until daemon_status >/dev/null 2>&1; do
	tries=$((tries + 1))
	[ "$tries" -lt 30 ] || die "hv_vssd is not running 30 s after boot"
	sleep 1
done
pid=$(cat /var/run/hv_vssd.pid)
binary=$(procstat -b "$pid" | awk 'NR == 2 { print $NF }')
[ "$binary" = /usr/local/sbin/hv_vssd ] ||
	die "the running daemon is $binary, not /usr/local/sbin/hv_vssd (base devd rule won?)"
log "devd started /usr/local/sbin/hv_vssd (pid $pid)"
daemon_status
