/*
 * skiplist.h — the memtable's ordered index: a skiplist of arena-allocated
 * entries (see internal_key.h), ordered by internal key.
 *
 * Concurrency (as LevelDB's skiplist): one writer at a time inserts, while any
 * number of readers search and iterate without locks. Nodes are never removed
 * while the skiplist lives; links are published with release stores and read
 * with acquire loads, so a reader sees a node only once it is fully built.
 * Linking an internal key that is already present (same user key and commit
 * timestamp: a batch touching one key twice) atomically replaces the entry.
 */
#ifndef NOKV_MEMTABLE_SKIPLIST_H
#define NOKV_MEMTABLE_SKIPLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/arena.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_skiplist nk_skiplist;
struct nk_sl_node;

/* The skiplist lives in (and is freed with) arena. NULL on ENOMEM. */
nk_skiplist *nk_skiplist_new(nk_arena *arena);

/* Allocates a node of a random height (*height) with room for an entry of len
 * bytes stored inline after it, and returns the entry's bytes (NULL on ENOMEM).
 * The caller encodes the entry (nk_entry_encode), then links it with
 * nk_skiplist_link(sl, entry, *height). Linking an internal key that is already
 * present replaces that node's entry instead.
 * REQUIRES: external synchronisation between writers. */
char *nk_skiplist_alloc(nk_skiplist *sl, size_t len, int *height);
void nk_skiplist_link(nk_skiplist *sl, char *entry, int height);

/* Bytes a node of maximal height costs, for capacity checks. */
size_t nk_skiplist_max_node_size(void);

typedef struct nk_sl_iter {
  const nk_skiplist *sl;
  const struct nk_sl_node *node;
} nk_sl_iter;

void nk_sl_iter_init(nk_sl_iter *it, const nk_skiplist *sl);
/* Positions at the first entry >= (key, ts) in internal-key order. */
void nk_sl_iter_seek(nk_sl_iter *it, const char *key, size_t klen, uint64_t ts);
void nk_sl_iter_seek_first(nk_sl_iter *it);
static inline bool nk_sl_iter_valid(const nk_sl_iter *it) { return it->node != NULL; }
void nk_sl_iter_next(nk_sl_iter *it);
/* REQUIRES: valid. */
const char *nk_sl_iter_entry(const nk_sl_iter *it);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_MEMTABLE_SKIPLIST_H */
