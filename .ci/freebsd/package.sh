# shellcheck shell=sh
# The FreeBSD tier's package part: the project's package built natively
# with cargo-freebsd-pkg (scripts/build-pkg), installed with pkg add,
# checked with pkg check -s, the rc.d script started and stopped with
# service(8), the devd rule loaded by devd(8) itself and seen starting the
# daemon when the device appears, and pkg delete leaving nothing behind.
# Sourced by .ci/freebsd/run (after lib.sh and kmod.sh).
#
# The device the daemon needs is the simulator's: `hv-vss-sim host
# --system` makes /dev/hv_fsvss_dev with CUSE, as the driver would. The
# packaged daemon runs with its default configuration (every filesystem),
# so the host here only ever sends NEGOTIATE and HOT_BACKUP (a check that
# freezes nothing), never FREEZE.

PKG_DIST="$HVVSS_TIER_WORK/dist"
PKG_FILES="$HVVSS_TIER_WORK/package-files"
SIM="$CARGO_TARGET_DIR/debug/hv-vss-sim"
SIM_LOG="$HVVSS_TIER_WORK/host.log"

# devd(8) has no parse-only mode (sbin/devd/devd.cc: options -d -f -l -n
# -q; it parses, then serves /dev/devctl), so the rule is checked by the
# project's checker here and by the real devd after installing it. The
# rule checked is the one the package installs (its sample, made from
# files/hyperv-vss-devd.conf.in), as .ci/checks/50-packaging.sh does.
package_devd_rule_syntax() {
	_pkg=$(package_file)
	[ -n "$_pkg" ] || { echo "no package in $PKG_DIST"; return 1; }
	_rule=usr/local/etc/devd/hyperv-vss.conf.sample
	rm -rf "$HVVSS_TIER_WORK/devd-rule" &&
		mkdir -p "$HVVSS_TIER_WORK/devd-rule" &&
		tar -xf "$_pkg" -C "$HVVSS_TIER_WORK/devd-rule" "/$_rule" &&
		python3 devd/devd_conf_check.py --rule "$HVVSS_TIER_WORK/devd-rule/$_rule"
}

package_build() {
	if passed "kmod: make (bsd.kmod.mk)"; then
		bash scripts/build-pkg --out "$PKG_DIST" --kmod "$KMOD_OBJDIR"
	else
		bash scripts/build-pkg --out "$PKG_DIST"
	fi
}

package_file() {
	for _file in "$PKG_DIST"/hyperv-vss-*.pkg; do
		[ -e "$_file" ] && echo "$_file"
		return
	done
}

# pkg add. A package for another major (pkg-rs writes the ABI of
# Cargo.toml's metadata, FreeBSD:14:amd64) is refused as "wrong
# architecture" (libpkg/utils.c is_valid_abi): on 15.x the tier installs
# it as that ABI and says so.
package_add() {
	_pkg=$(package_file)
	[ -n "$_pkg" ] || { echo "no package in $PKG_DIST"; return 1; }
	_pkg_abi=$(pkg query -F "$_pkg" '%q')
	_host_abi=$(pkg config abi)
	if [ "$_pkg_abi" = "$_host_abi" ]; then
		pkg add "$_pkg"
	else
		echo "NOTE: package ABI $_pkg_abi, this machine $_host_abi: pkg add with ABI=$_pkg_abi"
		env ABI="$_pkg_abi" pkg add "$_pkg"
	fi
}

package_check() {
	pkg info -l hyperv-vss | sed -n 's|^[[:space:]]*\(/.*\)|\1|p' >"$PKG_FILES" &&
		[ -s "$PKG_FILES" ] &&
		pkg check -s hyperv-vss &&
		echo "pkg check -s: $(wc -l <"$PKG_FILES" | tr -d ' ') files match their checksums"
}

daemon_running() {
	service hv_vssd onestatus >/dev/null 2>&1
}

# wait_for SECONDS COMMAND...: polls every half second.
wait_for() {
	_tries=$(($1 * 2))
	shift
	while [ "$_tries" -gt 0 ]; do
		"$@" && return 0
		sleep 0.5
		_tries=$((_tries - 1))
	done
	return 1
}

host_checked() {
	grep -q 'HOT_BACKUP *-> HV_S_OK' "$SIM_LOG"
}

system_device_exists() {
	[ -c /dev/hv_fsvss_dev ]
}

# Starts the simulated host with the devices at /dev, waiting for a daemon
# to open hv_fsvss_dev, then NEGOTIATE, HOT_BACKUP and a pause; $! is it.
start_host() {
	"$SIM" host --system --wait-daemon 60 negotiate check sleep:8000 >"$SIM_LOG" 2>&1 &
	SIM_PID=$!
	wait_for 10 system_device_exists || { cat "$SIM_LOG"; return 1; }
}

# The host's exit status (0: every request answered exactly once).
finish_host() {
	wait "$SIM_PID"
	_status=$?
	cat "$SIM_LOG"
	return "$_status"
}

# service hv_vssd onestart: the rc.d script finds the device, checks the
# configuration and starts the daemon, which answers the host's check;
# onestop stops it. devd is stopped meanwhile: its rules would start a
# daemon for the new device first (the base system's /etc/devd/hyperv.conf
# starts /usr/sbin/hv_vss_daemon), and this is about the rc.d script.
package_service() {
	[ -x "$SIM" ] || cargo build --locked -q -p hv-vss-sim || return 1
	service devd stop || return 1
	package_service_without_devd
	_status=$?
	service devd start
	return "$_status"
}

package_service_without_devd() {
	start_host || return 1
	service hv_vssd onestart || { kill "$SIM_PID"; finish_host; return 1; }
	_ok=1
	wait_for 30 host_checked || { echo "the daemon did not answer HOT_BACKUP"; _ok=0; }
	daemon_running || { echo "service hv_vssd onestatus: not running"; _ok=0; }
	service hv_vssd onestop || _ok=0
	if daemon_running; then
		echo "still running after onestop"
		_ok=0
	fi
	finish_host || _ok=0
	[ "$_ok" -eq 1 ]
}

# devd reads /usr/local/etc/devd/hyperv-vss.conf when it starts: restart
# it, check that it still runs (a rule it cannot parse stops it), then make
# the device appear and see devd start our daemon (priority 12 over the
# base system's rule for /usr/sbin/hv_vss_daemon) and stop it when the
# device goes away.
package_devd() {
	service devd restart || return 1
	sleep 1
	pgrep -x devd >/dev/null || { echo "devd is not running after restart"; return 1; }
	echo "devd restarted and parsed $(ls /usr/local/etc/devd/hyperv-vss.conf)"
	start_host || return 1
	_ok=1
	wait_for 30 host_checked || { echo "nothing answered HOT_BACKUP: devd did not start hv_vssd"; _ok=0; }
	daemon_running || { echo "hv_vssd is not running"; _ok=0; }
	if pgrep -f /usr/sbin/hv_vss_daemon; then
		echo "the base system's hv_vss_daemon was started instead"
		_ok=0
	fi
	finish_host || _ok=0
	# The device is gone: devd's DESTROY rule runs onestop (and the daemon
	# exits on its own when its device goes away).
	if ! wait_for 15 sh -c '! service hv_vssd onestatus >/dev/null 2>&1'; then
		echo "hv_vssd still runs after the device went away"
		service hv_vssd onestop
		_ok=0
	fi
	[ "$_ok" -eq 1 ]
}

# pkg delete, then: not installed, none of its files left (the sample
# configuration copied by @sample included), devd without the rule.
package_delete() {
	pkg delete -y hyperv-vss || return 1
	_left=0
	if pkg info -e hyperv-vss; then
		echo "still registered"
		_left=1
	fi
	while read -r _file; do
		if [ -e "$_file" ]; then
			echo "left behind: $_file"
			_left=1
		fi
	done <"$PKG_FILES"
	for _file in /usr/local/etc/hv_vssd.conf /var/run/hv_vssd.pid \
		/usr/local/share/examples/hyperv-vss /usr/local/etc/hyperv-vss; do
		if [ -e "$_file" ]; then
			echo "left behind: $_file"
			_left=1
		fi
	done
	service devd restart >/dev/null
	[ "$_left" -eq 0 ] && echo "pkg delete: nothing left"
	[ "$_left" -eq 0 ]
}

package_steps() {
	step "package: scripts/build-pkg (native, cargo-freebsd-pkg)" package_build
	if passed "package: scripts/build-pkg (native, cargo-freebsd-pkg)"; then
		step "package: devd rule syntax (devd/devd_conf_check.py)" package_devd_rule_syntax
	else
		skip "package: devd rule syntax (devd/devd_conf_check.py)" "no package was built"
	fi
	if pkg info -e hyperv-vss; then
		for _s in "pkg add" "pkg check -s" "service hv_vssd onestart/onestop" \
			"devd loads the rule and starts hv_vssd" "pkg delete leaves nothing"; do
			skip "package: $_s" "hyperv-vss is already installed here"
		done
		return
	fi
	if ! passed "package: scripts/build-pkg (native, cargo-freebsd-pkg)"; then
		for _s in "pkg add" "pkg check -s" "service hv_vssd onestart/onestop" \
			"devd loads the rule and starts hv_vssd" "pkg delete leaves nothing"; do
			skip "package: $_s" "no package was built"
		done
		return
	fi
	step "package: pkg add" package_add
	step "package: pkg check -s" package_check
	step "package: service hv_vssd onestart/onestop" package_service
	step "package: devd loads the rule and starts hv_vssd" package_devd
	step "package: pkg delete leaves nothing" package_delete
}
