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
#include <stdint.h>

#include "nokv/db.h"

struct nokv_snapshot {
  uint64_t ts;
  void *pin;  /* the value-log epoch it holds (db/gc.c) */
  struct nokv_snapshot *prev, *next;
};

typedef struct nk_oracle {
  uint64_t next_ts;              /* REQUIRES: only the write leader touches it */
  atomic_uint_fast64_t visible;  /* last fully applied commit timestamp */
  pthread_mutex_t mu;            /* guards the snapshot list */
  struct nokv_snapshot *oldest, *newest;
  uint64_t live;
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

#endif /* NOKV_TXN_ORACLE_H */
