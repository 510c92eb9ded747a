#!/usr/bin/env python3
"""Turns bench/run.sh's runs.jsonl into report.md and the chart's data.

usage: report.py RUNS.jsonl RESULTS_DIR CPU NPROC MEM_GB KERNEL ETCD RUSTC COMMIT MOTO
Standard library only.
"""
import datetime
import json
import sys

runs_path, out, cpu, nproc, mem_gb, kernel, etcd, rustc, commit, moto = sys.argv[1:]
runs = [json.loads(line) for line in open(runs_path)]
BACKENDS = [b for b in ("local", "etcd", "dynamodb") if any(r["backend"] == b for r in runs)]
ENGINE = {"local": "sled", "etcd": "etcd-client", "dynamodb": "aws-sdk-dynamodb"}
OPS = ("direct write", "queued write + flush", "read")


def figure(run, op):
    """(ops/s, latency summary or None) of one operation in one run."""
    if op == "read":
        reads = (run.get("verification") or {}).get("reads")
        return (reads["ops_per_sec"], reads) if reads else (None, None)
    write = run["kinds"]["write"]
    if op == "queued write + flush":
        return run["flush"]["applied_writes_per_sec"], write
    return write["ops_per_sec"], write


def find(group, backend, side, threads, size, queued):
    for r in runs:
        if (r["group"], r["backend"], r["side"], r["threads"], r["value_size"], r["queued"]) == (
            group, backend, side, threads, size, queued):
            return r
    return None


def pick(backend, side, threads, size, op):
    queued = op == "queued write + flush"
    group = "threads" if size == 100 else "sizes"
    run = find(group, backend, side, threads, size, queued)
    return figure(run, op) if run else (None, None)


def num(x):
    return "–" if x is None else f"{x:,.0f}"


def lat(l):
    if not l:
        return "–"
    def us(v):
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    return f"{us(l['p50_us'])} / {us(l['p90_us'])} / {us(l['p99_us'])} / {us(l['max_us'])}"


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}×"


lines = []
w = lines.append
w("# TetherDB benchmark report")
w("")
w(f"Measured {datetime.date.today().isoformat()} at commit `{commit}` with `bench/run.sh`, on "
  f"{nproc} vCPUs ({cpu}), {mem_gb} GiB of memory, {kernel}; {etcd}; {moto}; {rustc}. The machine is shared "
  "with other work (builds), so figures move by ±10–20% from run to run.")
w("")
w("Each figure is one run of `tether-stress` (`--json`): N threads sharing one handle, calling the "
  "library through its `extern \"C\"` entry points (**library**), or the engine under it used "
  "directly on the same keys and values (**engine**: sled, etcd-client, aws-sdk-dynamodb; "
  "`--engine-direct`). Queued writes are `TETHER_QUEUE` writes (batches of 100 on local, 128 on "
  "etcd, 25 on dynamodb, capacity 10,000) timed up to the end of the `tether_flush` that applies "
  "them; the engine side applies the same batches per thread (sled `Batch`, etcd transaction, "
  "`BatchWriteItem`). Reads are the read-back that verifies a direct run: every written key, by "
  "the same number of threads (consistent `GetItem`s on dynamodb). Latency is per call, in µs: "
  "p50 / p90 / p99 / max (for a queued write, the time to queue it). etcd and moto_server (the "
  "DynamoDB emulator, with fake credentials) run on the same machine, on loopback; local and "
  "etcd runs last 3 s each, dynamodb runs are counts (600 direct, 6,000 queued writes at 100 B), "
  "since moto answers a few hundred requests a second: its figures measure requests saved, not "
  "DynamoDB's speed.")
w("")
checked = sum((r.get("verification") or {}).get("keys", 0) for r in runs)
lost = sum((r.get("verification") or {}).get("missing", 0) + (r.get("verification") or {}).get("wrong", 0)
           for r in runs)
errors = [(r, e) for r in runs for e in r["errors"]]
w(f"Every run verified its writes: {checked:,} keys read back or listed, {lost} missing or wrong. "
  + ("No call failed." if not errors else f"{len(errors)} kinds of failed calls, listed at the end."))
w("")

w("## Throughput by threads (100-byte values)")
w("")
w("| backend | operation | threads | library ops/s | engine ops/s | library / engine | library latency µs | engine latency µs |")
w("|---|---|---:|---:|---:|---:|---:|---:|")
dat = []
for backend in BACKENDS:
    block = []
    for op in OPS:
        for threads in (1, 2, 4, 8):
            lib, lib_lat = pick(backend, "library", threads, 100, op)
            eng, eng_lat = pick(backend, "engine", threads, 100, op)
            w(f"| {backend} | {op} | {threads} | {num(lib)} | {num(eng)} | {ratio(lib, eng)} | "
              f"{lat(lib_lat)} | {lat(eng_lat)} |")
    for threads in (1, 2, 4, 8):
        row = [str(threads)]
        for op in OPS:
            for side in ("library", "engine"):
                value, _ = pick(backend, side, threads, 100, op)
                row.append("NaN" if value is None else f"{value:.1f}")
        block.append(" ".join(row))
    dat.append(f"# {backend}: threads, then library and engine ops/s of: " + ", ".join(OPS))
    dat.extend(block)
    dat.extend(["", ""])
w("")
w(f"![Throughput by threads](threads.png)")
w("")

w("## Throughput by value size (4 threads)")
w("")
w("| backend | value | operation | library ops/s | library MB/s | engine ops/s | library / engine | library latency µs |")
w("|---|---:|---|---:|---:|---:|---:|---:|")
for backend in BACKENDS:
    for size in (100, 4096, 65536):
        for op in OPS:
            lib, lib_lat = pick(backend, "library", 4, size, op)
            eng, _ = pick(backend, "engine", 4, size, op)
            mbs = "–" if lib is None else f"{lib * size / 1e6:,.1f}"
            label = {100: "100 B", 4096: "4 KiB", 65536: "64 KiB"}[size]
            w(f"| {backend} | {label} | {op} | {num(lib)} | {mbs} | {num(eng)} | {ratio(lib, eng)} | {lat(lib_lat)} |")
w("")

w("## Peak memory")
w("")
w("Peak RSS is the process's high-water mark (`VmHWM`) once every write was applied (after the "
  "flush, before the read-back), and GNU time's maximum RSS for the whole run, read-back included.")
w("")
w("| backend | writes | value | threads | queue capacity | side | writes/s | peak RSS after the writes | max RSS, whole run | verified |")
w("|---|---|---:|---:|---:|---|---:|---:|---:|---|")
for r in (r for r in runs if r["group"] == "memory"):
    op = "queued write + flush" if r["queued"] else "direct write"
    rate, _ = figure(r, op)
    v = r.get("verification")
    verdict = ("not checked (`--verify none`)" if not v else
               f"{v.get('ok', 0):,} ok, {v.get('missing', 0)} missing, {v.get('wrong', 0)} wrong")
    side = "library" if r["side"] == "library" else ENGINE[r["backend"]]
    cap = f"{r['capacity']:,}" if r["queued"] else "–"
    size = {100: "100 B", 4096: "4 KiB", 65536: "64 KiB"}.get(r["value_size"], f"{r['value_size']} B")
    w(f"| {r['backend']} | {r['ops']:,} {'queued' if r['queued'] else 'direct'} | {size} | {r['threads']} | {cap} | {side} | "
      f"{num(rate)} | {r['peak_rss_after_writes_bytes'] / 1e6:,.0f} MB | {r['max_rss_kib'] * 1024 / 1e6:,.0f} MB | {verdict} |")
w("")

if errors:
    w("## Failed calls")
    w("")
    w("| backend | side | run | kind | status | count | first message |")
    w("|---|---|---|---|---|---:|---|")
    for r, e in errors:
        w(f"| {r['backend']} | {r['side']} | `{r['args']}` | {e['kind']} | {e['status']} | {e['count']:,} | {e['first_message']} |")
    w("")

w("## Runs")
w("")
w("Every run's full JSON summary is in `runs.jsonl`, one line each, with its arguments "
  "(`args`), its side (`library` or `engine`) and its configuration's queue capacity.")

open(f"{out}/report.md", "w").write("\n".join(lines) + "\n")
open(f"{out}/threads.dat", "w").write("\n".join(dat) + "\n")

# The README's condensed tables: library / engine ops/s per cell.
short = []
s = short.append
s("Operations per second, library through the C ABI / engine used directly, 100-byte values:")
s("")
s("| backend | operation | 1 thread | 2 threads | 4 threads | 8 threads |")
s("|---|---|---:|---:|---:|---:|")
for backend in BACKENDS:
    for op in OPS:
        cells = []
        for threads in (1, 2, 4, 8):
            lib, _ = pick(backend, "library", threads, 100, op)
            eng, _ = pick(backend, "engine", threads, 100, op)
            cells.append(f"{num(lib)} / {num(eng)}")
        s(f"| {backend} ({ENGINE[backend]}) | {op} | " + " | ".join(cells) + " |")
s("")
s("By value size, 4 threads, library / engine:")
s("")
s("| backend | operation | 100 B | 4 KiB | 64 KiB |")
s("|---|---|---:|---:|---:|")
for backend in BACKENDS:
    for op in OPS:
        cells = []
        for size in (100, 4096, 65536):
            lib, _ = pick(backend, "library", 4, size, op)
            eng, _ = pick(backend, "engine", 4, size, op)
            cells.append(f"{num(lib)} / {num(eng)}")
        s(f"| {backend} | {op} | " + " | ".join(cells) + " |")
s("")
s("Peak memory: the RSS high-water mark once the writes were applied (before the read-back), "
  "and GNU time's maximum RSS for the whole run, read-back included:")
s("")
s("| backend | writes | value | queue capacity | library, after the writes | engine, after the writes | library, whole run |")
s("|---|---|---:|---:|---:|---:|---:|")
memory = [r for r in runs if r["group"] == "memory"]


def shape(r):
    return (r["backend"], r["ops"], r["queued"], r["value_size"], r["capacity"], r["threads"],
            bool(r.get("verification")))


seen = set()
for r in memory:
    key = shape(r)
    if key in seen:
        continue
    seen.add(key)

    def side(name):
        for m in memory:
            if shape(m) == key and m["side"] == name:
                return m
        return None

    def mb(m, field):
        if m is None:
            return "–"
        value = m["peak_rss_after_writes_bytes"] if field == "after" else m["max_rss_kib"] * 1024
        return f"{value / 1e6:,.0f} MB"
    size = {100: "100 B", 4096: "4 KiB", 65536: "64 KiB"}.get(r["value_size"], f"{r['value_size']} B")
    cap = f"{r['capacity']:,}" if r["queued"] else "–"
    what = f"{r['ops']:,} {'queued' if r['queued'] else 'direct'}, {r['threads']} thread(s)"
    if not r.get("verification"):
        what += ", no read-back"
    lib, eng = side("library"), side("engine")
    s(f"| {r['backend']} | {what} | {size} | {cap} | {mb(lib, 'after')} | {mb(eng, 'after')} | {mb(lib, 'whole')} |")
open(f"{out}/summary.md", "w").write("\n".join(short) + "\n")
