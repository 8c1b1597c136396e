/*
 * db_impl.h — the database handle, shared by db.c (open, close, recovery),
 * write.c (group commit), read.c (get, iterators) and stats.c.
 */
#ifndef NOKV_DB_DB_IMPL_H
#define NOKV_DB_DB_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "memtable/memtable.h"
#include "nokv/db.h"
#include "txn/oracle.h"
#include "util/env.h"
#include "wal/wal.h"

typedef atomic_uint_fast64_t nk_counter;

static inline void nk_count(nk_counter *c, uint64_t n) {
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t nk_counter_get(const nk_counter *c) {
  return atomic_load_explicit((nk_counter *)c, memory_order_relaxed);
}

struct nk_writer;

struct nokv_db {
  char *path;
  nokv_options opts;
  const struct nokv_env *env;
  nk_file *lock;
  nk_memtable *mem;
  nk_oracle oracle;
  atomic_int live_handles;  /* iterators and snapshots: close refuses while > 0 */

  /* Write path. mu guards the queue, closing and bg_error; the leader of the
   * queue's front group owns wal, group_buf and the oracle's next_ts. */
  pthread_mutex_t mu;
  pthread_cond_t idle;      /* signalled when the queue drains */
  struct nk_writer *queue_head, *queue_tail;
  bool closing;
  int bg_error;             /* sticky: a failed WAL write or sync stops writes */
  char bg_errmsg[256];
  nk_wal *wal;
  char *group_buf;
  size_t group_cap;

  struct {
    nk_counter puts, deletes, batches, write_groups, wal_syncs, wal_bytes, rejected_full;
    nk_counter gets, get_hits, iterators;
    uint64_t wal_segments_replayed;  /* set once at open */
    nk_wal_replay_stats replay;
  } stats;
};

/* Resolves read options to a read timestamp no newer than the visible one. */
uint64_t nk_db_read_ts(const nokv_db *db, const nokv_read_options *ro);

/* Applies one encoded batch (its header's ts is ignored) at commit_ts to the
 * memtable. REQUIRES: the caller is the only writer of db->mem. */
int nk_db_apply_batch(nokv_db *db, const char *rep, size_t len, uint64_t commit_ts);

#endif /* NOKV_DB_DB_IMPL_H */
