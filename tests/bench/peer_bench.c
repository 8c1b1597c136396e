/*
 * peer_bench — NoKV-C, RocksDB and LevelDB side by side: the same workloads, in
 * the same process, on the same machine, one engine after the other.
 *
 *   bazel build --config=opt //tests/bench:peer_bench
 *   bazel-bin/tests/bench/peer_bench [--num N] [--reads N] [--value_sizes 100,1024]
 *       [--engines nokv,rocksdb,leveldb] [--cache_mb 8] [--compression 0|1]
 *       [--workloads fillrandom,readrandom,...] [--repeat N] [--dir DIR] [--json FILE]
 *       [--data_mb MB] [--nokv_value_threshold BYTES] [--nokv_hot_keys 0|1]
 *       [--nokv_hot_cache 0|1]
 *
 * --data_mb sizes each value size's data set in bytes instead (num = MB / (key +
 * value)), so large values do not mean a huge data set. --nokv_value_threshold
 * overrides NoKV-C's value_threshold (values at least this long go to the value
 * log), to show what keeping values inline trades. --nokv_hot_keys 0 turns
 * NoKV-C's hot-key tracker off, to measure what it costs; --nokv_hot_cache 0
 * turns only its hot-read cache off.
 * Workloads (db_bench's names), 16-byte keys, one thread, sync off:
 *   fillseq      num puts in key order into an empty database
 *   fillrandom   num puts in random order (each key once) into an empty database
 *   overwrite    num puts of random existing keys
 *   readrandom   reads of random existing keys
 *   readmissing  reads of absent keys that fall between existing ones
 *   seekrandom   seek to a random key and read the next 100 entries
 *   ycsb-a/b/c   50/50, 95/5 and 100/0 read/update mixes over zipfian keys
 * With --repeat N the engines take turns N times (nokv, rocksdb, leveldb, nokv,
 * ...) and each figure is the median of the N runs, which tames the noise of a
 * shared machine. Reported per engine: ops/s, p50 and p99 latency, and after the
 * write phases
 * the bytes on disk and the write amplification (bytes the process wrote with
 * write(2), from /proc/self/io, over the key and value bytes written).
 */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "bench_util.h"
#include "engine.h"

#define KEY_LEN 16
#define MAX_ENGINES 3
#define SCAN_LEN 100

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_state = 0x1234567;
static uint64_t next_rand(void) { return bench_splitmix(&rng_state); }

/* Existing keys have even numbers, absent ones odd: absent keys fall inside
 * every table's key range, so only bloom filters (not range checks) skip them. */
static void key_of(uint64_t n, char key[KEY_LEN + 1]) {
  for (int i = KEY_LEN - 1; i >= 0; i--, n /= 10) key[i] = (char)('0' + n % 10);
  key[KEY_LEN] = '\0';
}

/* ---- measurement ---- */
typedef struct result {
  char workload[32];
  char engine[16];
  size_t value_size;
  uint64_t ops;
  double secs;
  double p50_us, p99_us;
} result;

static result results[2048];
static int nresults;

typedef struct space {
  char engine[16];
  size_t value_size;
  uint64_t disk_bytes, written_bytes, user_bytes;
} space;
static space spaces[256];
static int nspaces;

static uint32_t *lat;
static uint64_t nlat;
static char workloads_wanted[256] = "";  /* empty: all */

/* Is the workload selected? fillrandom always runs (the reads need its data). */
static bool want(const char *name) {
  if (workloads_wanted[0] == '\0') return true;
  size_t n = strlen(name);
  for (const char *p = workloads_wanted; (p = strstr(p, name)) != NULL; p += n) {
    bool starts = p == workloads_wanted || p[-1] == ',';
    bool ends = p[n] == '\0' || p[n] == ',';
    if (starts && ends) return true;
  }
  return false;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void record(uint64_t start_ns) {
  uint64_t d = now_ns() - start_ns;
  lat[nlat++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

static void finish(const char *workload, const char *engine, size_t vs, uint64_t t0) {
  if (!want(workload)) {
    nlat = 0;
    return;
  }
  result *r = &results[nresults++];
  snprintf(r->workload, sizeof r->workload, "%s", workload);
  snprintf(r->engine, sizeof r->engine, "%s", engine);
  r->value_size = vs;
  r->ops = nlat;
  r->secs = (double)(now_ns() - t0) / 1e9;
  qsort(lat, nlat, sizeof *lat, cmp_u32);
  r->p50_us = nlat ? lat[nlat / 2] / 1000.0 : 0;
  r->p99_us = nlat ? lat[nlat * 99 / 100] / 1000.0 : 0;
  printf("  %-8s %-12s %10.0f ops/s   p50 %7.2f us   p99 %8.2f us\n", engine, workload,
         (double)r->ops / r->secs, r->p50_us, r->p99_us);
  fflush(stdout);
  nlat = 0;
}

static uint64_t process_wchar(void) {
  FILE *f = fopen("/proc/self/io", "r");
  char line[128];
  unsigned long long v = 0;
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    if (sscanf(line, "wchar: %llu", &v) == 1) break;
  }
  if (f != NULL) fclose(f);
  return v;
}

static uint64_t dir_bytes(const char *path) {
  DIR *d = opendir(path);
  uint64_t total = 0;
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    if (e->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode)) total += (uint64_t)st.st_size;
  }
  if (d != NULL) closedir(d);
  return total;
}

static void die(const char *engine, const char *what) {
  fprintf(stderr, "peer_bench: %s: %s failed\n", engine, what);
  exit(1);
}

static void fill_value(char *v, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t r = next_rand();
    memcpy(v + i, &r, n - i < 8 ? n - i : 8);
  }
}

/* ---- one engine, one value size ---- */
static void run_engine(const bench_engine *e, const bench_config *cfg, const char *base,
                       uint64_t num, uint64_t reads, size_t vs) {
  char dir[512], key[KEY_LEN + 1];
  char *val = malloc(vs);
  printf("%s, %zu-byte values\n", e->name, vs);

  /* fillseq, in its own database */
  snprintf(dir, sizeof dir, "%s/%s-%zu-seq", base, e->name, vs);
  void *db = e->open(dir, cfg);
  if (db == NULL) exit(1);
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < (want("fillseq") ? num : 0); i++) {
    key_of(2 * i, key);
    fill_value(val, vs);
    uint64_t s = now_ns();
    if (!e->put(db, key, KEY_LEN, val, vs)) die(e->name, "put");
    record(s);
  }
  finish("fillseq", e->name, vs, t0);
  e->close(db);
  remove_dir(dir);

  /* fillrandom + overwrite, then reads on the same database */
  snprintf(dir, sizeof dir, "%s/%s-%zu", base, e->name, vs);
  db = e->open(dir, cfg);
  if (db == NULL) exit(1);
  uint64_t *perm = malloc(num * sizeof *perm);
  for (uint64_t i = 0; i < num; i++) perm[i] = i;
  for (uint64_t i = num - 1; i > 0; i--) {
    uint64_t j = next_rand() % (i + 1), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  uint64_t w0 = process_wchar();
  t0 = now_ns();
  for (uint64_t i = 0; i < num; i++) {
    key_of(2 * perm[i], key);
    fill_value(val, vs);
    uint64_t s = now_ns();
    if (!e->put(db, key, KEY_LEN, val, vs)) die(e->name, "put");
    record(s);
  }
  finish("fillrandom", e->name, vs, t0);
  free(perm);
  t0 = now_ns();
  for (uint64_t i = 0; i < (want("overwrite") ? num : 0); i++) {
    key_of(2 * (next_rand() % num), key);
    fill_value(val, vs);
    uint64_t s = now_ns();
    if (!e->put(db, key, KEY_LEN, val, vs)) die(e->name, "put");
    record(s);
  }
  finish("overwrite", e->name, vs, t0);
  space *sp = &spaces[nspaces++];
  snprintf(sp->engine, sizeof sp->engine, "%s", e->name);
  sp->value_size = vs;
  sp->written_bytes = process_wchar() - w0;
  sp->user_bytes = (want("overwrite") ? 2 : 1) * num * (KEY_LEN + vs);
  sp->disk_bytes = dir_bytes(dir);

  bool found;
  t0 = now_ns();
  for (uint64_t i = 0; i < (want("readrandom") ? reads : 0); i++) {
    key_of(2 * (next_rand() % num), key);
    uint64_t s = now_ns();
    if (!e->get(db, key, KEY_LEN, &found) || !found) die(e->name, "readrandom");
    record(s);
  }
  finish("readrandom", e->name, vs, t0);
  t0 = now_ns();
  for (uint64_t i = 0; i < (want("readmissing") ? reads : 0); i++) {
    key_of(2 * (next_rand() % num) + 1, key);
    uint64_t s = now_ns();
    if (!e->get(db, key, KEY_LEN, &found) || found) die(e->name, "readmissing");
    record(s);
  }
  finish("readmissing", e->name, vs, t0);
  t0 = now_ns();
  for (uint64_t i = 0; i < (want("seekrandom") ? reads / 10 : 0); i++) {
    key_of(2 * (next_rand() % num), key);
    int got;
    uint64_t s = now_ns();
    if (!e->scan(db, key, KEY_LEN, SCAN_LEN, &got) || got == 0) die(e->name, "seekrandom");
    record(s);
  }
  finish("seekrandom", e->name, vs, t0);

  zipf z = {0};
  if (want("ycsb-a") || want("ycsb-b") || want("ycsb-c")) zipf_init(&z, num);
  static const struct { const char *name; int read_pct; } mixes[] = {
      {"ycsb-a", 50}, {"ycsb-b", 95}, {"ycsb-c", 100}};
  for (size_t m = 0; m < sizeof mixes / sizeof mixes[0]; m++) {
    t0 = now_ns();
    for (uint64_t i = 0; i < (want(mixes[m].name) ? reads : 0); i++) {
      key_of(2 * zipf_next(&z, &rng_state), key);
      bool is_read = (int)(next_rand() % 100) < mixes[m].read_pct;
      if (!is_read) fill_value(val, vs);
      uint64_t s = now_ns();
      bool ok = is_read ? e->get(db, key, KEY_LEN, &found) : e->put(db, key, KEY_LEN, val, vs);
      if (!ok) die(e->name, mixes[m].name);
      record(s);
    }
    finish(mixes[m].name, e->name, vs, t0);
  }
  e->close(db);
  remove_dir(dir);
  free(val);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The median over repetitions of one (workload, engine, value size): ops/s and
 * latencies each the median of their own. */
static bool find(const char *workload, const char *engine, size_t vs, result *out) {
  double ops[64], p50[64], p99[64];
  int n = 0;
  for (int i = 0; i < nresults && n < 64; i++) {
    const result *r = &results[i];
    if (strcmp(r->workload, workload) == 0 && strcmp(r->engine, engine) == 0 &&
        r->value_size == vs) {
      ops[n] = (double)r->ops / r->secs;
      p50[n] = r->p50_us;
      p99[n] = r->p99_us;
      n++;
    }
  }
  if (n == 0) return false;
  qsort(ops, (size_t)n, sizeof ops[0], cmp_double);
  qsort(p50, (size_t)n, sizeof p50[0], cmp_double);
  qsort(p99, (size_t)n, sizeof p99[0], cmp_double);
  *out = (result){.value_size = vs, .ops = (uint64_t)ops[n / 2], .secs = 1.0,
                  .p50_us = p50[n / 2], .p99_us = p99[n / 2]};
  snprintf(out->workload, sizeof out->workload, "%s", workload);
  snprintf(out->engine, sizeof out->engine, "%s", engine);
  return true;
}

int main(int argc, char **argv) {
  uint64_t num = 1000000, reads = 200000, data_mb = 0;
  int repeat = 1;
  char sizes[64] = "100,1024", engines[64] = "nokv,rocksdb,leveldb", base[256] = "", json[256] = "";
  bench_config cfg = {.block_cache_bytes = 8u << 20, .bloom_bits = 10,
                      .write_buffer_bytes = 64u << 20, .block_size = 4096,
                      .compression = false, .sync = false};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *f = argv[i], *v = argv[i + 1];
    if (strcmp(f, "--num") == 0) num = strtoull(v, NULL, 10);
    else if (strcmp(f, "--reads") == 0) reads = strtoull(v, NULL, 10);
    else if (strcmp(f, "--value_sizes") == 0) snprintf(sizes, sizeof sizes, "%s", v);
    else if (strcmp(f, "--engines") == 0) snprintf(engines, sizeof engines, "%s", v);
    else if (strcmp(f, "--cache_mb") == 0) cfg.block_cache_bytes = strtoull(v, NULL, 10) << 20;
    else if (strcmp(f, "--compression") == 0) cfg.compression = atoi(v) != 0;
    else if (strcmp(f, "--dir") == 0) snprintf(base, sizeof base, "%s", v);
    else if (strcmp(f, "--repeat") == 0) repeat = atoi(v) > 0 && atoi(v) <= 9 ? atoi(v) : 1;
    else if (strcmp(f, "--workloads") == 0) snprintf(workloads_wanted, sizeof workloads_wanted, "%s", v);
    else if (strcmp(f, "--json") == 0) snprintf(json, sizeof json, "%s", v);
    else if (strcmp(f, "--data_mb") == 0) data_mb = strtoull(v, NULL, 10);
    else if (strcmp(f, "--nokv_value_threshold") == 0) cfg.nokv_value_threshold = strtoull(v, NULL, 10);
    else if (strcmp(f, "--nokv_hot_keys") == 0) cfg.nokv_no_hot_keys = atoi(v) == 0;
    else if (strcmp(f, "--nokv_hot_cache") == 0) cfg.nokv_no_hot_cache = atoi(v) == 0;
    else {
      fprintf(stderr, "peer_bench: unknown flag %s\n", f);
      return 2;
    }
  }
  if (base[0] == '\0') snprintf(base, sizeof base, "/tmp/peer-bench-%d", (int)getpid());
  mkdir(base, 0755);
  uint64_t most = num > reads ? num : reads;
  if (data_mb > 0 && (data_mb << 20) / KEY_LEN > most) most = (data_mb << 20) / KEY_LEN;
  lat = malloc(most * sizeof *lat);

  const bench_engine *all[] = {&bench_nokv, &bench_rocksdb, &bench_leveldb}, *use[MAX_ENGINES];
  int nuse = 0;
  for (int i = 0; i < MAX_ENGINES; i++) {
    if (strstr(engines, all[i]->name) != NULL) use[nuse++] = all[i];
  }
  printf("peer_bench: %llu keys of %d bytes, %llu reads, 1 thread, %d repetition%s (medians)\n",
         (unsigned long long)num, KEY_LEN, (unsigned long long)reads, repeat,
         repeat > 1 ? "s" : "");
  printf("settings for every engine: block cache %zu MiB, bloom %d bits/key, write buffer %zu MiB, "
         "block %zu B, compression %s, sync %s\n\n",
         cfg.block_cache_bytes >> 20, cfg.bloom_bits, cfg.write_buffer_bytes >> 20, cfg.block_size,
         cfg.compression ? "on (zstd; LevelDB snappy)" : "off", cfg.sync ? "on" : "off");
  size_t vsizes[8];
  int nvs = 0;
  for (char *p = sizes; *p != '\0' && nvs < 8;) {
    vsizes[nvs++] = strtoul(p, &p, 10);
    if (*p == ',') p++;
  }
  for (int s = 0; s < nvs; s++) {
    uint64_t n = data_mb > 0 ? (data_mb << 20) / (KEY_LEN + vsizes[s]) : num;
    for (int r = 0; r < repeat; r++) {
      for (int e = 0; e < nuse; e++) run_engine(use[e], &cfg, base, n, reads, vsizes[s]);
    }
  }
  rmdir(base);

  static const char *workloads[] = {"fillseq", "fillrandom", "overwrite", "readrandom",
                                    "readmissing", "seekrandom", "ycsb-a", "ycsb-b", "ycsb-c"};
  printf("\n| value | workload | engine | ops/s | p50 us | p99 us | vs rocksdb | vs leveldb |\n");
  printf("|---|---|---|---:|---:|---:|---:|---:|\n");
  for (int s = 0; s < nvs; s++) {
    for (size_t w = 0; w < sizeof workloads / sizeof workloads[0]; w++) {
      result rk, lv, r;
      bool have_rk = find(workloads[w], "rocksdb", vsizes[s], &rk);
      bool have_lv = find(workloads[w], "leveldb", vsizes[s], &lv);
      for (int e = 0; e < nuse; e++) {
        if (!find(workloads[w], use[e]->name, vsizes[s], &r)) continue;
        double ops = (double)r.ops;
        char vr[16] = "", vl[16] = "";
        if (have_rk) snprintf(vr, sizeof vr, "%.2fx", ops / (double)rk.ops);
        if (have_lv) snprintf(vl, sizeof vl, "%.2fx", ops / (double)lv.ops);
        printf("| %zu | %s | %s | %.0f | %.2f | %.2f | %s | %s |\n", vsizes[s], workloads[w],
               r.engine, ops, r.p50_us, r.p99_us, vr, vl);
      }
    }
  }
  printf("\n| value | engine | bytes on disk | written by the process | write amplification | "
         "space amplification |\n");
  printf("|---|---|---:|---:|---:|---:|\n");
  for (int i = 0; i < nspaces; i++) {
    const space *sp = &spaces[i];
    /* The live data is one put per key. */
    double live = (double)sp->user_bytes / (want("overwrite") ? 2 : 1);
    printf("| %zu | %s | %.1f MB | %.1f MB | %.2f | %.2f |\n", sp->value_size, sp->engine,
           sp->disk_bytes / 1e6, sp->written_bytes / 1e6,
           (double)sp->written_bytes / (double)sp->user_bytes, (double)sp->disk_bytes / live);
  }
  printf("(after fillrandom + overwrite; write amplification = bytes written / key+value bytes put)\n");

  if (json[0] != '\0') {
    FILE *f = fopen(json, "w");
    if (f == NULL) {
      perror(json);
      return 1;
    }
    fprintf(f, "{\"num\": %llu, \"reads\": %llu, \"repeat\": %d, \"block_cache_bytes\": %zu, \"bloom_bits\": %d, "
               "\"write_buffer_bytes\": %zu, \"compression\": %s, \"sync\": %s,\n \"results\": [",
            (unsigned long long)num, (unsigned long long)reads, repeat, cfg.block_cache_bytes,
            cfg.bloom_bits, cfg.write_buffer_bytes, cfg.compression ? "true" : "false",
            cfg.sync ? "true" : "false");
    for (int i = 0; i < nresults; i++) {
      const result *r = &results[i];
      fprintf(f, "%s\n  {\"engine\": \"%s\", \"workload\": \"%s\", \"value_size\": %zu, "
                 "\"ops\": %llu, \"ops_per_sec\": %.0f, \"p50_us\": %.2f, \"p99_us\": %.2f}",
              i ? "," : "", r->engine, r->workload, r->value_size, (unsigned long long)r->ops,
              (double)r->ops / r->secs, r->p50_us, r->p99_us);
    }
    fprintf(f, "],\n \"space\": [");
    for (int i = 0; i < nspaces; i++) {
      const space *sp = &spaces[i];
      fprintf(f, "%s\n  {\"engine\": \"%s\", \"value_size\": %zu, \"disk_bytes\": %llu, "
                 "\"written_bytes\": %llu, \"user_bytes\": %llu}",
              i ? "," : "", sp->engine, sp->value_size, (unsigned long long)sp->disk_bytes,
              (unsigned long long)sp->written_bytes, (unsigned long long)sp->user_bytes);
    }
    fprintf(f, "]}\n");
    fclose(f);
  }
  free(lat);
  return 0;
}
