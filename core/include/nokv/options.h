/*
 * options.h — how a database is opened, written and read.
 *
 * Plain structs filled with defaults by nokv_options_init() and friends; set the
 * fields you care about and pass a pointer. The library copies what it needs, so
 * an options struct may live on the caller's stack.
 */
#ifndef NOKV_OPTIONS_H
#define NOKV_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nokv_env;      /* file layer; NULL means the POSIX one (see core/src/util/env.h) */
typedef struct nokv_snapshot nokv_snapshot;

#define NOKV_MAX_KEY_SIZE_LIMIT 65536u /* hard ceiling of max_key_size */

typedef struct nokv_options {
  bool create_if_missing;      /* default true */
  bool error_if_exists;        /* default false */
  size_t max_key_size;         /* default and ceiling 64 KiB */
  size_t max_value_size;       /* default 64 MiB */
  /* A memtable is sealed and queued for flushing to an L0 table once it holds this
   * many bytes. Default 64 MiB. */
  size_t memtable_max_bytes;
  /* Sealed memtables waiting for flush; writers stall (never fail) while this many
   * wait. Default 2, at most 16. */
  int max_immutable_memtables;
  size_t wal_segment_bytes;    /* a WAL segment is rotated past this size; default 64 MiB */
  size_t max_group_commit_bytes; /* bytes of batches one WAL write may join; default 1 MiB */

  /* Tables. */
  size_t block_size;           /* data block size before compression; default 4 KiB */
  int block_restart_interval;  /* default 16 */
  int bloom_bits_per_key;      /* 0 disables filters; default 10 */
  /* Data blocks of tables at this level and deeper are zstd-compressed; -1 turns
   * compression off. Default 2 (L0 and L1 stay raw: they are rewritten soonest). */
  int compression_start_level;
  int zstd_level;              /* default 1 */
  size_t block_cache_bytes;    /* shared LRU of data blocks; default 64 MiB */
  int max_open_files;          /* tables kept open; default 1000 */

  /* Compaction. L0 collects flushed tables; once l0_compaction_trigger of them
   * exist they are merged together (with the overlapping part of L1) into L1.
   * Levels 1.. have byte targets growing by level_size_ratio. */
  int l0_compaction_trigger;   /* default 4 */
  int l0_slowdown_trigger;     /* each write is delayed 1 ms past this; default 20 */
  int l0_stop_trigger;         /* writes wait for compaction past this; default 36 */
  uint64_t level1_max_bytes;   /* default 64 MiB */
  int level_size_ratio;        /* default 10 */
  uint64_t target_file_bytes;  /* compaction output table size; default 8 MiB */
  /* Compaction debt (bytes over the level targets) that slows writes / stops them. */
  uint64_t soft_pending_compaction_bytes;  /* default 64 GiB */
  uint64_t hard_pending_compaction_bytes;  /* default 256 GiB */
  int max_background_compactions; /* compactions that may run at once; default 2, at most 4 */
  /* A compaction of at least 4 target files' worth of input is split by key
   * range into up to this many parts, run by as many threads, so an L0 merge
   * under a sustained load uses every core. Default 2; 1 never splits; at most 8. */
  int max_subcompactions;
  size_t manifest_max_bytes;   /* manifest rewritten as a snapshot past this; default 4 MiB */
  bool disable_auto_compaction; /* for tests and bulk loads; default false */

  /* Value log. A value of at least value_threshold bytes is stored once in the
   * value log and the LSM keeps a 16-byte pointer to it, so compaction never
   * rewrites it. 0 keeps every value in the LSM. Default 1 KiB. */
  size_t value_threshold;
  uint64_t value_log_segment_bytes;  /* segment size; default 256 MiB, 4 KiB to 2 GiB */
  /* A segment is garbage-collected once this share of it is known dead. Default 0.5. */
  double value_log_gc_ratio;
  /* Background GC rewrites live values at most this fast; 0: unthrottled.
   * Default 32 MiB/s. nokv_vlog_gc() is never throttled. */
  uint64_t value_log_gc_bytes_per_sec;
  bool disable_auto_gc;        /* only nokv_vlog_gc() collects; default false */
  /* Once no write has committed for this long, background GC measures the
   * sealed segments' dead share itself (compaction, which otherwise reports it,
   * does not run on an idle database) and collects those past
   * value_log_gc_ratio; once per idle period. 0: never. Default 10,000 ms. */
  uint32_t value_log_gc_idle_ms;
  /* An iterator whose value-log read takes longer than this (the value was not
   * in memory) starts reading ahead: it asks the kernel for the values of the
   * next 64 entries at once, so a cold range scan is not one random read per
   * key. 0: always; UINT32_MAX: never. Default 30 µs. */
  uint32_t scan_prefetch_micros;

  /* Transactions: most buffered writes and their key+value bytes (the bytes are
   * also capped at half of memtable_max_bytes). Defaults 100000 and 32 MiB. */
  uint32_t max_txn_ops;
  size_t max_txn_bytes;
  /* Keys a read-write transaction remembers one by one for its conflict check
   * (8 bytes each). Past it (a large scan, say), it remembers only that it read
   * "everything" and conflicts with any write committed after it began.
   * Default 1000000. */
  uint32_t max_txn_reads;
  /* Memory for conflict checks: a table of the last commit timestamp of every
   * key written since the oldest open snapshot began (16 bytes a slot, 2 to 4
   * slots a key). When those keys outgrow it, the table is emptied and every
   * transaction open at that moment fails to commit with NOKV_ECONFLICT (retry
   * it); newer ones are unaffected. Default 64 MiB; at least 64 KiB. */
  size_t max_txn_conflict_bytes;

  /* Hot keys (nokv_hot_keys). The tracker samples one read in 8 and counts
   * every written key, in hot_key_tracker_bytes of memory (default 2 MiB, at
   * least 64 KiB) whatever the number of keys. A key is reported hot from
   * hot_key_min_rate accesses a second (default 100). */
  bool hot_key_tracking;       /* default true */
  size_t hot_key_tracker_bytes;
  uint32_t hot_key_min_rate;
  /* Writes of a key accepted a second: past it (estimated over the last
   * second, refused writes not counted), a write of the key fails with
   * NOKV_EHOTKEY and writes nothing, so one hot key cannot monopolise the write
   * path. 0 (the default): no limit. With a limit every written key is
   * counted, not one in 8. Needs hot_key_tracking. */
  uint32_t hot_write_limit;
  /* A cache of the newest values of hot keys (hot_key_min_rate), so their Gets
   * skip the LSM; writes keep it exact (a read never sees a value the LSM would
   * not give it). Values over 1/64 of it are not cached. Default 4 MiB; 0 turns
   * it off; needs hot_key_tracking. */
  size_t hot_read_cache_bytes;

  /* History: flushes and compactions keep every version of the last
   * history_retention_commits commits (the watermark stays that far below the
   * newest), so reads at an explicit read_ts and watches (watch.h) can reach
   * that far back, across restarts too. 0 (the default): only what snapshots
   * hold. Costs the space of the versions kept. */
  uint64_t history_retention_commits;
  /* The change ring watches read recent commits from (watch.h), filled from
   * the first nokv_watch_open on; the oldest commits leave it past this size.
   * Default 16 MiB; at least 64 KiB. */
  size_t watch_ring_bytes;

  const struct nokv_env *env;  /* NULL: POSIX file layer */
} nokv_options;

typedef struct nokv_write_options {
  /* true: the WAL is fsync'ed before the write is acknowledged, so it survives
   * power loss. false: it survives a process crash once acknowledged. */
  bool sync;
  /* Non-zero: commit at this timestamp instead of the next one (nokv_write_at
   * says when that is allowed). For a replicated log; works with nokv_write,
   * nokv_write_async and nokv_write_if. */
  uint64_t commit_ts;
} nokv_write_options;

typedef struct nokv_read_options {
  /* Read at this snapshot if non-NULL; else at read_ts if non-zero; else at the
   * latest committed timestamp. A read never sees a version newer than the latest
   * committed timestamp, whatever read_ts says. A read_ts nothing pins is served
   * only while the versions it needs are surely kept: once a flush or compaction
   * has collected history above it, reads at it fail with NOKV_ESTALE instead of
   * answering from a partial past. To read one state across calls, hold a
   * snapshot (or a read-only transaction). */
  const nokv_snapshot *snapshot;
  uint64_t read_ts;
  /* If non-NULL, receives the timestamp the read was served at once it is fixed
   * (with read_ts 0: the latest committed timestamp as the read began). A read
   * with read_ts 0 never fails with NOKV_ESTALE. */
  uint64_t *served_ts;
  /* If non-NULL, receives the expiry of the version a Get returned
   * (milliseconds since the Unix epoch; 0: it never expires). A version written
   * with a TTL (nokv_batch_put_ttl) is invisible to every read once expired,
   * judged against the wall-clock time its snapshot was taken, or, with no
   * snapshot, the time the read (or the iterator) began: one snapshot sees one
   * state, whatever time passes while it is held. */
  uint64_t *expires_at_ms;
} nokv_read_options;

void nokv_options_init(nokv_options *opts);
void nokv_write_options_init(nokv_write_options *wo);
void nokv_read_options_init(nokv_read_options *ro);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_OPTIONS_H */
