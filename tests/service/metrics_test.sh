#!/usr/bin/env bash
# nokv_server --metrics_listen: /metrics parsed by prometheus_client's own
# parser (Debian's python3-prometheus-client); the engine's counters match the
# Stats RPC, the per-method request counts match the calls made, histograms are
# well formed, process metrics are there, and other paths are 404.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
nokv="$runfiles/core/cli/nokv" load="$runfiles/tests/bench/wire_load"
source "$runfiles/tests/bench/bench_lib.sh"
trap stop_server EXIT
start_nokv_server "$runfiles/service/nokv_server" "$TEST_TMPDIR/data" "$TEST_TMPDIR/server.log" \
  --metrics_listen=127.0.0.1:0
metrics=$(sed -nE 's|.*metrics on (http://[^ ]+).*|\1|p' "$TEST_TMPDIR/server.log" | head -1)
[ -n "$metrics" ] || { cat "$TEST_TMPDIR/server.log"; echo "no metrics line"; exit 1; }
"$load" --target nokv --addr "$addr" --op load --concurrency 4 --channels 1 --seconds 0.3 \
  --keys 64 --value_bytes 100 > /dev/null
"$load" --target nokv --addr "$addr" --op get --concurrency 4 --channels 1 --seconds 0.3 \
  --keys 64 > "$TEST_TMPDIR/gets.json"
"$nokv" stats --addr "$addr" --json > "$TEST_TMPDIR/stats.json"
/usr/bin/python3 - "$metrics" "$TEST_TMPDIR/stats.json" "$TEST_TMPDIR/gets.json" <<'PY'
import json, sys, urllib.error, urllib.request
from prometheus_client.parser import text_string_to_metric_families

url, stats_path, gets_path = sys.argv[1:]
page = urllib.request.urlopen(url, timeout=10).read().decode()
families = {f.name: f for f in text_string_to_metric_families(page)}
stats = {k: int(v) for k, v in json.load(open(stats_path))["counters"].items()}

def value(name, **labels):
    family = families.get(name) or families[name[:-len("_total")]]
    for s in family.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError("no sample %s %s" % (name, labels))

# Engine counters (prometheus_client drops the _total suffix from counter
# families' names and keeps it on their samples).
assert families["nokv_puts"].type == "counter"
assert value("nokv_puts_total") == stats["puts"] == 64, (value("nokv_puts_total"), stats["puts"])
assert families["nokv_memtable_bytes"].type == "gauge"
assert value("nokv_memtable_bytes") > 0
assert value("nokv_level_files", level="0") == stats["level0_files"]
# Every engine counter of Stats is on the page (the service's own are Stats-only).
service_only = {"txns_open", "scans_open", "scans_waiting", "scan_buffered_bytes",
                "txn_buffered_bytes", "streams_expired", "streams_refused", "watches_open",
                "watch_groups_sent", "watch_events_sent", "watches_stalled"}
for name in stats:
    if name in service_only or name.startswith("level"):
        continue
    assert ("nokv_" + name) in families, "no metric for counter " + name
    assert families["nokv_" + name].documentation, "no HELP for " + name
# gRPC requests: every Get wire_load made (and the load's Puts) counted OK.
gets = json.load(open(gets_path))
handled = value("grpc_server_handled_total", grpc_service="nokv.v1.KV", grpc_method="Get",
                grpc_code="OK")
assert handled >= gets["ok"], (handled, gets["ok"])
assert value("grpc_server_handled_total", grpc_method="Put", grpc_code="OK") >= 64
assert value("grpc_server_handled_total", grpc_method="Stats", grpc_code="OK") >= 1
# Histograms: cumulative buckets, +Inf equal to the count.
h = [s for s in families["grpc_server_handling_seconds"].samples if s.labels.get("grpc_method") == "Get"]
buckets = [s.value for s in h if s.name.endswith("_bucket")]
assert buckets == sorted(buckets), buckets
inf = [s.value for s in h if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"][0]
count = [s.value for s in h if s.name.endswith("_count")][0]
assert inf == count == handled, (inf, count, handled)
# Process metrics, and no hot key anywhere in the labels.
assert value("process_resident_memory_bytes") > 1 << 20
assert value("process_open_fds") > 3
assert "key0000" not in page
try:
    urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
    raise AssertionError("/other answered")
except urllib.error.HTTPError as e:
    assert e.code == 404, e.code
print("metrics_test: %d families, Get handled %d" % (len(families), handled))
PY
