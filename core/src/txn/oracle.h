/*
 * oracle.h — commit timestamps and snapshots.
 *
 * The oracle hands out strictly increasing commit timestamps to write groups and
 * publishes the last one whose writes are fully applied: readers take that as
 * their read timestamp, so they never see a write that is half applied. Live
 * snapshots are tracked so the oldest one (the watermark) bounds version GC,
 * and the keys committed since it are remembered for transactions' conflict
 * checks.
 */
#ifndef NOKV_TXN_ORACLE_H
#define NOKV_TXN_ORACLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nokv/db.h"

struct nokv_snapshot {
  uint64_t ts;
  uint64_t time_ms;  /* wall clock when taken: what TTL expiry is judged against */
  void *pin;  /* the value-log epoch it holds (db/gc.c) */
  struct nokv_snapshot *prev, *next;
};

/* One key's last commit: the slot of an open-addressing table keyed by the
 * key's 64-bit fingerprint. ts 0 marks an empty slot. */
typedef struct nk_key_commit {
  uint64_t fp, ts;
} nk_key_commit;

typedef struct nk_oracle {
  uint64_t next_ts;              /* REQUIRES: only the write leader touches it */
  atomic_uint_fast64_t visible;  /* last fully applied commit timestamp */
  pthread_mutex_t mu;            /* guards the snapshot list and the key table */
  struct nokv_snapshot *oldest, *newest;
  uint64_t live;
  /* For conflict checks, the last commit timestamp of every key written after
   * the horizon: the oldest live snapshot's timestamp, or with none the visible
   * one (a commit recorded but not yet published is above it, and a snapshot
   * taken before its publication must still see the conflict), or
   * conflict_all_below if higher. A slot at or below the horizon is dead: no
   * live reader can conflict with it, and an insertion may take it over.
   * Memory follows the distinct keys written since the oldest live snapshot
   * began, not the number of commits, and a conflict check costs one lookup
   * per key read. */
  nk_key_commit *keys;
  size_t slots;      /* a power of two, or 0 before the first commit */
  size_t max_slots;  /* a power of two: the memory limit */
  size_t used;       /* slots holding a key, live or dead */
  size_t inserts;    /* since the table was last rebuilt */
  /* Readers older than it conflict, whatever they read: a commit at it could
   * not be recorded (no memory, or the table at its limit). */
  uint64_t conflict_all_below;
  uint64_t overflows;  /* times the table was full at max_slots (or out of memory) */
  uint64_t last_recorded;  /* the newest commit recorded */
  /* Range deletions committed after the horizon: a reader that read a key in
   * one conflicts with it. At most NK_ORACLE_MAX_RANGES; past that, as when
   * the key table is full, every older reader conflicts. */
  struct nk_oracle_range *ranges;
  size_t nranges;
} nk_oracle;

#define NK_ORACLE_MAX_RANGES 4096

/* What a commit's check found. */
typedef enum nk_conflict {
  NK_NO_CONFLICT = 0,
  NK_CONFLICT_KEY,       /* a key it read was written after its read_ts */
  NK_CONFLICT_TOO_OLD,   /* it began before conflict_all_below */
  NK_CONFLICT_ANY,       /* it read too much to track, and a write came after it */
} nk_conflict;

/* max_bytes: the key table's memory limit (at least 64 KiB). */
void nk_oracle_init(nk_oracle *o, uint64_t last_ts, size_t max_bytes);
void nk_oracle_destroy(nk_oracle *o);

/* Reserves n consecutive timestamps; returns the first. */
static inline uint64_t nk_oracle_reserve(nk_oracle *o, uint64_t n) {
  uint64_t first = o->next_ts;
  o->next_ts += n;
  return first;
}

/* Makes every timestamp <= ts visible.
 *
 * Sequentially consistent, as are the loads below and the transaction count
 * (db->active_txns): a beginning transaction counts itself and then reads the
 * visible timestamp, while the leader publishes and then reads the count
 * (write.c). With weaker orders both could read the old value — the leader
 * skipping the keys of a write the transaction's snapshot does not see — the
 * store-buffering case that only a total order rules out. On x86 this costs one
 * locked store per write group; the loads are plain. */
static inline void nk_oracle_publish(nk_oracle *o, uint64_t ts) {
  atomic_store_explicit(&o->visible, ts, memory_order_seq_cst);
}

static inline uint64_t nk_oracle_read_ts(const nk_oracle *o) {
  return atomic_load_explicit(&((nk_oracle *)o)->visible, memory_order_seq_cst);
}

/* NULL on ENOMEM. */
nokv_snapshot *nk_oracle_snapshot(nk_oracle *o);
void nk_oracle_release(nk_oracle *o, nokv_snapshot *s);
/* Oldest live snapshot's ts (0 if none) and the count of live snapshots. */
void nk_oracle_snapshots(nk_oracle *o, uint64_t *oldest, uint64_t *live);
/* The earliest wall-clock time of a live snapshot, or dflt if none is live: a
 * version expired before it is expired to every reader (TTL). */
uint64_t nk_oracle_min_snapshot_time(nk_oracle *o, uint64_t dflt);
/* Keys whose last commit a live reader could conflict with; *overflows (if not
 * NULL): times the table reached its limit. */
uint64_t nk_oracle_tracked_keys(nk_oracle *o, uint64_t *overflows);
/* The key table's size in slots (memory: 16 bytes a slot). */
size_t nk_oracle_table_slots(nk_oracle *o);

/* Did a transaction that committed after read_ts write any of the n keys in
 * reads (fingerprints), delete a range holding a key in [lo, hi] (the smallest
 * and largest key read; lo NULL: none), or with read_all (a reader that read
 * too much to track key by key) write anything at all? REQUIRES: the caller is
 * the write leader, so no commit is recorded meanwhile, and the reader's
 * snapshot (at read_ts) is live. */
nk_conflict nk_oracle_conflicts(nk_oracle *o, uint64_t read_ts, bool read_all,
                                const uint64_t *reads, size_t n, const char *lo, size_t lo_len,
                                const char *hi, size_t hi_len);
/* Records the keys a write committed at ts wrote. REQUIRES: write leader. Out
 * of memory or room, every transaction older than ts will conflict instead. */
void nk_oracle_record_commit(nk_oracle *o, uint64_t ts, const uint64_t *writes, size_t n);
/* Records a range deletion [start, end) committed at ts. REQUIRES: write
 * leader. */
void nk_oracle_record_range(nk_oracle *o, uint64_t ts, const char *start, size_t slen,
                            const char *end, size_t elen);
/* A write at ts could not be recorded: without it a conflict could go unseen, so
 * every transaction that began before ts will conflict instead (counted as an
 * overflow). */
void nk_oracle_lose_record(nk_oracle *o, uint64_t ts);

#endif /* NOKV_TXN_ORACLE_H */
