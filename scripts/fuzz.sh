#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ (libFuzzer through libfuzzer-sys, under
# AddressSanitizer with LeakSanitizer) and runs each for a bounded time,
# starting from the seed corpus committed in fuzz/corpus/. Fails on any
# crash, panic, leak, timeout or out-of-memory; the input that caused it is
# left in fuzz/artifacts/TARGET/, to be turned into a test in
# tests/fuzz_regressions.rs.
#
#   TETHERDB_FUZZ_SECONDS   seconds per target (default 45: with the build,
#                           about 6 minutes on 2 cores)
#   TETHERDB_FUZZ_TARGETS   the targets to run (default: all of fuzz/fuzz_targets)
#
# Stable Rust is enough: the one unstable flag, -Zsanitizer=address, is
# allowed with RUSTC_BOOTSTRAP=1, and the sanitizer runtime ships with every
# channel's standard library; nightly works too. The build uses the flags
# cargo-fuzz would (so `cargo fuzz run TARGET` works where it is
# installed), but needs neither cargo-fuzz nor a nightly toolchain.
source "$(dirname "$0")/common.sh"

# libfuzzer-sys compiles libFuzzer's C++ sources.
ensure_packages "${BUILD_PACKAGES[@]}" g++

seconds="${TETHERDB_FUZZ_SECONDS:-45}"
targets="${TETHERDB_FUZZ_TARGETS:-$(cd fuzz/fuzz_targets && ls -- *.rs | sed 's/\.rs$//' | xargs)}"
host="$(rustc -vV | sed -n 's/^host: //p')"

# What `cargo fuzz build --sanitizer address` passes (cargo-fuzz 0.12).
flags=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cllvm-args=-sanitizer-coverage-stack-depth
  --cfg fuzzing
  -Cdebug-assertions
  -Coverflow-checks
  -Cforce-frame-pointers
  -Zsanitizer=address
)

step "building the fuzz targets ($targets) on $(rustc --version)"
# The fuzz crate has its own lock file and target folder: none of it touches
# the library's own build. --target keeps the flags off build scripts and
# proc macros, as cargo-fuzz does.
export CARGO_TARGET_DIR="$ROOT/target/fuzz"
RUSTC_BOOTSTRAP=1 RUSTFLAGS="${flags[*]}" \
  cargo build --manifest-path fuzz/Cargo.toml --release --target "$host" --bins
bin_dir="$CARGO_TARGET_DIR/$host/release"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for target in $targets; do
  step "fuzzing $target for $seconds s"
  seeds="fuzz/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  mkdir -p "$work/$target" "$seeds" "$artifacts"
  dict=()
  [ -f "fuzz/$target.dict" ] && dict=("-dict=fuzz/$target.dict")
  log="$work/$target.log"
  # New inputs go to the first folder, a scratch one; the committed seeds
  # are only read. -timeout: seconds one input may take (a hang is a
  # failure). A store's files live in temporary folders the targets make.
  if ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" \
    "$bin_dir/$target" "$work/$target" "$seeds" \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2560 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "${dict[@]}" \
    >"$log" 2>&1; then
    grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
    echo "$target: no crash, leak or timeout in $seconds s"
  else
    status=1
    # What failed (a panic's message, the sanitizer's report), then the end.
    grep -m 1 -A 15 -E "panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)" "$log" >&2 || true
    echo "..." >&2
    tail -n 25 "$log" >&2
    echo "error: fuzz target $target failed; the input is in $artifacts/" >&2
    echo "       reproduce: $bin_dir/$target $artifacts/<file>" >&2
  fi
done
exit $status
