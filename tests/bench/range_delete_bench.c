/*
 * range_delete_bench — deleting a range of keys by range vs key by key, in
 * NoKV-C, RocksDB (both with their range deletion) and LevelDB (key by key
 * only), through the peer_bench adapters (engine.h), in one run.
 *
 *   range_delete_bench DIR [--keys 1000000] [--value 100] [--gets 100000]
 *
 * For each engine and method: load --keys keys in order (16-byte keys, --value
 * byte values) and one key after them, then measure
 *   delete   the time to delete all --keys keys (one range deletion, or one
 *            delete per key);
 *   get      random Gets of deleted keys (each finds nothing), per second;
 *   next key the time an iterator takes from the range's start to the one key
 *            left after it (stepping over what the deletion hides);
 *   compact  a full compaction, and the bytes on disk after it.
 * Prints a markdown table.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench_util.h"
#include "engine.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t dir_bytes(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  uint64_t total = 0;
  struct dirent *e;
  char path[1024];
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    if (strlen(dir) + strlen(e->d_name) + 2 > sizeof path) continue;
    strcpy(path, dir);
    strcat(path, "/");
    strcat(path, e->d_name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) total += (uint64_t)st.st_size;
  }
  closedir(d);
  return total;
}

/* 16 decimal digits (i below 10^16), no terminator needed. */
static void key_of(uint64_t i, char *k) {
  for (int d = 15; d >= 0; d--, i /= 10) k[d] = (char)('0' + i % 10);
}

static int run(const bench_engine *e, bool by_range, const char *base, uint64_t n, size_t vlen,
               uint64_t gets) {
  char dir[512];
  if (strlen(base) > 400) return 1;
  snprintf(dir, sizeof dir, "%s/%s-%s", base, e->name, by_range ? "range" : "keys");
  remove_dir(dir);
  bench_config cfg = {.block_cache_bytes = 64u << 20, .bloom_bits = 10,
                      .write_buffer_bytes = 64u << 20, .block_size = 4096,
                      .compression = false, .sync = false};
  void *db = e->open(dir, &cfg);
  if (db == NULL) return 1;
  char *val = malloc(vlen ? vlen : 1);
  memset(val, 'v', vlen);
  char k[17], end[17];
  double t0 = now_s();
  for (uint64_t i = 0; i < n; i++) {
    key_of(i, k);
    if (!e->put(db, k, 16, val, vlen)) return 1;
  }
  key_of(n, end);
  if (!e->put(db, "z", 1, val, vlen)) return 1;
  double load = now_s() - t0;

  t0 = now_s();
  key_of(0, k);
  if (by_range) {
    if (!e->delete_range(db, k, 16, end, 16)) return 1;
  } else {
    for (uint64_t i = 0; i < n; i++) {
      key_of(i, k);
      if (!e->del(db, k, 16)) return 1;
    }
  }
  double del = now_s() - t0;

  uint64_t rng = 42;
  t0 = now_s();
  for (uint64_t i = 0; i < gets; i++) {
    key_of(bench_splitmix(&rng) % n, k);
    bool found;
    if (!e->get(db, k, 16, &found) || found) {
      fprintf(stderr, "%s: a deleted key was found\n", e->name);
      return 1;
    }
  }
  double get = now_s() - t0;

  key_of(0, k);
  int got = 0;
  t0 = now_s();
  if (!e->scan(db, k, 16, 1, &got) || got != 1) {
    fprintf(stderr, "%s: the scan found %d keys, not the one after the range\n", e->name, got);
    return 1;
  }
  double next = now_s() - t0;

  t0 = now_s();
  if (!e->compact(db)) return 1;
  double compact = now_s() - t0;
  uint64_t bytes = dir_bytes(dir);
  t0 = now_s();
  if (!e->scan(db, k, 16, 1, &got) || got != 1) return 1;
  double next_after = now_s() - t0;
  e->close(db);
  remove_dir(dir);
  free(val);
  printf("| %s | %s | %.2f | %.3f | %.0f | %.2f | %.3f | %.2f | %.1f |\n", e->name,
         by_range ? "range" : "by key", load, del * 1e3, (double)gets / get, next * 1e3,
         next_after * 1e3, compact, (double)bytes / 1e6);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: range_delete_bench DIR [--keys N] [--value BYTES] [--gets N]\n");
    return 2;
  }
  uint64_t n = 1000000, gets = 100000;
  size_t vlen = 100;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--keys") == 0) n = strtoull(argv[i + 1], NULL, 10);
    if (strcmp(argv[i], "--value") == 0) vlen = strtoull(argv[i + 1], NULL, 10);
    if (strcmp(argv[i], "--gets") == 0) gets = strtoull(argv[i + 1], NULL, 10);
  }
  mkdir(argv[1], 0755);  /* may exist */
  printf("%llu keys of 16 bytes, %zu-byte values, then deleted; %llu Gets of deleted keys\n\n",
         (unsigned long long)n, vlen, (unsigned long long)gets);
  printf("| engine | method | load s | delete ms | gets/s (deleted) | next key ms | "
         "next key after compaction ms | compact s | disk MB after |\n");
  printf("|---|---|---|---|---|---|---|---|---|\n");
  const bench_engine *engines[] = {&bench_nokv, &bench_rocksdb, &bench_leveldb};
  for (size_t i = 0; i < 3; i++) {
    for (int by_range = 1; by_range >= 0; by_range--) {
      if (by_range && engines[i]->delete_range == NULL) continue;
      if (run(engines[i], by_range, argv[1], n, vlen, gets) != 0) return 1;
    }
  }
  return 0;
}
