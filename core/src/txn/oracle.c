/*
 * oracle.c — snapshots are taken at the visible timestamp, which never decreases,
 * so appending to the list keeps it sorted and the oldest is at its head.
 *
 * The key table (see nk_oracle in oracle.h) is open addressing with linear
 * probing, at most half full. Dead slots (at or below the horizon) stay in
 * place so probe chains stay whole; an insertion takes over the first dead slot
 * on its chain. The table is rebuilt with only its live keys, sized at four
 * slots per key, when it would pass half full, and after a release once enough
 * insertions have paid for the rebuild's pass, or as soon as no snapshot is
 * left: that is how it shrinks again after a long-lived snapshot goes. At its
 * limit it holds half as many keys as slots; past that, every transaction open
 * is made to conflict (conflict_all_below), which kills every key at once.
 */
#include "txn/oracle.h"

#include <stdlib.h>
#include <string.h>

#include "memtable/internal_key.h"
#include "util/clock.h"

#define MIN_SLOTS 64u

void nk_oracle_init(nk_oracle *o, uint64_t last_ts, size_t max_bytes) {
  o->next_ts = last_ts + 1;
  atomic_init(&o->visible, last_ts);
  pthread_mutex_init(&o->mu, NULL);
  o->oldest = o->newest = NULL;
  o->live = 0;
  o->keys = NULL;
  o->slots = o->used = o->inserts = 0;
  o->max_slots = MIN_SLOTS;
  while (o->max_slots * 2 * sizeof(nk_key_commit) <= max_bytes) o->max_slots *= 2;
  o->conflict_all_below = 0;
  o->overflows = 0;
  o->last_recorded = 0;
  o->ranges = NULL;
  o->nranges = 0;
}

struct nk_oracle_range {
  char *start, *end;  /* one allocation: start, then end */
  size_t slen, elen;
  uint64_t ts;
};

void nk_oracle_destroy(nk_oracle *o) {
  free(o->keys);
  for (size_t i = 0; i < o->nranges; i++) free(o->ranges[i].start);
  free(o->ranges);
  pthread_mutex_destroy(&o->mu);
}

/* Keys last written at or below it can conflict with no live reader.
 * REQUIRES: mu held. */
static uint64_t horizon(const nk_oracle *o) {
  uint64_t h = o->oldest != NULL ? o->oldest->ts : nk_oracle_read_ts(o);
  return h > o->conflict_all_below ? h : o->conflict_all_below;
}

/* Fingerprints are hashes already, but tests and collisions of their low bits
 * should not cluster: one multiply-xorshift spreads them. */
static size_t slot_of(uint64_t fp, size_t mask) {
  fp ^= fp >> 33;
  fp *= 0xff51afd7ed558ccdull;
  fp ^= fp >> 33;
  return (size_t)fp & mask;
}

/* Sets fp's last commit to ts. REQUIRES: mu held, used < slots. */
static void put(nk_oracle *o, uint64_t fp, uint64_t ts, uint64_t dead_at) {
  size_t mask = o->slots - 1;
  nk_key_commit *reuse = NULL;
  size_t i = slot_of(fp, mask);
  for (;; i = (i + 1) & mask) {
    nk_key_commit *s = &o->keys[i];
    if (s->ts == 0) break;
    if (s->fp == fp) {
      if (ts > s->ts) s->ts = ts;
      return;
    }
    if (reuse == NULL && s->ts <= dead_at) reuse = s;
  }
  if (reuse == NULL) {
    reuse = &o->keys[i];
    o->used++;
  }
  reuse->fp = fp;
  reuse->ts = ts;
  o->inserts++;
}

/* fp's last commit, 0 if none is kept. REQUIRES: mu held. */
static uint64_t last_commit(const nk_oracle *o, uint64_t fp) {
  if (o->slots == 0) return 0;
  size_t mask = o->slots - 1;
  for (size_t i = slot_of(fp, mask);; i = (i + 1) & mask) {
    const nk_key_commit *s = &o->keys[i];
    if (s->ts == 0) return 0;
    if (s->fp == fp) return s->ts;
  }
}

static size_t count_live(const nk_oracle *o, uint64_t dead_at) {
  size_t live = 0;
  for (size_t i = 0; i < o->slots; i++) live += o->keys[i].ts > dead_at;
  return live;
}

/* Rebuilds the table with only the live keys, at four slots a key, or at the
 * limit at most 3/8 full (so that an eighth of it is inserted before the next
 * rebuild); false (and the table unchanged) if out of room or memory.
 * REQUIRES: mu held. */
static bool rebuild(nk_oracle *o, uint64_t dead_at) {
  size_t live = count_live(o, dead_at);
  size_t slots = MIN_SLOTS;
  while (slots < live * 4 && slots < o->max_slots) slots *= 2;
  if (live * 8 > slots * 3) return false;
  nk_key_commit *table = calloc(slots, sizeof *table);
  if (table == NULL) return false;
  nk_key_commit *old = o->keys;
  size_t old_slots = o->slots;
  o->keys = table;
  o->slots = slots;
  o->used = 0;
  for (size_t i = 0; i < old_slots; i++) {
    if (old[i].ts > dead_at) put(o, old[i].fp, old[i].ts, dead_at);
  }
  o->inserts = 0;
  free(old);
  return true;
}

/* Did a range deletion after read_ts cover a key in [lo, hi]? REQUIRES: mu. */
static bool range_conflict(const nk_oracle *o, uint64_t read_ts, const char *lo, size_t lo_len,
                           const char *hi, size_t hi_len) {
  for (size_t i = 0; lo != NULL && i < o->nranges; i++) {
    const struct nk_oracle_range *r = &o->ranges[i];
    if (r->ts > read_ts && nk_user_key_cmp(hi, hi_len, r->start, r->slen) >= 0 &&
        nk_user_key_cmp(lo, lo_len, r->end, r->elen) < 0) {
      return true;
    }
  }
  return false;
}

static void drop_ranges(nk_oracle *o, uint64_t dead_at) {
  size_t k = 0;
  for (size_t i = 0; i < o->nranges; i++) {
    if (o->ranges[i].ts <= dead_at) {
      free(o->ranges[i].start);
    } else {
      o->ranges[k++] = o->ranges[i];
    }
  }
  o->nranges = k;
}

nk_conflict nk_oracle_conflicts(nk_oracle *o, uint64_t read_ts, bool read_all,
                                const uint64_t *reads, size_t n, const char *lo, size_t lo_len,
                                const char *hi, size_t hi_len) {
  pthread_mutex_lock(&o->mu);
  nk_conflict c = NK_NO_CONFLICT;
  if (read_ts < o->conflict_all_below) {
    c = NK_CONFLICT_TOO_OLD;
  } else if (read_all) {
    if (o->last_recorded > read_ts) c = NK_CONFLICT_ANY;
  } else {
    for (size_t i = 0; i < n && c == NK_NO_CONFLICT; i++) {
      if (last_commit(o, reads[i]) > read_ts) c = NK_CONFLICT_KEY;
    }
    if (c == NK_NO_CONFLICT && range_conflict(o, read_ts, lo, lo_len, hi, hi_len)) {
      c = NK_CONFLICT_KEY;
    }
  }
  pthread_mutex_unlock(&o->mu);
  return c;
}

/* A commit at ts goes unrecorded: instead, every reader older than it will
 * conflict. That kills every key at or below ts — all of them, as the leader
 * records in timestamp order — so the table empties. REQUIRES: mu held. */
static void forget_all(nk_oracle *o, uint64_t ts) {
  o->overflows++;
  if (ts > o->conflict_all_below) o->conflict_all_below = ts;
  if (o->slots > 0) memset(o->keys, 0, o->slots * sizeof *o->keys);
  o->used = o->inserts = 0;
  drop_ranges(o, ts);
}

void nk_oracle_record_range(nk_oracle *o, uint64_t ts, const char *start, size_t slen,
                            const char *end, size_t elen) {
  pthread_mutex_lock(&o->mu);
  if (ts > o->last_recorded) o->last_recorded = ts;
  uint64_t dead_at = horizon(o);
  if (ts > dead_at) {
    drop_ranges(o, dead_at);
    char *copy = o->nranges < NK_ORACLE_MAX_RANGES ? malloc(slen + elen + 1) : NULL;
    struct nk_oracle_range *grown =
        copy != NULL ? realloc(o->ranges, (o->nranges + 1) * sizeof *o->ranges) : NULL;
    if (grown == NULL) {
      free(copy);
      forget_all(o, ts);  /* too many, or out of memory */
    } else {
      o->ranges = grown;
      if (slen > 0) memcpy(copy, start, slen);
      memcpy(copy + slen, end, elen);
      o->ranges[o->nranges++] =
          (struct nk_oracle_range){.start = copy, .end = copy + slen, .slen = slen, .elen = elen,
                                   .ts = ts};
    }
  }
  pthread_mutex_unlock(&o->mu);
}

void nk_oracle_lose_record(nk_oracle *o, uint64_t ts) {
  pthread_mutex_lock(&o->mu);
  forget_all(o, ts);
  pthread_mutex_unlock(&o->mu);
}

void nk_oracle_record_commit(nk_oracle *o, uint64_t ts, const uint64_t *writes, size_t n) {
  pthread_mutex_lock(&o->mu);
  if (ts > o->last_recorded) o->last_recorded = ts;
  uint64_t dead_at = horizon(o);
  /* At or below the horizon already (published, and no live snapshot predates
   * it): no reader can conflict with it. */
  for (size_t i = 0; i < n && ts > dead_at; i++) {
    if ((o->used + 1) * 2 > o->slots && !rebuild(o, dead_at)) {
      forget_all(o, ts);  /* at the limit, or out of memory */
      break;
    }
    put(o, writes[i], ts, dead_at);
  }
  pthread_mutex_unlock(&o->mu);
}

nokv_snapshot *nk_oracle_snapshot(nk_oracle *o) {
  nokv_snapshot *s = calloc(1, sizeof *s);
  if (s == NULL) {
    return NULL;
  }
  pthread_mutex_lock(&o->mu);
  s->ts = nk_oracle_read_ts(o);
  s->time_ms = nk_wall_ms();  /* under the lock: a compaction never sees it unset */
  s->prev = o->newest;
  if (o->newest != NULL) {
    o->newest->next = s;
  } else {
    o->oldest = s;
  }
  o->newest = s;
  o->live++;
  pthread_mutex_unlock(&o->mu);
  return s;
}

void nk_oracle_release(nk_oracle *o, nokv_snapshot *s) {
  pthread_mutex_lock(&o->mu);
  if (s->prev != NULL) {
    s->prev->next = s->next;
  } else {
    o->oldest = s->next;
  }
  if (s->next != NULL) {
    s->next->prev = s->prev;
  } else {
    o->newest = s->prev;
  }
  o->live--;
  /* Shrink once the keys an old snapshot needed are dead: at once when no
   * snapshot is left, else when insertions since the last rebuild pay for it.
   * A failed rebuild leaves the table as it is. */
  if (o->slots > MIN_SLOTS && (o->oldest == NULL || o->inserts >= o->slots / 4)) {
    rebuild(o, horizon(o));
  }
  pthread_mutex_unlock(&o->mu);
  free(s);
}

void nk_oracle_snapshots(nk_oracle *o, uint64_t *oldest, uint64_t *live) {
  pthread_mutex_lock(&o->mu);
  *oldest = o->oldest != NULL ? o->oldest->ts : 0;
  *live = o->live;
  pthread_mutex_unlock(&o->mu);
}

uint64_t nk_oracle_min_snapshot_time(nk_oracle *o, uint64_t dflt) {
  pthread_mutex_lock(&o->mu);
  uint64_t t = dflt;
  /* Ordered by timestamp, not by time (the wall clock may step back): all of them. */
  for (const nokv_snapshot *s = o->oldest; s != NULL; s = s->next) {
    if (s->time_ms < t) t = s->time_ms;
  }
  pthread_mutex_unlock(&o->mu);
  return t;
}

uint64_t nk_oracle_tracked_keys(nk_oracle *o, uint64_t *overflows) {
  pthread_mutex_lock(&o->mu);
  uint64_t n = count_live(o, horizon(o));
  if (overflows != NULL) *overflows = o->overflows;
  pthread_mutex_unlock(&o->mu);
  return n;
}

size_t nk_oracle_table_slots(nk_oracle *o) {
  pthread_mutex_lock(&o->mu);
  size_t n = o->slots;
  pthread_mutex_unlock(&o->mu);
  return n;
}
