/*
 * cache.c — sharded LRU. Each shard: a chained hash table of entries, an LRU
 * list of entries only the cache holds (evictable, oldest first) and an in-use
 * list of pinned ones. An entry's refs count the cache's own reference (while it
 * is in the table) plus one per pin.
 */
#include "util/cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "util/checksum.h"

struct nk_cache_handle {
  uint64_t id, off;
  void *value;
  nk_cache_deleter deleter;
  size_t charge;
  uint32_t refs;
  bool in_cache;
  struct nk_cache_handle *hnext;        /* hash chain */
  struct nk_cache_handle *prev, *next;  /* lru or in-use list */
};

typedef struct shard {
  pthread_mutex_t mu;
  size_t capacity, usage;
  nk_cache_handle **buckets;
  size_t nbuckets, count;
  nk_cache_handle lru, in_use;  /* list heads */
  /* Entries whose last reference went, chained by hnext: their deleters run
   * after mu is released (closing an evicted table unmaps and closes its
   * file; no other reader of the shard should wait for that). */
  nk_cache_handle *dead;
  uint64_t hits, misses, inserts, evictions;
} shard;

struct nk_cache {
  unsigned shard_bits;
  shard *shards;
  atomic_uint_fast64_t next_id;
};

static void list_remove(nk_cache_handle *e) {
  e->next->prev = e->prev;
  e->prev->next = e->next;
}

static void list_append(nk_cache_handle *head, nk_cache_handle *e) {
  e->next = head;
  e->prev = head->prev;
  e->prev->next = e;
  e->next->prev = e;
}

static uint64_t key_hash(uint64_t id, uint64_t off) {
  uint64_t k[2] = {id, off};
  return nk_hash64(k, sizeof k);
}

nk_cache *nk_cache_new(size_t capacity, unsigned shard_bits) {
  nk_cache *c = calloc(1, sizeof *c);
  size_t n = (size_t)1 << shard_bits;
  if (c == NULL || (c->shards = calloc(n, sizeof *c->shards)) == NULL) {
    free(c);
    return NULL;
  }
  c->shard_bits = shard_bits;
  atomic_init(&c->next_id, 1);
  for (size_t i = 0; i < n; i++) {
    shard *s = &c->shards[i];
    pthread_mutex_init(&s->mu, NULL);
    s->capacity = (capacity + n - 1) / n;
    s->lru.next = s->lru.prev = &s->lru;
    s->in_use.next = s->in_use.prev = &s->in_use;
    s->nbuckets = 64;
    s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
    if (s->buckets == NULL) {
      c->shard_bits = 0;  /* free only what was set up */
      for (size_t j = 0; j <= i; j++) free(c->shards[j].buckets);
      free(c->shards);
      free(c);
      return NULL;
    }
  }
  return c;
}

static shard *shard_of(nk_cache *c, uint64_t h) {
  return &c->shards[c->shard_bits ? h >> (64 - c->shard_bits) : 0];
}

static nk_cache_handle **find_slot(shard *s, uint64_t h, uint64_t id, uint64_t off) {
  nk_cache_handle **p = &s->buckets[h & (s->nbuckets - 1)];
  while (*p != NULL && ((*p)->id != id || (*p)->off != off)) p = &(*p)->hnext;
  return p;
}

static void grow(shard *s) {
  size_t n = s->nbuckets * 2;
  nk_cache_handle **b = calloc(n, sizeof *b);
  if (b == NULL) return;  /* longer chains, still correct */
  for (size_t i = 0; i < s->nbuckets; i++) {
    for (nk_cache_handle *e = s->buckets[i], *next; e != NULL; e = next) {
      next = e->hnext;
      nk_cache_handle **p = &b[key_hash(e->id, e->off) & (n - 1)];
      e->hnext = *p;
      *p = e;
    }
  }
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = n;
}

/* Drops one reference; the last one moves e to the dead list (unlock_shard
 * deletes it). REQUIRES: s->mu held. */
static void unref(shard *s, nk_cache_handle *e) {
  e->refs--;
  if (e->refs == 0) {
    e->hnext = s->dead;
    s->dead = e;
  } else if (e->in_cache && e->refs == 1) {
    list_remove(e);  /* from in-use to lru */
    list_append(&s->lru, e);
  }
}

/* Releases mu, then runs the deleters of the entries that died under it. */
static void unlock_shard(shard *s) {
  nk_cache_handle *dead = s->dead;
  s->dead = NULL;
  pthread_mutex_unlock(&s->mu);
  while (dead != NULL) {
    nk_cache_handle *next = dead->hnext;
    dead->deleter(dead->value);
    free(dead);
    dead = next;
  }
}

static void ref(shard *s, nk_cache_handle *e) {
  if (e->refs == 1 && e->in_cache) {
    list_remove(e);
    list_append(&s->in_use, e);
  }
  e->refs++;
}

/* Takes e out of the table and lists. REQUIRES: mu held, e in cache. */
static void detach(shard *s, nk_cache_handle *e) {
  list_remove(e);
  e->in_cache = false;
  s->usage -= e->charge;
  s->count--;
  unref(s, e);
}

/* Takes the entry of (id, off), if any, out of the cache. REQUIRES: mu held. */
static void remove_key(shard *s, uint64_t h, uint64_t id, uint64_t off) {
  nk_cache_handle **slot = find_slot(s, h, id, off);
  nk_cache_handle *e = *slot;
  if (e != NULL) {
    *slot = e->hnext;
    detach(s, e);
  }
}

nk_cache_handle *nk_cache_lookup(nk_cache *c, uint64_t id, uint64_t off) {
  uint64_t h = key_hash(id, off);
  shard *s = shard_of(c, h);
  pthread_mutex_lock(&s->mu);
  nk_cache_handle *e = *find_slot(s, h, id, off);
  if (e != NULL) {
    ref(s, e);
    s->hits++;
  } else {
    s->misses++;
  }
  pthread_mutex_unlock(&s->mu);
  return e;
}

nk_cache_handle *nk_cache_insert(nk_cache *c, uint64_t id, uint64_t off, void *value,
                                 size_t charge, nk_cache_deleter deleter) {
  nk_cache_handle *e = malloc(sizeof *e);
  if (e == NULL) {
    deleter(value);
    return NULL;
  }
  *e = (nk_cache_handle){.id = id, .off = off, .value = value, .deleter = deleter,
                         .charge = charge, .refs = 2, .in_cache = true};
  uint64_t h = key_hash(id, off);
  shard *s = shard_of(c, h);
  pthread_mutex_lock(&s->mu);
  remove_key(s, h, id, off);
  e->hnext = NULL;
  *find_slot(s, h, id, off) = e;
  list_append(&s->in_use, e);
  s->usage += charge;
  s->count++;
  s->inserts++;
  while (s->usage > s->capacity && s->lru.next != &s->lru) {
    nk_cache_handle *victim = s->lru.next;
    remove_key(s, key_hash(victim->id, victim->off), victim->id, victim->off);
    s->evictions++;
  }
  if (s->count > s->nbuckets) grow(s);
  unlock_shard(s);
  return e;
}

void *nk_cache_value(const nk_cache_handle *h) { return h->value; }

void nk_cache_release(nk_cache *c, nk_cache_handle *h) {
  shard *s = shard_of(c, key_hash(h->id, h->off));
  pthread_mutex_lock(&s->mu);
  unref(s, h);
  unlock_shard(s);
}

void nk_cache_erase(nk_cache *c, uint64_t id, uint64_t off) {
  uint64_t h = key_hash(id, off);
  shard *s = shard_of(c, h);
  pthread_mutex_lock(&s->mu);
  remove_key(s, h, id, off);
  unlock_shard(s);
}

uint64_t nk_cache_new_id(nk_cache *c) { return atomic_fetch_add(&c->next_id, 1); }

void nk_cache_get_stats(nk_cache *c, nk_cache_stats *out) {
  *out = (nk_cache_stats){0};
  for (size_t i = 0; i < ((size_t)1 << c->shard_bits); i++) {
    shard *s = &c->shards[i];
    pthread_mutex_lock(&s->mu);
    out->hits += s->hits;
    out->misses += s->misses;
    out->inserts += s->inserts;
    out->evictions += s->evictions;
    out->usage += s->usage;
    out->capacity += s->capacity;
    pthread_mutex_unlock(&s->mu);
  }
}

void nk_cache_free(nk_cache *c) {
  if (c == NULL) return;
  for (size_t i = 0; i < ((size_t)1 << c->shard_bits); i++) {
    shard *s = &c->shards[i];
    for (size_t b = 0; b < s->nbuckets; b++) {
      for (nk_cache_handle *e = s->buckets[b], *next; e != NULL; e = next) {
        next = e->hnext;
        list_remove(e);
        e->deleter(e->value);
        free(e);
      }
    }
    free(s->buckets);
    pthread_mutex_destroy(&s->mu);
  }
  free(c->shards);
  free(c);
}
