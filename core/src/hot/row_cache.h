/*
 * row_cache.h — the hot-read cache: newest values of keys the hot-key tracker
 * calls hot, so a hot key's Get skips the LSM. Only values that are the newest
 * version of their key are cached, and a reader uses one only if its version
 * is visible at the read timestamp, so no read ever sees a value the LSM would
 * not give it (docs/hot_keys.md).
 *
 * The protocol, per guard shard of keys (64 shards):
 * - a writer calls begin_write for each key before its commit timestamp is
 *   published (it bumps the shard's generation, counts itself pending and drops
 *   the key's entry), and end_write after (it bumps the generation again and
 *   stops counting);
 * - a reader that wants to fill takes a ticket (the shard's generation) before
 *   taking its read timestamp, reads the LSM, and fills only if no writer is
 *   pending and then the generation is unchanged (in that order: a write ends
 *   by bumping the generation, then leaving): then no write of a key of the shard
 *   published after its read timestamp, or in flight, could make the value old.
 * An entry present is the key's newest version: any write since removed it.
 */
#ifndef NOKV_HOT_ROW_CACHE_H
#define NOKV_HOT_ROW_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_row_cache nk_row_cache;

/* NULL on ENOMEM. Values larger than capacity / 64 are not cached. */
nk_row_cache *nk_row_cache_new(size_t capacity);
void nk_row_cache_free(nk_row_cache *c);

/* The newest value of key if cached and visible at read_ts: *val malloc'ed (the
 * caller frees it), *ts its commit timestamp. */
bool nk_row_cache_get(nk_row_cache *c, const void *key, size_t klen, uint64_t hash,
                      uint64_t read_ts, void **val, size_t *vlen, uint64_t *ts);

/* Before taking the read timestamp of a read that may fill. */
uint64_t nk_row_cache_ticket(nk_row_cache *c, uint64_t hash);
/* Caches val as key's newest version (committed at ts), read at a timestamp
 * taken after ticket; does nothing if a write of the shard may have intervened. */
void nk_row_cache_fill(nk_row_cache *c, const void *key, size_t klen, uint64_t hash,
                       uint64_t ticket, const void *val, size_t vlen, uint64_t ts);

/* Around a group of writes, before its commit is published and after (or
 * after it failed): the guard shards of its keys as a bit set (guard_bit of
 * each key's hash), begun once each; then, while anything is cached, each
 * key's entry dropped (drop); end with the same set. */
uint64_t nk_row_cache_guard_bit(uint64_t hash);
void nk_row_cache_begin_write(nk_row_cache *c, uint64_t guards);
bool nk_row_cache_holds_any(nk_row_cache *c);
void nk_row_cache_drop(nk_row_cache *c, uint64_t hash);
/* Makes every entry stale, for a write whose keys are not listed (a range
 * deletion): call it between begin_write and end_write of every guard. */
void nk_row_cache_drop_all(nk_row_cache *c);
void nk_row_cache_end_write(nk_row_cache *c, uint64_t guards);

typedef struct nk_row_cache_stats {
  uint64_t hits, misses, fills, fills_refused, usage, capacity;
} nk_row_cache_stats;
void nk_row_cache_get_stats(nk_row_cache *c, nk_row_cache_stats *s);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_HOT_ROW_CACHE_H */
