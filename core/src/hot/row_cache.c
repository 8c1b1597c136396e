/* row_cache.c — the hot-read cache (row_cache.h) over the engine's sharded LRU. */
#include "hot/row_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/cache.h"

#define GUARDS 64

typedef struct guard {
  pthread_mutex_t mu;          /* fills and writers' entry removal */
  _Atomic uint64_t gen;        /* bumped as each write begins and ends */
  _Atomic uint64_t pending;    /* writes begun, not ended */
} guard;

typedef struct entry {
  struct nk_row_cache *owner;
  uint64_t ts;
  uint64_t era;  /* the cache's era when filled: an older one is stale */
  size_t klen, vlen;
  char data[];  /* key, then value */
} entry;

struct nk_row_cache {
  nk_cache *lru;
  size_t max_value;
  _Atomic uint64_t hits, misses, fills, refused;
  _Atomic uint64_t entries;  /* 0: a lookup is skipped (no hot key cached) */
  _Atomic uint64_t era;      /* bumped by drop_all */
  guard guards[GUARDS];
};

nk_row_cache *nk_row_cache_new(size_t capacity) {
  nk_row_cache *c = calloc(1, sizeof *c);
  if (c == NULL || (c->lru = nk_cache_new(capacity, 4)) == NULL) {
    free(c);
    return NULL;
  }
  c->max_value = capacity / 64;
  for (int i = 0; i < GUARDS; i++) pthread_mutex_init(&c->guards[i].mu, NULL);
  return c;
}

void nk_row_cache_free(nk_row_cache *c) {
  if (c == NULL) return;
  nk_cache_free(c->lru);
  for (int i = 0; i < GUARDS; i++) pthread_mutex_destroy(&c->guards[i].mu);
  free(c);
}

static void entry_free(void *p) {
  entry *e = p;
  atomic_fetch_sub_explicit(&e->owner->entries, 1, memory_order_relaxed);
  free(e);
}

static guard *guard_of(nk_row_cache *c, uint64_t hash) { return &c->guards[(hash >> 40) % GUARDS]; }

/* The LRU's key: the hash, and a second hash of it (the entry holds the key,
 * checked on every hit). */
static uint64_t second(uint64_t hash) { return hash * 0x9e3779b97f4a7c15ull ^ (hash >> 31); }

bool nk_row_cache_get(nk_row_cache *c, const void *key, size_t klen, uint64_t hash,
                      uint64_t read_ts, void **val, size_t *vlen, uint64_t *ts) {
  if (atomic_load_explicit(&c->entries, memory_order_relaxed) == 0) return false;
  nk_cache_handle *h = nk_cache_lookup(c->lru, hash, second(hash));
  bool hit = false;
  if (h != NULL) {
    const entry *e = nk_cache_value(h);
    if (e->klen == klen && memcmp(e->data, key, klen) == 0 && e->ts <= read_ts &&
        e->era == atomic_load(&c->era) &&
        (*val = malloc(e->vlen ? e->vlen : 1)) != NULL) {
      memcpy(*val, e->data + klen, e->vlen);
      *vlen = e->vlen;
      *ts = e->ts;
      hit = true;
    }
    nk_cache_release(c->lru, h);
  }
  atomic_fetch_add_explicit(hit ? &c->hits : &c->misses, 1, memory_order_relaxed);
  return hit;
}

uint64_t nk_row_cache_ticket(nk_row_cache *c, uint64_t hash) {
  return atomic_load(&guard_of(c, hash)->gen);
}

void nk_row_cache_fill(nk_row_cache *c, const void *key, size_t klen, uint64_t hash,
                       uint64_t ticket, const void *val, size_t vlen, uint64_t ts) {
  if (vlen > c->max_value) return;
  entry *e = malloc(sizeof *e + klen + vlen);
  if (e == NULL) return;
  e->owner = c;
  e->ts = ts;
  e->klen = klen;
  e->vlen = vlen;
  memcpy(e->data, key, klen);
  memcpy(e->data + klen, val, vlen);
  guard *g = guard_of(c, hash);
  pthread_mutex_lock(&g->mu);
  /* Counted first, checked after (all sequentially consistent): a writer
   * counting itself pending meanwhile either is seen here, or sees an entry
   * may exist and removes it under the lock (drop). Pending is read before the
   * generation: a write that ends (generation, then pending) between the two
   * reads would otherwise pass both. */
  atomic_fetch_add(&c->entries, 1);
  bool pending = atomic_load(&g->pending) != 0;
  if (pending || atomic_load(&g->gen) != ticket) {
    atomic_fetch_sub(&c->entries, 1);
    pthread_mutex_unlock(&g->mu);
    free(e);
    atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
    return;
  }
  e->era = atomic_load(&c->era);
  nk_cache_handle *h =
      nk_cache_insert(c->lru, hash, second(hash), e, sizeof *e + klen + vlen, entry_free);
  pthread_mutex_unlock(&g->mu);
  if (h != NULL) nk_cache_release(c->lru, h);
  atomic_fetch_add_explicit(&c->fills, 1, memory_order_relaxed);
}

uint64_t nk_row_cache_guard_bit(uint64_t hash) { return 1ull << ((hash >> 40) % GUARDS); }

void nk_row_cache_begin_write(nk_row_cache *c, uint64_t guards) {
  for (int i = 0; i < GUARDS; i++) {
    if ((guards >> i & 1) == 0) continue;
    atomic_fetch_add(&c->guards[i].pending, 1);
    atomic_fetch_add(&c->guards[i].gen, 1);
  }
}

/* With nothing cached (the usual case on uniform keys) the writer takes no
 * lock and drops nothing. Read after begin_write's counts (both sequentially
 * consistent), so a fill that passed its check meanwhile is seen here. */
bool nk_row_cache_holds_any(nk_row_cache *c) { return atomic_load(&c->entries) != 0; }

void nk_row_cache_drop(nk_row_cache *c, uint64_t hash) {
  guard *g = guard_of(c, hash);
  pthread_mutex_lock(&g->mu);  /* after any fill that passed its check */
  nk_cache_erase(c->lru, hash, second(hash));
  pthread_mutex_unlock(&g->mu);
}

void nk_row_cache_drop_all(nk_row_cache *c) { atomic_fetch_add(&c->era, 1); }

void nk_row_cache_end_write(nk_row_cache *c, uint64_t guards) {
  for (int i = 0; i < GUARDS; i++) {
    if ((guards >> i & 1) == 0) continue;
    atomic_fetch_add(&c->guards[i].gen, 1);  /* before pending drops: a fill seeing 0 sees this */
    atomic_fetch_sub(&c->guards[i].pending, 1);
  }
}

void nk_row_cache_get_stats(nk_row_cache *c, nk_row_cache_stats *s) {
  nk_cache_stats cs;
  nk_cache_get_stats(c->lru, &cs);
  *s = (nk_row_cache_stats){.hits = atomic_load(&c->hits), .misses = atomic_load(&c->misses),
                            .fills = atomic_load(&c->fills), .fills_refused = atomic_load(&c->refused),
                            .usage = cs.usage, .capacity = cs.capacity};
}
