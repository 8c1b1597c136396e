/*
 * db_impl.h — the database handle, shared by db.c (open, close, recovery,
 * stats), write.c (group commit, making room), flush.c (memtable → L0),
 * compact.c (compaction), build.c (writing tables) and read.c (get, iterators);
 * db.c also owns the background threads and the sticky background error.
 *
 * Locking: mu guards the writer queue, the memtable list (mem, imm), background
 * state and bg_error. view_mu guards only the view pointer, so readers take it
 * for a few instructions. The vset has its own locks (version_set.h).
 */
#ifndef NOKV_DB_DB_IMPL_H
#define NOKV_DB_DB_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "memtable/memtable.h"
#include "nokv/db.h"
#include "sst/table_builder.h"
#include "sst/table_cache.h"
#include "txn/oracle.h"
#include "util/arena.h"
#include "util/cache.h"
#include "util/counter.h"
#include "util/env.h"
#include "util/reaper.h"
#include "version/version_set.h"
#include "vlog/vlog.h"
#include "wal/wal.h"

#define NK_MAX_IMM 16
#define NK_MAX_COMPACTIONS 4
#define NK_MAX_SUBCOMPACTIONS 8

typedef atomic_uint_fast64_t nk_counter;

static inline void nk_count(nk_counter *c, uint64_t n) {
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t nk_counter_get(const nk_counter *c) {
  return atomic_load_explicit((nk_counter *)c, memory_order_relaxed);
}

/* What a reader needs, pinned as a unit: the mutable memtable, the sealed ones
 * (newest first) and the table version. A memtable's life: created mutable as
 * db->mem → sealed into db->imm when full (its WAL segments are closed) → written
 * to an L0 table by the flush thread → dropped from imm once the manifest records
 * the table → freed when the last view holding it is released. */
typedef struct nk_epoch nk_epoch;  /* gc.c */

typedef struct nk_watch_ring nk_watch_ring;  /* watch.c */

typedef struct nk_view {
  uint32_t refs;  /* atomic */
  nk_epoch *epoch;  /* pinned: value-log segments retired after it stay readable */
  nk_memtable *mem;
  nk_arena_pool *arena_pool;  /* blocks of flushed memtables, for the next ones */
  nk_memtable *imm[NK_MAX_IMM];
  size_t nimm;
  nk_version *version;
} nk_view;

struct nk_writer;

/* A position in the value log. */
typedef struct nk_vhead {
  uint32_t fid;
  uint64_t off;
} nk_vhead;

/* How long each phase of the last open took (microseconds). */
typedef struct nk_recovery_times {
  uint64_t total, manifest, tables, vlog, wal, flush, cleanup;
  uint64_t manifest_edits;
} nk_recovery_times;

struct nokv_db {
  char *path;
  nokv_options opts;
  struct nk_hot *hot;       /* the hot-key tracker; NULL when tracking is off */
  struct nk_row_cache *row_cache;  /* hot values; NULL when off */
  nk_watch_ring *watch;     /* recent commits, for watches */
  const struct nokv_env *env;
  nk_file *lock;
  nk_oracle oracle;
  atomic_int live_handles;  /* iterators and snapshots: close refuses while > 0 */
  atomic_int active_txns;   /* read-write transactions begun and not ended */
  /* The newest watermark a flush or compaction has used (at open: the last
   * commit timestamp, since tables on disk were built with unknown ones). A
   * version above it was never dropped, so a read at an explicit timestamp at
   * or above it is exact; below it, versions it needs may be gone. Raised before
   * the job builds anything, hence before its output joins a view. */
  atomic_uint_fast64_t history_horizon;

  /* Write path. The leader of the queue's front group owns wal, group_buf, mem's
   * inserts and the oracle's next_ts. */
  pthread_mutex_t mu;
  pthread_cond_t idle;      /* signalled when the queue drains */
  struct nk_writer *queue_head, *queue_tail;
  bool closing;
  /* The commit thread (write.c), started by the first nokv_write_async: leads
   * the groups whose first writer is async. commit_cv wakes it (mu). */
  pthread_t commit_thread;
  bool commit_started, commit_stop;
  pthread_cond_t commit_cv;
  int bg_error;             /* sticky: a failed log, flush or compaction stops writes */
  char bg_errmsg[256];
  nk_wal *wal;
  uint64_t newest_wal;   /* at open: the newest segment found, which the new one links to */
  char *group_buf;
  size_t group_cap;

  /* Memtables (mu). imm is oldest first; imm_log[i] is the first WAL segment
   * holding data newer than imm[i], imm_vhead[i] the value log head when it was
   * sealed. mem_vlog_bytes: value-log bytes mem's entries point at (leader). */
  nk_memtable *mem;
  uint64_t mem_vlog_bytes;
  uint64_t flushed_ts;      /* newest commit timestamp of a flushed memtable */
  nk_vhead imm_vhead[NK_MAX_IMM];
  nk_arena_pool *arena_pool;  /* blocks of flushed memtables, for the next ones */
  nk_memtable *imm[NK_MAX_IMM];
  uint64_t imm_log[NK_MAX_IMM];
  size_t nimm;

  pthread_mutex_t view_mu;
  nk_view *view;
  nk_epoch *epoch;          /* current value-log epoch (changed under mu and view_mu) */
  /* The published version's L0 table count and compaction debt, for the write
   * path's throttling (mu). */
  int l0_files;
  uint64_t compaction_debt;

  /* Tables. */
  nk_cache *block_cache;
  nk_table_cache *tc;
  nk_sst_stats sst_stats;
  nk_vset *vset;
  nk_reaper *reaper;  /* deletes obsolete tables and collected segments */
  nk_vlog *vlog;

  /* Background work (mu). */
  pthread_t flush_thread;
  pthread_t compact_threads[NK_MAX_COMPACTIONS];
  int ncompact_threads;
  bool threads_started;
  bool stop_bg;
  int running_compactions;
  bool manual_running;
  pthread_cond_t bg_cv;     /* work for the background threads */
  pthread_cond_t room_cv;   /* a flush or compaction finished: stalled writers retry */
  int manual_compactions;   /* requests pending (nokv_compact_range) */
  uint64_t manual_done;     /* completed requests */
  int manual_rc;            /* how the last full manual compaction ended */
  uint64_t flush_full;      /* flushes that failed for a full disk (retried) */
  char *compact_pointer[NK_NUM_LEVELS];  /* round-robin start key per level */
  /* Value-log GC: one collection at a time (gc_mu); the thread waits on gc_cv
   * (with mu) until compaction reports dead bytes (gc_wanted). gc_wanted and
   * gc_urgent are guarded by mu. */
  pthread_t gc_thread;
  bool gc_thread_started;
  bool gc_wanted;
  int gc_urgent;            /* nokv_vlog_gc calls waiting: background GC stops throttling */
  pthread_cond_t gc_cv;
  pthread_mutex_t gc_mu;
  size_t compact_pointer_len[NK_NUM_LEVELS];

  struct {
    nk_counter puts, deletes, batches, write_groups, wal_syncs, writes_refused_full;
    nk_counter bg_full_retries;  /* flushes and compactions retried after ENOSPC */
    nk_counter user_bytes, stalls, stall_micros, slowdowns;
    nk_counter hot_writes_throttled;
    nk_counter gets, get_hits, iterators, table_probes;
    nk_counter txn_commits, txn_conflicts, range_deletes;
    nk_counter cond_writes, cond_failures, cond_rejudged, ttl_expired, range_dropped;
    nk_counter flushes, flush_bytes, compactions, trivial_moves, compact_read, compact_written;
    nk_counter subcompactions;
    nk_counter vlog_reads, gc_runs, gc_collected, gc_rewritten, gc_reclaimed;
    nk_counter gc_idle_checks, gc_measured;
    uint64_t wal_segments_replayed;  /* set once at open */
    nk_recovery_times recovery;
    uint64_t wal_records_dangling;   /* dropped at open: their values were lost */
    nk_wal_replay_stats replay;
    nk_vlog_recovery vlog_recovery;
  } stats;
};

/* NOKV_EINVAL (with a message) for an empty key or one past max_key_size. */
int nk_db_check_key(const nokv_db *db, size_t klen);

/* Resolves read options to a read timestamp no newer than the visible one.
 * NOKV_ESTALE for an explicit read_ts below history_horizon. REQUIRES: the
 * caller acquired the view it will read before calling. */
int nk_db_read_ts(const nokv_db *db, const nokv_read_options *ro, uint64_t *read_ts);

/* Applies one encoded batch (its header's ts is ignored) at commit_ts to mem.
 * REQUIRES: the caller is mem's only writer. */
int nk_db_apply_batch(nk_memtable *mem, const char *rep, size_t len, uint64_t commit_ts);

/* Records a background failure that stops writes. REQUIRES: mu held. */
void nk_db_set_bg_error(nokv_db *db, int rc, const char *what);
/* The background error (with its message set), or NOKV_OK. REQUIRES: mu not held. */
int nk_db_bg_error(nokv_db *db);
/* Logs e to the manifest and installs it, unless a background error has
 * stopped the database (then fails with it); a failure other than a full disk
 * stops the database, so no background job (flush, compaction, value-log GC)
 * writes another edit after a failed one. REQUIRES: mu not held. */
int nk_db_log_and_apply(nokv_db *db, nk_edit *e, const char *what);
/* A flush or compaction that failed for a full disk waits before it retries
 * (50 ms doubling to 2 s by attempt), or until woken. REQUIRES: mu held. */
void nk_db_full_backoff(nokv_db *db, int attempt);

/* ---- point lookups (read.c) ---- */

/* The newest version of key at or below read_ts in view, without following a
 * value pointer: val is the inline value or the pointer's bytes. */
typedef struct nk_lookup {
  bool found;
  nk_kind kind;
  uint64_t ts;
  const char *val;
  size_t vlen;
  char *owned;  /* val's storage when it came from a table */
} nk_lookup;

int nk_db_lookup(nokv_db *db, nk_view *view, const char *key, size_t klen, uint64_t key_hash,
                 uint64_t read_ts, nk_lookup *out);
void nk_lookup_release(nk_lookup *r);
/* nokv_get of a checked key whose nk_hash64 the caller has already computed.
 * may_fill: a value read at the latest timestamp may go to the hot-read cache
 * if the tracker calls its key hot. */
int nk_db_get(nokv_db *db, const nokv_read_options *ro, const void *key, size_t klen,
              uint64_t key_hash, bool may_fill, void **val, size_t *vlen, uint64_t *commit_ts);

/* nokv_iter_new, plus: extra (may be NULL) is merged in as the newest source
 * (a transaction's pending writes, at versions no newer than the read ts), and
 * on_key (may be NULL) is called with each key the iterator settles on. */
int nk_db_iter_new(nokv_db *db, const nokv_read_options *ro, nk_memtable *extra,
                   void (*on_key)(void *, const char *, size_t), void *arg, const void *start,
                   size_t start_len, const void *end, size_t end_len, nokv_iter **out);
/* nk_db_iter_new over the keys that start with prefix. */
int nk_db_iter_new_prefix(nokv_db *db, const nokv_read_options *ro, nk_memtable *extra,
                          void (*on_key)(void *, const char *, size_t), void *arg,
                          const void *prefix, size_t len, nokv_iter **out);

/* The merge of every source of view v, newest first (raw versions). NULL on
 * ENOMEM. */
nk_iter *nk_db_merge_iter(nokv_db *db, nk_view *v);
/* Reads the value a value pointer names into a malloc'ed block. */
int nk_db_read_vptr(nokv_db *db, const char *key, size_t klen, const char *ptr, size_t n,
                    void **val, size_t *vlen);

/* ---- the change ring (watch.c) ---- */

nk_watch_ring *nk_watch_ring_new(size_t max_bytes);
void nk_watch_ring_free(nk_watch_ring *r);
/* Has a watch started it (it then records every commit)? */
bool nk_watch_ring_active(nk_watch_ring *r);
/* Records the user batch b committed at ts. REQUIRES: the write leader, after
 * publishing ts, in timestamp order. */
void nk_watch_record(nk_watch_ring *r, uint64_t ts, const nokv_batch *b);

/* ---- value-log GC and epochs (gc.c) ---- */

nk_epoch *nk_epoch_new(nokv_db *db);
void nk_epoch_ref(nk_epoch *e);
/* The last reference to an epoch deletes the segments retired during it. */
void nk_epoch_unref(nk_epoch *e);
/* The current epoch, referenced: for snapshots (views pin theirs themselves). */
nk_epoch *nk_db_pin_epoch(nokv_db *db);
/* Writes a GC rewrite batch (sync) if nothing overwrote its keys after read_ts;
 * NOKV_ECONFLICT if that could not be checked (write.c). */
int nk_db_write_gc(nokv_db *db, const nokv_batch *b, uint64_t read_ts);
/* Makes every write so far durable (value log, then WAL), through the write
 * queue so no leader is writing meanwhile. */
int nk_db_sync_logs(nokv_db *db);
/* A transaction's commit: its read timestamp, the fingerprints of the keys it
 * read and of those it writes. */
typedef struct nk_txn_commit {
  uint64_t read_ts;
  bool read_all;  /* past max_txn_reads: any write after read_ts conflicts */
  const uint64_t *reads;
  size_t nreads;
  const uint64_t *writes;
  size_t nwrites;
  /* The smallest and largest key read (lo NULL: none), which range
   * deletions committed after read_ts are checked against. */
  const char *read_lo, *read_hi;
  size_t read_lo_len, read_hi_len;
} nk_txn_commit;

/* Writes a transaction's batch unless a transaction that committed after its
 * read_ts wrote a key it read (NOKV_ECONFLICT) (write.c). */
int nk_db_write_txn(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
                    const nk_txn_commit *txn, uint64_t *commit_ts);
/* The same without waiting, as nokv_write_async: txn and b must live until
 * done runs (on the commit thread, or before this returns). */
int nk_db_write_txn_async(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
                          const nk_txn_commit *txn, nokv_write_done done, void *arg);
/* Compaction found dead value-log bytes: wake the GC thread. REQUIRES: mu not held. */
void nk_db_gc_wanted(nokv_db *db);
void *nk_db_gc_main(void *arg);
/* The commit thread's body (write.c). */
void *nk_db_commit_main(void *arg);

/* ---- views (view.c) ---- */

/* The current view, referenced. Never NULL once the database is open. */
nk_view *nk_db_acquire_view(nokv_db *db);
void nk_view_unref(nk_view *v);
/* Publishes a view of mem, imm and the current version. REQUIRES: mu held.
 * NOKV_ENOMEM leaves the old view in place. */
int nk_db_refresh_view(nokv_db *db);

/* ---- writing tables (build.c) ---- */

/* The oldest timestamp any reader may still read at: versions below it that are
 * shadowed by a newer version (also below it) can be dropped. Raises
 * history_horizon to it, so call it once per job, before building. */
uint64_t nk_db_watermark(nokv_db *db);
/* The same without raising history_horizon (for planning, not building). */
uint64_t nk_db_watermark_peek(nokv_db *db);
/* The wall-clock time every reader now and later judges expiry at or after:
 * the earliest live snapshot's time, or now. Versions expired before it are
 * gone to all of them (compaction turns them into tombstones). */
uint64_t nk_db_expiry_horizon(nokv_db *db);
/* Explicit read timestamps below ts fail with NOKV_ESTALE from now on. */
void nk_db_raise_horizon(nokv_db *db, uint64_t ts);

typedef struct nk_build_job {
  int level;                    /* output level: chooses compression */
  uint64_t watermark;
  /* The newest version below the watermark that expired before this wall-clock
   * time (nk_db_expiry_horizon) becomes a tombstone. 0: expiry is not judged. */
  uint64_t expired_before_ms;
  uint64_t max_file_bytes;      /* split outputs (at user-key boundaries) past this */
  /* true if no level deeper than the output holds user key k: a tombstone that
   * is the newest version below the watermark can then be dropped. NULL: never. */
  bool (*is_bottom)(void *arg, const char *k, size_t n);
  void *arg;
  const bool *abort;            /* checked between entries (may be NULL) */
  /* Range tombstones to apply (ts at or below the watermark; may be NULL):
   * versions they hide are dropped. */
  const nk_rdel_set *rdels;
  /* Stamped on the outputs (nk_file_meta.range_clean_ts). */
  uint64_t range_clean_ts;
  /* Stop before the first user key at or past limit (NULL: the input's end). */
  const char *limit;
  size_t limit_len;
  /* results */
  uint64_t bytes_written;
  uint64_t entries_in, entries_dropped;
  uint64_t expired;             /* expiring versions turned into tombstones (or dropped) */
  uint64_t range_dropped;       /* versions a range tombstone hid */
} nk_build_job;

/* The range tombstones of v and of the nmems memtables mems whose ts is at
 * most max_ts, as one set: what a job writing tables at a watermark applies,
 * or what an iterator at a read timestamp honours. NULL if none (or out of
 * memory: NOKV_ENOMEM in *rc). */
nk_rdel_set *nk_db_collect_rdels(const nk_version *v, nk_memtable *const *mems, size_t nmems,
                                 uint64_t max_ts, int *rc);
/* The same over every source of view v (read.c). */
nk_rdel_set *nk_view_rdels(const nk_view *v, uint64_t max_ts, int *rc);

/* Writes input (from its current position to its end) into new tables, adding
 * each finished table to e at job->level. On error, files written so far are
 * removed and e is left with whatever was added (the caller releases it). */
int nk_db_write_tables(nokv_db *db, nk_iter *input, nk_build_job *job, nk_edit *e);
/* Removes the files of the tables e adds from its from-th on: written, but
 * nothing will log them. */
void nk_db_remove_added_tables(nokv_db *db, const nk_edit *e, size_t from);

/* ---- background work (threads in db.c; flush.c, compact.c) ---- */

int nk_db_start_background(nokv_db *db);
/* Stops and joins the background threads. REQUIRES: mu not held. */
void nk_db_stop_background(nokv_db *db);
void *nk_db_flush_main(void *arg);
void *nk_db_compact_main(void *arg);
/* Writes mem to an L0 table and logs it with log_number (WAL segments below it
 * become obsolete) and the value log head vhead (synced first). Used by the
 * flush thread and at open. */
int nk_db_flush_memtable(nokv_db *db, nk_memtable *mem, uint64_t log_number, nk_vhead vhead);
/* Removes WAL segments below the version set's log number. */
void nk_db_delete_obsolete_wal(nokv_db *db);
/* Compaction debt in bytes and whether the version wants a compaction.
 * REQUIRES: nothing (reads the version). */
uint64_t nk_db_pending_compaction_bytes(nokv_db *db, const nk_version *v);

#endif /* NOKV_DB_DB_IMPL_H */
