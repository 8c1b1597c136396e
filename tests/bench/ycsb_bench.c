/*
 * ycsb_bench — YCSB's core workloads A to F with many client threads, for
 * NoKV-C, RocksDB and LevelDB through the same adapters as peer_bench (same
 * settings), one engine after the other.
 *
 *   bazel build --config=opt //tests/bench:ycsb_bench
 *   bazel-bin/tests/bench/ycsb_bench [--records 1000000] [--ops 500000]
 *       [--value_bytes 1000] [--threads 1,4,16] [--workloads a,b,c,f,d,e,r,w]
 *       [--engines nokv,rocksdb,leveldb] [--load_threads 4] [--cache_mb 64]
 *       [--repeat 1] [--dir DIR] [--json FILE]
 *
 * Per engine: a fresh database is loaded with --records keys (16 bytes, in a
 * scrambled order, by --load_threads threads), then every thread count runs
 * every workload, in YCSB's order (A, B, C, F, D, E: D and E insert; then R);
 * then W at every thread count, last because it inserts the most; each
 * thread taking --ops / threads operations. Keys are zipfian (YCSB's scrambled
 * zipfian, theta 0.99) except D's reads, which favour the newest inserts
 * ("latest"). The workloads:
 *   a  50% read, 50% update          b  95% read, 5% update
 *   c  100% read                     d  95% read (latest), 5% insert
 *   e  95% scan (1-100 keys from a zipfian key), 5% insert
 *   f  50% read, 50% read-modify-write
 *   r  readrandom: 100% reads of uniformly chosen keys
 *   w  fillrandom: 100% inserts of new keys (scrambled, so in random order)
 * Reported per (workload, threads, engine): ops/s, p50, p99, p99.9 and the
 * slowest operation, and how many took over 10 ms and over 100 ms; the load
 * itself is reported the same way as workload "L" (--load_threads threads).
 * With --repeat N the engines take turns N times and each figure is the median.
 * --slow_log FILE appends one line per operation over 10 ms (wall-clock start,
 * engine, workload, threads, operation, milliseconds), to line them up with a
 * trace of the engine's system calls.
 */
#define _DEFAULT_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "engine.h"

#define KEY_LEN 16
#define MAX_THREADS 64
#define MAX_ENGINES 3
#define SCAN_MAX 100

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Key number i (the i-th inserted) as 16 digits of a scrambled value, so the
 * load order is not the key order. */
static void key_of(uint64_t i, char key[KEY_LEN + 1]) {
  uint64_t n = i;
  uint64_t h = bench_splitmix(&n) % 10000000000000000ull;
  for (int k = KEY_LEN - 1; k >= 0; k--, h /= 10) key[k] = (char)('0' + h % 10);
  key[KEY_LEN] = '\0';
}

/* A zipfian rank in [0, n) with rank 0 the most popular, unscrambled (for
 * "latest": the newest key is the hottest). */
static uint64_t zipf_rank(const zipf *z, uint64_t *rng) {
  double u = (double)(bench_splitmix(rng) >> 11) / 9007199254740992.0;
  double uz = u * z->zetan;
  if (uz < 1.0) return 0;
  if (uz < 1.0 + pow(0.5, z->theta)) return 1;
  uint64_t r = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1.0, z->alpha));
  return r < z->n ? r : z->n - 1;
}

typedef struct workload {
  char name;
  int read, update, insert, scan, rmw; /* percentages */
  bool latest;   /* reads favour the newest keys */
  bool uniform;  /* keys chosen uniformly, not zipfian */
} workload;

static const workload WORKLOADS[] = {
    {'a', 50, 50, 0, 0, 0, false, false}, {'b', 95, 5, 0, 0, 0, false, false},
    {'c', 100, 0, 0, 0, 0, false, false}, {'f', 50, 0, 0, 0, 50, false, false},
    {'d', 95, 0, 5, 0, 0, true, false},   {'e', 0, 0, 5, 95, 0, false, false},
    {'r', 100, 0, 0, 0, 0, false, true},  {'w', 0, 0, 100, 0, 0, false, true},
};

/* What the threads of one run share. */
typedef struct run {
  const bench_engine *eng;
  void *db;
  const workload *w;
  const zipf *z;
  size_t value_bytes;
  uint64_t ops_per_thread;
  _Atomic uint64_t inserted; /* keys [0, inserted) exist */
  _Atomic bool failed;
  uint64_t load_next_end;    /* load: keys [0, load_next_end) are written */
  _Atomic uint64_t load_next;
} run;

/* An operation over 10 ms, for --slow_log. */
typedef struct slow_op {
  struct timespec start; /* CLOCK_REALTIME */
  float ms;
  char op;               /* r(ead) u(pdate) i(nsert) s(can) m(read-modify-write) */
} slow_op;

#define MAX_SLOW 4096

typedef struct thread_arg {
  run *r;
  int id;
  float *lat_us; /* one per operation */
  uint64_t done;
  slow_op *slow; /* the first MAX_SLOW operations over 10 ms */
  int nslow;
} thread_arg;

/* Records one operation's latency, started at t0 (monotonic) and real0. */
static void record_op(thread_arg *a, uint64_t t0, const struct timespec *real0, char op) {
  float us = (float)((double)(now_ns() - t0) / 1000.0);
  a->lat_us[a->done++] = us;
  if (us > 10000.0f && a->nslow < MAX_SLOW) {
    a->slow[a->nslow++] = (slow_op){.start = *real0, .ms = us / 1000.0f, .op = op};
  }
}

static void fill_value(char *v, size_t n, uint64_t *rng) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t x = bench_splitmix(rng);
    memcpy(v + i, &x, n - i < 8 ? n - i : 8);
  }
}

static void *load_thread(void *p) {
  thread_arg *a = p;
  run *r = a->r;
  char key[KEY_LEN + 1];
  char *val = malloc(r->value_bytes + 8);
  uint64_t rng = 0xfeed + (uint64_t)a->id;
  for (;;) {
    uint64_t i = atomic_fetch_add(&r->load_next, 1);
    if (i >= r->load_next_end) break;
    key_of(i, key);
    fill_value(val, r->value_bytes, &rng);
    struct timespec real0;
    clock_gettime(CLOCK_REALTIME, &real0);
    uint64_t t0 = now_ns();
    if (!r->eng->put(r->db, key, KEY_LEN, val, r->value_bytes)) {
      atomic_store(&r->failed, true);
      break;
    }
    record_op(a, t0, &real0, 'i');
  }
  free(val);
  return NULL;
}

/* A key that exists: zipfian over those inserted (latest: the newest hottest). */
static uint64_t pick_key(run *r, uint64_t *rng) {
  uint64_t n = atomic_load_explicit(&r->inserted, memory_order_relaxed);
  if (r->w->latest) {
    uint64_t rank = zipf_rank(r->z, rng) % n;
    return n - 1 - rank;
  }
  if (r->w->uniform) return bench_splitmix(rng) % n;
  return zipf_next(r->z, rng) % n;
}

static void *work_thread(void *p) {
  thread_arg *a = p;
  run *r = a->r;
  const workload *w = r->w;
  char key[KEY_LEN + 1];
  char *val = malloc(r->value_bytes + 8);
  uint64_t rng = 0xabcdef + (uint64_t)a->id * 7919;
  for (uint64_t op = 0; op < r->ops_per_thread && !atomic_load(&r->failed); op++) {
    int dice = (int)(bench_splitmix(&rng) % 100);
    struct timespec real0;
    clock_gettime(CLOCK_REALTIME, &real0);
    uint64_t t0 = now_ns();
    bool ok = true, found;
    char kind = 'r';
    if (dice < w->read) {
      key_of(pick_key(r, &rng), key);
      ok = r->eng->get(r->db, key, KEY_LEN, &found);
    } else if (dice < w->read + w->update) {
      key_of(pick_key(r, &rng), key);
      fill_value(val, r->value_bytes, &rng);
      ok = r->eng->put(r->db, key, KEY_LEN, val, r->value_bytes);
      kind = 'u';
    } else if (dice < w->read + w->update + w->insert) {
      /* A new key: its number is taken first, then written; it becomes
       * readable to others once written (inserted counts only written keys
       * loosely: a reader may pick one being written and miss it, as in YCSB). */
      uint64_t i = atomic_fetch_add(&r->load_next, 1);
      key_of(i, key);
      fill_value(val, r->value_bytes, &rng);
      ok = r->eng->put(r->db, key, KEY_LEN, val, r->value_bytes);
      kind = 'i';
      uint64_t seen = atomic_load(&r->inserted);
      while (seen <= i && !atomic_compare_exchange_weak(&r->inserted, &seen, i + 1)) {
      }
    } else if (dice < w->read + w->update + w->insert + w->scan) {
      key_of(pick_key(r, &rng), key);
      int got;
      ok = r->eng->scan(r->db, key, KEY_LEN, 1 + (int)(bench_splitmix(&rng) % SCAN_MAX), &got);
      kind = 's';
    } else {
      key_of(pick_key(r, &rng), key);
      ok = r->eng->get(r->db, key, KEY_LEN, &found);
      fill_value(val, r->value_bytes, &rng);
      ok = ok && r->eng->put(r->db, key, KEY_LEN, val, r->value_bytes);
      kind = 'm';
    }
    if (!ok) {
      atomic_store(&r->failed, true);
      break;
    }
    record_op(a, t0, &real0, kind);
  }
  free(val);
  return NULL;
}

static int cmp_float(const void *x, const void *y) {
  float a = *(const float *)x, b = *(const float *)y;
  return a < b ? -1 : a > b;
}

typedef struct result {
  char workload;
  int threads;
  const char *engine;
  double ops_per_s, p50, p99, p999, max_us;
  uint64_t over_10ms, over_100ms;
} result;

static FILE *slow_log;

static result results[4096];
static int nresults;

/* Runs n threads of fn over r, each doing at most per_thread operations;
 * fills res from their latencies. */
static bool run_threads(run *r, int n, void *(*fn)(void *), uint64_t per_thread, result *res) {
  pthread_t tid[MAX_THREADS];
  thread_arg args[MAX_THREADS];
  uint64_t t0 = now_ns();
  for (int i = 0; i < n; i++) {
    args[i] = (thread_arg){.r = r, .id = i};
    args[i].lat_us = malloc((per_thread + 1) * sizeof(float));
    args[i].slow = malloc(MAX_SLOW * sizeof(slow_op));
    pthread_create(&tid[i], NULL, fn, &args[i]);
  }
  for (int i = 0; i < n; i++) pthread_join(tid[i], NULL);
  double secs = (double)(now_ns() - t0) / 1e9;
  uint64_t total = 0;
  for (int i = 0; i < n; i++) total += args[i].done;
  float *all = malloc((total + 1) * sizeof(float));
  uint64_t k = 0, over10 = 0, over100 = 0;
  for (int i = 0; i < n; i++) {
    for (uint64_t j = 0; j < args[i].done; j++) {
      all[k++] = args[i].lat_us[j];
      over10 += args[i].lat_us[j] > 10000.0f;
      over100 += args[i].lat_us[j] > 100000.0f;
    }
  }
  qsort(all, total, sizeof(float), cmp_float);
  res->ops_per_s = (double)total / secs;
  res->p50 = total ? all[(uint64_t)(0.50 * (double)total)] : 0;
  res->p99 = total ? all[(uint64_t)(0.99 * (double)total)] : 0;
  res->p999 = total ? all[(uint64_t)(0.999 * (double)total)] : 0;
  res->max_us = total ? all[total - 1] : 0;
  res->over_10ms = over10;
  res->over_100ms = over100;
  free(all);
  for (int i = 0; i < n; i++) {
    for (int j = 0; slow_log != NULL && j < args[i].nslow; j++) {
      const slow_op *o = &args[i].slow[j];
      fprintf(slow_log, "%lld.%06ld %s %c %d %c %.1f\n", (long long)o->start.tv_sec,
              o->start.tv_nsec / 1000, r->eng->name, res->workload, res->threads, o->op, o->ms);
    }
    free(args[i].lat_us);
    free(args[i].slow);
  }
  if (slow_log != NULL) fflush(slow_log);
  return !atomic_load(&r->failed);
}

static void print_result(const result *res) {
  printf("  %-8s ycsb-%c %2d threads: %9.0f ops/s  p50 %7.1f  p99 %8.1f  p99.9 %9.1f  "
         "max %10.1f us  >10ms %llu  >100ms %llu\n",
         res->engine, res->workload, res->threads, res->ops_per_s, res->p50, res->p99, res->p999,
         res->max_us, (unsigned long long)res->over_10ms, (unsigned long long)res->over_100ms);
  fflush(stdout);
}

static double median(double *v, int n) {
  for (int i = 1; i < n; i++) {
    for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
      double t = v[j];
      v[j] = v[j - 1];
      v[j - 1] = t;
    }
  }
  return v[n / 2];
}

int main(int argc, char **argv) {
  uint64_t records = 1000000, ops = 500000;
  size_t value_bytes = 1000;
  int load_threads = 4, repeat = 1;
  char threads_s[64] = "1,4,16", workloads_s[32] = "a,b,c,f,d,e,r,w", engines_s[64] = "nokv,rocksdb,leveldb";
  char base[256] = "", json[256] = "";
  bench_config cfg = {.block_cache_bytes = 64u << 20, .bloom_bits = 10,
                      .write_buffer_bytes = 64u << 20, .block_size = 4096,
                      .compression = false, .sync = false};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *f = argv[i], *v = argv[i + 1];
    if (strcmp(f, "--records") == 0) records = strtoull(v, NULL, 10);
    else if (strcmp(f, "--ops") == 0) ops = strtoull(v, NULL, 10);
    else if (strcmp(f, "--value_bytes") == 0) value_bytes = strtoull(v, NULL, 10);
    else if (strcmp(f, "--threads") == 0) snprintf(threads_s, sizeof threads_s, "%s", v);
    else if (strcmp(f, "--workloads") == 0) snprintf(workloads_s, sizeof workloads_s, "%s", v);
    else if (strcmp(f, "--engines") == 0) snprintf(engines_s, sizeof engines_s, "%s", v);
    else if (strcmp(f, "--load_threads") == 0) load_threads = atoi(v);
    else if (strcmp(f, "--cache_mb") == 0) cfg.block_cache_bytes = strtoull(v, NULL, 10) << 20;
    else if (strcmp(f, "--repeat") == 0) repeat = atoi(v) > 0 && atoi(v) <= 9 ? atoi(v) : 1;
    else if (strcmp(f, "--dir") == 0) snprintf(base, sizeof base, "%s", v);
    else if (strcmp(f, "--json") == 0) snprintf(json, sizeof json, "%s", v);
    else if (strcmp(f, "--slow_log") == 0) {
      if ((slow_log = fopen(v, "a")) == NULL) {
        perror(v);
        return 2;
      }
    } else {
      fprintf(stderr, "ycsb_bench: unknown flag %s\n", f);
      return 2;
    }
  }
  int threads[16], nthreads = 0;
  for (char *s = strtok(threads_s, ","); s != NULL && nthreads < 16; s = strtok(NULL, ",")) {
    int t = atoi(s);
    if (t < 1 || t > MAX_THREADS) {
      fprintf(stderr, "ycsb_bench: threads must be 1..%d\n", MAX_THREADS);
      return 2;
    }
    threads[nthreads++] = t;
  }
  if (load_threads < 1 || load_threads > MAX_THREADS || records == 0) {
    fprintf(stderr, "ycsb_bench: bad sizes\n");
    return 2;
  }
  const bench_engine *all[] = {&bench_nokv, &bench_rocksdb, &bench_leveldb}, *use[MAX_ENGINES];
  int nuse = 0;
  for (int i = 0; i < MAX_ENGINES; i++) {
    if (strstr(engines_s, all[i]->name) != NULL) use[nuse++] = all[i];
  }
  if (base[0] == '\0') snprintf(base, sizeof base, "/tmp/ycsb-bench-%d", (int)getpid());
  mkdir(base, 0755);
  zipf z;
  zipf_init(&z, records);
  printf("ycsb_bench: %llu records of %zu bytes (16-byte keys), %llu operations per workload, "
         "%d load threads, %d repetition%s; %zu MiB block cache, 10 bloom bits, 64 MiB write "
         "buffer, compression off, sync off\n",
         (unsigned long long)records, value_bytes, (unsigned long long)ops, load_threads, repeat,
         repeat > 1 ? "s" : "", cfg.block_cache_bytes >> 20);

  for (int rep = 0; rep < repeat; rep++) {
    for (int e = 0; e < nuse; e++) {
      char dir[512];
      snprintf(dir, sizeof dir, "%s/%s-%d", base, use[e]->name, rep);
      remove_dir(dir);
      run r = {.eng = use[e], .z = &z, .value_bytes = value_bytes};
      r.db = use[e]->open(dir, &cfg);
      if (r.db == NULL) return 1;
      r.load_next_end = records;
      atomic_store(&r.load_next, 0);
      result *load = &results[nresults++];
      *load = (result){.workload = 'L', .threads = load_threads, .engine = use[e]->name};
      if (!run_threads(&r, load_threads, load_thread, records, load)) {
        fprintf(stderr, "ycsb_bench: %s failed to load\n", use[e]->name);
        return 1;
      }
      print_result(load);
      atomic_store(&r.inserted, records);
      atomic_store(&r.load_next, records);  /* the next insert's key number */
      /* Two passes: the mixes (and readrandom) at every thread count, then
       * fillrandom at every thread count, so its 500,000 inserts per thread
       * count neither grow the database under the later mixes nor leave them
       * its compactions to finish. */
      for (int pass = 0; pass < 2; pass++) {
        for (int t = 0; t < nthreads; t++) {
          for (size_t wi = 0; wi < sizeof WORKLOADS / sizeof *WORKLOADS; wi++) {
            if (strchr(workloads_s, WORKLOADS[wi].name) == NULL) continue;
            if ((WORKLOADS[wi].name == 'w') != (pass == 1)) continue;
            r.w = &WORKLOADS[wi];
            r.ops_per_thread = ops / (uint64_t)threads[t];
            result *res = &results[nresults++];
            *res = (result){.workload = r.w->name, .threads = threads[t], .engine = use[e]->name};
            if (!run_threads(&r, threads[t], work_thread, r.ops_per_thread, res)) {
              fprintf(stderr, "ycsb_bench: %s failed in workload %c\n", use[e]->name, r.w->name);
              return 1;
            }
            print_result(res);
          }
        }
      }
      use[e]->close(r.db);
      remove_dir(dir);
    }
  }
  rmdir(base);

  /* The table: medians over the repetitions, and NoKV-C against the best peer. */
  printf("\n| workload | threads | engine | ops/s | p50 us | p99 us | p99.9 us | max us | >10 ms | >100 ms | vs best peer |\n");
  printf("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  FILE *jf = json[0] != '\0' ? fopen(json, "w") : NULL;
  /* The load first (one row, its thread count), then the workloads. */
  for (size_t wi = 0; wi <= sizeof WORKLOADS / sizeof *WORKLOADS; wi++) {
    bool is_load = wi == 0;
    char wname = is_load ? 'L' : WORKLOADS[wi - 1].name;
    if (!is_load && strchr(workloads_s, wname) == NULL) continue;
    for (int t = 0; t < (is_load ? 1 : nthreads); t++) {
      int nt = is_load ? load_threads : threads[t];
      double med[MAX_ENGINES][7];
      int have[MAX_ENGINES] = {0};
      for (int e = 0; e < nuse; e++) {
        double v[7][9];
        int n = 0;
        for (int i = 0; i < nresults; i++) {
          result *x = &results[i];
          if (x->workload != wname || x->threads != nt || strcmp(x->engine, use[e]->name) != 0 ||
              n >= 9) {
            continue;
          }
          v[0][n] = x->ops_per_s, v[1][n] = x->p50, v[2][n] = x->p99, v[3][n] = x->p999;
          v[4][n] = x->max_us, v[5][n] = (double)x->over_10ms, v[6][n] = (double)x->over_100ms;
          n++;
        }
        if (n == 0) continue;
        have[e] = 1;
        for (int f = 0; f < 7; f++) med[e][f] = median(v[f], n);
      }
      double best_peer = 0;
      for (int e = 0; e < nuse; e++) {
        if (have[e] && strcmp(use[e]->name, "nokv") != 0 && med[e][0] > best_peer) {
          best_peer = med[e][0];
        }
      }
      for (int e = 0; e < nuse; e++) {
        if (!have[e]) continue;
        char ratio[32] = "";
        if (best_peer > 0) snprintf(ratio, sizeof ratio, "%.2fx", med[e][0] / best_peer);
        printf("| %c | %d | %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f | %.0f | %s |\n", wname,
               nt, use[e]->name, med[e][0], med[e][1], med[e][2], med[e][3], med[e][4], med[e][5],
               med[e][6], ratio);
        if (jf != NULL) {
          fprintf(jf,
                  "{\"workload\": \"%c\", \"threads\": %d, \"engine\": \"%s\", \"ops_per_s\": %.1f, "
                  "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f, "
                  "\"over_10ms\": %.0f, \"over_100ms\": %.0f, \"records\": %llu, "
                  "\"value_bytes\": %zu, \"ops\": %llu, \"repeat\": %d}\n",
                  wname, nt, use[e]->name, med[e][0], med[e][1], med[e][2], med[e][3], med[e][4],
                  med[e][5], med[e][6], (unsigned long long)records, value_bytes,
                  (unsigned long long)ops, repeat);
        }
      }
    }
  }
  if (jf != NULL) fclose(jf);
  return 0;
}
