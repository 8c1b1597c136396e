/*
 * oracle.h — commit timestamps and snapshots.
 *
 * The oracle hands out strictly increasing commit timestamps to write groups and
 * publishes the last one whose writes are fully applied: readers take that as
 * their read timestamp, so they never see a write that is half applied. Live
 * snapshots are tracked so the oldest one (the watermark) bounds version GC.
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
  void *pin;  /* the value-log epoch it holds (db/gc.c) */
  struct nokv_snapshot *prev, *next;
};

/* The keys (as 64-bit fingerprints) a transaction wrote, at its commit ts. */
typedef struct nk_commit_record {
  uint64_t ts;
  struct nk_commit_record *next;
  size_t n;
  uint64_t fps[];
} nk_commit_record;

typedef struct nk_oracle {
  uint64_t next_ts;              /* REQUIRES: only the write leader touches it */
  atomic_uint_fast64_t visible;  /* last fully applied commit timestamp */
  pthread_mutex_t mu;            /* guards the snapshot list and the commit records */
  struct nokv_snapshot *oldest, *newest;
  uint64_t live;
  /* Write sets of committed transactions, oldest first, kept while a live
   * snapshot (every transaction holds one) is older than them. */
  nk_commit_record *commits, *commits_tail;
  uint64_t ncommits;
  uint64_t conflict_all_below;  /* a record was lost: older readers conflict */
} nk_oracle;

void nk_oracle_init(nk_oracle *o, uint64_t last_ts);
void nk_oracle_destroy(nk_oracle *o);

/* Reserves n consecutive timestamps; returns the first. */
static inline uint64_t nk_oracle_reserve(nk_oracle *o, uint64_t n) {
  uint64_t first = o->next_ts;
  o->next_ts += n;
  return first;
}

/* Makes every timestamp <= ts visible. */
static inline void nk_oracle_publish(nk_oracle *o, uint64_t ts) {
  atomic_store_explicit(&o->visible, ts, memory_order_release);
}

static inline uint64_t nk_oracle_read_ts(const nk_oracle *o) {
  return atomic_load_explicit(&((nk_oracle *)o)->visible, memory_order_acquire);
}

/* NULL on ENOMEM. */
nokv_snapshot *nk_oracle_snapshot(nk_oracle *o);
void nk_oracle_release(nk_oracle *o, nokv_snapshot *s);
/* Oldest live snapshot's ts (0 if none) and the count of live snapshots. */
void nk_oracle_snapshots(nk_oracle *o, uint64_t *oldest, uint64_t *live);
/* Committed write sets kept for conflict checks. */
uint64_t nk_oracle_commit_records(nk_oracle *o);

/* Did a transaction that committed after read_ts write any of the n keys in
 * reads (fingerprints, sorted)? REQUIRES: the caller is the write leader, so no
 * commit is recorded meanwhile. */
bool nk_oracle_conflicts(nk_oracle *o, uint64_t read_ts, const uint64_t *reads, size_t n);
/* Records the keys a write committed at ts wrote. REQUIRES: write leader. Out of
 * memory, every transaction older than ts will conflict instead. */
void nk_oracle_record_commit(nk_oracle *o, uint64_t ts, const uint64_t *writes, size_t n);
/* A write at ts could not be recorded: without it a conflict could go unseen, so
 * every transaction that began before ts will conflict instead. */
void nk_oracle_lose_record(nk_oracle *o, uint64_t ts);

#endif /* NOKV_TXN_ORACLE_H */
