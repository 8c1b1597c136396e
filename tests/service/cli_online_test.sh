#!/usr/bin/env bash
# `nokv stats --addr` against a real nokv_server: the grouped text, --json
# (parsed with Python's json), --hot, and --watch refreshing.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
nokv="$runfiles/core/cli/nokv" load="$runfiles/tests/bench/wire_load"
source "$runfiles/tests/bench/bench_lib.sh"
trap stop_server EXIT
start_nokv_server "$runfiles/service/nokv_server" "$TEST_TMPDIR/data" "$TEST_TMPDIR/server.log"
"$load" --target nokv --addr "$addr" --op load --concurrency 4 --channels 1 --seconds 0.3 \
  --keys 40 --value_bytes 100 > /dev/null
"$load" --target nokv --addr "$addr" --op get --concurrency 4 --channels 1 --seconds 0.5 \
  --keys 40 --dist zipfian > /dev/null

"$nokv" stats --addr "$addr" > "$TEST_TMPDIR/text.txt"
cat "$TEST_TMPDIR/text.txt"
for section in "^writes" "^reads" "^value log" "^transactions" "^hot keys, read" \
               "puts / deletes *40 / 0"; do
  grep -q "$section" "$TEST_TMPDIR/text.txt" || { echo "missing: $section"; exit 1; }
done

"$nokv" stats --addr "$addr" --json --hot 3 > "$TEST_TMPDIR/one.json"
/usr/bin/python3 - "$TEST_TMPDIR/one.json" "$TEST_TMPDIR/data" <<'PY'
import json, sys
d = json.loads(open(sys.argv[1]).read())
c = {k: int(v) for k, v in d["counters"].items()}  # 64-bit integers are JSON strings
assert c["puts"] == 40, c["puts"]
assert c["gets"] > 100, c["gets"]
assert c["hot_reads_sampled"] > 0, c
assert d["data_dir"] == sys.argv[2], d["data_dir"]
hot = d["hot_read_keys"]
assert 1 <= len(hot) <= 3, hot
rates = [k["per_sec"] for k in hot]
assert rates == sorted(rates, reverse=True), rates
assert all(k["key"] for k in hot), hot  # bytes: base64 in the JSON mapping
PY

timeout 2.6 "$nokv" stats --addr "$addr" --json --watch 1 > "$TEST_TMPDIR/watch.json" || true
lines=$(wc -l < "$TEST_TMPDIR/watch.json")
[ "$lines" -ge 2 ] || { echo "--watch 1 printed $lines snapshots in 2.6 s"; exit 1; }
/usr/bin/python3 -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]' \
  "$TEST_TMPDIR/watch.json"

# A server that is not there: a clear error, exit 1.
if "$nokv" stats --addr 127.0.0.1:1 > "$TEST_TMPDIR/down.txt" 2>&1; then
  echo "stats from a closed port succeeded"; exit 1
fi
grep -q "Stats from 127.0.0.1:1 failed" "$TEST_TMPDIR/down.txt"
echo "cli_online_test: ok"
