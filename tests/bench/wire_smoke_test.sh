#!/usr/bin/env bash
# wire_bench.sh, stream_bench.sh and watch_bench.sh on tiny runs: every target and operation
# once, at one concurrency, with the binaries Bazel built. Checks that the pipeline runs,
# no call fails, and the table has every row and ratio; not how fast.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
export WIRE_SERVER="$runfiles/service/nokv_server" WIRE_LOAD="$runfiles/tests/bench/wire_load"
export BENCH_OUT="$TEST_TMPDIR/wire"
bash "$runfiles/tests/bench/wire_bench.sh" --seconds 0.3 --repeat 1 --concurrency 4 --keys 500 \
  --ops "put get scan txn write cas" > "$TEST_TMPDIR/out.txt"
cat "$TEST_TMPDIR/out.txt"
for row in "put | 4 | nokv-sync" "put | 4 | etcd" "get | 4 | etcd-serializable" \
           "get | 4 | nokv-async" "scan | 4 | nokv-async" "txn | 4 | nokv-sync" \
           "write | 4 | nokv-sync" "write | 4 | etcd" "cas | 4 | nokv-async" "cas | 4 | etcd"; do
  grep -q "^| $row | 1 | [0-9]" "$TEST_TMPDIR/out.txt" || { echo "no row: $row"; exit 1; }
done
for op in put write cas; do
  grep -q "^| $op | 4 | nokv-sync vs etcd | [0-9.]*× | [^|]* | [0-9.]*× |" "$TEST_TMPDIR/out.txt" ||
    { echo "no ratio of sync ${op}s to etcd"; exit 1; }
done
# Every run: no errors, and the server's CPU was read.
/usr/bin/python3 - "$BENCH_OUT/wire.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
assert len(runs) >= 18, len(runs)
for r in runs:
    assert r["errors"] == 0, r
    assert r["ok"] > 0, r
    assert "server_cpu_us_per_call" in r, r
PY
# stream_bench.sh: whole-database Scans over gRPC and the engine's iterator on
# the same data; the table checks every scan returned every pair.
export STREAM_SERVER="$WIRE_SERVER" STREAM_LOAD="$WIRE_LOAD"
export STREAM_ITER="$runfiles/tests/bench/iter_scan" BENCH_OUT="$TEST_TMPDIR/stream"
bash "$runfiles/tests/bench/stream_bench.sh" --keys 2000 --value_bytes 1024 --scans 2 \
  --repeat 1 --concurrency "1 2" > "$TEST_TMPDIR/stream.txt"
cat "$TEST_TMPDIR/stream.txt"
grep -q "^| engine iterator, in process | 1 | [0-9,]* | 1.00x |" "$TEST_TMPDIR/stream.txt" ||
  { echo "no engine row"; exit 1; }
for c in 1 2; do
  grep -q "^| Scan over gRPC | $c | [0-9,]* | [0-9.]*x |" "$TEST_TMPDIR/stream.txt" ||
    { echo "no gRPC row at concurrency $c"; exit 1; }
done
# watch_bench.sh: Watch fan-out, every target; watch_load exits non-zero (and
# the run fails) unless every watcher received every put.
export WATCH_SERVER="$WIRE_SERVER" WATCH_LOAD="$runfiles/tests/bench/watch_load"
export BENCH_OUT="$TEST_TMPDIR/watch"
bash "$runfiles/tests/bench/watch_bench.sh" --seconds 1 --repeat 1 --watchers 3 --writers 2 \
  > "$TEST_TMPDIR/watch.txt"
cat "$TEST_TMPDIR/watch.txt"
for t in nokv-async nokv-sync etcd; do
  grep -q "^| $t | 3 | [0-9,]* | [0-9,]* | .* | True |" "$TEST_TMPDIR/watch.txt" ||
    { echo "no complete watch row for $t"; exit 1; }
done
echo "wire benchmark pipeline ok"
