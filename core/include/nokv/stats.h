/*
 * stats.h — the counters of a running database, filled by nokv_stats().
 * Served by the Stats RPC and printed by the nokv CLI.
 */
#ifndef NOKV_STATS_H
#define NOKV_STATS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nokv_statistics {
  /* oracle */
  uint64_t last_commit_ts;      /* newest timestamp visible to readers */
  uint64_t live_snapshots;
  uint64_t oldest_snapshot_ts;  /* 0 when there is none */

  /* memtable */
  uint64_t memtable_entries;
  uint64_t memtable_bytes;      /* arena bytes allocated */
  uint64_t memtable_limit_bytes;

  /* write path */
  uint64_t puts;
  uint64_t deletes;
  uint64_t batches;             /* nokv_write calls that succeeded (put/delete included) */
  uint64_t write_groups;        /* WAL appends: batches per group = batches / groups */
  uint64_t wal_syncs;
  uint64_t wal_bytes_written;
  uint64_t wal_segments;        /* live segment files */
  uint64_t wal_segment_bytes;   /* bytes in live segment files */
  uint64_t writes_rejected_full;

  /* read path */
  uint64_t gets;
  uint64_t get_hits;
  uint64_t iterators_created;

  /* recovery (the last open) */
  uint64_t recovered_records;
  uint64_t recovered_bytes;         /* WAL bytes replayed */
  uint64_t torn_tail_truncations;  /* WAL tails cut because a record was torn */
  uint64_t torn_tail_bytes;        /* bytes cut off */
} nokv_statistics;

#ifdef __cplusplus
}
#endif

#endif /* NOKV_STATS_H */
