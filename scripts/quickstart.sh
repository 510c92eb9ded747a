#!/usr/bin/env bash
# Builds libtetherdb (release) and runs the C quickstart on the embedded
# default store, in build/quickstart/tetherdb_data (its outbox of queued
# writes in build/quickstart/tetherdb_data.outbox).
source "$(dirname "$0")/common.sh"

ensure_packages "${BUILD_PACKAGES[@]}"

step "cargo build --release"
cargo build --release

step "building examples/c/quickstart.c"
mkdir -p build/quickstart
cc -std=c11 -Wall -Wextra -Werror -Iinclude examples/c/quickstart.c \
  -Ltarget/release -ltetherdb -Wl,-rpath,"$ROOT/target/release" \
  -o build/quickstart/quickstart

step "running the quickstart"
rm -rf build/quickstart/tetherdb_data build/quickstart/tetherdb_data.outbox
(cd build/quickstart && ./quickstart)
