#!/usr/bin/env bash
# Runs the peer benchmark: NoKV-C, RocksDB and LevelDB (peer_bench, one process)
# and Badger v2 (badger_bench, Go), with the same workloads and settings, then
# prints one table with every engine side by side (compare.py).
#
#   bash tests/bench/run_peers.sh [flags for both, e.g. --value_sizes 4096,16384 --data_mb 1024 --repeat 3]
#
# Builds peer_bench with --config=opt and badger_bench offline in GOPATH mode from
# Debian's golang-github-dgraph-io-badger-dev (bazel/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${BENCH_OUT:-$(mktemp -d /tmp/nokv-bench.XXXXXX)}"
mkdir -p "$out"

source tests/bench/bench_lib.sh
build_badger "$out/badger_bench" badger_bench.go
bazel build --config=opt //tests/bench:peer_bench
cp -f bazel-bin/tests/bench/peer_bench "$out/peer_bench"

"$out/peer_bench" --json "$out/peer.json" --dir "$out/data" "$@" | tee "$out/peer.txt"
"$out/badger_bench" --json "$out/badger.json" --dir "$out/data-badger" "$@" | tee "$out/badger.txt"
echo
/usr/bin/python3 tests/bench/compare.py "$out/peer.json" "$out/badger.json" | tee "$out/table.md"
echo "results in $out"
