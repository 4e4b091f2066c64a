#!/usr/bin/env bash
# A short fuzzing run of every cargo-fuzz target, from the checked-in seed
# corpus (copied, so the checkout stays clean). Long runs: see proto/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
ensure_nightly_fuzz() {
	rustup toolchain list | grep -q '^nightly-x86_64' || rustup toolchain install nightly --profile minimal
	command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
}
ensure_nightly_fuzz

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for crate in */fuzz; do
	[ -f "$crate/Cargo.toml" ] || continue
	# The fuzz crates are workspaces of their own: format-check them here.
	find "$crate" -name '*.rs' -not -path '*/target/*' -print0 | xargs -0 rustfmt --edition 2024 --check
	# A harness library's own tests (kmod/fuzz: the seeds reach every path).
	if [ -f "$crate/src/lib.rs" ]; then
		(cd "$crate" && cargo +nightly test --locked --release)
	fi
	(cd "$crate" && cargo +nightly fuzz build -O)
	for target in $(cd "$crate" && cargo +nightly fuzz list); do
		mkdir -p "$scratch/$target"
		[ -d "$crate/corpus/$target" ] && cp -r "$crate/corpus/$target/." "$scratch/$target/"
		banner "fuzz $crate $target for ${FUZZ_SECONDS}s"
		log="$scratch/$target.log"
		if ! (cd "$crate" && cargo +nightly fuzz run -O "$target" "$scratch/$target" -- \
			-max_total_time="$FUZZ_SECONDS" -print_final_stats=1) >"$log" 2>&1; then
			tail -n 60 "$log" >&2
			echo "fuzz target $target failed: reproducer in $crate/artifacts/$target" >&2
			exit 1
		fi
		grep -E '^(Done|stat::number_of_executed_units)' "$log"
	done
done
