#!/usr/bin/env bash
# YCSB A-F with threads for all four engines: ycsb_bench (NoKV-C, RocksDB,
# LevelDB through their C APIs, one process) and then badger_ycsb (Badger v2,
# Go, built offline in GOPATH mode) with the same flags; ycsb_table.py puts
# them in one table.
#
#   bash tests/bench/run_ycsb.sh [--records 1000000 --ops 500000 --threads 1,4,16 --repeat 3 ...]
#
# Results go to $BENCH_OUT (default: a new /tmp directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${BENCH_OUT:-$(mktemp -d /tmp/nokv-ycsb.XXXXXX)}"
mkdir -p "$out"

source tests/bench/bench_lib.sh
build_badger "$out/badger_ycsb" badger_ycsb.go
bazel build --config=opt //tests/bench:ycsb_bench
cp -f bazel-bin/tests/bench/ycsb_bench "$out/ycsb_bench"

"$out/ycsb_bench" --json "$out/ycsb.json" --dir "$out/data" "$@" | tee "$out/ycsb.txt"
"$out/badger_ycsb" --json "$out/badger.json" --dir "$out/data-badger" "$@" | tee "$out/badger.txt"
echo
/usr/bin/python3 tests/bench/ycsb_table.py "$out/ycsb.json" "$out/badger.json" | tee "$out/table.md"
echo "results in $out"
