# Shared by the scripts in this folder: source it, don't run it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

# Installs the Debian packages among "$@" that are missing; idempotent.
ensure_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# What building the library needs: a C toolchain for the examples, and
# protoc with its well-known types for etcd-client's generated gRPC code.
BUILD_PACKAGES=(gcc libc6-dev protobuf-compiler libprotobuf-dev)

require() {
  command -v "$1" >/dev/null || {
    echo "error: $1 not found: $2" >&2
    exit 1
  }
}

# moto_server, the DynamoDB emulator (PyPI moto[server]), when missing.
ensure_moto() {
  command -v moto_server >/dev/null && return 0
  step "installing moto[server]"
  python3 -m pip --version >/dev/null 2>&1 || ensure_packages python3-pip
  # A Debian python3 refuses a system-wide pip install (PEP 668) unless told.
  python3 -m pip install --quiet 'moto[server]' ||
    python3 -m pip install --quiet --break-system-packages 'moto[server]'
  hash -r
  require moto_server "pip installed moto[server], but its moto_server is not on PATH"
}

require cargo "install Rust (https://rustup.rs) first"
