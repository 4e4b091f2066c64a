# shellcheck shell=sh
# Shared by .ci/freebsd/run and its parts (kmod.sh, package.sh, ports.sh):
# every check is a step with a result (PASS, FAIL or SKIP with a reason),
# and the summary at the end lists them all. POSIX sh: a fresh FreeBSD has
# no bash. Source it; do not run it.

# One line per step: RESULT<TAB>name<TAB>detail.
: "${HVVSS_TIER_RESULTS:=$(mktemp -t hvvss-tier)}"
# Where steps keep their logs and scratch files (removed at the end).
: "${HVVSS_TIER_WORK:=$(mktemp -d -t hvvss-tier-work)}"
export HVVSS_TIER_RESULTS HVVSS_TIER_WORK

banner() {
	printf '\n=== %s\n' "$*"
}

record() {
	# record RESULT NAME DETAIL
	printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$HVVSS_TIER_RESULTS"
	printf -- '--- %s: %s%s\n' "$1" "$2" "${3:+ ($3)}"
}

# step NAME COMMAND [ARGS...]: runs the command, PASS on exit 0, else FAIL
# with the exit status. Output goes to the terminal as it comes.
step() {
	_name=$1
	shift
	banner "$_name"
	if "$@"; then
		record PASS "$_name" ""
		return 0
	else
		_status=$?
		record FAIL "$_name" "exit $_status"
		return "$_status"
	fi
}

# skip NAME REASON: a check that cannot run here, never counted as passed.
skip() {
	banner "$1"
	record SKIP "$1" "$2"
}

# passed NAME: whether step NAME passed (for steps that need an earlier one).
passed() {
	grep -q "^PASS	$1	" "$HVVSS_TIER_RESULTS"
}

# The summary; exit status 1 if anything failed.
summary() {
	banner "summary"
	_pass=$(grep -c '^PASS' "$HVVSS_TIER_RESULTS" || true)
	_fail=$(grep -c '^FAIL' "$HVVSS_TIER_RESULTS" || true)
	_skip=$(grep -c '^SKIP' "$HVVSS_TIER_RESULTS" || true)
	awk -F '\t' '{ printf "%-4s  %-58s %s\n", $1, $2, $3 }' "$HVVSS_TIER_RESULTS"
	printf '\nFreeBSD %s (%s), %s\n' "$(freebsd-version -u 2>/dev/null || uname -r)" \
		"$(uname -m)" "$(date -u '+%Y-%m-%d %H:%M UTC')"
	printf '%d passed, %d failed, %d skipped\n' "$_pass" "$_fail" "$_skip"
	[ "$_fail" -eq 0 ]
}

# pkg install -y the packages not installed yet (run sets ASSUME_ALWAYS_YES).
ensure_pkg() {
	_missing=
	for _p in "$@"; do
		pkg info -e "$_p" 2>/dev/null || _missing="$_missing $_p"
	done
	[ -z "$_missing" ] && return 0
	# shellcheck disable=SC2086 # one word per package
	pkg install -y $_missing
}

# Kernel modules the tier needs, loaded unless present (kldload -n).
ensure_kmods() {
	for _m in "$@"; do
		kldload -n "$_m" || return 1
	done
}

# The packages of .ci/freebsd-packages as cargo -p arguments.
freebsd_package_args() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' -e 's/^/-p /' .ci/freebsd-packages | tr '\n' ' '
}
