/* engine_nokv.c — the benchmark adapter for NoKV-C. */
#include <stdio.h>

#include "engine.h"
#include "nokv/nokv.h"

static bool sync_writes;

static void *nk_open(const char *dir, const bench_config *c) {
  sync_writes = c->sync;
  nokv_options o;
  nokv_options_init(&o);
  o.error_if_exists = true;
  o.block_cache_bytes = c->block_cache_bytes;
  o.bloom_bits_per_key = c->bloom_bits;
  o.memtable_max_bytes = c->write_buffer_bytes;
  o.block_size = c->block_size;
  o.compression_start_level = c->compression ? 0 : -1;
  if (c->nokv_value_threshold > 0) o.value_threshold = c->nokv_value_threshold;
  if (c->nokv_no_hot_keys) o.hot_key_tracking = false;
  if (c->nokv_no_hot_cache) o.hot_read_cache_bytes = 0;
  nokv_db *db;
  if (nokv_open(dir, &o, &db) != NOKV_OK) {
    fprintf(stderr, "nokv: open %s: %s\n", dir, nokv_errmsg());
    return NULL;
  }
  return db;
}

static void nk_close(void *db) {
  nokv_statistics s;
  nokv_stats(db, &s);
  printf("  nokv: levels");
  for (int l = 0; l < NOKV_NUM_LEVELS; l++) printf(" %llu", (unsigned long long)s.level_files[l]);
  printf(" tables; %.2f table probes/get; block cache hit ratio %.2f; %llu flushes, "
         "%llu compactions, %llu trivial moves, %llu stalls (%.1f ms), %llu slowdowns\n",
         s.gets ? (double)s.get_table_probes / (double)s.gets : 0.0,
         s.block_cache_hits + s.block_cache_misses
             ? (double)s.block_cache_hits / (double)(s.block_cache_hits + s.block_cache_misses)
             : 0.0,
         (unsigned long long)s.flushes, (unsigned long long)s.compactions,
         (unsigned long long)s.trivial_moves, (unsigned long long)s.write_stalls,
         s.write_stall_micros / 1000.0, (unsigned long long)s.write_slowdowns);
  if (nokv_close(db) != NOKV_OK) fprintf(stderr, "nokv: close: %s\n", nokv_errmsg());
}

static bool nk_put(void *db, const char *k, size_t kl, const char *v, size_t vl) {
  nokv_write_options wo = {.sync = sync_writes};
  return nokv_put(db, &wo, k, kl, v, vl, NULL) == NOKV_OK;
}

static bool nk_get(void *db, const char *k, size_t kl, bool *found) {
  void *v;
  size_t vl;
  int rc = nokv_get(db, NULL, k, kl, &v, &vl, NULL);
  *found = rc == NOKV_OK;
  if (rc == NOKV_OK) nokv_free(v);
  return rc == NOKV_OK || rc == NOKV_ENOTFOUND;
}

static bool nk_scan(void *db, const char *k, size_t kl, int n, int *got) {
  nokv_iter *it;
  if (nokv_iter_new(db, NULL, "", 0, NULL, 0, &it) != NOKV_OK) return false;
  *got = 0;
  size_t bytes = 0;
  for (nokv_iter_seek(it, k, kl); nokv_iter_valid(it) && *got < n; nokv_iter_next(it)) {
    size_t a, b;
    nokv_iter_key(it, &a);
    nokv_iter_value(it, &b);
    bytes += a + b;
    (*got)++;
  }
  bool ok = nokv_iter_status(it) == NOKV_OK && bytes > 0;
  nokv_iter_close(it);
  return ok || *got == 0;
}

static bool nk_del(void *db, const char *k, size_t kl) {
  nokv_write_options wo = {.sync = sync_writes};
  return nokv_delete(db, &wo, k, kl, NULL) == NOKV_OK;
}

static bool nk_delete_range(void *db, const char *a, size_t al, const char *b, size_t bl) {
  nokv_write_options wo = {.sync = sync_writes};
  return nokv_delete_range(db, &wo, a, al, b, bl, NULL) == NOKV_OK;
}

static bool nk_compact(void *db) { return nokv_compact(db) == NOKV_OK; }

const bench_engine bench_nokv = {"nokv",  nk_open, nk_close,        nk_put,    nk_get,
                                 nk_scan, nk_del,  nk_delete_range, nk_compact};
