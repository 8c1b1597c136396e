"""Tables from wire_load's JSON lines (wire_bench.sh, cluster_bench.sh): every
row the median of its runs, then NoKV-C's ratios to etcd at each concurrency:
the ratio of the medians and, for the clusters, which cluster_bench.sh runs in
pairs back to back (the i-th run of one with the i-th of the other), the
median and range of the pairs' own ratios.

Usage: wire_table.py wire.jsonl
"""
import json
import statistics
import sys
from collections import defaultdict

FIELDS = [("ops_per_s", "ops/s", "%.0f"), ("p50_us", "p50 µs", "%.0f"), ("p99_us", "p99 µs", "%.0f"),
          ("p999_us", "p99.9 µs", "%.0f"), ("max_us", "max µs", "%.0f"),
          ("server_cpu_us_per_call", "server CPU µs/call", "%.1f"),
          ("client_cpu_us_per_call", "client CPU µs/call", "%.1f"),
          ("writes_per_group", "writes/group", "%.1f")]


def main(path):
    runs = defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        if r["op"] != "load":
            runs[(r["op"], r["concurrency"], r["label"])].append(r)

    def med(key, field):
        vals = [r[field] for r in runs.get(key, []) if field in r]
        return statistics.median(vals) if vals else None

    print("| op | concurrency | server | runs | " + " | ".join(h for _, h, _ in FIELDS) + " | errors |")
    print("|---|---:|---|---:|" + "---:|" * len(FIELDS) + "---:|")
    for key in sorted(runs, key=lambda k: (k[0], k[1], k[2])):
        op, c, label = key
        cells = []
        for f, _, fmt in FIELDS:
            v = med(key, f)
            cells.append(fmt % v if v is not None else "")
        errors = sum(r["errors"] for r in runs[key])
        print("| %s | %d | %s | %d | %s | %d |" % (op, c, label, len(runs[key]), " | ".join(cells), errors))

    # Ratios: throughput (higher is better) and server CPU per call (lower).
    pairs = [("put", "nokv-sync", "etcd"), ("put", "nokv-async", "etcd"),
             ("get", "nokv-async", "etcd-serializable"), ("get", "nokv-async", "etcd"),
             ("scan", "nokv-async", "etcd-serializable"), ("scan", "nokv-async", "etcd"),
             ("write", "nokv-sync", "etcd"), ("write", "nokv-async", "etcd"),
             ("cas", "nokv-sync", "etcd"), ("cas", "nokv-async", "etcd"),
             ("put", "nokv-cluster", "etcd-cluster"), ("get", "nokv-cluster", "etcd-cluster"),
             ("get", "nokv-cluster-serializable", "etcd-cluster-serializable")]
    rows = []
    for op, a, b in pairs:
        for c in sorted({k[1] for k in runs if k[0] == op}):
            ta, tb = med((op, c, a), "ops_per_s"), med((op, c, b), "ops_per_s")
            ca, cb = med((op, c, a), "server_cpu_us_per_call"), med((op, c, b), "server_cpu_us_per_call")
            if ta and tb:
                cpu = "%.2f×" % (ca / cb) if ca and cb else ""
                ra, rb = runs[(op, c, a)], runs[(op, c, b)]
                paired = ""
                if "cluster" in a and len(ra) == len(rb):  # cluster_bench.sh's pairs
                    ratios = sorted(x["ops_per_s"] / y["ops_per_s"] for x, y in zip(ra, rb) if y["ops_per_s"])
                    if ratios:
                        paired = "%.2f× (%.2f-%.2f)" % (statistics.median(ratios), ratios[0], ratios[-1])
                rows.append("| %s | %d | %s vs %s | %.2f× | %s | %s |" % (op, c, a, b, ta / tb, paired, cpu))
    if rows:
        print()
        print("| op | concurrency | compared | throughput ratio | paired runs: median (range) | server CPU per call ratio |")
        print("|---|---:|---|---:|---:|---:|")
        print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1])
