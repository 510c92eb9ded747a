#!/usr/bin/env bash
# Checks that every code block the README marks with
#   <!-- file: PATH -->
# is a verbatim copy of PATH, a file that CI builds and runs.
source "$(dirname "$0")/common.sh"

status=0
while read -r path; do
  block="$(awk -v marker="<!-- file: $path -->" '
    $0 == marker { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }
  ' README.md)"
  if ! diff -u "$path" <(printf '%s\n' "$block") >/dev/null; then
    echo "error: the README's copy of $path differs from the file:" >&2
    diff -u "$path" <(printf '%s\n' "$block") >&2 || true
    status=1
  else
    echo "README matches $path"
  fi
done < <(sed -n 's/^<!-- file: \(.*\) -->$/\1/p' README.md)
exit $status
