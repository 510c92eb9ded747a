#!/usr/bin/env bash
# Installs what the binding tests need (only what is missing) and runs them:
# C++ (GoogleTest under ASan), Go (vet, -race, -asan leak check), Node
# (node:test, over koffi), Python (mypy --strict and pytest, on the package
# as `pip install ./bindings/python` builds and installs it, in a fresh
# virtualenv; then the wheel that `python -m build` makes from its sdist, in
# another), then each example. The suites' core tests run on `local` and on
# a real etcd, which this script starts on free loopback ports and passes to
# them as TETHERDB_TEST_ETCD (127.0.0.1:PORT); with CI set, a suite without
# it fails. The library is installed into a throwaway prefix first, and
# checked there (file names and links, soname, exported symbols); the
# examples (C, C++, Go, Node) and the Go binding build against that prefix,
# as users' programs would, which also tests find_package(tetherdb) and
# pkg-config, and each compiled example is checked to load the installed
# libtetherdb.so.MAJOR.
source "$(dirname "$0")/common.sh"

# etcd-server and etcd-client: the etcd the suites' etcd tests use, and the
# etcdctl that tells when it is up; BUILD_PACKAGES: what building the
# library needs (the Python package builds it too); binutils: readelf and
# nm, which check the installed library.
ensure_packages "${BUILD_PACKAGES[@]}" g++ cmake make pkg-config binutils libgtest-dev etcd-server etcd-client

# Node >= 18 and npm (for the Node binding): Debian's when there is none.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  ensure_packages nodejs npm
fi

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
etcd_pid=""
cleanup() {
  if [ -n "$etcd_pid" ]; then
    kill "$etcd_pid" 2>/dev/null || true
    wait "$etcd_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
# A signal runs the EXIT trap too, rather than leaving etcd running.
trap 'exit 130' INT
trap 'exit 143' TERM

# One etcd for every suite, on loopback only, with its data in $tmp: started
# now, so that it comes up while the C++ tests build. The tests share it, each
# in buckets of its own.
step "starting etcd on loopback"
read -r etcd_client_port etcd_peer_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
if [ -z "${etcd_peer_port:-}" ]; then
  echo "error: found no free loopback ports for etcd" >&2
  exit 1
fi
etcd_endpoint="127.0.0.1:$etcd_client_port"
etcd --name bindings --data-dir "$tmp/etcd" \
  --listen-client-urls "http://$etcd_endpoint" --advertise-client-urls "http://$etcd_endpoint" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "bindings=http://127.0.0.1:$etcd_peer_port" \
  --logger zap --log-level error >"$tmp/etcd.log" 2>&1 &
etcd_pid=$!
# Waits until etcd answers (at most 60 s); fails if it died.
wait_for_etcd() {
  local give_up=$((SECONDS + 60))
  until ETCDCTL_API=3 etcdctl --endpoints="http://$etcd_endpoint" --command-timeout=2s \
    endpoint health >/dev/null 2>&1; do
    if ! kill -0 "$etcd_pid" 2>/dev/null || [ "$SECONDS" -ge "$give_up" ]; then
      echo "error: etcd did not become healthy on $etcd_endpoint; its log:" >&2
      cat "$tmp/etcd.log" >&2
      exit 1
    fi
    sleep 0.1
  done
}
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

step "the installed files: names and links, soname, exported symbols"
soname="libtetherdb.so.${version%%.*}"
library="$prefix/lib/libtetherdb.so.$version"
# Exactly these, as a Linux system lays out a shared library: the file named
# with the whole version, the soname linking to it, and the name -ltetherdb
# finds linking to the soname.
expected="include/tetherdb.h
include/tetherdb.hpp
lib/cmake/tetherdb/tetherdbConfig.cmake
lib/cmake/tetherdb/tetherdbConfigVersion.cmake
lib/$soname -> libtetherdb.so.$version
lib/libtetherdb.a
lib/libtetherdb.so -> $soname
lib/libtetherdb.so.$version
lib/pkgconfig/tetherdb.pc"
installed="$(cd "$prefix" && find . -type l -printf '%P -> %l\n' -o -type f -printf '%P\n' | LC_ALL=C sort)"
if [ "$installed" != "$(LC_ALL=C sort <<<"$expected")" ]; then
  echo "error: the installed files differ from what is expected:" >&2
  diff <(LC_ALL=C sort <<<"$expected") <(echo "$installed") >&2 || true
  exit 1
fi
installed_soname="$(readelf -d "$library" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
if [ "$installed_soname" != "$soname" ]; then
  echo "error: the soname of $library is '$installed_soname', not $soname" >&2
  exit 1
fi
# The library exports the functions the header declares, and nothing else:
# rustc's version script keeps every other symbol local, and this toolchain
# needs none exported beside them (were one ever needed, say _init or
# _fini, it would be listed here with the reason).
exported="$(nm -D --defined-only "$library" | awk '{print $3}' | LC_ALL=C sort)"
declared="$(grep -oE '^[a-z].* \**tether_[a-z_]+\(' include/tetherdb.h |
  grep -oE 'tether_[a-z_]+\($' | tr -d '(' | LC_ALL=C sort)"
if [ "$exported" != "$declared" ]; then
  echo "error: the dynamic symbols of $library are not the functions of tetherdb.h:" >&2
  diff <(echo "$declared") <(echo "$exported") >&2 || true
  exit 1
fi
echo "$library: SONAME $installed_soname, $(wc -l <<<"$exported") symbols, all tether_*, as declared"

# Asserts that program $1 loads the installed library by its soname (or,
# with $2 = static, does not load it at all).
expect_installed_library() {
  local needed
  needed="$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(libtetherdb[^]]*\)\]/\1/p')"
  if [ "${2:-}" = static ]; then
    if [ -n "$needed" ]; then
      echo "error: $1, linked statically, needs $needed" >&2
      exit 1
    fi
    return 0
  fi
  if [ "$needed" != "$soname" ]; then
    echo "error: $1 needs '$needed', not $soname" >&2
    exit 1
  fi
  # ldd's output is taken whole first: `ldd | grep -q` fails under pipefail
  # whenever grep, done at the first match, closes the pipe on ldd.
  local loaded
  loaded="$(ldd "$1")"
  if ! grep -qF "$soname => $prefix/lib/$soname" <<<"$loaded"; then
    echo "error: $1 does not load $prefix/lib/$soname:" >&2
    echo "$loaded" >&2
    exit 1
  fi
}

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
wait_for_etcd
export TETHERDB_TEST_ETCD="$etcd_endpoint"
echo "etcd for the tests: $TETHERDB_TEST_ETCD"
ctest --test-dir build/cpp --output-on-failure

step "C++ example, built with find_package(tetherdb)"
cmake -S examples/cpp -B "$tmp/example-cpp" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/example-cpp" -j 2
expect_installed_library "$tmp/example-cpp/quickstart"
expect_installed_library "$tmp/example-cpp/quickstart_static" static
run_example cpp-shared "$tmp/example-cpp/quickstart"
run_example cpp-static "$tmp/example-cpp/quickstart_static"

step "C++ example, built with pkg-config --cflags --libs tetherdb"
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
g++ -std=c++20 -Wall -Wextra -Werror examples/cpp/quickstart.cpp \
  $(pkg-config --cflags --libs tetherdb) -Wl,-rpath,"$prefix/lib" -o "$tmp/quickstart-pc"
expect_installed_library "$tmp/quickstart-pc"
run_example cpp-pkg-config "$tmp/quickstart-pc"

step "C example, built with pkg-config --cflags --libs tetherdb, shared and --static"
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
cc -std=c11 -Wall -Wextra -Werror examples/c/quickstart.c \
  $(pkg-config --cflags --libs tetherdb) -Wl,-rpath,"$prefix/lib" -o "$tmp/quickstart-c"
expect_installed_library "$tmp/quickstart-c"
run_example c-shared "$tmp/quickstart-c"
# The static library with what Libs.private adds; -l:libtetherdb.a, since
# -ltetherdb would pick the shared library.
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
cc -std=c11 -Wall -Wextra -Werror examples/c/quickstart.c $(pkg-config --cflags tetherdb) \
  $(pkg-config --static --libs tetherdb | sed 's/-ltetherdb\b/-l:libtetherdb.a/') \
  -o "$tmp/quickstart-c-static"
expect_installed_library "$tmp/quickstart-c-static" static
run_example c-static "$tmp/quickstart-c-static"

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
(cd bindings/go && go build ./...)
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

step "Go example, as a module outside this repository builds it (bindings/go/README.md)"
# A module of its own that requires the binding with a replace directive to
# this checkout, and an rpath to the prefix instead of LD_LIBRARY_PATH.
mkdir -p "$tmp/go-user"
cp examples/go/main.go "$tmp/go-user/"
(
  cd "$tmp/go-user"
  go mod init example.com/quickstart >/dev/null 2>&1
  go mod edit -require=github.com/tetherdb/tetherdb/bindings/go@v0.0.0 \
    -replace=github.com/tetherdb/tetherdb/bindings/go="$ROOT/bindings/go"
  CGO_LDFLAGS="-Wl,-rpath,$prefix/lib" go build -o "$tmp/quickstart-go" .
)
(unset LD_LIBRARY_PATH && expect_installed_library "$tmp/quickstart-go")
run_example go env -u LD_LIBRARY_PATH "$tmp/quickstart-go"

step "Node: npm ci, then node --test (node:test) on the installed library"
node_package="$(node -p 'require("./bindings/node/package.json").version')"
if [ "$node_package" != "$version" ]; then
  echo "error: bindings/node/package.json says $node_package, the header $version" >&2
  exit 1
fi
# --ignore-scripts: koffi's native code comes from its @koromix/koffi-<platform>
# package; its install script would only look for it again.
(cd bindings/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
(cd bindings/node && TETHERDB_LIBRARY="$prefix/lib/$soname" node --test test/)

step "Node example, with the package as npm installs it from npm pack"
mkdir -p "$tmp/node-user"
npm pack --silent --pack-destination "$tmp" ./bindings/node >/dev/null
(
  cd "$tmp/node-user"
  npm init -y >/dev/null
  npm install --ignore-scripts --no-audit --no-fund --loglevel=error "$tmp/tetherdb-$version.tgz"
)
cp examples/node/quickstart.js "$tmp/node-user/"
# The library by its soname, from LD_LIBRARY_PATH, as a user of a prefix
# outside the loader's directories runs it.
run_example node env -u TETHERDB_LIBRARY LD_LIBRARY_PATH="$prefix/lib" node "$tmp/node-user/quickstart.js"

# The Python package as users install it: `pip install ./bindings/python`
# builds the library with cargo and puts it inside the package, so that it
# needs no environment variable: none is set from here on. CARGO_TARGET_DIR:
# the builds reuse target/, where the library is built already (the in-tree
# build asks cargo for what `cargo build --release` builds, so cargo only
# checks it; the build from the sdist, at another path, recompiles the top
# crate alone).
unset TETHERDB_LIBRARY LD_LIBRARY_PATH
export CARGO_TARGET_DIR="$ROOT/target"
pip_install() { "$1/bin/python" -m pip install --quiet --disable-pip-version-check "${@:2}"; }
# A new virtualenv at $1, without the system's packages.
fresh_venv() {
  rm -rf "$1"
  python3 -m venv "$1" 2>/dev/null || {
    ensure_packages python3-venv
    python3 -m venv "$1"
  }
}
# Fails unless the package $1's Python imports is the installed one, with
# the library inside it.
check_bundled() {
  "$1/bin/python" -c '
import os, sys, tetherdb
package = os.path.dirname(tetherdb.__file__)
if not package.startswith(sys.prefix) or os.path.dirname(tetherdb.library_path) != package:
    sys.exit(f"error: tetherdb from {package} loaded {tetherdb.library_path}, not the library inside the installed package")
print(f"tetherdb {tetherdb.version()}: {tetherdb.library_path}")'
}

step "Python: pip install ./bindings/python into a fresh virtualenv"
venv="$tmp/python-venv"
fresh_venv "$venv"
# setuptools builds in the package's folder (the crate is at ../..): stale
# files in its build/ would be installed too.
rm -rf bindings/python/build
started=$SECONDS
pip_install "$venv" ./bindings/python
echo "pip install ./bindings/python: $((SECONDS - started)) s"
(cd "$tmp" && check_bundled "$venv")

step "Python: mypy --strict on the installed package (py.typed), pytest"
pip_install "$venv" pytest mypy
# From $tmp, so that -p finds the installed package, as a user's mypy would.
(cd "$tmp" && "$venv/bin/python" -m mypy --strict --cache-dir "$tmp/mypy-cache" -p tetherdb)
# From the tests' folder, so that `import tetherdb` is the installed package.
(cd bindings/python/tests && "$venv/bin/python" -m pytest -p no:cacheprovider)

step "Python example"
run_example python "$venv/bin/python" "$ROOT/examples/python/quickstart.py"

step "Python: python -m build (an sdist, and a wheel built from it), then that wheel in a fresh virtualenv"
fresh_venv "$tmp/build-venv"
pip_install "$tmp/build-venv" build
started=$SECONDS
"$tmp/build-venv/bin/python" -m build --outdir "$tmp/dist" bindings/python >"$tmp/build.log" 2>&1 || {
  cat "$tmp/build.log" >&2
  echo "error: python -m build bindings/python failed" >&2
  exit 1
}
echo "python -m build bindings/python: $((SECONDS - started)) s"
sdist=("$tmp"/dist/tetherdb-*.tar.gz)
wheel=("$tmp"/dist/tetherdb-*-py3-none-linux_*.whl)
if [ ! -f "${sdist[0]}" ] || [ ! -f "${wheel[0]}" ]; then
  echo "error: python -m build made $(ls "$tmp/dist"), not an sdist and a py3-none-linux wheel" >&2
  exit 1
fi
# The wheel build made from the sdist, alone: installing it tests both.
fresh_venv "$tmp/wheel-venv"
pip_install "$tmp/wheel-venv" "${wheel[0]}"
run_example wheel "$tmp/wheel-venv/bin/python" -c '
import tetherdb
with tetherdb.DB() as db:  # the embedded default, in ./tetherdb_data
    db.write_message("greeting", {"hello": "wheel"}, bucket="check")
    assert db.read_message("greeting", bucket="check") == {"hello": "wheel"}
db.close()
print("wrote and read back on the embedded default with", tetherdb.library_path)'
(cd "$tmp" && check_bundled "$tmp/wheel-venv")
