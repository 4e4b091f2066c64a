#!/usr/bin/env bash
# The FreeBSD tier (issue 16), checked as far as Linux can: it runs only
# on FreeBSD (.ci/freebsd/run, in CI by .github/workflows/freebsd.yml), so
# here its scripts must be shellcheck-clean as the POSIX sh FreeBSD runs,
# the workflow must match GitHub's workflow schema and give the FreeBSD VM
# action only inputs it has, and every command the workflow runs, inside
# the VM too, must be shellcheck-clean. (The FreeBSD code of every
# crate the tier builds is linted by .ci/run's FreeBSD clippy step, with
# the packages of .ci/freebsd-packages.)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

ensure_apt shellcheck python3-venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

banner "FreeBSD tier: shellcheck of .ci/freebsd (POSIX sh) and its entry points"
shellcheck -s sh -x .ci/freebsd/run .ci/freebsd/lib.sh .ci/freebsd/kmod.sh \
	.ci/freebsd/package.sh .ci/freebsd/ports.sh
shellcheck -x .ci/run scripts/build-pkg .ci/checks/15-freebsd-tier.sh
echo "shellcheck: the tier's scripts are clean"

banner "FreeBSD tier: its step accounting (lib.sh, run by sh)"
# A pass, a failure and a skip: the summary counts each as what it is and
# the tier exits non-zero; a skipped step never counts as passed.
if HVVSS_TIER_RESULTS="$work/results" HVVSS_TIER_WORK="$work/tier" sh -c '
	. .ci/freebsd/lib.sh
	step "passes" true
	step "fails" false
	skip "cannot run" "a reason"
	passed "cannot run" && echo "a skipped step counted as passed"
	summary' >"$work/summary.txt"; then
	cat "$work/summary.txt"
	echo "the tier's summary exits 0 although a step failed" >&2
	exit 1
fi
grep -qx '1 passed, 1 failed, 1 skipped' "$work/summary.txt"
if grep -q 'counted as passed' "$work/summary.txt"; then
	echo "lib.sh: a skipped step counted as passed" >&2
	exit 1
fi
echo "lib.sh: a pass, a failure and a skip are counted as such; a failure fails the tier"

banner "FreeBSD tier: the CI workflow (schema, action inputs, shellcheck of its commands)"
venv=$(ensure_venv ci-lint-venv 'import check_jsonschema, yaml' \
	'check-jsonschema>=0.33,<1' 'pyyaml>=6,<7')
# GitHub's workflow schema (SchemaStore's, vendored in check-jsonschema:
# no network needed).
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/freebsd.yml
"$venv/bin/python" - .github/workflows/freebsd.yml "$work" <<'PY'
# Checks the inputs given to vmactions/freebsd-vm and writes every shell
# command of the workflow to its own file: the `run` of plain steps and the
# `prepare`/`run` inputs of vmactions/freebsd-vm (executed by sh in the VM).
import pathlib, sys, yaml
# The inputs of vmactions/freebsd-vm@v1 (its action.yml).
VM_INPUTS = {
    "osname", "prepare", "run", "release", "arch", "envs", "mem", "cpu", "nat",
    "usesh", "sync", "copyback", "debug", "data-dir", "cache-dir", "sync-time",
    "disable-cache", "cache-after-prepare", "debug-on-error", "vnc-password",
    "custom-shell-name",
}
workflow = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
out = pathlib.Path(sys.argv[2])
count = 0
for job_name, job in workflow["jobs"].items():
    for index, step in enumerate(job.get("steps", [])):
        scripts = []
        if "run" in step:
            scripts.append(("run", step["run"]))
        if str(step.get("uses", "")).startswith("vmactions/freebsd-vm@"):
            given = step.get("with", {})
            unknown = set(given) - VM_INPUTS
            if unknown:
                sys.exit(f"{sys.argv[1]}: {job_name} step {index}: vmactions/freebsd-vm has no input {sorted(unknown)}")
            for key in ("prepare", "run"):
                if given.get(key):
                    scripts.append((key, given[key]))
        for key, text in scripts:
            count += 1
            (out / f"{job_name}-{index}-{key}.sh").write_text("#!/bin/sh\n" + text, encoding="utf-8")
if count == 0:
    sys.exit(f"{sys.argv[1]}: no command found (was the workflow restructured?)")
print(f"{sys.argv[1]}: {count} command(s) extracted")
PY
for script in "$work"/*.sh; do
	shellcheck -s sh "$script"
done
grep -q 'sh .ci/freebsd/run' "$work"/*.sh
echo "workflow: valid, its vmactions inputs exist, every command shellcheck-clean, and it runs .ci/freebsd/run"
