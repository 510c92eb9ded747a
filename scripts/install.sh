#!/usr/bin/env bash
# Installs TetherDB under PREFIX, as a Linux system lays out a shared library:
#
#   lib/libtetherdb.so.0.1.0             the library (soname libtetherdb.so.0)
#   lib/libtetherdb.so.0 -> libtetherdb.so.0.1.0   what programs load
#   lib/libtetherdb.so -> libtetherdb.so.0         what -ltetherdb finds
#   lib/libtetherdb.a
#   include/tetherdb.h, include/tetherdb.hpp
#   lib/pkgconfig/tetherdb.pc, lib/cmake/tetherdb/ (the CMake package config)
#
# (0.1.0 is Cargo.toml's version), so that `find_package(tetherdb)` (with
# PREFIX in CMAKE_PREFIX_PATH) and `pkg-config tetherdb` (with
# PREFIX/lib/pkgconfig in PKG_CONFIG_PATH) find it. Builds the library first
# when needed; running it again over the same PREFIX replaces the files.
#
#   ./scripts/install.sh /usr/local
source "$(dirname "$0")/common.sh"

[ $# -eq 1 ] || { echo "usage: $0 PREFIX" >&2; exit 2; }
prefix="$(mkdir -p "$1" && cd "$1" && pwd)"

ensure_packages cmake make g++
cargo build --release --quiet

build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cmake -S bindings/cpp -B "$build" -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DTETHERDB_LIB_DIR="$ROOT/target/release" >/dev/null
cmake --install "$build" >/dev/null
echo "installed TetherDB in $prefix"
