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

if [[ ! -d /usr/share/gocode/src/github.com/dgraph-io/badger ]] || ! command -v go >/dev/null; then
  echo "run_peers.sh: needs golang-go and golang-github-dgraph-io-badger-dev (run bazel/setup.sh)" >&2
  exit 1
fi
bazel build --config=opt //tests/bench:peer_bench
cp -f bazel-bin/tests/bench/peer_bench "$out/peer_bench"
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-$out/gocache}" GOFLAGS= \
  go build -o "$out/badger_bench" tests/bench/badger/common.go tests/bench/badger/badger_bench.go \
  2> "$out/go-build.log" || {
  cat "$out/go-build.log" >&2
  exit 1
}

"$out/peer_bench" --json "$out/peer.json" --dir "$out/data" "$@" | tee "$out/peer.txt"
"$out/badger_bench" --json "$out/badger.json" --dir "$out/data-badger" "$@" | tee "$out/badger.txt"
echo
/usr/bin/python3 tests/bench/compare.py "$out/peer.json" "$out/badger.json" | tee "$out/table.md"
echo "results in $out"
