#!/usr/bin/env bash
# A tour of `tether` on two local stores of one configuration: write, read,
# count, export, copy, diff and push. Run it in an empty directory;
# TETHER names the binary (default: tether on PATH).
set -euo pipefail
tether() { "${TETHER:-tether}" "$@"; }

cat > tether.json <<'JSON'
{
  "logging": "none",
  "default_backend": "here",
  "backends": {
    "here":  { "engine": "local", "filepath": "here_data" },
    "there": { "engine": "local", "filepath": "there_data" }
  }
}
JSON
config=(--config tether.json)

tether "${config[@]}" --bucket users put alice '{"name": "Alice"}'
tether "${config[@]}" --bucket users put bob '{"name": "Bob"}' --ttl 600000
tether "${config[@]}" --bucket users get alice; echo
tether "${config[@]}" incr visits
tether "${config[@]}" incr visits 10
tether "${config[@]}" --bucket users ls --keys-only

# Everything, as JSON Lines, into the other store.
tether "${config[@]}" export > backup.jsonl
tether "${config[@]}" --backend there import < backup.jsonl
tether "${config[@]}" --backend there --bucket users get bob; echo

# Change one store, see the difference, push it.
tether "${config[@]}" --bucket users put alice '{"name": "Alice", "admin": true}'
tether "${config[@]}" --bucket users diff here there
tether "${config[@]}" --bucket users push here there
tether "${config[@]}" --bucket users diff here there

# A missing key: exit status 11 (10 + TETHER_NOT_FOUND).
status=0
tether "${config[@]}" get nobody 2>/dev/null || status=$?
echo "get nobody: exit $status"
