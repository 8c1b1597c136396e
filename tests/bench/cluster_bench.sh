#!/usr/bin/env bash
# Replicated writes and reads: a 3-node NoKV-C cluster against a 3-node etcd 3.4
# cluster (Debian's etcd-server), both on loopback with fresh data directories,
# both with every write fsynced by a majority before it is acknowledged, driven
# by the same load generator (wire_load) at the leader; then one table
# (wire_table.py), every row the median of --repeat runs, and the ratios both
# of those medians and of each back-to-back pair of runs.
#
#   bash tests/bench/cluster_bench.sh [--seconds 5] [--repeat 3] [--concurrency "1 16 64"]
#        [--keys 5000] [--value_bytes 100] [--channels 4] [--targets "nokv etcd"]
#
# Rows: put, get (linearizable: NoKV-C's leader read point, etcd's ReadIndex)
# and get --serializable (the leader's own state). Server CPU is the leader's.
# Results (JSON lines) and the servers' logs go to $BENCH_OUT (default: a new
# /tmp directory). CLUSTER_SERVER, WIRE_LOAD, NOKV_CLI and NOKV_REMOTE name
# prebuilt binaries; otherwise they are built with --config=opt.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=5 repeat=3 concurrency="1 16 64" keys=5000 value_bytes=100 channels=4 targets="nokv etcd"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2 ;;
    --repeat) repeat=$2 ;;
    --concurrency) concurrency=$2 ;;
    --keys) keys=$2 ;;
    --value_bytes) value_bytes=$2 ;;
    --channels) channels=$2 ;;
    --targets) targets=$2 ;;
    *) echo "cluster_bench.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done

out="${BENCH_OUT:-$(mktemp -d /tmp/nokv-cluster.XXXXXX)}"
mkdir -p "$out"
results="$out/wire.jsonl"
: > "$results"

if [ -n "${CLUSTER_SERVER:-}" ] && [ -n "${WIRE_LOAD:-}" ] && [ -n "${NOKV_CLI:-}" ]; then
  server=$CLUSTER_SERVER load=$WIRE_LOAD cli=$NOKV_CLI
  remote=${NOKV_REMOTE:-$(dirname "$cli")/nokv-remote}
else
  bazel build --config=opt //service:nokv_server //service:nokv-remote //core/cli:nokv \
    //tests/bench:wire_load
  cp -f bazel-bin/service/nokv_server bazel-bin/service/nokv-remote bazel-bin/core/cli/nokv \
    bazel-bin/tests/bench/wire_load "$out/"
  server="$out/nokv_server" load="$out/wire_load" cli="$out/nokv" remote="$out/nokv-remote"
fi
if [[ " $targets " == *" etcd "* ]] && ! command -v etcd >/dev/null; then
  echo "cluster_bench.sh: etcd not found (Debian's etcd-server; bash bazel/setup.sh installs it)" >&2
  exit 1
fi
source tests/bench/bench_lib.sh

pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT

# Polls until $1 (a command) prints something; that is the answer.
poll() {
  local v=""
  for _ in $(seq 300); do
    v=$("$@" 2>/dev/null || true)
    [ -n "$v" ] && { echo "$v"; return 0; }
    sleep 0.1  # polling the cluster for a leader
  done
  echo "cluster_bench.sh: no answer from: $*" >&2
  return 1
}

# Starts 3 nokv_server nodes; sets addr and pid to the leader's.
start_nokv_cluster() {
  local ports=() rports=() peers="" i base=${#pids[@]}
  for i in 1 2 3; do ports+=("$(free_port)"); rports+=("$(free_port)"); done
  for i in 1 2 3; do peers+="${peers:+,}$i=127.0.0.1:${rports[$((i - 1))]}"; done
  for i in 1 2 3; do
    "$server" --listen="127.0.0.1:${ports[$((i - 1))]}" --data_dir="$out/nokv-$i" \
      --node_id=$i --raft_listen="127.0.0.1:${rports[$((i - 1))]}" --peers="$peers" \
      > "$out/nokv-$i.log" 2>&1 &
    pids+=($!)
  done
  nokv_leader() {
    local j
    for j in 1 2 3; do
      if NOKV_REMOTE="$remote" "$cli" cluster status \
          --addr "127.0.0.1:${ports[$((j - 1))]}" 2>/dev/null | grep -q "^node $j: leader"; then
        echo "$j"
      fi
    done
  }
  local leader
  leader=$(poll nokv_leader)
  addr="127.0.0.1:${ports[$((leader - 1))]}" pid=${pids[$((base + leader - 1))]}
}

# Starts a 3-member etcd cluster; sets addr and pid to the leader's.
start_etcd_cluster() {
  local cports=() pports=() initial="" i base=${#pids[@]}
  for i in 1 2 3; do cports+=("$(free_port)"); pports+=("$(free_port)"); done
  for i in 1 2 3; do initial+="${initial:+,}e$i=http://127.0.0.1:${pports[$((i - 1))]}"; done
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$out/etcd-$i" \
      --listen-client-urls "http://127.0.0.1:${cports[$((i - 1))]}" \
      --advertise-client-urls "http://127.0.0.1:${cports[$((i - 1))]}" \
      --listen-peer-urls "http://127.0.0.1:${pports[$((i - 1))]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${pports[$((i - 1))]}" \
      --initial-cluster "$initial" --initial-cluster-state new \
      --log-level error --logger zap > "$out/etcd-$i.log" 2>&1 &
    pids+=($!)
  done
  etcd_leader() {
    local j
    for j in 1 2 3; do
      if /usr/bin/python3 -c 'import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=2).read().decode()
sys.exit(0 if "\netcd_server_is_leader 1" in body else 1)' \
          "http://127.0.0.1:${cports[$((j - 1))]}/metrics"; then
        echo "$j"
      fi
    done
  }
  local leader
  leader=$(poll etcd_leader)
  addr="127.0.0.1:${cports[$((leader - 1))]}" pid=${pids[$((base + leader - 1))]}
}

run() {  # label target-kind op concurrency [flags...]
  local label=$1 kind=$2 op=$3 c=$4
  shift 4
  "$load" --target "$kind" --addr "$addr" --op "$op" --concurrency "$c" --channels "$channels" \
    --seconds "$seconds" --keys "$keys" --value_bytes "$value_bytes" --server_pid "$pid" \
    --label "$label" "$@" >> "$results"
}

# Both clusters run for the whole benchmark (the one not measured idles), and
# every cell runs NoKV-C and etcd back to back, in alternating order: this
# machine's disk latency drifts by 2-3x over minutes, and measuring one target
# after the other would fold that drift into the ratios.
rm -rf "$out"/nokv-? "$out"/etcd-?
declare -A addr_of pid_of
for target in $targets; do
  if [ "$target" = nokv ]; then start_nokv_cluster; else start_etcd_cluster; fi
  addr_of[$target]=$addr pid_of[$target]=$pid
done
for target in $targets; do
  addr=${addr_of[$target]} pid=${pid_of[$target]}
  run "$target-cluster" "$target" load 64 > /dev/null
done
round=0
for op in put get; do
  for c in $concurrency; do
    for _ in $(seq "$repeat"); do
      order=$targets
      [ $((round % 2)) -eq 1 ] && order=$(tr ' ' '\n' <<<"$targets" | tac | tr '\n' ' ')
      round=$((round + 1))
      for target in $order; do
        addr=${addr_of[$target]} pid=${pid_of[$target]}
        run "$target-cluster" "$target" "$op" "$c"
        [ "$op" = get ] && run "$target-cluster-serializable" "$target" get "$c" --serializable
      done
    done
  done
done
stop_all

/usr/bin/python3 tests/bench/wire_table.py "$results" | tee "$out/cluster.md"
echo "results in $out"
