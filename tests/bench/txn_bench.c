/*
 * txn_bench — transactional read-modify-write: NoKV-C's transactions against
 * RocksDB's OptimisticTransactionDB (Debian's librocksdb, C API), same process,
 * same workload.
 *
 *   bazel build --config=opt //tests/bench:txn_bench
 *   bazel-bin/tests/bench/txn_bench [--keys 100000] [--threads 4] [--txns 50000]
 *       [--dist uniform,zipfian] [--engines nokv,rocksdb] [--repeat 3] [--dir DIR]
 *       [--hold 1]
 *
 * Each database holds `keys` counters (16-byte keys, 100-byte values starting with
 * a decimal count). `threads` threads each run `txns` transactions: pick 4
 * distinct keys (uniform, or YCSB's scrambled zipfian), read each (RocksDB:
 * GetForUpdate, so it is checked at commit), write each back incremented, commit.
 * A conflict is counted as an abort and not retried. Reported: committed
 * transactions per second, abort rate = aborts / attempts, medians over
 * `repeat` runs. Afterwards the counters must sum to 4 x commits: a check that
 * each engine's transactions were atomic and isolated. With --hold 1, one more
 * read-write transaction is begun before the run and ended after it, as a
 * client holding a transaction open would: it must not slow the others down.
 */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "nokv/nokv.h"

#define KEY_LEN 16
#define VALUE_LEN 100
#define KEYS_PER_TXN 4

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void key_of(uint64_t n, char key[KEY_LEN]) {
  for (int i = KEY_LEN - 1; i >= 0; i--, n /= 10) key[i] = (char)('0' + n % 10);
}

/* The counter in a value ("<count>" then padding). */
static long count_of(const char *v, size_t n) {
  char tmp[24] = {0};
  memcpy(tmp, v, n < sizeof tmp - 1 ? n : sizeof tmp - 1);
  return strtol(tmp, NULL, 10);
}

static void value_of(long count, char v[VALUE_LEN]) {
  memset(v, ' ', VALUE_LEN);
  int n = snprintf(v, VALUE_LEN, "%ld", count);
  v[n] = ' ';
}

/* ---- engines ---- */

typedef struct engine {
  const char *name;
  void *(*open)(const char *dir);
  void (*close)(void *db);
  bool (*load)(void *db, const char *k, const char *v);
  /* One transaction: read and increment keys[0..3]; *committed false on a
   * conflict. false on any other error. */
  bool (*rmw)(void *db, char keys[][KEY_LEN], bool *committed);
  bool (*read)(void *db, const char *k, long *count);
  /* Begins a read-write transaction that reads k and stays open (a client that
   * holds its transaction through the run); release ends it. */
  void *(*hold)(void *db, const char *k);
  void (*release)(void *db, void *held);
} engine;

static void *n_open(const char *dir) {
  nokv_options o;
  nokv_options_init(&o);
  o.block_cache_bytes = 8u << 20;
  nokv_db *db;
  if (nokv_open(dir, &o, &db) != NOKV_OK) {
    fprintf(stderr, "nokv: open %s: %s\n", dir, nokv_errmsg());
    return NULL;
  }
  return db;
}
static void n_close(void *db) { nokv_close(db); }
static bool n_load(void *db, const char *k, const char *v) {
  return nokv_put(db, NULL, k, KEY_LEN, v, VALUE_LEN, NULL) == NOKV_OK;
}
static bool n_rmw(void *db, char keys[][KEY_LEN], bool *committed) {
  nokv_txn *t;
  if (nokv_txn_begin(db, 0, &t) != NOKV_OK) return false;
  for (int i = 0; i < KEYS_PER_TXN; i++) {
    void *v;
    size_t n;
    if (nokv_txn_get(t, keys[i], KEY_LEN, &v, &n) != NOKV_OK) {
      nokv_txn_discard(t);
      return false;
    }
    char nv[VALUE_LEN];
    value_of(count_of(v, n) + 1, nv);
    nokv_free(v);
    if (nokv_txn_put(t, keys[i], KEY_LEN, nv, VALUE_LEN) != NOKV_OK) {
      nokv_txn_discard(t);
      return false;
    }
  }
  int rc = nokv_txn_commit(t, NULL, NULL);
  *committed = rc == NOKV_OK;
  return rc == NOKV_OK || rc == NOKV_ECONFLICT;
}
static bool n_read(void *db, const char *k, long *count) {
  void *v;
  size_t n;
  if (nokv_get(db, NULL, k, KEY_LEN, &v, &n, NULL) != NOKV_OK) return false;
  *count = count_of(v, n);
  nokv_free(v);
  return true;
}

static void *n_hold(void *db, const char *k) {
  nokv_txn *t;
  void *v;
  size_t n;
  if (nokv_txn_begin(db, 0, &t) != NOKV_OK) return NULL;
  if (nokv_txn_get(t, k, KEY_LEN, &v, &n) == NOKV_OK) nokv_free(v);
  return t;
}
static void n_release(void *db, void *held) {
  (void)db;
  nokv_txn_discard(held);
}

typedef struct rtx {
  rocksdb_optimistictransactiondb_t *db;
  rocksdb_options_t *opts;
  rocksdb_block_based_table_options_t *table;
  rocksdb_cache_t *cache;
  rocksdb_writeoptions_t *wo;
  rocksdb_readoptions_t *ro;
  rocksdb_optimistictransaction_options_t *to, *held_to;
} rtx;

static void *r_open(const char *dir) {
  rtx *r = calloc(1, sizeof *r);
  r->opts = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(r->opts, 1);
  rocksdb_options_set_write_buffer_size(r->opts, 64u << 20);
  rocksdb_options_set_compression(r->opts, rocksdb_no_compression);
  rocksdb_options_increase_parallelism(r->opts, 2);
  r->table = rocksdb_block_based_options_create();
  r->cache = rocksdb_cache_create_lru(8u << 20);
  rocksdb_block_based_options_set_block_cache(r->table, r->cache);
  rocksdb_block_based_options_set_filter_policy(r->table,
                                                rocksdb_filterpolicy_create_bloom_full(10));
  rocksdb_options_set_block_based_table_factory(r->opts, r->table);
  char *err = NULL;
  r->db = rocksdb_optimistictransactiondb_open(r->opts, dir, &err);
  if (err != NULL) {
    fprintf(stderr, "rocksdb: open %s: %s\n", dir, err);
    free(err);
    return NULL;
  }
  r->wo = rocksdb_writeoptions_create();
  r->ro = rocksdb_readoptions_create();
  r->to = rocksdb_optimistictransaction_options_create();
  r->held_to = rocksdb_optimistictransaction_options_create();
  rocksdb_optimistictransaction_options_set_set_snapshot(r->held_to, 1);
  return r;
}
static void r_close(void *h) {
  rtx *r = h;
  rocksdb_optimistictransactiondb_close(r->db);
  rocksdb_optimistictransaction_options_destroy(r->to);
  rocksdb_optimistictransaction_options_destroy(r->held_to);
  rocksdb_writeoptions_destroy(r->wo);
  rocksdb_readoptions_destroy(r->ro);
  rocksdb_options_destroy(r->opts);
  rocksdb_block_based_options_destroy(r->table);
  rocksdb_cache_destroy(r->cache);
  free(r);
}
static bool r_load(void *h, const char *k, const char *v) {
  rtx *r = h;
  rocksdb_transaction_t *t = rocksdb_optimistictransaction_begin(r->db, r->wo, r->to, NULL);
  char *err = NULL;
  rocksdb_transaction_put(t, k, KEY_LEN, v, VALUE_LEN, &err);
  if (err == NULL) rocksdb_transaction_commit(t, &err);
  rocksdb_transaction_destroy(t);
  bool ok = err == NULL;
  free(err);
  return ok;
}
static bool r_rmw(void *h, char keys[][KEY_LEN], bool *committed) {
  rtx *r = h;
  rocksdb_transaction_t *t = rocksdb_optimistictransaction_begin(r->db, r->wo, r->to, NULL);
  char *err = NULL;
  for (int i = 0; i < KEYS_PER_TXN && err == NULL; i++) {
    size_t n = 0;
    char *v = rocksdb_transaction_get_for_update(t, r->ro, keys[i], KEY_LEN, &n, 1, &err);
    if (err != NULL || v == NULL) break;
    char nv[VALUE_LEN];
    value_of(count_of(v, n) + 1, nv);
    rocksdb_free(v);
    rocksdb_transaction_put(t, keys[i], KEY_LEN, nv, VALUE_LEN, &err);
  }
  bool ok = err == NULL;
  if (ok) {
    rocksdb_transaction_commit(t, &err);
    /* A conflict is "Resource busy" (Status::Busy) for optimistic transactions. */
    *committed = err == NULL;
    ok = err == NULL || strstr(err, "Resource busy") != NULL || strstr(err, "Busy") != NULL;
    if (!ok) fprintf(stderr, "rocksdb: commit: %s\n", err);
  }
  free(err);
  rocksdb_transaction_destroy(t);
  return ok;
}
static bool r_read(void *h, const char *k, long *count) {
  rtx *r = h;
  rocksdb_t *base = rocksdb_optimistictransactiondb_get_base_db(r->db);
  char *err = NULL;
  size_t n = 0;
  char *v = rocksdb_get(base, r->ro, k, KEY_LEN, &n, &err);
  rocksdb_optimistictransactiondb_close_base_db(base);
  bool ok = err == NULL && v != NULL;
  if (ok) *count = count_of(v, n);
  free(err);
  rocksdb_free(v);
  return ok;
}

static void *r_hold(void *h, const char *k) {
  rtx *r = h;
  rocksdb_transaction_t *t = rocksdb_optimistictransaction_begin(r->db, r->wo, r->held_to, NULL);
  char *err = NULL;
  size_t n = 0;
  char *v = rocksdb_transaction_get_for_update(t, r->ro, k, KEY_LEN, &n, 1, &err);
  rocksdb_free(v);
  free(err);
  return t;
}
static void r_release(void *h, void *held) {
  (void)h;
  char *err = NULL;
  rocksdb_transaction_rollback(held, &err);
  free(err);
  rocksdb_transaction_destroy(held);
}

static const engine engines[] = {
    {"nokv", n_open, n_close, n_load, n_rmw, n_read, n_hold, n_release},
    {"rocksdb", r_open, r_close, r_load, r_rmw, r_read, r_hold, r_release},
};

/* ---- the run ---- */

typedef struct worker {
  const engine *e;
  void *db;
  const zipf *z;  /* NULL: uniform */
  uint64_t keys, txns, rng;
  uint64_t commits, aborts;
  bool failed;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  char keys[KEYS_PER_TXN][KEY_LEN];
  for (uint64_t i = 0; i < w->txns; i++) {
    uint64_t picked[KEYS_PER_TXN];
    for (int k = 0; k < KEYS_PER_TXN; k++) {
      bool dup;
      do {
        picked[k] = w->z != NULL ? zipf_next(w->z, &w->rng) : bench_splitmix(&w->rng) % w->keys;
        dup = false;
        for (int j = 0; j < k; j++) dup |= picked[j] == picked[k];
      } while (dup);
      key_of(picked[k], keys[k]);
    }
    bool committed = false;
    if (!w->e->rmw(w->db, keys, &committed)) {
      w->failed = true;
      return NULL;
    }
    if (committed) {
      w->commits++;
    } else {
      w->aborts++;
    }
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  uint64_t nkeys = 100000, txns = 50000;
  int threads = 4, repeat = 1;
  bool hold = false;
  char dists[64] = "uniform,zipfian", names[64] = "nokv,rocksdb", base[256] = "";
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *f = argv[i], *v = argv[i + 1];
    if (strcmp(f, "--keys") == 0) nkeys = strtoull(v, NULL, 10);
    else if (strcmp(f, "--txns") == 0) txns = strtoull(v, NULL, 10);
    else if (strcmp(f, "--threads") == 0) threads = atoi(v) > 0 && atoi(v) <= 64 ? atoi(v) : 4;
    else if (strcmp(f, "--repeat") == 0) repeat = atoi(v) > 0 && atoi(v) <= 9 ? atoi(v) : 1;
    else if (strcmp(f, "--dist") == 0) snprintf(dists, sizeof dists, "%s", v);
    else if (strcmp(f, "--engines") == 0) snprintf(names, sizeof names, "%s", v);
    else if (strcmp(f, "--dir") == 0) snprintf(base, sizeof base, "%s", v);
    else if (strcmp(f, "--hold") == 0) hold = atoi(v) != 0;
    else {
      fprintf(stderr, "txn_bench: unknown flag %s\n", f);
      return 2;
    }
  }
  if (base[0] == '\0') snprintf(base, sizeof base, "/tmp/txn-bench-%d", (int)getpid());
  mkdir(base, 0755);
  zipf z;
  zipf_init(&z, nkeys);
  printf("txn_bench: %llu keys, %d threads x %llu transactions of %d read-modify-writes, "
         "%d repetition(s)%s\n\n",
         (unsigned long long)nkeys, threads, (unsigned long long)txns, KEYS_PER_TXN, repeat,
         hold ? ", one more transaction held open throughout" : "");
  printf("| distribution | engine | committed txn/s | abort rate | vs rocksdb |\n");
  printf("|---|---|---:|---:|---:|\n");
  int status = 0;
  for (int d = 0; d < 2; d++) {
    const char *dist = d == 0 ? "uniform" : "zipfian";
    if (strstr(dists, dist) == NULL) continue;
    double rate[2][9] = {{0}}, aborts[2][9] = {{0}};
    for (int rep = 0; rep < repeat; rep++) {
      for (int e = 0; e < 2; e++) {
        const engine *en = &engines[e];
        if (strstr(names, en->name) == NULL) continue;
        char dir[512], key[KEY_LEN], val[VALUE_LEN];
        snprintf(dir, sizeof dir, "%s/%s-%s", base, en->name, dist);
        remove_dir(dir);
        void *db = en->open(dir);
        if (db == NULL) return 1;
        value_of(0, val);
        for (uint64_t k = 0; k < nkeys; k++) {
          key_of(k, key);
          if (!en->load(db, key, val)) {
            fprintf(stderr, "txn_bench: %s: load failed\n", en->name);
            return 1;
          }
        }
        key_of(0, key);
        void *held = hold ? en->hold(db, key) : NULL;
        if (hold && held == NULL) {
          fprintf(stderr, "txn_bench: %s: hold failed\n", en->name);
          return 1;
        }
        worker w[64];
        pthread_t tid[64];
        double t0 = now();
        for (int t = 0; t < threads; t++) {
          w[t] = (worker){.e = en, .db = db, .z = d == 1 ? &z : NULL, .keys = nkeys, .txns = txns,
                          .rng = 0x1234567u + (uint64_t)t * 7919u + (uint64_t)rep * 104729u};
          pthread_create(&tid[t], NULL, work, &w[t]);
        }
        uint64_t commits = 0, aborted = 0;
        bool failed = false;
        for (int t = 0; t < threads; t++) {
          pthread_join(tid[t], NULL);
          commits += w[t].commits;
          aborted += w[t].aborts;
          failed |= w[t].failed;
        }
        double secs = now() - t0;
        if (held != NULL) en->release(db, held);
        /* Every committed transaction added 1 to 4 counters, and nothing else did. */
        long sum = 0, c;
        for (uint64_t k = 0; k < nkeys && !failed; k++) {
          key_of(k, key);
          if (!en->read(db, key, &c)) failed = true;
          sum += c;
        }
        if (failed || sum != (long)(commits * KEYS_PER_TXN)) {
          fprintf(stderr, "txn_bench: %s %s: counters sum to %ld, expected %llu%s\n", en->name,
                  dist, sum, (unsigned long long)(commits * KEYS_PER_TXN),
                  failed ? " (a transaction failed)" : "");
          status = 1;
        }
        rate[e][rep] = (double)commits / secs;
        aborts[e][rep] = (double)aborted / (double)(commits + aborted);
        en->close(db);
        remove_dir(dir);
      }
    }
    double med[2] = {0}, amed[2] = {0};
    for (int e = 0; e < 2; e++) {
      qsort(rate[e], (size_t)repeat, sizeof rate[e][0], cmp_double);
      qsort(aborts[e], (size_t)repeat, sizeof aborts[e][0], cmp_double);
      med[e] = rate[e][repeat / 2];
      amed[e] = aborts[e][repeat / 2];
    }
    for (int e = 0; e < 2; e++) {
      if (strstr(names, engines[e].name) == NULL) continue;
      char vs[16] = "";
      if (med[1] > 0) snprintf(vs, sizeof vs, "%.2fx", med[e] / med[1]);
      printf("| %s | %s | %.0f | %.2f%% | %s |\n", dist, engines[e].name, med[e],
             100.0 * amed[e], vs);
    }
  }
  rmdir(base);
  return status;
}
