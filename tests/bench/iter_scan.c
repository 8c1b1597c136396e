/*
 * iter_scan — the engine's own speed at reading a whole database in key order
 * through one iterator, the reference for a Scan over gRPC
 * (tests/bench/stream_bench.sh runs both on the same data).
 *
 *   iter_scan DIR [--scans 3]
 *
 * Opens the existing database in DIR with the default options, reads every key
 * and value --scans times (one iterator each) and prints one JSON object: the
 * pairs and key + value bytes of one scan, and the median scan's MB/s.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nokv/nokv.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: iter_scan DIR [--scans N]\n");
    return 2;
  }
  int scans = 3;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--scans") == 0) scans = atoi(argv[i + 1]);
  }
  if (scans < 1 || scans > 99) scans = 3;
  nokv_options o;
  nokv_options_init(&o);
  o.create_if_missing = false;
  nokv_db *db;
  if (nokv_open(argv[1], &o, &db) != NOKV_OK) {
    fprintf(stderr, "iter_scan: open %s: %s\n", argv[1], nokv_errmsg());
    return 1;
  }
  double secs[99];
  uint64_t items = 0, bytes = 0;
  for (int s = 0; s < scans; s++) {
    double t0 = now_s();
    nokv_iter *it;
    if (nokv_iter_new(db, NULL, "", 0, NULL, 0, &it) != NOKV_OK) {
      fprintf(stderr, "iter_scan: %s\n", nokv_errmsg());
      return 1;
    }
    items = bytes = 0;
    for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
      size_t kl, vl;
      nokv_iter_key(it, &kl);
      nokv_iter_value(it, &vl);
      items++;
      bytes += kl + vl;
    }
    if (nokv_iter_status(it) != NOKV_OK) {
      fprintf(stderr, "iter_scan: %s\n", nokv_errmsg());
      return 1;
    }
    nokv_iter_close(it);
    secs[s] = now_s() - t0;
  }
  qsort(secs, (size_t)scans, sizeof secs[0], cmp_double);
  double median = secs[scans / 2];
  printf("{\"label\": \"engine\", \"op\": \"iterate\", \"scans\": %d, \"items\": %llu, "
         "\"bytes\": %llu, \"seconds\": %.4f, \"mb_per_s\": %.1f}\n",
         scans, (unsigned long long)items, (unsigned long long)bytes, median,
         (double)bytes / median / 1e6);
  nokv_close(db);
  return 0;
}
