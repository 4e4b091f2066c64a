# shellcheck shell=sh
# The FreeBSD tier's kernel-module part: hv_vss_rs.ko built with the real
# bsd.kmod.mk (kmod/Makefile), then loaded and unloaded on a machine
# without VMBus, with and without the base driver's loader hint. Sourced by
# .ci/freebsd/run (after lib.sh).

KMOD_OBJDIR="$HVVSS_TIER_WORK/kmod"
KMOD="$KMOD_OBJDIR/hv_vss_rs.ko"
# What hv_vss_rs prints when it is loaded on a machine without a VSS
# channel (hvvss_rs_report in kmod/glue/hv_vss_rs.c). A stable interface:
# change both together.
KMOD_NO_CHANNEL='hv_vss_rs: loaded, not attached: no Hyper-V VSS channel'
# The base driver's loader hint that hands the channel to hv_vss_rs
# (hv_vss_rs(4)); on a machine without VMBus it must change nothing.
BASE_HINT=hint.hvvss.0.disabled

# The kernel sources bsd.kmod.mk and the glue need (SYSDIR=/usr/src/sys):
# from the release's src.txz when /usr/src is not installed.
ensure_kernel_sources() {
	[ -f /usr/src/sys/conf/kmod.mk ] && return 0
	_release=$(uname -r | sed -E 's/-p[0-9]+$//')
	_url="https://download.freebsd.org/releases/$(uname -m)/$_release/src.txz"
	echo "/usr/src/sys is missing: fetching $_url"
	fetch -o "$HVVSS_TIER_WORK/src.txz" "$_url" &&
		tar -C / -xf "$HVVSS_TIER_WORK/src.txz" usr/src/sys &&
		rm -f "$HVVSS_TIER_WORK/src.txz" &&
		[ -f /usr/src/sys/conf/kmod.mk ]
}

# The toolchain kmod/ffi/rust-toolchain.toml pins, with rust-src.
ensure_kmod_toolchain() {
	(cd kmod/ffi && rustup toolchain install && rustc --version)
}

# make in kmod/, objects outside the checkout.
kmod_build() {
	mkdir -p "$KMOD_OBJDIR" &&
		env MAKEOBJDIR="$KMOD_OBJDIR" make -C kmod &&
		ls -l "$KMOD"
}

# How many times dmesg has the no-channel line.
no_channel_lines() {
	dmesg | grep -cF "$KMOD_NO_CHANNEL" || true
}

# kldload, check, kldunload: the module loads, says in dmesg that it found
# no channel, makes no device, and unloads.
kmod_load_unload() {
	_before=$(no_channel_lines)
	kldload "$KMOD" || return 1
	_loaded=0
	kldstat -q -m hv_vss_rs && _loaded=1
	_after=$(no_channel_lines)
	_device=0
	[ -e /dev/hv_fsvss_dev ] && _device=1
	kldstat -v -n hv_vss_rs.ko | head -5
	kldunload -n hv_vss_rs.ko || return 1
	if kldstat -q -m hv_vss_rs; then
		echo "hv_vss_rs is still loaded after kldunload"
		return 1
	fi
	[ "$_loaded" -eq 1 ] || { echo "kldstat does not list module hv_vss_rs"; return 1; }
	[ "$_device" -eq 0 ] || { echo "/dev/hv_fsvss_dev exists without VMBus"; return 1; }
	if [ "$_after" -le "$_before" ]; then
		echo "dmesg does not say: $KMOD_NO_CHANNEL"
		dmesg | tail -5
		return 1
	fi
	echo "dmesg: $KMOD_NO_CHANNEL ...; unloaded cleanly"
}

# The same with the base driver's hint set, then the hint restored.
kmod_load_unload_with_base_hint() {
	_previous=$(kenv -q "$BASE_HINT" || true)
	kenv "$BASE_HINT=1" >/dev/null || return 1
	kmod_load_unload
	_status=$?
	if [ -n "$_previous" ]; then
		kenv "$BASE_HINT=$_previous" >/dev/null
	else
		kenv -u "$BASE_HINT"
	fi
	return "$_status"
}

kmod_steps() {
	step "kmod: kernel sources in /usr/src/sys" ensure_kernel_sources
	step "kmod: pinned nightly with rust-src (kmod/ffi/rust-toolchain.toml)" ensure_kmod_toolchain
	if ! passed "kmod: kernel sources in /usr/src/sys" ||
		! passed "kmod: pinned nightly with rust-src (kmod/ffi/rust-toolchain.toml)"; then
		skip "kmod: make (bsd.kmod.mk)" "no kernel sources or no toolchain (failed above)"
	else
		step "kmod: make (bsd.kmod.mk)" kmod_build
	fi
	if kldstat -q -m hv_vss_rs; then
		skip "kmod: kldload, no channel, kldunload" "hv_vss_rs is already loaded here"
		skip "kmod: the same with $BASE_HINT=1" "hv_vss_rs is already loaded here"
	elif ! passed "kmod: make (bsd.kmod.mk)"; then
		skip "kmod: kldload, no channel, kldunload" "the module was not built"
		skip "kmod: the same with $BASE_HINT=1" "the module was not built"
	else
		step "kmod: kldload, no channel, kldunload" kmod_load_unload
		step "kmod: the same with $BASE_HINT=1" kmod_load_unload_with_base_hint
	fi
}
