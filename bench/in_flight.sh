#!/bin/bash
# queue_batch.in_flight, measured: queued writes from 8 threads to an etcd
# behind bench/delay_proxy.py, which delays every chunk DELAY_MS (default 2)
# each way on loopback, as a network round trip would; for 1, 2, 4, 8 and
# 16 batches in flight, RUNS times (default 2). Builds tether-stress first.
#
#   bench/in_flight.sh            # or DELAY_MS=5 RUNS=3 bench/in_flight.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/etcd.sh
PROXY=""
trap 'stop_etcd; [ -z "$PROXY" ] || kill "$PROXY" 2>/dev/null' EXIT
cargo build --release -q -p tether-stress
start_etcd
port="$(free_port)"
python3 bench/delay_proxy.py "$port" "${ETCD_ENDPOINT#*:}" "${DELAY_MS:-2}" &
PROXY=$!
sleep 1
rate() { python3 -c "import json,sys; print(round(json.load(sys.stdin)['flush']['applied_writes_per_sec']))"; }
for run in $(seq "${RUNS:-2}"); do
  for in_flight in 1 2 4 8 16; do
    config="{\"queue_batch\":{\"in_flight\":$in_flight},\"etcd\":{\"host\":\"127.0.0.1\",\"port\":$port,\"use_ssl\":false}}"
    writes=$(target/release/tether-stress --backend etcd --queued --threads 8 --writes 20000 \
      --quiet --json --verify none --config "$config" | rate)
    echo "run $run, in_flight $in_flight: $writes queued writes/s (applied, flush included)"
  done
done
