/* engine_rocksdb.c — the benchmark adapter for RocksDB (Debian's librocksdb,
 * C API), leveled compaction with its defaults except the shared settings. */
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine.h"

typedef struct rdb {
  rocksdb_t *db;
  rocksdb_options_t *opts;
  rocksdb_block_based_table_options_t *table;
  rocksdb_cache_t *cache;
  rocksdb_filterpolicy_t *filter;
  rocksdb_writeoptions_t *wo;
  rocksdb_readoptions_t *ro;
} rdb;

static void *r_open(const char *dir, const bench_config *c) {
  rdb *r = calloc(1, sizeof *r);
  r->opts = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(r->opts, 1);
  rocksdb_options_set_error_if_exists(r->opts, 1);
  rocksdb_options_set_write_buffer_size(r->opts, c->write_buffer_bytes);
  rocksdb_options_set_compression(r->opts, c->compression ? rocksdb_zstd_compression
                                                          : rocksdb_no_compression);
  rocksdb_options_increase_parallelism(r->opts, 2);
  r->table = rocksdb_block_based_options_create();
  r->cache = rocksdb_cache_create_lru(c->block_cache_bytes);
  rocksdb_block_based_options_set_block_cache(r->table, r->cache);
  rocksdb_block_based_options_set_block_size(r->table, c->block_size);
  r->filter = rocksdb_filterpolicy_create_bloom_full(c->bloom_bits);
  rocksdb_block_based_options_set_filter_policy(r->table, r->filter);
  rocksdb_options_set_block_based_table_factory(r->opts, r->table);
  char *err = NULL;
  r->db = rocksdb_open(r->opts, dir, &err);
  if (err != NULL) {
    fprintf(stderr, "rocksdb: open %s: %s\n", dir, err);
    free(err);
    return NULL;
  }
  r->wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(r->wo, c->sync);
  r->ro = rocksdb_readoptions_create();
  return r;
}

static void r_close(void *h) {
  rdb *r = h;
  rocksdb_close(r->db);
  rocksdb_writeoptions_destroy(r->wo);
  rocksdb_readoptions_destroy(r->ro);
  rocksdb_options_destroy(r->opts);
  rocksdb_block_based_options_destroy(r->table);  /* owns the filter policy */
  rocksdb_cache_destroy(r->cache);
  free(r);
}

static bool r_put(void *h, const char *k, size_t kl, const char *v, size_t vl) {
  rdb *r = h;
  char *err = NULL;
  rocksdb_put(r->db, r->wo, k, kl, v, vl, &err);
  if (err != NULL) {
    free(err);
    return false;
  }
  return true;
}

static bool r_get(void *h, const char *k, size_t kl, bool *found) {
  rdb *r = h;
  char *err = NULL;
  size_t vl;
  char *v = rocksdb_get(r->db, r->ro, k, kl, &vl, &err);
  if (err != NULL) {
    free(err);
    return false;
  }
  *found = v != NULL;
  rocksdb_free(v);
  return true;
}

static bool r_scan(void *h, const char *k, size_t kl, int n, int *got) {
  rdb *r = h;
  rocksdb_iterator_t *it = rocksdb_create_iterator(r->db, r->ro);
  *got = 0;
  size_t bytes = 0;
  for (rocksdb_iter_seek(it, k, kl); rocksdb_iter_valid(it) && *got < n; rocksdb_iter_next(it)) {
    size_t a, b;
    rocksdb_iter_key(it, &a);
    rocksdb_iter_value(it, &b);
    bytes += a + b;
    (*got)++;
  }
  rocksdb_iter_destroy(it);
  return bytes > 0 || *got == 0;
}

static bool r_del(void *h, const char *k, size_t kl) {
  rdb *r = h;
  char *err = NULL;
  rocksdb_delete(r->db, r->wo, k, kl, &err);
  free(err);
  return err == NULL;
}

static bool r_delete_range(void *h, const char *a, size_t al, const char *b, size_t bl) {
  rdb *r = h;
  char *err = NULL;
  rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
  rocksdb_writebatch_delete_range(wb, a, al, b, bl);
  rocksdb_write(r->db, r->wo, wb, &err);
  rocksdb_writebatch_destroy(wb);
  free(err);
  return err == NULL;
}

static bool r_compact(void *h) {
  rdb *r = h;
  rocksdb_compact_range(r->db, NULL, 0, NULL, 0);
  return true;
}

const bench_engine bench_rocksdb = {"rocksdb", r_open, r_close,        r_put,    r_get,
                                    r_scan,    r_del,  r_delete_range, r_compact};
