#!/usr/bin/env bash
# A whole-database Scan over gRPC against the engine's own iterator, on the same
# data: nokv_server is started on a fresh directory, loaded with --keys values of
# --value_bytes through Put, and read end to end by `wire_load --op stream` at
# each concurrency (the key and value bytes received per second); then the
# server stops and `iter_scan` reads the same directory in process.
#
#   bash tests/bench/stream_bench.sh [--keys 100000] [--value_bytes 1024] [--scans 5]
#        [--repeat 3] [--concurrency "1 4"]
#
# Every figure is the median of --repeat runs (each on a fresh directory).
# Results go to $BENCH_OUT (default: a new /tmp directory). STREAM_SERVER,
# STREAM_LOAD and STREAM_ITER name prebuilt binaries (the smoke test uses them);
# otherwise they are built with --config=opt.
set -euo pipefail
cd "$(dirname "$0")/../.."

keys=100000 value_bytes=1024 scans=5 repeat=3 concurrency="1 4"
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys=$2 ;;
    --value_bytes) value_bytes=$2 ;;
    --scans) scans=$2 ;;
    --repeat) repeat=$2 ;;
    --concurrency) concurrency=$2 ;;
    *) echo "stream_bench.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done

out="${BENCH_OUT:-$(mktemp -d /tmp/nokv-stream.XXXXXX)}"
mkdir -p "$out"
results="$out/stream.jsonl"
: > "$results"

if [ -n "${STREAM_SERVER:-}" ] && [ -n "${STREAM_LOAD:-}" ] && [ -n "${STREAM_ITER:-}" ]; then
  server=$STREAM_SERVER load=$STREAM_LOAD iter=$STREAM_ITER
else
  bazel build --config=opt //service:nokv_server //tests/bench:wire_load //tests/bench:iter_scan
  cp -f bazel-bin/service/nokv_server bazel-bin/tests/bench/wire_load \
    bazel-bin/tests/bench/iter_scan "$out/"
  server="$out/nokv_server" load="$out/wire_load" iter="$out/iter_scan"
fi

source tests/bench/bench_lib.sh
trap stop_server EXIT

for r in $(seq "$repeat"); do
  dir="$out/data"
  rm -rf "$dir"
  start_nokv_server "$server" "$dir" "$out/server.log"
  "$load" --target nokv --addr "$addr" --op load --concurrency 64 --keys "$keys" \
    --value_bytes "$value_bytes" > /dev/null
  for c in $concurrency; do
    "$load" --target nokv --addr "$addr" --op stream --scans "$scans" --concurrency "$c" \
      --channels "$c" --keys "$keys" --value_bytes "$value_bytes" --server_pid "$pid" \
      --label "grpc" >> "$results"
  done
  stop_server
  "$iter" "$dir" --scans "$scans" >> "$results"
done

/usr/bin/python3 - "$results" <<'PY' | tee "$out/stream.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
engine = statistics.median(r["mb_per_s"] for r in rows if r["label"] == "engine")
items = next(r["items"] for r in rows if r["label"] == "engine")
print("| reader | concurrency | MB/s (key + value bytes) | vs the engine's iterator "
      "| server CPU per scan | client CPU per scan |")
print("|---|---:|---:|---:|---:|---:|")
print(f"| engine iterator, in process | 1 | {engine:,.0f} | 1.00x | | |")
for c in sorted({r["concurrency"] for r in rows if r["label"] == "grpc"}):
    rs = [r for r in rows if r["label"] == "grpc" and r["concurrency"] == c]
    for r in rs:
        if r["errors"] or r["items"] != r["ok"] * items:
            sys.exit(f"stream: a scan returned {r['items']} pairs for {r['ok']} scans of {items}")
    mb = statistics.median(r["mb_per_s"] for r in rs)
    cpu = statistics.median(r.get("server_cpu_us_per_call", 0) for r in rs) / 1000
    client = statistics.median(r["client_cpu_us_per_call"] for r in rs) / 1000
    print(f"| Scan over gRPC | {c} | {mb:,.0f} | {mb / engine:.2f}x | {cpu:,.1f} ms "
          f"| {client:,.1f} ms |")
PY
echo "results in $out"
