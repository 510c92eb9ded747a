# Starts a throwaway moto_server (PyPI moto[server], a DynamoDB emulator) as
# tests/common/moto.rs does: a free loopback port, fake credentials. Source
# this file (after bench/etcd.sh, whose free_port it uses), then call
# `start_moto`; it sets MOTO_URL. `stop_moto` ends it: call it from your EXIT
# trap. Only loopback addresses are used.

MOTO_PID=""
MOTO_URL=""
MOTO_LOG=""

start_moto() {
  command -v moto_server >/dev/null || {
    echo "error: moto_server is missing: python3 -m pip install 'moto[server]'" >&2
    return 1
  }
  local port
  port="$(free_port)"
  MOTO_URL="http://127.0.0.1:$port"
  MOTO_LOG="$(mktemp -t tether-moto.XXXXXX)"
  moto_server -H 127.0.0.1 -p "$port" >"$MOTO_LOG" 2>&1 &
  MOTO_PID=$!
  local tries=0
  until python3 -c "import urllib.request as u; u.urlopen('$MOTO_URL', timeout=1)" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ] || ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "error: moto_server did not answer; its log:" >&2
      cat "$MOTO_LOG" >&2
      return 1
    fi
    sleep 0.1
  done
}

stop_moto() {
  if [ -n "$MOTO_PID" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=""
  fi
  [ -z "$MOTO_LOG" ] || rm -f "$MOTO_LOG"
  MOTO_LOG=""
}

# A configuration with this moto as the `dynamodb` backend (table $1,
# created on first use), and queue_batch $2.
moto_config() {
  local queue="${2:-}"
  [ -n "$queue" ] || queue='{}'
  printf '{"logging": "warn", "queue_batch": %s, "dynamodb": {"table_name": "%s", "region": "us-east-1", "endpoint_url": "%s", "create_table": true}}' \
    "$queue" "$1" "$MOTO_URL"
}

# Runs a command with the fake credentials moto accepts, and nothing from
# the environment that could point the SDK elsewhere.
with_moto_credentials() {
  env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_DYNAMODB \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
    AWS_CONFIG_FILE=/nonexistent/aws/config AWS_SHARED_CREDENTIALS_FILE=/nonexistent/aws/credentials \
    "$@"
}
