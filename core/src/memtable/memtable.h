/*
 * memtable.h — the in-memory write buffer: versioned entries in a skiplist over
 * an arena. One writer adds at a time; readers need no lock. Memory is accounted
 * in arena bytes so the database can enforce its budget.
 */
#ifndef NOKV_MEMTABLE_MEMTABLE_H
#define NOKV_MEMTABLE_MEMTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memtable/internal_key.h"
#include "memtable/skiplist.h"
#include "util/arena.h"
#include "util/iterator.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_memtable nk_memtable;

/* A memtable meant to hold about budget bytes (0: no particular budget), taking
 * arena blocks from pool when it has some (pool may be NULL); refs = 1. NULL on
 * ENOMEM. */
nk_memtable *nk_memtable_new(size_t budget, nk_arena_pool *pool);
void nk_memtable_free(nk_memtable *mt);
/* Memtables are shared by the write path, readers and the flush: each holds a
 * reference; the last unref frees. */
void nk_memtable_ref(nk_memtable *mt);
void nk_memtable_unref(nk_memtable *mt);

/* Upper bound of the arena bytes one add of this size costs. */
size_t nk_memtable_cost(size_t klen, size_t vlen);

/* Adds a version. REQUIRES: one writer at a time. NOKV_ENOMEM on allocation
 * failure (the memtable is unchanged). */
int nk_memtable_add(nk_memtable *mt, uint64_t ts, nk_kind kind, const char *key, size_t klen,
                    const char *val, size_t vlen);

/* Finds the newest version of key with ts <= read_ts. key_hash is
 * nk_hash64(key, klen): a read hashes its key once for every memtable and table
 * filter it consults. Returns false if there is none; otherwise fills *out (a
 * deletion is found too: check out->kind). */
bool nk_memtable_get(const nk_memtable *mt, const char *key, size_t klen, uint64_t key_hash,
                     uint64_t read_ts, nk_entry *out);

size_t nk_memtable_usage(const nk_memtable *mt);
uint64_t nk_memtable_entries(const nk_memtable *mt);
const nk_skiplist *nk_memtable_index(const nk_memtable *mt);
/* Newest commit timestamp added. REQUIRES: no concurrent writer. */
uint64_t nk_memtable_max_ts(const nk_memtable *mt);

/* An iterator over every version (util/iterator.h). The memtable must outlive
 * it. NULL on ENOMEM. */
nk_iter *nk_memtable_iter_new(const nk_memtable *mt);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_MEMTABLE_MEMTABLE_H */
