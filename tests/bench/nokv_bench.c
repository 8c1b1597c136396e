/*
 * nokv_bench — single-threaded throughput of the engine: fillrandom then
 * readrandom (hits) over 16-byte keys and 100-byte values, sync off.
 *
 *   bazel run --config=opt //tests/bench:nokv_bench -- [--num N] [--dir DIR]
 *
 * Later versions compare against RocksDB and LevelDB in the same run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nokv/nokv.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_rand(uint64_t *s) {  /* splitmix64 */
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void key_of(uint64_t i, char key[16]) { snprintf(key, 17, "%016llx", (unsigned long long)i); }

static void die(const char *what) {
  fprintf(stderr, "nokv_bench: %s: %s\n", what, nokv_errmsg());
  exit(1);
}

int main(int argc, char **argv) {
  long num = 500000;
  char dir[256];
  snprintf(dir, sizeof dir, "/tmp/nokv-bench-%d", (int)getpid());
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--num") == 0) num = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--dir") == 0) snprintf(dir, sizeof dir, "%s", argv[i + 1]);
  }
  nokv_options o;
  nokv_options_init(&o);
  o.memtable_max_bytes = (size_t)1 << 30;
  o.error_if_exists = true;
  nokv_db *db;
  if (nokv_open(dir, &o, &db) != NOKV_OK) die("open");

  char key[17], val[100];
  memset(val, 'v', sizeof val);
  uint64_t seed = 42;
  double t0 = now();
  for (long i = 0; i < num; i++) {
    key_of(next_rand(&seed) % (uint64_t)num, key);
    if (nokv_put(db, NULL, key, 16, val, sizeof val, NULL) != NOKV_OK) die("put");
  }
  double fill = now() - t0;

  seed = 42;  /* replay the same keys: every read hits */
  t0 = now();
  long found = 0;
  for (long i = 0; i < num; i++) {
    key_of(next_rand(&seed) % (uint64_t)num, key);
    void *v;
    size_t vl;
    if (nokv_get(db, NULL, key, 16, &v, &vl, NULL) == NOKV_OK) {
      found++;
      nokv_free(v);
    }
  }
  double read = now() - t0;
  if (found != num) {
    fprintf(stderr, "nokv_bench: %ld of %ld reads found their key\n", found, num);
    return 1;
  }
  printf("settings: 16-byte keys, 100-byte values, %ld ops, 1 thread, sync off, memtable only\n", num);
  printf("fillrandom  %10.0f ops/s  %7.2f us/op\n", num / fill, fill * 1e6 / num);
  printf("readrandom  %10.0f ops/s  %7.2f us/op\n", num / read, read * 1e6 / num);
  nokv_close(db);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : 1;
}
