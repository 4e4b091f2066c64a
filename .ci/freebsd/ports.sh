# shellcheck shell=sh
# The FreeBSD tier's ports part: both ports assembled by scripts/port,
# their distfile made from the checkout by scripts/port (git archive, named
# as the port's USE_GITHUB expects), then `make stage check-plist` in each,
# when a ports tree is installed. Sourced by .ci/freebsd/run (after lib.sh).

PORTS_WORK="$HVVSS_TIER_WORK/ports"
PORTS_DISTDIR="$HVVSS_TIER_WORK/distfiles"

# Assembles both ports, with distinfo for a distfile made from HEAD by
# `scripts/port distfile` (the tool that makes the release's tarball, so
# make stage checks its name and top directory against the port's).
ports_assemble() {
	rm -rf "$PORTS_WORK"
	_tarball=$(bash scripts/port distfile HEAD "$PORTS_DISTDIR") || return 1
	bash scripts/port assemble "$PORTS_WORK" --distfile "$_tarball"
}

# make stage check-plist in one assembled port.
ports_stage_check_plist() {
	make -C "$PORTS_WORK/sysutils/$1" BATCH=yes DISTDIR="$PORTS_DISTDIR" \
		WRKDIRPREFIX="$HVVSS_TIER_WORK/wrk" stage check-plist
}

ports_steps() {
	if [ ! -f /usr/ports/Mk/bsd.port.mk ]; then
		_why="no ports tree in /usr/ports (git clone https://git.FreeBSD.org/ports.git /usr/ports, then run again)"
		skip "ports: sysutils/hyperv-vss make stage check-plist" "$_why"
		skip "ports: sysutils/hyperv-vss-kmod make stage check-plist" "$_why"
		return
	fi
	step "ports: scripts/port assemble (distfile from git archive)" ports_assemble
	if ! passed "ports: scripts/port assemble (distfile from git archive)"; then
		skip "ports: sysutils/hyperv-vss make stage check-plist" "the ports were not assembled"
		skip "ports: sysutils/hyperv-vss-kmod make stage check-plist" "the ports were not assembled"
		return
	fi
	step "ports: sysutils/hyperv-vss make stage check-plist" ports_stage_check_plist hyperv-vss
	step "ports: sysutils/hyperv-vss-kmod make stage check-plist" ports_stage_check_plist hyperv-vss-kmod
}
