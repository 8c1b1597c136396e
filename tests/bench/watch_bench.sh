#!/usr/bin/env bash
# Watch fan-out against etcd: watch_load drives nokv_server (--sync=false and
# --sync=true) and a single-node etcd 3.4, each started here on loopback with a
# fresh data directory: --watchers watches of one key range while --writers
# clients put into it, so every put is delivered to every watcher.
#
#   bash tests/bench/watch_bench.sh [--seconds 5] [--repeat 3] [--watchers "1 100"]
#        [--writers 16] [--targets "nokv-async nokv-sync etcd"]
#
# Prints one markdown row per target and watcher count (medians of --repeat
# runs); the JSON lines and the servers' logs go to $BENCH_OUT (default: a new
# /tmp directory). WATCH_SERVER and WATCH_LOAD name prebuilt binaries;
# otherwise both are built with --config=opt.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=5 repeat=3 watchers="1 100" writers=16 targets="nokv-async nokv-sync etcd"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2 ;;
    --repeat) repeat=$2 ;;
    --watchers) watchers=$2 ;;
    --writers) writers=$2 ;;
    --targets) targets=$2 ;;
    *) echo "watch_bench.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done

out="${BENCH_OUT:-$(mktemp -d /tmp/nokv-watch.XXXXXX)}"
mkdir -p "$out"
results="$out/watch.jsonl"
: > "$results"
if [ -n "${WATCH_SERVER:-}" ] && [ -n "${WATCH_LOAD:-}" ]; then
  server=$WATCH_SERVER load=$WATCH_LOAD
else
  bazel build --config=opt //service:nokv_server //tests/bench:watch_load
  cp -f bazel-bin/service/nokv_server bazel-bin/tests/bench/watch_load "$out/"
  server="$out/nokv_server" load="$out/watch_load"
fi
if [[ " $targets " == *" etcd "* ]] && ! command -v etcd >/dev/null; then
  echo "watch_bench.sh: etcd not found (Debian's etcd-server; bash bazel/setup.sh installs it)" >&2
  exit 1
fi

source tests/bench/bench_lib.sh
trap stop_server EXIT

for target in $targets; do
  for w in $watchers; do
    for _ in $(seq "$repeat"); do
      dir="$out/data-$target"
      rm -rf "$dir"
      kind=nokv
      case "$target" in
        nokv-async) start_nokv_server "$server" "$dir" "$out/$target.log" --sync=false ;;
        nokv-sync) start_nokv_server "$server" "$dir" "$out/$target.log" --sync=true ;;
        etcd)
          kind=etcd
          start_etcd watch "$dir" "$out/etcd.log"
          ;;
      esac
      "$load" --target "$kind" --addr "$addr" --watchers "$w" --writers "$writers" \
        --seconds "$seconds" --label "$target" >> "$results"
      stop_server
    done
  done
done

/usr/bin/python3 - "$results" <<'PY' | tee "$out/watch.md"
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault((r["label"], r["watchers"]), []).append(r)
print("| target | watchers | puts/s | events delivered/s | delay p50 ms | delay p99 ms | every event delivered |")
print("|---|---:|---:|---:|---:|---:|---|")
for (label, w), rs in rows.items():
    med = lambda k: statistics.median(r[k] for r in rs)
    print("| %s | %d | %s | %s | %.2f | %.2f | %s |" % (
        label, w, format(round(med("puts_per_s")), ","), format(round(med("events_per_s")), ","),
        med("delay_p50_ms"), med("delay_p99_ms"), all(r["complete"] for r in rs)))
PY
echo "results in $out"
