/*
 * table_cache.h — open tables by file number, bounded in open file descriptors
 * (an LRU of nk_table handles; each open table holds one descriptor and its
 * pinned index and filter). Thread-safe.
 */
#ifndef NOKV_SST_TABLE_CACHE_H
#define NOKV_SST_TABLE_CACHE_H

#include <stdint.h>

#include "sst/table.h"
#include "util/cache.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_table_cache nk_table_cache;

/* NULL on ENOMEM. The directory string is copied; block_cache and stats are
 * borrowed and must outlive the table cache. */
nk_table_cache *nk_table_cache_new(const struct nokv_env *env, const char *dir,
                                   size_t max_open_files, nk_cache *block_cache,
                                   nk_sst_stats *stats);
void nk_table_cache_free(nk_table_cache *tc);

/* Finds or opens table number (of file_size bytes). On success *table is usable
 * until nk_table_cache_release(tc, *handle). */
int nk_table_cache_get(nk_table_cache *tc, uint64_t number, uint64_t file_size,
                       nk_table **table, nk_cache_handle **handle);
void nk_table_cache_release(nk_table_cache *tc, nk_cache_handle *handle);
/* Forgets a table whose file is being deleted. */
void nk_table_cache_evict(nk_table_cache *tc, uint64_t number);

/* An iterator over table number; it pins the table until destroyed. On failure
 * returns an empty iterator carrying the error (NULL only on ENOMEM). */
nk_iter *nk_table_cache_iter(nk_table_cache *tc, uint64_t number, uint64_t file_size);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_SST_TABLE_CACHE_H */
