#!/usr/bin/env bash
# Installs what the binding tests need (only what is missing) and runs them:
# C++ (GoogleTest under ASan), Go (vet, -race, -asan leak check), Python
# (pytest, on the package as pip installs it), then each example. The
# library is installed into a throwaway prefix first, and the examples and
# the Go binding build against that prefix, as users' programs would, which
# also tests find_package(tetherdb) and pkg-config.
source "$(dirname "$0")/common.sh"

ensure_packages g++ cmake make pkg-config libgtest-dev

# Go: Debian's golang-go (1.19 on bookworm) predates range-over-func, and
# the leak check needs Go >= 1.25. Without one, fetch the official toolchain
# from the Go module proxy (it serves toolchains as modules), once.
GO_TOOLCHAIN=go1.26.0
go_minor() { go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p'; }
if [ "$(go_minor || true)" = "" ] || [ "$(go_minor)" -lt 25 ]; then
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch="$(uname -m)" ;; esac
  module="golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-$arch"
  goroot="${XDG_CACHE_HOME:-$HOME/.cache}/tetherdb/$module"
  if [ ! -x "$goroot/bin/go" ]; then
    ensure_packages curl unzip ca-certificates
    step "fetching $GO_TOOLCHAIN from the Go module proxy"
    mkdir -p "$(dirname "$goroot")"
    curl -fsSL -o "$goroot.zip" \
      "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-$GO_TOOLCHAIN.linux-$arch.zip"
    unzip -q -o "$goroot.zip" -d "$(dirname "$(dirname "$goroot")")"
    rm -f "$goroot.zip"
    chmod +x "$goroot"/bin/* "$goroot"/pkg/tool/*/*
  fi
  export PATH="$goroot/bin:$PATH"
fi
go_minor="$(go_minor)"
export GOTOOLCHAIN=local # never download a toolchain

if ! command -v python3 >/dev/null; then
  ensure_packages python3 python3-venv
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# A fresh prefix each run, but always at the same path: the Go build cache
# does not notice when pkg-config's output changes, and would link against
# the prefix of an earlier run.
prefix="$ROOT/build/prefix"
rm -rf "$prefix"

step "installing TetherDB into a throwaway prefix"
./scripts/install.sh "$prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
version="$(sed -n 's/^#define TETHER_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' include/tetherdb.h | paste -sd.)"
if [ "$(pkg-config --modversion tetherdb)" != "$version" ]; then
  echo "error: pkg-config says tetherdb $(pkg-config --modversion tetherdb), the header $version" >&2
  exit 1
fi

# Runs an example in a fresh directory, where it creates ./tetherdb_data.
run_example() {
  local dir="$tmp/run-$1"
  shift
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && "$@")
}

step "C++ tests (GoogleTest, ASan + UBSan + LeakSanitizer)"
cmake -S bindings/cpp -B build/cpp -DTETHERDB_LIB_DIR="$ROOT/target/release" >/dev/null
cmake --build build/cpp -j 2
ctest --test-dir build/cpp --output-on-failure

step "C++ example, built with find_package(tetherdb)"
cmake -S examples/cpp -B "$tmp/example-cpp" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/example-cpp" -j 2
run_example cpp-shared "$tmp/example-cpp/quickstart"
run_example cpp-static "$tmp/example-cpp/quickstart_static"

step "C++ example, built with pkg-config --cflags --libs tetherdb"
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
g++ -std=c++20 -Wall -Wextra -Werror examples/cpp/quickstart.cpp \
  $(pkg-config --cflags --libs tetherdb) -Wl,-rpath,"$prefix/lib" -o "$tmp/quickstart-pc"
run_example cpp-pkg-config "$tmp/quickstart-pc"

step "Go: gofmt, vet, tests with -race, tests with -asan (LeakSanitizer)"
export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Nor does the Go build cache notice a changed tetherdb.h: a define naming
# the header's hash puts it in the cache key.
header_hash="$(sha256sum include/tetherdb.h | cut -c1-16)"
export CGO_CPPFLAGS="${CGO_CPPFLAGS:-} -DTETHERDB_H_SHA256=$header_hash"
for module in bindings/go examples/go; do
  unformatted="$(gofmt -l "$module")"
  if [ -n "$unformatted" ]; then
    echo "error: not gofmt-formatted: $unformatted" >&2
    exit 1
  fi
  (cd "$module" && go vet ./...)
done
(cd bindings/go && go test -race -count=1 ./...)
# Go >= 1.25 runs LeakSanitizer at exit under -asan: a C buffer, page or
# string the binding fails to free fails the run.
if [ "$go_minor" -ge 25 ]; then
  (cd bindings/go && go test -asan -count=1 ./...)
elif [ -n "${CI:-}" ]; then
  echo "error: the Go leak check (go test -asan) needs Go >= 1.25" >&2
  exit 1
else
  echo "warning: skipping the Go leak check: go test -asan needs Go >= 1.25" >&2
fi

step "Go example"
(cd examples/go && go build -o "$tmp/quickstart-go" .)
run_example go "$tmp/quickstart-go"

step "Python: pip install bindings/python into a virtualenv, then pytest"
venv="build/python-venv"
# --system-site-packages: an installed pytest is used as it is.
[ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv" || {
  ensure_packages python3-venv
  python3 -m venv --system-site-packages "$venv"
}
# From a copy: setuptools builds in the source folder, and stale files left in
# its build/ would be installed too.
cp -r bindings/python "$tmp/python-src"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$tmp/python-src"
"$venv/bin/python" -c "import pytest" 2>/dev/null ||
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest
export TETHERDB_LIBRARY="$prefix/lib/libtetherdb.so"
# From the tests' folder, so that `import tetherdb` is the installed package.
(cd bindings/python/tests && "$ROOT/$venv/bin/python" -m pytest -p no:cacheprovider)

step "Python example"
run_example python "$ROOT/$venv/bin/python" "$ROOT/examples/python/quickstart.py"
