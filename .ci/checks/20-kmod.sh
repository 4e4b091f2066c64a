#!/usr/bin/env bash
# Kernel module (issue 4): build the Rust engine as the kernel staticlib
# with the pinned nightly, the way kmod/Makefile (and so the FreeBSD port)
# does, through kmod/build-engine.sh and offline like a poudriere build:
# only the crates of kmod/ffi/Cargo.lock vendored, no network. Then compile
# the C glue against FreeBSD's headers (zig), link both the way kmod.mk
# does, and check the result is loadable by FreeBSD's amd64 kernel linker
# as far as that can be told without FreeBSD: relocatable ELF64 x86-64,
# only relocation types the kernel linker handles, no SSE/x87, undefined
# symbols only from an allowlist. Also lints hv_vss_rs.4. Every check fails
# the script for real.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

ffi=kmod/ffi
glue=kmod/glue
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

banner "kmod: pinned nightly ($ffi/rust-toolchain.toml)"
channel=$(sed -n 's/^channel = "\(.*\)"$/\1/p' "$ffi/rust-toolchain.toml")
[ -n "$channel" ] || fail "no channel in $ffi/rust-toolchain.toml"
rustup toolchain list | grep -q "^$channel" ||
	rustup toolchain install "$channel" --profile minimal --component rust-src --component clippy
rustup component add --toolchain "$channel" rust-src clippy >/dev/null
ensure_apt binutils mandoc
ensure_zig
sysroot=$(rustc "+$channel" --print sysroot)
lld="$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
[ -x "$lld" ] || fail "rust-lld missing from $channel"
# kmod/build-engine.sh's output directory: its sysroot (core and
# compiler_builtins from rust-src) and cargo's target directory.
engine_out="${CARGO_TARGET_DIR_KMOD:-$PWD/target/kmod-ffi}"
lib="$engine_out/target/x86_64-unknown-none/release/libhv_vss_rs.a"

banner "kmod: tests of the C ABI on the host (stable, the tests play the glue)"
rustfmt +stable --edition 2024 --check "$ffi/src/lib.rs" "$ffi/src/tests.rs"
(cd "$ffi" && CARGO_TARGET_DIR="$engine_out-host" cargo +stable clippy --locked \
	--target x86_64-unknown-linux-gnu --all-targets -- -D warnings)
(cd "$ffi" && CARGO_TARGET_DIR="$engine_out-host" cargo +stable test --locked \
	--target x86_64-unknown-linux-gnu)

# The port's fetch phase, the only step allowed the network: the crates of
# kmod/ffi/Cargo.lock (Makefile.crates), vendored. Nothing of the standard
# library's own lock file.
banner "kmod: vendor kmod/ffi/Cargo.lock (as the port's distfiles)"
(cd "$ffi" && cargo "+$channel" vendor --locked "$out/vendor" >"$out/vendor.toml" 2>"$out/vendor.log") ||
	{ cat "$out/vendor.log" >&2; fail "cargo vendor failed"; }
grep -q '^replace-with = "vendored-sources"$' "$out/vendor.toml" || fail "cargo vendor printed no source replacement"
echo "vendored: $(find "$out/vendor" -mindepth 1 -maxdepth 1 | wc -l) crates"
mkdir "$out/cargo-home"
cp "$out/vendor.toml" "$out/cargo-home/config.toml"
# The build phase: an empty CARGO_HOME but for the vendored source, cargo
# offline, and no network at all where a network namespace can be made.
offline=(env CARGO_HOME="$out/cargo-home" CARGO_NET_OFFLINE=true)
if unshare -n true 2>/dev/null; then
	offline=(unshare -n "${offline[@]}")
	echo "offline: CARGO_NET_OFFLINE=true, in a network namespace without interfaces"
else
	echo "offline: CARGO_NET_OFFLINE=true (no network namespace here: unshare -n failed)"
fi

banner "kmod: clippy of the kernel ABI crate (kernel target, offline)"
"${offline[@]}" sh kmod/build-engine.sh "$engine_out" clippy -- -D warnings

banner "kmod: build libhv_vss_rs.a with kmod/build-engine.sh (sysroot from rust-src, offline)"
"${offline[@]}" sh kmod/build-engine.sh "$engine_out" build
[ -f "$lib" ] || fail "$lib not built"

banner "kmod: compile the C glue against FreeBSD's headers (zig)"
# Kernel module flags as kmod.mk/kern.mk use them, with the kernel's warning
# set as errors. kmod/glue/check declares the kernel-private headers zig
# does not ship (see its README). zig's -fsyntax-only exits 1 even on clean
# input, so the glue is compiled to an object, which the link below uses.
# zig keeps SSE2 on with -mno-sse alone (FreeBSD's clang does not), hence
# the explicit -mno-sse2 -mno-avx.
python3 -m ziglang cc -target x86_64-freebsd -O2 -g0 -fno-sanitize=all \
	-D_KERNEL -DKLD_MODULE -ffreestanding -fno-common -fno-pic \
	-mcmodel=kernel -mno-red-zone -mno-mmx -mno-sse -mno-sse2 -mno-avx -msoft-float \
	-fno-asynchronous-unwind-tables -fno-omit-frame-pointer -fno-stack-protector \
	-D__printf__=__freebsd_kprintf__ -Werror -Wall -Wredundant-decls \
	-Wnested-externs -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
	-Wcast-qual -Wundef -Wno-pointer-sign -Wno-unused-command-line-argument \
	-I "$glue/check" -I "$glue" -c -o "$out/hv_vss_rs.o" "$glue/hv_vss_rs.c"

# The engine's exports, from the one header, are the roots of --gc-sections.
mapfile -t exports < <(grep -o 'hvvss_engine_[a-z_]*(' "$glue/hv_vss_rs.h" | tr -d '(' | sort -u)
roots=()
for sym in "${exports[@]}"; do roots+=(-u "$sym"); done

# link_module LIB DIR: DIR/engine.o and DIR/hv_vss_rs.ko from the staticlib
# LIB and the glue, as kmod/Makefile and kmod.mk link them.
link_module() {
	local lib=$1 dir=$2
	mkdir -p "$dir"
	"$lld" -flavor gnu -m elf_x86_64_fbsd -r --gc-sections "${roots[@]}" -o "$dir/engine.o" "$lib"
	objcopy --strip-debug --remove-section=.llvmbc --remove-section=.llvmcmd \
		--wildcard --keep-global-symbol='hvvss_engine_*' "$dir/engine.o"
	# kmod.mk: ld -r -d of all objects, then objcopy --strip-debug.
	"$lld" -flavor gnu -m elf_x86_64_fbsd -r -d -o "$dir/hv_vss_rs.ko" "$out/hv_vss_rs.o" "$dir/engine.o" 2>&1 |
		grep -v 'warning: -d, -dc, -dp, and --\[no-\]define-common will be removed' || true
	objcopy --strip-debug "$dir/hv_vss_rs.ko"
}

# check_elf OBJECT: relocatable ELF64 x86-64 whose loaded sections carry
# only relocations FreeBSD's amd64 link_elf_obj applies (elf_machdep.c:
# 64, PC32, PLT32, 32S; plain 32, GOTPCREL*, TLS make kldload fail), and
# no SSE/MMX/x87 instruction (the kernel does not save FPU state for it).
check_elf() {
	local obj=$1 name
	name=$(basename "$obj")
	# (Output captured first: grep -q closing a pipe early trips pipefail.)
	local header
	header=$(readelf -h "$obj")
	grep -q 'Class: *ELF64' <<<"$header" || fail "$name: not ELF64"
	grep -q 'Type: *REL (Relocatable file)' <<<"$header" || fail "$name: not relocatable"
	grep -q 'Machine: *Advanced Micro Devices X86-64' <<<"$header" || fail "$name: not x86-64"
	# Relocation types by whether their target section is loaded (SHF_ALLOC).
	python3 - "$obj" >"$out/relocs" <<'PY'
import collections, struct, sys
data = open(sys.argv[1], "rb").read()
shoff, = struct.unpack_from("<Q", data, 0x28)
shentsize, shnum = struct.unpack_from("<HH", data, 0x3a)
sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
names = {1: "64", 2: "PC32", 4: "PLT32", 9: "GOTPCREL", 10: "32", 11: "32S",
         41: "GOTPCRELX", 42: "REX_GOTPCRELX", 19: "TLSGD", 20: "TLSLD", 21: "DTPOFF32",
         22: "GOTTPOFF", 23: "TPOFF32"}
counts = collections.Counter()
for (_name, sh_type, _flags, _addr, off, size, _link, info, _align, entsize) in sections:
    if sh_type not in (4, 9):  # SHT_RELA, SHT_REL
        continue
    loaded = bool(sections[info][2] & 0x2)  # target section has SHF_ALLOC
    for i in range(size // entsize):
        r_info, = struct.unpack_from("<Q", data, off + i * entsize + 8)
        rtype = r_info & 0xffffffff
        label = "R_X86_64_" + names.get(rtype, "TYPE%d" % rtype)
        counts[label if loaded else "UNLOADED:" + label] += 1
for label, n in sorted(counts.items()):
    print("%7d %s" % (n, label))
PY
	echo "$name relocations (loaded sections):"
	cat "$out/relocs"
	if grep -vE '^ *[0-9]+ (R_X86_64_(64|PC32|PLT32|32S)|UNLOADED:.*)$' "$out/relocs"; then
		fail "$name: relocation types the FreeBSD kernel linker rejects (above)"
	fi
	local fpu
	fpu=$(objdump -d --no-show-raw-insn "$obj" |
		grep -cE '%[xyz]mm[0-9]|%mm[0-9]|%st(\(|\b)|	f(ld|st|add|sub|mul|div|ild|ist|xch|com|ucom|init|nstsw|chs|abs|sqrt|rndint|scale|prem|sin|cos|tan|atan|2xm1|yl2x)[a-z]* ' || true)
	echo "$name SSE/MMX/x87 instructions: $fpu"
	[ "$fpu" -eq 0 ] || fail "$name: uses SSE/MMX/x87 registers"
	size "$obj" | tail -1 | awk -v n="$name" '{ print n " size: text " $1 " data " $2 " bss " $3 " bytes" }'
}

# check_module DIR: every check of DIR/engine.o and DIR/hv_vss_rs.ko.
check_module() {
	local dir=$1 allow undef extra declared defined sym weak sections set
	check_elf "$dir/engine.o"
	check_elf "$dir/hv_vss_rs.ko"

	# Undefined symbols of the Rust part: only the allowlist.
	allow=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$ffi/undefined-allowlist.txt" | sort -u)
	undef=$(nm -u "$dir/engine.o" | awk '{ print $NF }' | sort -u)
	echo "engine.o undefined: $(echo "$undef" | tr '\n' ' ')"
	extra=$(comm -23 <(echo "$undef") <(echo "$allow"))
	[ -z "$extra" ] || fail "engine.o needs symbols outside $ffi/undefined-allowlist.txt: $extra"
	# The allowlist's callbacks are exactly what the header declares.
	declared=$(grep -o 'hvvss_glue_[a-z_]*(' "$glue/hv_vss_rs.h" | tr -d '(' | sort -u)
	[ "$declared" = "$(echo "$allow" | grep '^hvvss_glue_' | sort -u)" ] ||
		fail "hvvss_glue_* in the allowlist differ from $glue/hv_vss_rs.h"
	# Every engine function the header declares is exported, and the module
	# resolves every hvvss_* symbol internally.
	defined=$(nm --defined-only "$dir/engine.o")
	for sym in "${exports[@]}"; do
		grep -q " T $sym\$" <<<"$defined" || fail "engine.o does not export $sym"
	done
	if nm -u "$dir/hv_vss_rs.ko" | grep -E ' hvvss_' >"$dir/unresolved"; then
		cat "$dir/unresolved"
		fail "hv_vss_rs.ko leaves hvvss_* symbols undefined (above)"
	fi
	# Weak undefined symbols are rejected by link_elf_obj, except the linker-set
	# bounds the kernel linker defines itself.
	weak=$(nm "$dir/hv_vss_rs.ko" | awk '$(NF-1) == "w" { print $NF }' | grep -v '^__\(start\|stop\)_set_' || true)
	[ -z "$weak" ] || fail "weak undefined symbols: $weak"
	sections=$(readelf -S -W "$dir/hv_vss_rs.ko")
	for set in set_sysinit_set set_modmetadata_set; do
		grep -q "\] $set " <<<"$sections" || fail "hv_vss_rs.ko has no $set section"
	done
	# Kernel stacks are a few pages: no Rust frame over 2 KiB (the limit
	# FreeBSD's in-tree Rust work enforces), read from the prologues.
	# shellcheck disable=SC2016 # a Python program: nothing for the shell to expand
	objdump -d --no-show-raw-insn "$dir/engine.o" | python3 -c '
import re, sys
fn, frames = None, {}
for line in sys.stdin:
    m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
    if m:
        fn = m.group(1)
        continue
    m = re.search(r"sub\s+\$0x([0-9a-f]+),%rsp", line)
    if m and fn:
        frames[fn] = max(frames.get(fn, 0), int(m.group(1), 16))
size, name = max((v, f) for f, v in frames.items())
print("engine.o largest stack frame: %d bytes (%s)" % (size, name))
sys.exit(1 if size > 2048 else 0)
	' || fail "engine.o has a stack frame over 2048 bytes"
	# No panic path in our own code: no function of the engine or the ABI
	# crate (names with hv_vss / hvvss) calls into core's panic machinery.
	# (core's integer formatting keeps one bounds check of its own.)
	objdump -dr --no-show-raw-insn "$dir/engine.o" |
		awk '/^[0-9a-f]+ <.*>:$/ { fn = $2 } /R_X86_64_(PLT32|PC32).*(panicking|panic_fmt|unwrap_failed|expect_failed)/ { print fn }' |
		sort -u >"$dir/panic-callers"
	echo "engine.o functions that can reach a panic: $(tr '\n' ' ' <"$dir/panic-callers")"
	if grep -E 'hv_vss|hvvss' "$dir/panic-callers"; then
		fail "our code can panic in the kernel (functions above)"
	fi
	echo "kmod object checks passed ($dir)"
}

banner "kmod: link and check the module (pinned $channel)"
link_module "$lib" "$out/pinned"
check_module "$out/pinned"

# The port builds with FreeBSD's lang/rust, a stable rustc: the same script
# with rustup's stable and its rust-src (RUSTC_BOOTSTRAP for the sysroot
# crates only), offline too, and the same checks.
banner "kmod: build, link and check with stable rustc (the port's lang/rust)"
rustup component add --toolchain stable rust-src >/dev/null
"${offline[@]}" RUSTUP_TOOLCHAIN=stable sh kmod/build-engine.sh "$engine_out-stable" build
lib_stable="$engine_out-stable/target/x86_64-unknown-none/release/libhv_vss_rs.a"
[ -f "$lib_stable" ] || fail "$lib_stable not built"
link_module "$lib_stable" "$out/stable"
check_module "$out/stable"


banner "kmod: mandoc -Tlint man4/hv_vss_rs.4"
mandoc -Tlint -W warning man4/hv_vss_rs.4
