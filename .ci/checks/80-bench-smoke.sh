#!/usr/bin/env bash
# Benchmark smoke run (issue 9): proves `hv-vss-bench` still works end to
# end (floor, qemu-ga, the real daemon through the simulated kernel, probe,
# idle sampling, engine micro-benchmark) in a few seconds: ext4 N=1, one
# repetition, two cycles. It never gates on timing; the numbers it prints
# mean nothing on a CI machine. The real run and its results: BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

banner "bench smoke: prerequisites"
ensure_apt qemu-guest-agent e2fsprogs util-linux mount
require_root_fuse_loop 80-bench-smoke

banner "bench smoke: hv-vss-bench --smoke (debug build, timings meaningless)"
cargo build --locked -p hv-vssd -p hv-vss-bench -p hv-vss-bench-probe
timeout 300 "${CARGO_TARGET_DIR:-target}/debug/hv-vss-bench" --smoke
