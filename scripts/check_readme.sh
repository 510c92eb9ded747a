#!/usr/bin/env bash
# Checks that every code block the README, docs/ and the bindings' READMEs
# mark with
#   <!-- file: PATH -->
# is a verbatim copy of PATH, a file that CI builds and runs; and that the
# block docs/c-api.md marks with
#   <!-- header-preamble: cbindgen.toml -->
# is the comment of cbindgen.toml's `header`, the header's preamble, without
# its " * " margins; and that every repository path the docs name in
# backticks (`src/…`, `tests/…`, …) or links to exists, as does every test
# they name.
source "$(dirname "$0")/common.sh"

# The lines of the first code block after the line MARKER in file DOC.
block() {
  awk -v marker="$2" '
    $0 == marker { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }
  ' "$1"
}

# Every page of prose the repository has.
pages=(README.md docs/*.md bindings/*/README.md tests/behavior/README.md)

status=0
same() { # what, expected file, actual text
  if ! diff -u "$2" <(printf '%s\n' "$3") >/dev/null; then
    echo "error: $1 differs:" >&2
    diff -u "$2" <(printf '%s\n' "$3") >&2 || true
    status=1
  else
    echo "$1 matches"
  fi
}

for doc in "${pages[@]}"; do
  while read -r path; do
    same "$doc's copy of $path" "$path" "$(block "$doc" "<!-- file: $path -->")"
  done < <(sed -n 's/^<!-- file: \(.*\) -->$/\1/p' "$doc")
done

preamble="$(mktemp)"
trap 'rm -f "$preamble"' EXIT
awk '
  /^header = """/ { inside = 1; next }
  inside && /"""/ { exit }
  inside && $0 != "/*" { sub(/^ \* ?/, ""); print }
' cbindgen.toml >"$preamble"
same "docs/c-api.md's header preamble (cbindgen.toml's header)" "$preamble" \
  "$(block docs/c-api.md '<!-- header-preamble: cbindgen.toml -->')"
# Paths in backticks, as `src/queue/outbox/` or `tests/outbox.rs`; a path
# with a placeholder (`<engine>`, `*`, `…`, `TARGET`) is a pattern, not a file.
for doc in "${pages[@]}"; do
  while read -r path; do
    case "$path" in *'<'* | *'*'* | *'…'* | *'{'* | *TARGET*) continue ;; esac
    if [ ! -e "$path" ]; then
      echo "error: $doc names $path, which does not exist" >&2
      status=1
    fi
  done < <(grep -oE '`(src|tests|tools|bindings|scripts|examples|bench|docs|include|fuzz)/[^` ]*`' "$doc" | tr -d '`' | sort -u)
done
# Relative links, as [durability](durability.md#outages): the file exists.
for doc in "${pages[@]}"; do
  while read -r target; do
    target="${target%%#*}"
    [ -n "$target" ] || continue
    if [ ! -e "$(dirname "$doc")/$target" ]; then
      echo "error: $doc links to $target, which does not exist" >&2
      status=1
    fi
  done < <(grep -oE '\]\([^)#: ]*(#[^)]*)?\)' "$doc" | sed -E 's/^\]\(//; s/\)$//' | sort -u)
done
# Tests the docs name, as `keys_over_the_request_limit_are_too_large_for_every_call`
# (a name of four words or more in backticks): the code still has them.
for doc in "${pages[@]}"; do
  while read -r name; do
    if ! grep -rqw "$name" src tests tools fuzz/fuzz_targets bindings examples; then
      echo "error: $doc names $name, which no code defines" >&2
      status=1
    fi
  done < <(grep -oE '`[a-z0-9]+(_[a-z0-9]+){3,}`' "$doc" | tr -d '`' | sort -u)
done
exit $status
