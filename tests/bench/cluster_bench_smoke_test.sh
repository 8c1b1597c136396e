#!/usr/bin/env bash
# cluster_bench.sh on a tiny run (both clusters, every row twice, at one
# concurrency) with the binaries Bazel built: the pipeline runs, no call fails,
# the two targets alternate which goes first, each run measured its own
# leader's CPU, and the table has every row and ratio; not how fast.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
export CLUSTER_SERVER="$runfiles/service/nokv_server" WIRE_LOAD="$runfiles/tests/bench/wire_load"
export NOKV_CLI="$runfiles/core/cli/nokv" NOKV_REMOTE="$runfiles/service/nokv-remote"
export BENCH_OUT="$TEST_TMPDIR/cluster"
bash "$runfiles/tests/bench/cluster_bench.sh" --seconds 0.3 --repeat 2 --concurrency 2 \
  --keys 500 > "$TEST_TMPDIR/out.txt"
cat "$TEST_TMPDIR/out.txt"
for row in "put | 2 | nokv-cluster" "put | 2 | etcd-cluster" "get | 2 | nokv-cluster" \
           "get | 2 | etcd-cluster" "get | 2 | nokv-cluster-serializable" \
           "get | 2 | etcd-cluster-serializable"; do
  grep -q "^| $row | 2 | [0-9]" "$TEST_TMPDIR/out.txt" || { echo "no row: $row"; exit 1; }
done
for c in "put | 2 | nokv-cluster vs etcd-cluster" "get | 2 | nokv-cluster vs etcd-cluster"; do
  grep -q "^| $c | [0-9.]*× | [0-9.]*× ([0-9.]*-[0-9.]*) | [0-9.]*× |" "$TEST_TMPDIR/out.txt" || { echo "no ratio: $c"; exit 1; }
done
/usr/bin/python3 - "$BENCH_OUT/wire.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
assert len(runs) >= 14, len(runs)
for r in runs:
    assert r["errors"] == 0, r
    assert r["ok"] > 0, r
    if r["op"] != "load":
        assert r.get("server_cpu_us_per_call", 0) > 0, r  # the leader's process, not another's
# Each cell's runs alternate which target goes first.
firsts = []
for r in runs:
    if r["op"] == "load" or r["label"].endswith("serializable"):
        continue
    key = (r["op"], r["concurrency"])
    if not firsts or firsts[-1][0] != key or len(firsts[-1][1]) == 2:
        firsts.append((key, []))
    firsts[-1][1].append(r["target"])
assert [f[1][0] for f in firsts] == ["nokv", "etcd"] * (len(firsts) // 2), firsts
PY
echo "cluster benchmark pipeline ok"
