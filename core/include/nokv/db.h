/*
 * db.h — open, write, read and close a NoKV-C database.
 *
 * Handles are opaque. Ownership is explicit: every *_new/_open/_create has a
 * matching _free/_close/_release, and values returned by nokv_get() are heap
 * buffers the caller releases with nokv_free().
 *
 * Threads: a nokv_db may be shared by any number of threads. Iterators and
 * batches belong to one thread at a time. Snapshots may be shared.
 *
 * Versions: every write is stamped with a commit timestamp handed out by the
 * database's oracle, strictly increasing. A read at read_ts sees, for each key,
 * the newest version whose commit timestamp is <= read_ts.
 */
#ifndef NOKV_DB_H
#define NOKV_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nokv/batch.h"
#include "nokv/options.h"
#include "nokv/stats.h"
#include "nokv/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nokv_db nokv_db;
typedef struct nokv_iter nokv_iter;

/* Opens (or creates, per opts) the database in directory path, replaying its
 * write-ahead log. opts may be NULL for defaults. On success *out owns the
 * database. Fails with NOKV_EBUSY if another process holds it, NOKV_ECORRUPT if
 * the log is damaged anywhere but at its torn tail. */
int nokv_open(const char *path, const nokv_options *opts, nokv_db **out);

/* Waits for in-flight writes, syncs the log and frees db. Fails with NOKV_EBUSY
 * (and leaves db open) while iterators or snapshots are still alive. */
int nokv_close(nokv_db *db);

/* Makes every write acknowledged so far durable (the value log, then the log
 * synced), as if each had asked for sync. */
int nokv_sync(nokv_db *db);

/* wo may be NULL (no sync). If commit_ts is non-NULL it receives the write's
 * commit timestamp. */
int nokv_put(nokv_db *db, const nokv_write_options *wo, const void *key, size_t klen,
             const void *val, size_t vlen, uint64_t *commit_ts);
int nokv_delete(nokv_db *db, const nokv_write_options *wo, const void *key, size_t klen,
                uint64_t *commit_ts);
/* Applies b at the given commit timestamp instead of the next one: for a
 * replicated state machine, where every replica applies the same log and must
 * hold the same versions at the same timestamps (e.g. commit_ts = the log
 * index << 16). commit_ts must be above every timestamp the engine has used;
 * the engine's own work (value-log GC rewrites) takes the ones after it, so
 * leave room between entries. NOKV_EINVAL otherwise, or for an empty batch. */
int nokv_write_at(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
                  uint64_t commit_ts);
/* Deletes every key in [start, end) with one range tombstone
 * (nokv_batch_delete_range). */
int nokv_delete_range(nokv_db *db, const nokv_write_options *wo, const void *start,
                      size_t start_len, const void *end, size_t end_len, uint64_t *commit_ts);
/* Applies every operation of b atomically under one commit timestamp. b is not
 * modified and may be reused. */
int nokv_write(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
               uint64_t *commit_ts);

/* A condition of nokv_write_if, on the newest version of one key. */
typedef enum nokv_cond_op {
  NOKV_COND_ABSENT = 1,        /* the key has no visible version */
  NOKV_COND_PRESENT = 2,       /* the key has a visible version */
  NOKV_COND_VALUE_EQUALS = 3,  /* it has one, holding exactly value */
  NOKV_COND_TS_EQUALS = 4,     /* it has one, written at commit_ts (compare-and-set
                                  on the version a reader saw) */
  NOKV_COND_TS_BELOW = 5,      /* it has none, or one written before commit_ts */
  /* Nothing was written to the key after commit_ts: no put, no deletion and no
   * range deletion covering it (a transaction's read, checked at its commit:
   * nokv_txn_export). Exact while the history after commit_ts is kept (a
   * snapshot at or below it is open, or history_retention_commits reaches
   * it); once it may not be, the condition fails, as a conflict would. With
   * key NULL and klen 0: nothing was written at all after commit_ts. */
  NOKV_COND_UNWRITTEN_SINCE = 6,
} nokv_cond_op;

typedef struct nokv_condition {
  nokv_cond_op op;
  const void *key;
  size_t klen;
  const void *value;  /* NOKV_COND_VALUE_EQUALS */
  size_t vlen;
  uint64_t commit_ts; /* NOKV_COND_TS_EQUALS, NOKV_COND_TS_BELOW */
} nokv_condition;

/* What nokv_write_if found. */
typedef struct nokv_cond_result {
  uint64_t read_ts;   /* the timestamp the conditions were judged at */
  size_t failed;      /* NOKV_ECONDITION: the index of the first that failed */
  bool found;         /* ... whether its key had a version at read_ts (for
                         NOKV_COND_UNWRITTEN_SINCE: a write, deletions too) */
  uint64_t found_ts;  /* ... and that version's commit timestamp (0 if none) */
} nokv_cond_result;

/* Applies b atomically, as nokv_write does, if and only if every condition
 * holds: the conditions are judged at one timestamp (read_ts) and b commits
 * with no write to any of their keys in between, so they hold at its commit
 * timestamp too (a write that lands in between makes it judge them again, at a
 * newer timestamp). NOKV_ECONDITION: some condition failed and nothing was
 * written; *result names the first. n may be 0 (a plain nokv_write); b may
 * be empty (a pure check). result may be NULL. */
int nokv_write_if(nokv_db *db, const nokv_write_options *wo, const nokv_condition *conds,
                  size_t n, const nokv_batch *b, uint64_t *commit_ts, nokv_cond_result *result);

/* The completion of nokv_write_if_async: rc is what nokv_write_if would have
 * returned (NOKV_ECONFLICT aside, below), commit_ts the batch's timestamp,
 * result what the judgement found and msg the error message ("" on success);
 * result and msg are valid only during the call. */
typedef void (*nokv_write_if_done)(void *arg, int rc, uint64_t commit_ts,
                                   const nokv_cond_result *result, const char *msg);

/* nokv_write_if without waiting for the commit, for servers: the conditions are
 * judged here, in the caller's thread (reads, which may touch disk), and the
 * batch is queued for commit; done runs on the engine's commit thread, or
 * before this returns when a condition fails or there is nothing to commit. If
 * a write to a condition's key lands between the judgement and the commit,
 * nothing is written and done gets NOKV_ECONFLICT: judge again (nokv_write_if,
 * which retries itself), off the commit thread. Returns an error without
 * calling done only where nokv_write_if fails up front. conds and b must live
 * until done. done must be quick, as nokv_write_async's. */
int nokv_write_if_async(nokv_db *db, const nokv_write_options *wo, const nokv_condition *conds,
                        size_t n, const nokv_batch *b, nokv_write_if_done done, void *arg);

/* The wall clock TTL expiry is stated in and judged by: milliseconds since the
 * Unix epoch (docs/ttl.md). */
uint64_t nokv_wall_clock_ms(void);

/* The completion of nokv_write_async: rc is what nokv_write would have
 * returned, commit_ts the write's timestamp (0 unless rc is NOKV_OK), msg the
 * error message ("" on success; valid only during the call). */
typedef void (*nokv_write_done)(void *arg, int rc, uint64_t commit_ts, const char *msg);

/* Writes b as nokv_write does, without waiting: returns at once, and done(arg,
 * ...) runs exactly once when the write is applied (and synced, with wo->sync)
 * or has failed. b must stay alive and unchanged until done runs. Concurrent
 * writes, async or not, are committed together in groups; no thread is needed
 * per write in flight. done runs on the thread that led the write's group (the
 * engine's commit thread, or a nokv_write caller) and must be quick: it must
 * not block, nor write to this database. Returns NOKV_OK when queued; a batch
 * nokv_write would refuse up front, or a database that is closing, fails here
 * and done never runs. (An empty batch completes before this returns.) */
int nokv_write_async(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
                     nokv_write_done done, void *arg);

/* Writes a consistent copy of the database as of one commit timestamp into
 * directory dst (created if missing; it must be empty). The copy opens as a
 * database of its own holding every write up to *ts (if ts is non-NULL) and none
 * after. Tables and sealed value-log segments are hard-linked where the
 * filesystem allows (they never change), the rest copied. Writes continue
 * meanwhile; value-log GC waits. */
int nokv_checkpoint(nokv_db *db, const char *dst, uint64_t *ts);

/* What nokv_repair found and did. */
typedef struct nokv_repair_report {
  uint64_t tables_verified;        /* read whole, every checksum good */
  uint64_t tables_damaged;         /* their entries before the damage salvaged */
  uint64_t table_entries_salvaged; /* from damaged tables */
  uint64_t table_entries_lost;     /* in damaged tables, past their damage */
  uint64_t wal_segments;
  uint64_t wal_records;            /* write batches salvaged from the WAL */
  uint64_t wal_bytes_skipped;      /* damaged WAL bytes stepped over */
  uint64_t values_lost;            /* versions whose value-log entry is missing or damaged
                                      (older versions GC had already collected count too):
                                      kept as deletions, so no older value resurfaces */
  uint64_t vlog_segments_moved;    /* unusable (bad header) */
  uint64_t files_moved;            /* originals moved to lost/ */
  uint64_t entries_written;        /* versions in the rebuilt tables */
  uint64_t bytes_written;
  uint64_t last_commit_ts;
} nokv_repair_report;

/* Salvages the database in path when it refuses to open, as LevelDB's RepairDB
 * does: every table and WAL segment is read for what it still holds (stepping
 * over damage), everything readable is merged into new tables (every version
 * kept), and a new manifest is written. The originals it replaces or cannot use
 * (old tables, WAL segments, manifests, CURRENT, value-log segments with a bad
 * header) move to path/lost/; nothing is deleted. Needs the database closed.
 * opts may be NULL; *report says what was salvaged and what was lost. */
int nokv_repair(const char *path, const nokv_options *opts, nokv_repair_report *report);

/* Reads key. On NOKV_OK *val is a malloc'ed copy (free with nokv_free) of *vlen
 * bytes and, if commit_ts is non-NULL, *commit_ts is the version's timestamp.
 * NOKV_ENOTFOUND when no version is visible or the newest one is a deletion.
 * ro may be NULL (latest). */
int nokv_get(nokv_db *db, const nokv_read_options *ro, const void *key, size_t klen,
             void **val, size_t *vlen, uint64_t *commit_ts);

void nokv_free(void *p);

/* The newest commit timestamp visible to readers (what read_ts 0 reads at). */
uint64_t nokv_last_commit_ts(nokv_db *db);

/* A snapshot pins the current commit timestamp: reads through it see the
 * database as of that moment, and versions it can see are kept. */
int nokv_snapshot_create(nokv_db *db, nokv_snapshot **out);
uint64_t nokv_snapshot_ts(const nokv_snapshot *snap);
void nokv_snapshot_release(nokv_db *db, nokv_snapshot *snap);

/* Forward iterator over user keys in [start, end) at the read options' timestamp
 * (end_len == 0 means no upper bound). It yields the newest visible version of
 * each key and skips deleted keys. It starts unpositioned: call
 * nokv_iter_seek_first or nokv_iter_seek. */
int nokv_iter_new(nokv_db *db, const nokv_read_options *ro, const void *start,
                  size_t start_len, const void *end, size_t end_len, nokv_iter **out);
/* An iterator over the keys that start with prefix (all keys if len is 0). */
int nokv_iter_new_prefix(nokv_db *db, const nokv_read_options *ro, const void *prefix,
                         size_t len, nokv_iter **out);
void nokv_iter_seek_first(nokv_iter *it);
/* Positions at the first key >= key (and >= start). */
void nokv_iter_seek(nokv_iter *it, const void *key, size_t klen);
bool nokv_iter_valid(const nokv_iter *it);
void nokv_iter_next(nokv_iter *it);
/* Borrowed views valid until the iterator moves or is closed. REQUIRES: valid. */
const void *nokv_iter_key(const nokv_iter *it, size_t *klen);
const void *nokv_iter_value(const nokv_iter *it, size_t *vlen);
uint64_t nokv_iter_commit_ts(const nokv_iter *it);
/* NOKV_OK unless the iterator stopped on an error. */
int nokv_iter_status(const nokv_iter *it);
void nokv_iter_close(nokv_iter *it);  /* NULL is allowed */

/* Fills *out with a consistent-enough copy of the counters (each is exact;
 * they are read one by one). */
int nokv_stats(nokv_db *db, nokv_statistics *out);

/* Hot keys: the keys read (Get, transactional get, and the first key of each
 * iterator seek) or written most often over about the last second, estimated
 * by a tracker of fixed memory (the hot_key_* options; docs/hot_keys.md). */
typedef enum nokv_hot_kind { NOKV_HOT_READS = 0, NOKV_HOT_WRITES = 1 } nokv_hot_kind;

#define NOKV_HOT_KEY_MAX 256 /* bytes of a hot key kept; longer ones are cut */

typedef struct nokv_hot_key {
  char key[NOKV_HOT_KEY_MAX];
  size_t klen;      /* the key's whole length; > NOKV_HOT_KEY_MAX: key holds its start */
  double per_sec;   /* estimated accesses a second */
} nokv_hot_key;

/* Fills out[0..*count) with up to n of the hottest keys of kind, hottest first:
 * those accessed at least hot_key_min_rate times a second. *count is 0 when
 * tracking is off. */
int nokv_hot_keys(nokv_db *db, nokv_hot_kind kind, size_t n, nokv_hot_key *out, size_t *count);

/* Seals the memtable and waits until every sealed memtable is written to an L0
 * table. */
int nokv_flush(nokv_db *db);

/* Flushes, then compacts every level into the next, top down, until all data
 * sits in the deepest level that holds any; waits for it to finish. Shadowed
 * versions below the oldest snapshot and tombstones with nothing beneath them
 * are dropped on the way. */
int nokv_compact(nokv_db *db);

/* Garbage-collects the value log now: every sealed segment (one whose values are
 * all flushed to tables) with at least `ratio` of its bytes known dead (ratio <=
 * 0: the value_log_gc_ratio option) has its live values written again and is
 * retired; its file is deleted once no open snapshot, iterator or read can reach
 * it. Dead bytes are known from compaction, so a nokv_compact() first makes the
 * estimate complete. *collected (may be NULL) counts the segments retired. Not
 * throttled. A damaged segment is skipped (the call still fails with
 * NOKV_ECORRUPT after collecting the others). */
int nokv_vlog_gc(nokv_db *db, double ratio, uint32_t *collected);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_DB_H */
