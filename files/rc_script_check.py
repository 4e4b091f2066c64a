#!/usr/bin/env python3
"""Run the rc.d script files/hv_vssd.in under /bin/sh with a model of
rc.subr and a stand-in hv_vssd, and check what an administrator and devd(8)
rely on:

- `service hv_vssd configtest` tests the configuration whether or not the
  service is enabled (rc.subr answers 0 without testing otherwise);
- the pidfile is the configuration's pid_file (`hv_vssd -T`), so status,
  stop and reload find the daemon; a configuration that does not parse
  falls back to /var/run/hv_vssd.pid with a warning;
- devd's "quietstart devd" starts the daemon when hv_vssd_enable is unset
  or YES and silently does nothing when it is NO; a plain "start" needs YES.

There is no FreeBSD here, so RC_SUBR_MODEL below reproduces the parts of
libexec/rc/rc.subr (freebsd-src, read at 0227451) these rely on, each rule
as rc.subr states it: the fast/force/one/quiet prefixes of run_rc_command
(force and one set ${rcvar}=YES, quiet sets rc_quiet); the keywords (start
stop restart rcvar ... $extra_commands, plus status when $command is set);
the rcvar check that refuses every keyword except rcvar, stop (when
running), delete, enable, describe and status, printing "Cannot ..." unless
quiet and returning 0; ${rc_arg}_cmd with its precmd; the default start
(precmd, then $command $rc_flags $command_args), stop (kill -TERM the
pidfile's pid) and status ("is running as pid"); checkyesno; warn;
load_rc_config reading the rc.conf given in $RC_CONF. Simplified: a pid is
"running" when kill -0 succeeds (rc.subr also compares the process name with
$command through ps), and limits(1), svcj and cpuset are left out.

usage: rc_script_check.py files/hv_vssd.in
"""

import os
import signal
import subprocess
import sys
import tempfile

RC_SUBR_MODEL = r'''
checkyesno()
{
	eval _value=\$${1}
	case $_value in
	[Yy][Ee][Ss]|[Tt][Rr][Uu][Ee]|[Oo][Nn]|1) return 0 ;;
	[Nn][Oo]|[Ff][Aa][Ll][Ss][Ee]|[Oo][Ff][Ff]|0) return 1 ;;
	*) warn "\$${1} is not set properly - see rc.conf(5)."; return 1 ;;
	esac
}

warn() { echo 1>&2 "$0: WARNING: $*"; }
err() { _code=$1; shift; echo 1>&2 "$0: ERROR: $*"; exit $_code; }

load_rc_config() { [ -r "$RC_CONF" ] && . "$RC_CONF"; return 0; }

check_pidfile()
{
	[ -f "$1" ] || return
	read _pid _junk < "$1"
	[ -n "$_pid" ] && kill -0 "$_pid" 2>/dev/null && echo "$_pid"
}

run_rc_command()
{
	_return=0
	rc_arg=$1
	shift 1
	rc_extra_args="$*"
	_rc_prefix=
	case "$rc_arg" in
	fast*) rc_arg=${rc_arg#fast}; rc_fast=yes; rc_quiet=yes ;;
	force*) rc_force=yes; _rc_prefix=force; rc_arg=${rc_arg#force}
		[ -n "${rcvar}" ] && eval ${rcvar}=YES ;;
	one*) _rc_prefix=one; rc_arg=${rc_arg#one}
		[ -n "${rcvar}" ] && eval ${rcvar}=YES ;;
	quiet*) _rc_prefix=quiet; rc_arg=${rc_arg#quiet}; rc_quiet=yes ;;
	esac
	_keywords="start stop restart rcvar enable disable delete enabled describe extracommands $extra_commands"
	rc_pid=
	if [ -n "$command" ]; then
		_keywords="${_keywords} status poll"
		[ -n "$pidfile" ] && rc_pid=$(check_pidfile "$pidfile")
	fi
	eval rc_flags=\$${name}_flags
	for _elem in $_keywords; do
		[ "$_elem" != "$rc_arg" ] && continue
		if [ -n "${rcvar}" -a "$rc_arg" != "rcvar" -a "$rc_arg" != "stop" \
		    -a "$rc_arg" != "delete" -a "$rc_arg" != "enable" \
		    -a "$rc_arg" != "describe" -a "$rc_arg" != "status" ] ||
		    [ -n "${rcvar}" -a "$rc_arg" = "stop" -a -z "${rc_pid}" ]; then
			if ! checkyesno ${rcvar}; then
				if [ -z "${rc_quiet}" ]; then
					echo "Cannot '${rc_arg}' $name. Set ${rcvar} to YES in /etc/rc.conf or use 'one${rc_arg}' instead of '${rc_arg}'."
				fi
				return 0
			fi
		fi
		if [ $rc_arg = "start" -a -z "$rc_fast" -a -n "$rc_pid" ]; then
			[ -z "$rc_quiet" ] && echo 1>&2 "${name} already running? (pid=$rc_pid)."
			return 1
		fi
		eval _cmd=\$${rc_arg}_cmd _precmd=\$${rc_arg}_precmd
		if [ -n "$_cmd" ]; then
			if [ -n "$_precmd" ]; then eval "$_precmd $rc_extra_args" || return 1; fi
			eval "$_cmd $rc_extra_args"
			return $?
		fi
		case "$rc_arg" in
		status)
			if [ -n "$rc_pid" ]; then
				echo "${name} is running as pid $rc_pid."
			else
				echo "${name} is not running."
				return 1
			fi ;;
		start)
			if [ -n "$_precmd" ]; then
				eval "$_precmd $rc_extra_args" || { warn "failed precmd routine for ${name}"; return 1; }
			fi
			echo "Starting ${name}."
			eval "$command $rc_flags $command_args" || return 1 ;;
		stop)
			if [ -z "$rc_pid" ]; then
				[ -n "$rc_fast" ] && return 0
				echo 1>&2 "${name} not running? (check $pidfile)."
				return 1
			fi
			echo "Stopping ${name}."
			kill -TERM $rc_pid ;;
		rcvar) echo "$rcvar=\"$(eval echo \$$rcvar)\"" ;;
		*) return 1 ;;
		esac
		return $_return
	done
	echo 1>&2 "$0: unknown directive '$rc_arg'."
	exit 1
}
'''

# Stands in for hv_vssd: logs its arguments, "-t" fails and "-T" fails on a
# configuration whose first line is "broken", "-T" prints pid_file.
FAKE_DAEMON = r'''#!/bin/sh
echo "$*" >> "$HVVSSD_LOG"
config=/nonexistent mode=run
while [ $# -gt 0 ]; do
	case "$1" in -c) config=$2; shift ;; -t) mode=check ;; -T) mode=print ;; esac
	shift
done
if [ "$mode" != run ] && head -n 1 "$config" 2>/dev/null | grep -q '^broken'; then
	echo "hv_vssd: $config:1: unknown key \"broken\"" >&2
	exit 78
fi
pid_file=$(sed -n 's/^pid_file = //p' "$config" 2>/dev/null)
case "$mode" in
check) exit 0 ;;
print) echo "freeze_limit = 60"; echo "pid_file = ${pid_file:-/var/run/hv_vssd.pid}"; exit 0 ;;
esac
exit 0
'''


class Machine:
    """A prefix with the script, the stand-in daemon, rc.conf and a config."""

    def __init__(self, template, work):
        self.work = work
        self.prefix = os.path.join(work, "prefix")
        os.makedirs(os.path.join(self.prefix, "sbin"), exist_ok=True)
        os.makedirs(os.path.join(self.prefix, "etc", "rc.d"), exist_ok=True)
        self.log = os.path.join(work, "daemon.log")
        self.rc_conf = os.path.join(work, "rc.conf")
        self.config = os.path.join(self.prefix, "etc", "hv_vssd.conf")
        model = os.path.join(work, "rc.subr")
        write(model, RC_SUBR_MODEL)
        daemon = os.path.join(self.prefix, "sbin", "hv_vssd")
        write(daemon, FAKE_DAEMON, 0o755)
        text = open(template, encoding="utf-8").read()
        if ". /etc/rc.subr" not in text or "/dev/hv_fsvss_dev" not in text:
            fail(f"{template}: does not source /etc/rc.subr or test /dev/hv_fsvss_dev")
        # /dev/null stands in for the VSS device: a character device that exists.
        text = (text.replace("%%PREFIX%%", self.prefix)
                .replace(". /etc/rc.subr", f". {model}")
                .replace("/dev/hv_fsvss_dev", "/dev/null"))
        if "%%" in text:
            fail(f"{template}: a %%KEY%% other than PREFIX is left: the port substitutes only SUB_LIST")
        self.script = os.path.join(self.prefix, "etc", "rc.d", "hv_vssd")
        write(self.script, text, 0o755)
        self.reset()

    def reset(self, rc_conf="", config="freeze_limit = 60\n"):
        write(self.rc_conf, rc_conf)
        write(self.config, config)
        write(self.log, "")

    def run(self, *args):
        env = dict(os.environ, RC_CONF=self.rc_conf, HVVSSD_LOG=self.log)
        return subprocess.run(["/bin/sh", self.script, *args], env=env, capture_output=True,
                              text=True, timeout=30)

    def daemon_calls(self):
        return open(self.log, encoding="utf-8").read().splitlines()

    def started(self):
        """Whether the daemon was run to serve (not just -t or -T)."""
        return any(not {"-t", "-T"} & set(call.split()) for call in self.daemon_calls())


def write(path, text, mode=0o644):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


def fail(message):
    print(f"rc.d: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message, result=None):
    if not condition:
        if result is not None:
            message += f"\n  exit {result.returncode}\n  stdout: {result.stdout!r}\n  stderr: {result.stderr!r}"
        fail(message)


def configtest_works_when_not_enabled(m):
    m.reset(config="broken = yes\n")
    r = m.run("configtest")
    check(r.returncode != 0 and "unknown key" in r.stderr,
          "configtest of a broken configuration must fail when hv_vssd_enable is unset", r)
    m.reset(rc_conf='hv_vssd_enable="NO"\n', config="broken = yes\n")
    r = m.run("configtest")
    check(r.returncode != 0, "configtest must fail on a broken configuration with hv_vssd_enable=NO", r)
    m.reset()
    r = m.run("configtest")
    check(r.returncode == 0 and f"-t -c {m.config}" in m.daemon_calls(),
          "configtest must run hv_vssd -t -c <config> and succeed", r)
    r = m.run("oneconfigtest")
    check(r.returncode == 0, "oneconfigtest must keep working", r)


def pidfile_comes_from_the_configuration(m):
    pidfile = os.path.join(m.work, "run", "custom.pid")
    os.makedirs(os.path.dirname(pidfile), exist_ok=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        write(pidfile, f"{sleeper.pid}\n")
        m.reset(config=f"pid_file = {pidfile}\n")
        r = m.run("onestatus")
        check(r.returncode == 0 and f"is running as pid {sleeper.pid}" in r.stdout,
              f"status must find the daemon through pid_file = {pidfile}", r)
        r = m.run("onestop")
        check(r.returncode == 0 and "Stopping hv_vssd." in r.stdout,
              "stop must find the daemon through the configured pid_file", r)
        sleeper.wait(timeout=10)
    finally:
        if sleeper.poll() is None:
            sleeper.send_signal(signal.SIGKILL)
            sleeper.wait()


def pidfile_falls_back_when_the_configuration_is_broken(m):
    m.reset(config="broken = yes\n")
    r = m.run("onestatus")
    check("cannot read pid_file" in r.stderr and "/var/run/hv_vssd.pid" in r.stderr,
          "a configuration that does not parse must fall back to /var/run/hv_vssd.pid and say so", r)


def devd_start_follows_hv_vssd_enable(m):
    cases = [("", True), ('hv_vssd_enable="YES"\n', True), ('hv_vssd_enable="NO"\n', False)]
    for rc_conf, starts in cases:
        m.reset(rc_conf=rc_conf)
        r = m.run("quietstart", "devd")
        started = m.started()
        what = rc_conf.strip() or "hv_vssd_enable unset"
        check(r.returncode == 0 and started == starts,
              f"devd's quietstart with {what}: expected {'a start' if starts else 'nothing'}", r)
        if not starts:
            check(r.stdout == "" and r.stderr == "", f"devd's quietstart with {what} must be silent", r)


def plain_start_needs_yes(m):
    m.reset()
    r = m.run("start")
    check("Cannot 'start' hv_vssd" in r.stdout and not m.started(),
          "a plain start with hv_vssd_enable unset must refuse (devd and boot stay apart)", r)
    m.reset(rc_conf='hv_vssd_enable="YES"\n')
    r = m.run("start")
    check(r.returncode == 0 and m.started() and f"-c {m.config}" in m.daemon_calls(),
          "a plain start with hv_vssd_enable=YES must start the daemon", r)


CHECKS = [configtest_works_when_not_enabled, pidfile_comes_from_the_configuration,
          pidfile_falls_back_when_the_configuration_is_broken, devd_start_follows_hv_vssd_enable,
          plain_start_needs_yes]


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    with tempfile.TemporaryDirectory() as work:
        machine = Machine(sys.argv[1], work)
        for check_fn in CHECKS:
            check_fn(machine)
            print(f"rc.d: {check_fn.__name__.replace('_', ' ')}: ok")
    print(f"rc.d: {len(CHECKS)} passed, 0 failed")


if __name__ == "__main__":
    main()
