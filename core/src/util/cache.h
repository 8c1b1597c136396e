/*
 * cache.h — a sharded LRU cache with a charge budget (LevelDB's design), used for
 * the block cache (charge = block bytes) and the table cache (charge = 1 open
 * file each).
 *
 * Keys are (id, offset) pairs. A lookup or insert returns a handle that pins the
 * entry: it stays valid (and is never freed) until released, even if evicted or
 * replaced meanwhile. Pinned entries do not count against eviction order; only
 * unpinned ones sit on the LRU list. Thread-safe: each shard has its own mutex.
 */
#ifndef NOKV_UTIL_CACHE_H
#define NOKV_UTIL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_cache nk_cache;
typedef struct nk_cache_handle nk_cache_handle;
typedef void (*nk_cache_deleter)(void *value);

/* NULL on ENOMEM. shard_bits: 2^shard_bits shards. */
nk_cache *nk_cache_new(size_t capacity, unsigned shard_bits);
/* REQUIRES: no handle is still pinned. Deletes every value. */
void nk_cache_free(nk_cache *c);

/* A pinned handle, or NULL on a miss. */
nk_cache_handle *nk_cache_lookup(nk_cache *c, uint64_t id, uint64_t off);
/* Inserts (replacing any entry of the same key) and returns it pinned. The cache
 * owns value from now on and calls deleter when the last pin and the cache let go.
 * NULL only on ENOMEM, in which case deleter(value) has already run. */
nk_cache_handle *nk_cache_insert(nk_cache *c, uint64_t id, uint64_t off, void *value,
                                 size_t charge, nk_cache_deleter deleter);
void *nk_cache_value(const nk_cache_handle *h);
void nk_cache_release(nk_cache *c, nk_cache_handle *h);
/* Drops the entry if present (it is freed once unpinned). */
void nk_cache_erase(nk_cache *c, uint64_t id, uint64_t off);
/* A fresh id, so several users (tables) can share one cache. */
uint64_t nk_cache_new_id(nk_cache *c);

typedef struct nk_cache_stats {
  uint64_t hits, misses, inserts, evictions, usage, capacity;
} nk_cache_stats;
void nk_cache_get_stats(nk_cache *c, nk_cache_stats *s);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_UTIL_CACHE_H */
