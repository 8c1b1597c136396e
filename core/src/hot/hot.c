/* hot.c — the hot-key tracker (hot.h): count-min sketches in a sliding window,
 * and per-shard candidate sets. */
#define _GNU_SOURCE
#include "hot/hot.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nokv/status.h"
#include "util/error.h"

#define DEPTH 4            /* sketch rows */
#define SHARDS 16          /* candidate sets */
#define SLOTS 32           /* candidates per set */
#define MIN_WIDTH 1024u

typedef struct slot {
  _Atomic uint64_t hash;   /* 0: empty */
  size_t klen;             /* the key's whole length */
  char key[NOKV_HOT_KEY_MAX];
} slot;

typedef struct shard {
  pthread_mutex_t mu;      /* writers of slots; readers of key bytes */
  _Atomic uint64_t floor;  /* a newcomer must estimate above this (0: not full) */
  slot slots[SLOTS];
} shard;

/* One kind: two sketch generations, the newer one counting. */
typedef struct tracker {
  _Atomic uint32_t *gen[2]; /* DEPTH rows of width counters each */
  _Atomic uint64_t samples;
  shard shards[SHARDS];
} tracker;

struct nk_hot {
  uint64_t (*now_ms)(void);
  uint32_t width;          /* a power of two */
  size_t bytes;
  /* The window counting now starts at window_start; gen[cur] counts it and
   * gen[cur ^ 1] holds the one before. Both advance under rotate_mu. */
  _Atomic uint64_t window_start;
  _Atomic unsigned cur;
  pthread_mutex_t rotate_mu;
  tracker kinds[2];
};

static uint64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool nk_hot_sampled(void) {
  static _Thread_local uint32_t tick;
  return ++tick % NK_HOT_SAMPLE == 0;
}

nk_hot *nk_hot_new(const nk_hot_options *o) {
  nk_hot *h = calloc(1, sizeof *h);
  if (h == NULL) return NULL;
  h->now_ms = o->now_ms != NULL ? o->now_ms : monotonic_ms;
  /* Candidates are fixed; the sketches get the rest: 2 kinds x 2 generations
   * x DEPTH rows, a power-of-two width. */
  size_t fixed = sizeof *h;
  size_t per_row = o->budget_bytes > fixed ? (o->budget_bytes - fixed) / (2 * 2 * DEPTH) : 0;
  uint32_t width = MIN_WIDTH;
  while ((size_t)width * 2 * sizeof(uint32_t) <= per_row && width < (1u << 26)) width *= 2;
  h->width = width;
  h->bytes = fixed + (size_t)2 * 2 * DEPTH * width * sizeof(uint32_t);
  pthread_mutex_init(&h->rotate_mu, NULL);
  atomic_init(&h->window_start, h->now_ms());
  for (int k = 0; k < 2; k++) {
    tracker *t = &h->kinds[k];
    for (int g = 0; g < 2; g++) {
      t->gen[g] = calloc((size_t)DEPTH * width, sizeof(uint32_t));
      if (t->gen[g] == NULL) {
        nk_hot_free(h);
        return NULL;
      }
    }
    for (int s = 0; s < SHARDS; s++) pthread_mutex_init(&t->shards[s].mu, NULL);
  }
  return h;
}

void nk_hot_set_clock(nk_hot *h, uint64_t (*now_ms)(void)) {
  h->now_ms = now_ms;
  atomic_store(&h->window_start, now_ms());
}

void nk_hot_free(nk_hot *h) {
  if (h == NULL) return;
  for (int k = 0; k < 2; k++) {
    tracker *t = &h->kinds[k];
    for (int g = 0; g < 2; g++) free((void *)t->gen[g]);
    for (int s = 0; s < SHARDS; s++) pthread_mutex_destroy(&t->shards[s].mu);
  }
  pthread_mutex_destroy(&h->rotate_mu);
  free(h);
}

/* Row r's counter index for hash: rows use independent bits of a remix. */
static uint32_t cell(const nk_hot *h, uint64_t hash, int r) {
  uint64_t x = hash * (0x9e3779b97f4a7c15ull + 2 * (uint64_t)r);
  x ^= x >> 29;
  return (uint32_t)(r * h->width + ((uint32_t)(x >> 32) & (h->width - 1)));
}

/* Zeroes a generation; touches may race with it (one sample lost or kept). */
static void clear(const nk_hot *h, _Atomic uint32_t *gen) {
  size_t n = (size_t)DEPTH * h->width;
  for (size_t i = 0; i < n; i++) atomic_store_explicit(&gen[i], 0, memory_order_relaxed);
}

/* Moves the window on if it has ended: the older generation is cleared and
 * starts counting; after two windows of silence both are clear. */
static void maybe_rotate(nk_hot *h, uint64_t now) {
  uint64_t start = atomic_load_explicit(&h->window_start, memory_order_acquire);
  if (now < start + NK_HOT_WINDOW_MS) return;
  if (pthread_mutex_trylock(&h->rotate_mu) != 0) return;  /* someone is at it */
  start = atomic_load(&h->window_start);
  uint64_t windows = now >= start ? (now - start) / NK_HOT_WINDOW_MS : 0;
  if (windows > 0) {
    unsigned cur = atomic_load(&h->cur);
    for (int k = 0; k < 2; k++) {
      tracker *t = &h->kinds[k];
      clear(h, t->gen[cur ^ 1]);
      if (windows > 1) clear(h, t->gen[cur]);  /* the last one is old too */
      /* Estimates fell: let newcomers in until the floors are measured again. */
      for (int s = 0; s < SHARDS; s++) atomic_store(&t->shards[s].floor, 0);
    }
    atomic_store(&h->cur, cur ^ 1);
    atomic_store_explicit(&h->window_start, start + windows * NK_HOT_WINDOW_MS,
                          memory_order_release);
  }
  pthread_mutex_unlock(&h->rotate_mu);
}

/* The count over one window back from now: the current window's plus the
 * previous one's share still inside it. */
static uint64_t estimate_at(nk_hot *h, const tracker *t, uint64_t hash, uint64_t now) {
  unsigned cur = atomic_load_explicit(&h->cur, memory_order_acquire);
  uint64_t start = atomic_load_explicit(&h->window_start, memory_order_acquire);
  uint64_t elapsed = now > start ? now - start : 0;
  if (elapsed > NK_HOT_WINDOW_MS) elapsed = NK_HOT_WINDOW_MS;
  uint64_t c = UINT64_MAX, p = UINT64_MAX;
  for (int r = 0; r < DEPTH; r++) {
    uint32_t i = cell(h, hash, r);
    uint64_t vc = atomic_load_explicit(&t->gen[cur][i], memory_order_relaxed);
    uint64_t vp = atomic_load_explicit(&t->gen[cur ^ 1][i], memory_order_relaxed);
    if (vc < c) c = vc;
    if (vp < p) p = vp;
  }
  return c + p * (NK_HOT_WINDOW_MS - elapsed) / NK_HOT_WINDOW_MS;
}

uint64_t nk_hot_estimate(nk_hot *h, nokv_hot_kind kind, uint64_t hash) {
  uint64_t now = h->now_ms();
  maybe_rotate(h, now);
  return estimate_at(h, &h->kinds[kind], hash | 1, now);
}

/* Takes key into the shard if it estimates above the smallest candidate.
 * REQUIRES: sh->mu held. */
static void admit(nk_hot *h, tracker *t, shard *sh, const char *key, size_t klen, uint64_t hash,
                  uint64_t est, uint64_t now) {
  int victim = -1;
  uint64_t least = UINT64_MAX, second = UINT64_MAX;
  for (int i = 0; i < SLOTS; i++) {
    uint64_t sh_hash = atomic_load_explicit(&sh->slots[i].hash, memory_order_relaxed);
    if (sh_hash == hash) return;  /* it got in meanwhile */
    uint64_t e = sh_hash == 0 ? 0 : estimate_at(h, t, sh_hash, now);
    if (e < least) {
      second = least;
      least = e;
      victim = i;
    } else if (e < second) {
      second = e;
    }
  }
  if (victim < 0 || est <= least) {
    atomic_store(&sh->floor, least);
    return;
  }
  slot *s = &sh->slots[victim];
  atomic_store_explicit(&s->hash, 0, memory_order_release);  /* readers skip it */
  s->klen = klen;
  memcpy(s->key, key, klen < NOKV_HOT_KEY_MAX ? klen : NOKV_HOT_KEY_MAX);
  atomic_store_explicit(&s->hash, hash, memory_order_release);
  /* The next newcomer must beat the smaller of the new key and the rest. */
  atomic_store(&sh->floor, est < second ? est : second);
}

void nk_hot_touch(nk_hot *h, nokv_hot_kind kind, const char *key, size_t klen, uint64_t hash,
                  uint32_t weight) {
  tracker *t = &h->kinds[kind];
  hash |= 1;  /* 0 marks an empty slot */
  uint64_t now = h->now_ms();
  maybe_rotate(h, now);
  unsigned cur = atomic_load_explicit(&h->cur, memory_order_acquire);
  _Atomic uint32_t *gen = t->gen[cur];
  uint32_t c = UINT32_MAX;
  for (int r = 0; r < DEPTH; r++) {
    _Atomic uint32_t *p = &gen[cell(h, hash, r)];
    uint32_t v = atomic_load_explicit(p, memory_order_relaxed) + weight;
    atomic_store_explicit(p, v, memory_order_relaxed);
    if (v < c) c = v;
  }
  atomic_store_explicit(&t->samples, atomic_load_explicit(&t->samples, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  /* Most touches stop here. The current window's count is compared, not the
   * whole estimate (at least as large): a key that hot enters a window later
   * at worst, when its count in the new window passes the floor (floors are
   * reset as windows turn). */
  shard *sh = &t->shards[(hash >> 32) % SHARDS];
  if (c <= atomic_load_explicit(&sh->floor, memory_order_relaxed)) return;
  uint64_t est = estimate_at(h, t, hash, now);
  for (int i = 0; i < SLOTS; i++) {
    if (atomic_load_explicit(&sh->slots[i].hash, memory_order_relaxed) == hash) return;
  }
  if (pthread_mutex_trylock(&sh->mu) != 0) return;  /* a later touch will try again */
  admit(h, t, sh, key, klen, hash, est, now);
  pthread_mutex_unlock(&sh->mu);
}

static int by_count_desc(const void *a, const void *b) {
  double x = ((const nokv_hot_key *)a)->per_sec, y = ((const nokv_hot_key *)b)->per_sec;
  return x < y ? 1 : x > y ? -1 : 0;
}

int nk_hot_top(nk_hot *h, nokv_hot_kind kind, size_t n, uint64_t min_count, nokv_hot_key *out,
               size_t *count) {
  tracker *t = &h->kinds[kind];
  uint64_t now = h->now_ms();
  maybe_rotate(h, now);
  *count = 0;
  nokv_hot_key *all = malloc(sizeof *all * SHARDS * SLOTS);
  if (all == NULL) return nk_err(NOKV_ENOMEM, "out of memory listing hot keys");
  size_t m = 0;
  for (int s = 0; s < SHARDS; s++) {
    shard *sh = &t->shards[s];
    pthread_mutex_lock(&sh->mu);
    for (int i = 0; i < SLOTS; i++) {
      uint64_t hash = atomic_load(&sh->slots[i].hash);
      if (hash == 0) continue;
      uint64_t est = estimate_at(h, t, hash, now);
      if (est < min_count || est == 0) continue;
      nokv_hot_key *k = &all[m++];
      k->klen = sh->slots[i].klen;
      memcpy(k->key, sh->slots[i].key, k->klen < NOKV_HOT_KEY_MAX ? k->klen : NOKV_HOT_KEY_MAX);
      k->per_sec = (double)est * 1000.0 / NK_HOT_WINDOW_MS;
    }
    pthread_mutex_unlock(&sh->mu);
  }
  qsort(all, m, sizeof *all, by_count_desc);
  if (m > n) m = n;
  memcpy(out, all, m * sizeof *all);
  free(all);
  *count = m;
  return NOKV_OK;
}

void nk_hot_get_stats(nk_hot *h, nk_hot_stats *s) {
  memset(s, 0, sizeof *s);
  for (int k = 0; k < 2; k++) {
    tracker *t = &h->kinds[k];
    s->samples[k] = atomic_load_explicit(&t->samples, memory_order_relaxed);
    for (int sh = 0; sh < SHARDS; sh++) {
      for (int i = 0; i < SLOTS; i++) {
        if (atomic_load_explicit(&t->shards[sh].slots[i].hash, memory_order_relaxed) != 0) {
          s->candidates[k]++;
        }
      }
    }
  }
  s->bytes = h->bytes;
}
