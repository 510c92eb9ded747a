#!/usr/bin/env bash
# Installs what the tests need and runs every suite: lint, Rust, the header
# check, C (shared, static and dlopen, under AddressSanitizer) and the
# quickstart example.
source "$(dirname "$0")/common.sh"

# etcd-server and etcd-client: the etcd and etcdctl the etcd tests start and query;
# gdb: the soak's watchdog prints a hung child's stacks with it;
# python3-gdbm: Debian's python3 writes the GNU dbm stores `tether
# import-dbm` is tested on, as the Python TetherDB's do.
ensure_packages "${BUILD_PACKAGES[@]}" g++ cmake make etcd-server etcd-client gdb python3-gdbm

# moto_server: the DynamoDB emulator the dynamodb tests start (PyPI moto[server]).
ensure_moto

# Every cargo command below runs build.rs, which regenerates the header:
# keep the committed one to compare with.
committed="$(mktemp)"
trap 'rm -f "$committed"' EXIT
cp include/tetherdb.h "$committed"

step "cargo fmt --check"
cargo fmt --check

# --workspace: the library, the `tether` command (cli/) and the tools in
# tools/ (the stress tool's unit tests; the benchmarks are checked by
# clippy, not run).
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "Rust tests"
cargo test --workspace

./scripts/fuzz.sh

step "include/tetherdb.h is what build.rs generates"
# The library, and target/release/tether-stress for the runs at the end.
cargo build --release --workspace
if ! diff -u "$committed" include/tetherdb.h; then
  echo "error: include/tetherdb.h is stale: build, then commit the regenerated header" >&2
  exit 1
fi
# The header holds the C API only: a Rust-internal type that cbindgen
# picked up (an associated constant makes it export its struct) is a leak.
if stray="$(grep -oE '^typedef (struct|enum) [A-Za-z_]+' include/tetherdb.h | grep -v ' tether_')"; then
  echo "error: include/tetherdb.h declares types outside the C API: $stray" >&2
  exit 1
fi

step "C tests"
cmake -S tests/c -B build/c -DTETHERDB_LIB_DIR="$ROOT/target/release" >/dev/null
cmake --build build/c
ctest --test-dir build/c --output-on-failure

step "C quickstart example"
./scripts/quickstart.sh

step "tether: the tour of docs/cli.md (examples/cli/tour.sh)"
tour="$(mktemp -d)"
(cd "$tour" && TETHER="$ROOT/target/release/tether" bash "$ROOT/examples/cli/tour.sh")
rm -rf "$tour"

step "the examples in README.md, docs/ and the bindings' READMEs are the files CI runs; the header preamble is docs/c-api.md's"
./scripts/check_readme.sh

./scripts/test_bindings.sh

step "tether-stress: brief runs on local, a real etcd and moto, every write read back"
# Non-zero on any lost or wrong write (1) and on any failed call (3).
require python3 "bench/etcd.sh finds free ports with it"
source bench/etcd.sh
source bench/moto.sh
trap 'rm -f "$committed"; stop_etcd; stop_moto' EXIT
stress_started=$SECONDS
start_etcd
start_moto
stress=target/release/tether-stress
"$stress" --backend local --threads 4 --writes 20000 --direct
"$stress" --backend local --threads 4 --writes 20000 --queued --verify list
"$stress" --backend local --threads 4 --writes 20000 --mix 2:2:1 --keys 500
etcd="$(etcd_config '{"size": 128, "interval": 0.5}')"
"$stress" --config "$etcd" --backend etcd --threads 4 --writes 2000 --direct
"$stress" --config "$etcd" --backend etcd --threads 4 --writes 20000 --queued --verify list
"$stress" --config "$etcd" --backend etcd --threads 4 --writes 2000 --mix 2:2:1 --keys 100
dynamodb="$(moto_config stress '{"size": 25, "interval": 0.5}')"
with_moto_credentials "$stress" --config "$dynamodb" --backend dynamodb --threads 4 --writes 400 --direct
with_moto_credentials "$stress" --config "$dynamodb" --backend dynamodb --threads 4 --writes 2000 --queued --verify list
with_moto_credentials "$stress" --config "$dynamodb" --backend dynamodb --threads 4 --writes 400 --mix 2:2:1 --keys 20
echo "tether-stress runs took $((SECONDS - stress_started)) s"
