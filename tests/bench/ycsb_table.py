#!/usr/bin/env python3
"""One YCSB table from ycsb_bench's JSON (NoKV-C, RocksDB, LevelDB) and
badger_ycsb's (Badger), with NoKV-C against the best peer in every cell.

    ycsb_table.py ycsb.json badger.json > table.md
"""
import json
import sys

ORDER = "Labcfderw"  # L: the load
ENGINES = ["nokv", "rocksdb", "leveldb", "badger"]


def main(paths):
    rows = {}
    for path in paths:
        for line in open(path):
            if line.strip():
                r = json.loads(line)
                rows[(r["workload"], int(r["threads"]), r["engine"])] = r
    cells = sorted({(w, t) for (w, t, _) in rows}, key=lambda c: (ORDER.index(c[0]), c[1]))
    print("| workload | threads | engine | ops/s | p50 us | p99 us | p99.9 us | max us "
          "| >10 ms | >100 ms | vs best peer |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for w, t in cells:
        have = [e for e in ENGINES if (w, t, e) in rows]
        peers = [rows[(w, t, e)]["ops_per_s"] for e in have if e != "nokv"]
        best = max(peers) if peers else 0
        for e in have:
            r = rows[(w, t, e)]
            ratio = f"{r['ops_per_s'] / best:.2f}x" if best else ""
            if e == "nokv" and best:
                ratios.append((w, t, r["ops_per_s"] / best))
            print(f"| {w} | {t} | {e} | {r['ops_per_s']:.0f} | {r['p50_us']:.1f} | "
                  f"{r['p99_us']:.1f} | {r['p999_us']:.1f} | {r['max_us']:.1f} | "
                  f"{r.get('over_10ms', 0):.0f} | {r['over_100ms']:.0f} | {ratio} |")
    if ratios:
        lead = sum(1 for _, _, x in ratios if x >= 1.0)
        print(f"\nNoKV-C at or above the best peer in {lead} of {len(ratios)} cells; "
              f"lowest {min(x for *_, x in ratios):.2f}x "
              f"({', '.join(f'{w}{t}' for w, t, x in ratios if x < 1.0) or 'none below 1.0x'}).")


if __name__ == "__main__":
    main(sys.argv[1:])
