#!/usr/bin/env bash
# The gRPC path against etcd: wire_load (one client, same payloads) drives
# nokv_server with --sync=false and --sync=true and a single-node etcd 3.4
# (Debian's etcd-server: Raft, an fsynced WAL, bbolt), each started here on
# loopback with a fresh data directory, then prints one table (wire_table.py).
#
#   bash tests/bench/wire_bench.sh [--seconds 5] [--repeat 3] [--concurrency "1 16 64 256"]
#        [--keys 5000] [--value_bytes 100] [--channels 4] [--ops "put get scan txn"]
#        [--targets "nokv-async nokv-sync etcd"]
#
# Every row is the median of --repeat runs; results (JSON lines, one per run)
# and the servers' logs go to $BENCH_OUT (default: a new /tmp directory).
# WIRE_SERVER and WIRE_LOAD name prebuilt binaries (the smoke test uses them);
# otherwise both are built with --config=opt.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=5 repeat=3 concurrency="1 16 64 256" keys=5000 value_bytes=100 channels=4
ops="put get scan txn" targets="nokv-async nokv-sync etcd"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2 ;;
    --repeat) repeat=$2 ;;
    --concurrency) concurrency=$2 ;;
    --keys) keys=$2 ;;
    --value_bytes) value_bytes=$2 ;;
    --channels) channels=$2 ;;
    --ops) ops=$2 ;;
    --targets) targets=$2 ;;
    *) echo "wire_bench.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done

out="${BENCH_OUT:-$(mktemp -d /tmp/nokv-wire.XXXXXX)}"
mkdir -p "$out"
results="$out/wire.jsonl"
: > "$results"

if [ -n "${WIRE_SERVER:-}" ] && [ -n "${WIRE_LOAD:-}" ]; then
  server=$WIRE_SERVER load=$WIRE_LOAD
else
  bazel build --config=opt //service:nokv_server //tests/bench:wire_load
  cp -f bazel-bin/service/nokv_server bazel-bin/tests/bench/wire_load "$out/"
  server="$out/nokv_server" load="$out/wire_load"
fi
if [[ " $targets " == *" etcd "* ]] && ! command -v etcd >/dev/null; then
  echo "wire_bench.sh: etcd not found (Debian's etcd-server; bash bazel/setup.sh installs it)" >&2
  exit 1
fi

source tests/bench/bench_lib.sh
trap stop_server EXIT

# Starts a target with an empty data directory; sets pid and addr.
start() {
  local target=$1 dir="$out/data-$1"
  rm -rf "$dir"
  case "$target" in
    nokv-async|nokv-sync)
      local sync=false
      [ "$target" = nokv-sync ] && sync=true
      start_nokv_server "$server" "$dir" "$out/$target.log" --sync=$sync
      ;;
    etcd)
      start_etcd wire "$dir" "$out/etcd.log"
      ;;
  esac
}

run() {  # label target-kind op concurrency [flags...]
  local label=$1 kind=$2 op=$3 c=$4
  shift 4
  "$load" --target "$kind" --addr "$addr" --op "$op" --concurrency "$c" --channels "$channels" \
    --seconds "$seconds" --keys "$keys" --value_bytes "$value_bytes" --server_pid "$pid" \
    --label "$label" "$@" >> "$results"
}

for target in $targets; do
  start "$target"
  kind=nokv
  [ "$target" = etcd ] && kind=etcd
  run "$target" "$kind" load 64 > /dev/null
  for op in $ops; do
    [ "$kind" = etcd ] && [ "$op" = txn ] && continue
    for c in $concurrency; do
      for _ in $(seq "$repeat"); do
        if [ "$kind" = etcd ] && [ "$op" = get ]; then
          run etcd etcd get "$c"
          run etcd-serializable etcd get "$c" --serializable
        else
          run "$target" "$kind" "$op" "$c"
        fi
      done
    done
  done
  stop_server
done

/usr/bin/python3 tests/bench/wire_table.py "$results" | tee "$out/wire.md"
echo "results in $out"
