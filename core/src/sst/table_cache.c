/* table_cache.c — an nk_cache of open tables keyed by (file number, 0). */
#include "sst/table_cache.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

struct nk_table_cache {
  const struct nokv_env *env;
  char *dir;
  nk_cache *tables;
  nk_cache *block_cache;
  nk_sst_stats *stats;
};

nk_table_cache *nk_table_cache_new(const struct nokv_env *env, const char *dir,
                                   size_t max_open_files, nk_cache *block_cache,
                                   nk_sst_stats *stats) {
  nk_table_cache *tc = calloc(1, sizeof *tc);
  if (tc == NULL) return NULL;
  tc->env = env;
  tc->block_cache = block_cache;
  tc->stats = stats;
  if ((tc->dir = strdup(dir)) == NULL ||
      (tc->tables = nk_cache_new(max_open_files, max_open_files >= 64 ? 2 : 0)) == NULL) {
    free(tc->dir);
    free(tc);
    return NULL;
  }
  return tc;
}

void nk_table_cache_free(nk_table_cache *tc) {
  if (tc == NULL) return;
  nk_cache_free(tc->tables);
  free(tc->dir);
  free(tc);
}

int nk_table_cache_get(nk_table_cache *tc, uint64_t number, uint64_t file_size,
                       nk_table **table, nk_cache_handle **handle) {
  nk_cache_handle *h = nk_cache_lookup(tc->tables, number, 0);
  if (h == NULL) {
    char name[32];
    nk_table_file_name(number, name);
    char *path = nk_path_join(tc->dir, name);
    if (path == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
    nk_table *t;
    int ret = nk_table_open(tc->env, path, file_size, tc->block_cache, tc->stats, &t);
    free(path);
    NK_RET(ret);
    h = nk_cache_insert(tc->tables, number, 0, t, 1, nk_table_close_void);
    if (h == NULL) return nk_err(NOKV_ENOMEM, "out of memory caching a table");
  }
  *table = nk_cache_value(h);
  *handle = h;
  return NOKV_OK;
}

void nk_table_cache_release(nk_table_cache *tc, nk_cache_handle *handle) {
  nk_cache_release(tc->tables, handle);
}

void nk_table_cache_evict(nk_table_cache *tc, uint64_t number) {
  nk_cache_erase(tc->tables, number, 0);
}

/* Wraps a table iterator so destroying it unpins the table. */
typedef struct pinned_iter {
  nk_iter base;
  nk_iter *inner;
  nk_table_cache *tc;
  nk_cache_handle *h;
} pinned_iter;

static bool p_valid(const nk_iter *it) { return nk_iter_valid(((const pinned_iter *)it)->inner); }
static void p_seek_first(nk_iter *it) { nk_iter_seek_first(((pinned_iter *)it)->inner); }
static void p_seek(nk_iter *it, const char *k, size_t n) { nk_iter_seek(((pinned_iter *)it)->inner, k, n); }
static void p_next(nk_iter *it) { nk_iter_next(((pinned_iter *)it)->inner); }
static const char *p_key(const nk_iter *it, size_t *n) { return nk_iter_key(((const pinned_iter *)it)->inner, n); }
static const char *p_value(const nk_iter *it, size_t *n) {
  return nk_iter_value(((const pinned_iter *)it)->inner, n);
}
static int p_status(const nk_iter *it) { return nk_iter_status(((const pinned_iter *)it)->inner); }
static void p_destroy(nk_iter *base) {
  pinned_iter *it = (pinned_iter *)base;
  nk_iter_destroy(it->inner);
  nk_table_cache_release(it->tc, it->h);
  free(it);
}

static const nk_iter_ops pinned_ops = {p_valid, p_seek_first, p_seek,   p_next,
                                       p_key,   p_value,      p_status, p_destroy};

nk_iter *nk_table_cache_iter(nk_table_cache *tc, uint64_t number, uint64_t file_size) {
  nk_table *t;
  nk_cache_handle *h;
  int ret = nk_table_cache_get(tc, number, file_size, &t, &h);
  if (ret != NOKV_OK) return nk_iter_new_empty(ret);
  pinned_iter *it = malloc(sizeof *it);
  nk_iter *inner = nk_table_iter_new(t);
  if (it == NULL || inner == NULL) {
    free(it);
    nk_iter_destroy(inner);
    nk_table_cache_release(tc, h);
    return NULL;
  }
  *it = (pinned_iter){.base.ops = &pinned_ops, .inner = inner, .tc = tc, .h = h};
  return &it->base;
}
