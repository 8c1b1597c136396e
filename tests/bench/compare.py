#!/usr/bin/env python3
"""Merges peer_bench and badger_bench JSON results into one table.

    compare.py peer.json badger.json [...]

Each figure is the median over repetitions. Ratios are NoKV-C's figure over the
peer's (ops/s: higher is better for NoKV-C; write and space amplification are
reported as they are, lower is better)."""
import json
import statistics
import sys

ENGINES = ["nokv", "rocksdb", "leveldb", "badger"]
WORKLOADS = ["fillseq", "fillrandom", "overwrite", "readrandom", "readmissing", "seekrandom",
             "ycsb-a", "ycsb-b", "ycsb-c"]


def main(paths):
    results, spaces = [], []
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        results += d["results"]
        spaces += d["space"]
    sizes = sorted({r["value_size"] for r in results})
    engines = [e for e in ENGINES if any(r["engine"] == e for r in results)]

    def median(workload, engine, vs, field):
        xs = [r[field] for r in results
              if r["workload"] == workload and r["engine"] == engine and r["value_size"] == vs]
        return statistics.median(xs) if xs else None

    peers = [e for e in engines if e != "nokv"]
    print("| value | workload | " + " | ".join(f"{e} ops/s" for e in engines) + " | "
          + " | ".join(f"{e} p99 us" for e in engines) + " | "
          + " | ".join(f"vs {e}" for e in peers) + " |")
    print("|---|---|" + "---:|" * (2 * len(engines) + len(peers)))
    for vs in sizes:
        for w in WORKLOADS:
            ops = {e: median(w, e, vs, "ops_per_sec") for e in engines}
            if all(v is None for v in ops.values()):
                continue
            p99 = {e: median(w, e, vs, "p99_us") for e in engines}
            cells = [f"{ops[e]:,.0f}" if ops[e] else "" for e in engines]
            cells += [f"{p99[e]:.1f}" if p99[e] else "" for e in engines]
            for e in peers:
                ok = ops.get("nokv") and ops[e]
                cells.append(f"{ops['nokv'] / ops[e]:.2f}x" if ok else "")
            print(f"| {vs} | {w} | " + " | ".join(cells) + " |")

    print()
    print("| value | engine | bytes on disk | written | write amplification | "
          "space amplification |")
    print("|---|---|---:|---:|---:|---:|")
    for vs in sizes:
        wa = {}
        for e in engines:
            sp = [s for s in spaces if s["engine"] == e and s["value_size"] == vs]
            if not sp:
                continue
            disk = statistics.median(s["disk_bytes"] for s in sp)
            written = statistics.median(s["written_bytes"] for s in sp)
            user = sp[0]["user_bytes"]
            live = user / (2 if any(r["workload"] == "overwrite" for r in results) else 1)
            wa[e] = written / user
            print(f"| {vs} | {e} | {disk / 1e6:,.1f} MB | {written / 1e6:,.1f} MB | "
                  f"{wa[e]:.2f} | {disk / live:.2f} |")
        if "nokv" in wa:
            rel = ", ".join(f"{wa['nokv'] / wa[e]:.2f}x {e}'s" for e in wa if e != "nokv")
            print(f"| {vs} | nokv WA relative | | | {rel} | |")
    print("\n(after fillrandom + overwrite of the same keys; write amplification = bytes the "
          "process wrote / key+value bytes put; space amplification = bytes on disk / live "
          "key+value bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
