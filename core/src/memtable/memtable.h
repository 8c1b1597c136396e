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
#include "version/range_del.h"

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

/* Adds a version, or with kind NK_KIND_RANGE_DEL a range tombstone [key, val).
 * REQUIRES: one writer at a time. NOKV_ENOMEM on allocation failure (the
 * memtable is unchanged). */
int nk_memtable_add(nk_memtable *mt, uint64_t ts, nk_kind kind, const char *key, size_t klen,
                    const char *val, size_t vlen);

/* Finds the newest version of key with ts <= read_ts. key_hash is
 * nk_hash64(key, klen): a read hashes its key once for every memtable and table
 * filter it consults. Returns false if there is none; otherwise fills *out (a
 * deletion is found too: check out->kind). */
bool nk_memtable_get(const nk_memtable *mt, const char *key, size_t klen, uint64_t key_hash,
                     uint64_t read_ts, nk_entry *out);

/* A range tombstone of a memtable; the list runs newest first. */
typedef struct nk_mem_rdel {
  const struct nk_mem_rdel *next;
  nk_rdel del;
} nk_mem_rdel;

/* The range tombstones added so far, newest first (NULL: none). Readers need
 * no lock: the list only grows at its head. */
const nk_mem_rdel *nk_memtable_rdels(const nk_memtable *mt);
/* The newest range tombstone at or below read_ts covering key (0: none). A
 * walk of the list: a memtable holds few (each costs its bytes of budget). */
uint64_t nk_memtable_rdel_cover(const nk_memtable *mt, const char *key, size_t klen,
                                uint64_t read_ts);

/* Does mt hold a version of a key in [lo, hi) with a timestamp in
 * [min_ts, max_ts]? 1: yes; 0: no; -1: more than `limit` entries of the range
 * looked at without an answer. */
int nk_memtable_has_version(const nk_memtable *mt, const char *lo, size_t lo_len, const char *hi,
                            size_t hi_len, uint64_t min_ts, uint64_t max_ts, int limit);

/* The same over mem and the n memtables imm. */
uint64_t nk_memtables_rdel_cover(const nk_memtable *mem, nk_memtable *const *imm, size_t n,
                                 const char *key, size_t klen, uint64_t read_ts);

size_t nk_memtable_usage(const nk_memtable *mt);
/* Versions and range tombstones added. */
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
