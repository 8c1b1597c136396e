/* engine_leveldb.c — the benchmark adapter for LevelDB (Debian's libleveldb,
 * C API). */
#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine.h"

typedef struct ldb {
  leveldb_t *db;
  leveldb_options_t *opts;
  leveldb_cache_t *cache;
  leveldb_filterpolicy_t *filter;
  leveldb_writeoptions_t *wo;
  leveldb_readoptions_t *ro;
} ldb;

static void *l_open(const char *dir, const bench_config *c) {
  ldb *l = calloc(1, sizeof *l);
  l->opts = leveldb_options_create();
  leveldb_options_set_create_if_missing(l->opts, 1);
  leveldb_options_set_error_if_exists(l->opts, 1);
  leveldb_options_set_write_buffer_size(l->opts, c->write_buffer_bytes);
  leveldb_options_set_block_size(l->opts, c->block_size);
  leveldb_options_set_max_open_files(l->opts, 1000);
  leveldb_options_set_compression(l->opts, c->compression ? leveldb_snappy_compression
                                                          : leveldb_no_compression);
  l->cache = leveldb_cache_create_lru(c->block_cache_bytes);
  leveldb_options_set_cache(l->opts, l->cache);
  l->filter = leveldb_filterpolicy_create_bloom(c->bloom_bits);
  leveldb_options_set_filter_policy(l->opts, l->filter);
  char *err = NULL;
  l->db = leveldb_open(l->opts, dir, &err);
  if (err != NULL) {
    fprintf(stderr, "leveldb: open %s: %s\n", dir, err);
    leveldb_free(err);
    return NULL;
  }
  l->wo = leveldb_writeoptions_create();
  leveldb_writeoptions_set_sync(l->wo, c->sync);
  l->ro = leveldb_readoptions_create();
  return l;
}

static void l_close(void *h) {
  ldb *l = h;
  leveldb_close(l->db);
  leveldb_writeoptions_destroy(l->wo);
  leveldb_readoptions_destroy(l->ro);
  leveldb_options_destroy(l->opts);
  leveldb_filterpolicy_destroy(l->filter);
  leveldb_cache_destroy(l->cache);
  free(l);
}

static bool l_put(void *h, const char *k, size_t kl, const char *v, size_t vl) {
  ldb *l = h;
  char *err = NULL;
  leveldb_put(l->db, l->wo, k, kl, v, vl, &err);
  if (err != NULL) {
    leveldb_free(err);
    return false;
  }
  return true;
}

static bool l_get(void *h, const char *k, size_t kl, bool *found) {
  ldb *l = h;
  char *err = NULL;
  size_t vl;
  char *v = leveldb_get(l->db, l->ro, k, kl, &vl, &err);
  if (err != NULL) {
    leveldb_free(err);
    return false;
  }
  *found = v != NULL;
  leveldb_free(v);
  return true;
}

static bool l_scan(void *h, const char *k, size_t kl, int n, int *got) {
  ldb *l = h;
  leveldb_iterator_t *it = leveldb_create_iterator(l->db, l->ro);
  *got = 0;
  size_t bytes = 0;
  for (leveldb_iter_seek(it, k, kl); leveldb_iter_valid(it) && *got < n; leveldb_iter_next(it)) {
    size_t a, b;
    leveldb_iter_key(it, &a);
    leveldb_iter_value(it, &b);
    bytes += a + b;
    (*got)++;
  }
  leveldb_iter_destroy(it);
  return bytes > 0 || *got == 0;
}

static bool l_del(void *h, const char *k, size_t kl) {
  ldb *l = h;
  char *err = NULL;
  leveldb_delete(l->db, l->wo, k, kl, &err);
  free(err);
  return err == NULL;
}

static bool l_compact(void *h) {
  ldb *l = h;
  leveldb_compact_range(l->db, NULL, 0, NULL, 0);
  return true;
}

/* LevelDB has no range deletion. */
const bench_engine bench_leveldb = {"leveldb", l_open, l_close, l_put, l_get,
                                    l_scan,    l_del,  NULL,    l_compact};
