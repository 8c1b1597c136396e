/*
 * bench_util.h — what the C benchmarks share: splitmix64, YCSB's scrambled
 * zipfian (theta 0.99) and removing a scratch database directory.
 */
#ifndef NOKV_BENCH_BENCH_UTIL_H
#define NOKV_BENCH_BENCH_UTIL_H

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static inline uint64_t bench_splitmix(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

typedef struct zipf {
  uint64_t n;
  double theta, alpha, zetan, eta;
} zipf;

static inline void zipf_init(zipf *z, uint64_t n) {
  z->n = n;
  z->theta = 0.99;
  double zeta2 = 1.0 + pow(0.5, z->theta);
  z->zetan = 0;
  for (uint64_t i = 1; i <= n; i++) z->zetan += 1.0 / pow((double)i, z->theta);
  z->alpha = 1.0 / (1.0 - z->theta);
  z->eta = (1.0 - pow(2.0 / (double)n, 1.0 - z->theta)) / (1.0 - zeta2 / z->zetan);
}

/* A zipfian rank in [0, n), scrambled (FNV-1a of the rank) so the hot keys
 * spread over the key space. */
static inline uint64_t zipf_next(const zipf *z, uint64_t *rng) {
  double u = (double)(bench_splitmix(rng) >> 11) / 9007199254740992.0;
  double uz = u * z->zetan;
  uint64_t r;
  if (uz < 1.0) {
    r = 0;
  } else if (uz < 1.0 + pow(0.5, z->theta)) {
    r = 1;
  } else {
    r = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1.0, z->alpha));
  }
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < 8; i++) h = (h ^ ((r >> (8 * i)) & 0xff)) * 0x100000001b3ull;
  return h % z->n;
}

/* Deletes the files of a (flat) database directory, then the directory. */
static inline void remove_dir(const char *path) {
  DIR *d = opendir(path);
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    unlink(p);
  }
  if (d != NULL) closedir(d);
  rmdir(path);
}

#endif /* NOKV_BENCH_BENCH_UTIL_H */
