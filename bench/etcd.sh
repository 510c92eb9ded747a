# Starts a throwaway etcd as tests/common/etcd.rs does: free loopback
# ports, data in a temporary directory, logs there too. Source this file,
# then call `start_etcd [extra etcd flags...]`; it sets ETCD_ENDPOINT
# (127.0.0.1:PORT) and ETCD_DIR. `stop_etcd` ends it and removes the
# directory: call it from your EXIT trap. Only loopback addresses are used.

ETCD_PID=""
ETCD_DIR=""
ETCD_ENDPOINT=""

# A loopback port nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_etcd() {
  command -v etcd >/dev/null && command -v etcdctl >/dev/null || {
    echo "error: etcd or etcdctl is missing: install the Debian packages etcd-server and etcd-client" >&2
    return 1
  }
  ETCD_DIR="$(mktemp -d -t tether-etcd.XXXXXX)"
  local client peer
  client="$(free_port)"
  peer="$(free_port)"
  ETCD_ENDPOINT="127.0.0.1:$client"
  etcd --name bench --data-dir "$ETCD_DIR/data" \
    --listen-client-urls "http://$ETCD_ENDPOINT" --advertise-client-urls "http://$ETCD_ENDPOINT" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" \
    --logger zap --log-level error "$@" >"$ETCD_DIR/etcd.log" 2>&1 &
  ETCD_PID=$!
  local tries=0
  until ETCDCTL_API=3 etcdctl --endpoints="http://$ETCD_ENDPOINT" endpoint health >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ] || ! kill -0 "$ETCD_PID" 2>/dev/null; then
      echo "error: etcd did not become healthy; its log:" >&2
      cat "$ETCD_DIR/etcd.log" >&2
      return 1
    fi
    sleep 0.1
  done
}

stop_etcd() {
  if [ -n "$ETCD_PID" ]; then
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    ETCD_PID=""
  fi
  if [ -n "$ETCD_DIR" ]; then
    rm -rf "$ETCD_DIR"
    ETCD_DIR=""
  fi
}

# A configuration with this etcd as the `etcd` backend, and queue_batch $1.
etcd_config() {
  local queue="${1:-}"
  [ -n "$queue" ] || queue='{}'
  printf '{"logging": "warn", "queue_batch": %s, "etcd": {"endpoints": ["%s"]}}' \
    "$queue" "$ETCD_ENDPOINT"
}
