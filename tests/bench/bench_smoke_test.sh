#!/usr/bin/env bash
# The benchmark pipeline end to end on a tiny data set: peer_bench (NoKV-C,
# RocksDB, LevelDB), badger_bench built offline from Debian's Badger v2 sources,
# and compare.py's four-engine table. Checks that it runs, not how fast.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
tmp="${TEST_TMPDIR}"
flags=(--num 3000 --reads 1000 --value_sizes 4096 --cache_mb 1)

export HOME="$tmp"  # go wants one it can write to
cd "$runfiles"
source tests/bench/bench_lib.sh
build_badger "$tmp/badger_bench" badger_bench.go
build_badger "$tmp/badger_ycsb" badger_ycsb.go
"$runfiles/tests/bench/peer_bench" "${flags[@]}" --dir "$tmp/p" --json "$tmp/peer.json" > "$tmp/peer.txt"
"$tmp/badger_bench" "${flags[@]}" --dir "$tmp/b" --json "$tmp/badger.json" > "$tmp/badger.txt"
/usr/bin/python3 "$runfiles/tests/bench/compare.py" "$tmp/peer.json" "$tmp/badger.json" > "$tmp/table.md"
cat "$tmp/table.md"

row=$(grep '^| 4096 | fillrandom |' "$tmp/table.md")
cells=$(awk -F'|' '{ n = 0; for (i = 4; i <= 7; i++) if ($i ~ /[0-9]/) n++; print n }' <<<"$row")
[ "$cells" -eq 4 ] || { echo "expected ops/s for 4 engines in: $row"; exit 1; }
grep -q '^| 4096 | badger | ' "$tmp/table.md" || { echo "no space row for badger"; exit 1; }
grep -q 'vs badger' "$tmp/table.md" || { echo "no ratio to badger"; exit 1; }
# Transactions: txn_bench exits non-zero if either engine's counters do not add
# up to 4 per committed transaction.
"$runfiles/tests/bench/txn_bench" --keys 2000 --txns 300 --threads 4 --dir "$tmp/t" > "$tmp/txn.md"
cat "$tmp/txn.md"
grep -q '^| zipfian | rocksdb | ' "$tmp/txn.md" || { echo "no transaction results"; exit 1; }
"$runfiles/tests/bench/txn_bench" --keys 2000 --txns 300 --threads 4 --hold 1 --dist uniform \
  --dir "$tmp/t" > "$tmp/txn_hold.md"
grep -q 'held open' "$tmp/txn_hold.md" || { echo "no results with a transaction held open"; exit 1; }
# The Txn RPC: exits non-zero if a transaction fails or the counters do not add up.
"$runfiles/tests/bench/txn_rpc_bench" --keys 500 --txns 200 --threads 2 --dist zipfian > "$tmp/rpc.txt"
cat "$tmp/rpc.txt"
grep -q '^rpc/engine throughput' "$tmp/rpc.txt" || { echo "no Txn RPC results"; exit 1; }
# YCSB A-F with threads, every engine: the table has a row per workload.
"$runfiles/tests/bench/ycsb_bench" --records 3000 --ops 3000 --threads 1,2 --dir "$tmp/y" \
  --json "$tmp/ycsb.json" > "$tmp/ycsb.md"
"$tmp/badger_ycsb" --records 3000 --ops 3000 --threads 1,2 --dir "$tmp/yb" \
  --json "$tmp/ycsb_badger.json" > "$tmp/ycsb_badger.md"
/usr/bin/python3 "$runfiles/tests/bench/ycsb_table.py" "$tmp/ycsb.json" "$tmp/ycsb_badger.json" \
  > "$tmp/ycsb_all.md"
cat "$tmp/ycsb_all.md"
for w in a b c d e f r w; do
  for e in nokv rocksdb leveldb badger; do
    grep -q "^| $w | 2 | $e | [0-9]" "$tmp/ycsb_all.md" ||
      { echo "no ycsb-$w row for $e"; exit 1; }
  done
  grep -q "^| $w | 2 | nokv | .* | [0-9.]*x |$" "$tmp/ycsb_all.md" ||
    { echo "no ratio for ycsb-$w"; exit 1; }
done
# 8 workloads x 2 thread counts x 3 engines, and each engine's load.
[ "$(wc -l < "$tmp/ycsb.json")" -eq 51 ] || { echo "expected 51 ycsb results"; exit 1; }
for e in nokv rocksdb leveldb badger; do
  grep -q "^| L | 4 | $e | [0-9]" "$tmp/ycsb_all.md" || { echo "no load row for $e"; exit 1; }
done
# Range deletion: exits non-zero if a deleted key is found or the iterator
# misses the key after the range.
"$runfiles/tests/bench/range_delete_bench" "$tmp/r" --keys 5000 --gets 1000 > "$tmp/range.md"
cat "$tmp/range.md"
for row in "nokv | range" "nokv | by key" "rocksdb | range" "rocksdb | by key" "leveldb | by key"; do
  grep -q "^| $row | [0-9]" "$tmp/range.md" || { echo "no range deletion row: $row"; exit 1; }
done
echo "benchmark pipeline ok"
