#!/usr/bin/env bash
# What the durable outbox costs: queued writes from 4 threads of
# tether-stress (queueing, applying and the final flush), on local and on an
# etcd started on a free loopback port, with the queue in memory
# ("durable": false), with the outbox (the default), and with
# "sync": true; RUNS runs of each (default 2), alternating.
#
#   bench/outbox.sh            RUNS=5 bench/outbox.sh
source "$(dirname "$0")/../scripts/common.sh"
source bench/etcd.sh
trap stop_etcd EXIT

cargo build --release --quiet -p tether-stress
start_etcd >/dev/null
stress=target/release/tether-stress
scratch="$(mktemp -d)"
trap 'stop_etcd; rm -rf "$scratch"' EXIT

rate() { grep -o 'queueing and flush: [0-9,]* writes/s' | grep -o '[0-9,]*'; }

for queue in '"durable": false' '' '"sync": true'; do
  writes=200000 etcd_writes=40000
  [[ $queue == *sync* ]] && writes=20000 etcd_writes=20000
  extra=${queue:+, $queue}
  for run in $(seq "${RUNS:-2}"); do
    rm -rf "${scratch:?}"/*
    local_rate=$("$stress" --threads 4 --writes "$writes" --queued --verify none \
      --config "{\"logging\": \"none\", \"local\": {\"filepath\": \"$scratch/db\"},
                 \"queue_batch\": {\"size\": 100$extra}}" 2>/dev/null | rate)
    outbox=""
    [[ $queue == *durable* ]] || outbox=", \"outbox_path\": \"$scratch/etcd.outbox\""
    etcd_rate=$("$stress" --backend etcd --threads 4 --writes "$etcd_writes" --queued \
      --verify none --config "$(etcd_config "{\"size\": 128$outbox$extra}")" 2>/dev/null | rate)
    echo "queue_batch {${queue}} run $run: local $local_rate writes/s, etcd $etcd_rate writes/s"
  done
done
