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

#define NOKV_NUM_LEVELS 7

typedef struct nokv_statistics {
  /* oracle */
  uint64_t last_commit_ts;      /* newest timestamp visible to readers */
  uint64_t live_snapshots;
  uint64_t oldest_snapshot_ts;  /* 0 when there is none */
  uint64_t history_horizon;     /* an explicit read_ts below it fails (NOKV_ESTALE) */

  /* transactions */
  uint64_t txns_active;         /* read-write transactions open */
  uint64_t txn_commits;         /* commits that succeeded (read-only ones too) */
  uint64_t txn_conflicts;       /* commits refused with NOKV_ECONFLICT */
  uint64_t txn_tracked_keys;    /* keys whose last commit is kept for conflict checks */
  uint64_t txn_tracking_overflows;  /* times they outgrew max_txn_conflict_bytes (or memory) */
  uint64_t cond_writes;         /* nokv_write_if calls that wrote (all conditions held) */
  uint64_t cond_failures;       /* nokv_write_if calls refused: a condition did not hold */
  uint64_t cond_rejudged;       /* times a write to a condition's key, landing between the
                                   judgement and the commit, made them be judged again */
  uint64_t ttl_expired;         /* expired versions (TTL) flushes and compactions dropped */
  uint64_t range_deletes;       /* range deletions written (nokv_batch_delete_range) */
  uint64_t range_tombstones;    /* range tombstones kept: in memtables and the manifest */
  uint64_t range_dropped;       /* versions flushes and compactions dropped under one */

  /* memtable */
  uint64_t memtable_entries;
  uint64_t memtable_bytes;      /* arena bytes allocated */
  uint64_t memtable_limit_bytes;
  uint64_t immutable_memtables;  /* sealed, waiting for flush */

  /* write path */
  uint64_t puts;
  uint64_t deletes;
  uint64_t batches;             /* nokv_write calls that succeeded (put/delete included) */
  uint64_t write_groups;        /* WAL appends: batches per group = batches / groups */
  uint64_t wal_syncs;
  uint64_t wal_bytes_written;
  uint64_t wal_segments;        /* live segment files */
  uint64_t wal_segment_bytes;   /* bytes in live segment files */
  uint64_t user_bytes_written;  /* key + value bytes of puts and deletes */
  uint64_t write_stalls;        /* writes that waited for a flush or compaction */
  uint64_t write_stall_micros;
  uint64_t write_slowdowns;     /* writes delayed 1 ms because L0 or debt grew */

  /* LSM */
  uint64_t flushes;
  uint64_t flush_bytes_written;
  uint64_t compactions;
  uint64_t trivial_moves;       /* tables moved down a level without rewriting */
  uint64_t subcompactions;      /* key-range parts of split compactions, run in parallel */
  uint64_t compaction_bytes_read;
  uint64_t compaction_bytes_written;
  uint64_t pending_compaction_bytes;  /* bytes over the level targets */
  uint64_t tables;
  uint64_t table_bytes;
  uint64_t level_files[NOKV_NUM_LEVELS];
  uint64_t level_bytes[NOKV_NUM_LEVELS];
  uint64_t tables_deleted;
  /* Obsolete tables and collected value-log segments queued for deletion; a
   * background thread deletes them, so no reader or writer waits on it. */
  uint64_t files_pending_delete;
  uint64_t manifest_rewrites;
  /* Write amplification so far = (wal + value log + flush + compaction bytes
   * written) / user bytes written; read amplification = table probes / gets. */
  uint64_t disk_bytes_written;
  uint64_t get_table_probes;

  /* tables and caches */
  uint64_t block_cache_hits;
  uint64_t block_cache_misses;
  uint64_t block_cache_bytes;
  uint64_t block_reads;         /* data blocks read from disk */
  uint64_t bloom_checks;
  uint64_t bloom_negatives;     /* table reads the filter saved */
  uint64_t checksum_errors;

  /* value log */
  uint64_t vlog_segments;
  uint64_t vlog_bytes;             /* in live segments */
  uint64_t vlog_garbage_bytes;     /* dead bytes compaction has found (discard stats) */
  uint64_t vlog_garbage_permille;  /* vlog_garbage_bytes per 1000 vlog_bytes */
  uint64_t vlog_bytes_written;
  uint64_t vlog_reads;             /* values read from the value log */
  uint64_t vlog_prefetches;        /* values scans asked the kernel to read ahead */
  uint64_t gc_runs;                /* segments examined by value-log GC */
  uint64_t gc_segments_collected;  /* segments GC rewrote and retired */
  uint64_t gc_bytes_rewritten;     /* live entries GC appended again */
  uint64_t gc_bytes_reclaimed;     /* segment bytes GC deleted */
  uint64_t gc_idle_checks;         /* idle checks run (value_log_gc_idle_ms) */
  uint64_t gc_segments_measured;   /* segments whose dead share an idle check measured */

  /* read path */
  uint64_t gets;
  uint64_t get_hits;
  uint64_t iterators_created;

  /* hot-key tracker */
  uint64_t hot_reads_sampled;    /* reads counted (one in 8 per thread; about, */
  uint64_t hot_writes_sampled;   /* written keys counted    under races) */
  uint64_t hot_read_candidates;  /* keys held as possibly hot */
  uint64_t hot_write_candidates;
  uint64_t hot_tracker_bytes;    /* its memory */
  uint64_t hot_writes_throttled; /* writes refused by hot_write_limit (NOKV_EHOTKEY) */
  uint64_t hot_cache_hits;       /* Gets served by the hot-read cache */
  uint64_t hot_cache_fills;      /* hot values cached */
  uint64_t hot_cache_bytes;      /* its memory in use */

  /* recovery (the last open) */
  uint64_t recovered_records;
  uint64_t recovered_bytes;         /* WAL bytes replayed */
  uint64_t torn_tail_truncations;  /* WAL tails cut because a record was torn */
  uint64_t torn_tail_bytes;        /* bytes cut off */
  uint64_t orphan_tables_removed;  /* tables no version names (e.g. half written
                                      when the process died), removed at open */
  uint64_t vlog_validated_bytes;   /* value log checked past the durable head */
  uint64_t vlog_torn_bytes;        /* torn value-log tail cut */
  uint64_t wal_records_dangling;   /* WAL records dropped because the values they
                                      point at were lost (unsynced writes) */
  uint64_t writes_refused_full;    /* writes refused (NOKV_EFULL) for a full disk, nothing
                                      logged: the database kept working */
  uint64_t bg_full_retries;        /* flushes and compactions retried after a full disk */
  uint64_t wal_segments_replayed;
  uint64_t tables_checked;         /* live tables found on disk */
  uint64_t vlog_segments_removed;  /* retired by GC before a crash, deleted at open */
  /* Wall time of the open and of its phases (with NOKV_RECOVERY_TRACE=1 in the
   * environment the open also prints one RECOVERY_TRACE line per phase). */
  uint64_t recovery_micros;
  uint64_t recovery_manifest_micros;  /* CURRENT and the manifest replayed */
  uint64_t recovery_table_check_micros;  /* every live table found on disk */
  uint64_t recovery_vlog_micros;      /* value log validated past the head */
  uint64_t recovery_wal_micros;       /* WAL replayed into a memtable */
  uint64_t recovery_flush_micros;     /* that memtable written to L0, new manifest */
  uint64_t recovery_cleanup_micros;   /* orphans removed */
} nokv_statistics;

#ifdef __cplusplus
}
#endif

#endif /* NOKV_STATS_H */
