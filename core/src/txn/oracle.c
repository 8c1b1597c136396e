/*
 * oracle.c — snapshots are taken at the visible timestamp, which never decreases,
 * so appending to the list keeps it sorted and the oldest is at its head.
 */
#include "txn/oracle.h"

#include <stdlib.h>
#include <string.h>

void nk_oracle_init(nk_oracle *o, uint64_t last_ts) {
  o->next_ts = last_ts + 1;
  atomic_init(&o->visible, last_ts);
  pthread_mutex_init(&o->mu, NULL);
  o->oldest = o->newest = NULL;
  o->live = 0;
  o->commits = o->commits_tail = NULL;
  o->ncommits = 0;
  o->conflict_all_below = 0;
}

void nk_oracle_destroy(nk_oracle *o) {
  while (o->commits != NULL) {
    nk_commit_record *r = o->commits;
    o->commits = r->next;
    free(r);
  }
  pthread_mutex_destroy(&o->mu);
}

/* Drops commit records no live snapshot is older than: no transaction can
 * conflict with them any more. REQUIRES: mu held. */
static void prune(nk_oracle *o) {
  uint64_t oldest = o->oldest != NULL ? o->oldest->ts : UINT64_MAX;
  while (o->commits != NULL && o->commits->ts <= oldest) {
    nk_commit_record *r = o->commits;
    o->commits = r->next;
    if (o->commits == NULL) o->commits_tail = NULL;
    o->ncommits--;
    free(r);
  }
}

static bool contains(const uint64_t *sorted, size_t n, uint64_t x) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (sorted[mid] < x) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < n && sorted[lo] == x;
}

bool nk_oracle_conflicts(nk_oracle *o, uint64_t read_ts, const uint64_t *reads, size_t n) {
  pthread_mutex_lock(&o->mu);
  bool hit = read_ts < o->conflict_all_below;
  for (const nk_commit_record *r = o->commits; r != NULL && !hit; r = r->next) {
    if (r->ts <= read_ts) continue;
    for (size_t i = 0; i < r->n && !hit; i++) hit = contains(reads, n, r->fps[i]);
  }
  pthread_mutex_unlock(&o->mu);
  return hit;
}

void nk_oracle_lose_record(nk_oracle *o, uint64_t ts) {
  pthread_mutex_lock(&o->mu);
  if (ts > o->conflict_all_below) o->conflict_all_below = ts;
  pthread_mutex_unlock(&o->mu);
}

void nk_oracle_record_commit(nk_oracle *o, uint64_t ts, const uint64_t *writes, size_t n) {
  nk_commit_record *r = malloc(sizeof *r + n * sizeof r->fps[0]);
  if (r == NULL) {
    nk_oracle_lose_record(o, ts);
    return;
  }
  r->ts = ts;
  r->next = NULL;
  r->n = n;
  if (n > 0) memcpy(r->fps, writes, n * sizeof r->fps[0]);
  pthread_mutex_lock(&o->mu);
  if (o->commits_tail != NULL) {
    o->commits_tail->next = r;
  } else {
    o->commits = r;
  }
  o->commits_tail = r;
  o->ncommits++;
  prune(o);
  pthread_mutex_unlock(&o->mu);
}

nokv_snapshot *nk_oracle_snapshot(nk_oracle *o) {
  nokv_snapshot *s = calloc(1, sizeof *s);
  if (s == NULL) {
    return NULL;
  }
  pthread_mutex_lock(&o->mu);
  s->ts = nk_oracle_read_ts(o);
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
  prune(o);
  pthread_mutex_unlock(&o->mu);
  free(s);
}

void nk_oracle_snapshots(nk_oracle *o, uint64_t *oldest, uint64_t *live) {
  pthread_mutex_lock(&o->mu);
  *oldest = o->oldest != NULL ? o->oldest->ts : 0;
  *live = o->live;
  pthread_mutex_unlock(&o->mu);
}

uint64_t nk_oracle_commit_records(nk_oracle *o) {
  pthread_mutex_lock(&o->mu);
  uint64_t n = o->ncommits;
  pthread_mutex_unlock(&o->mu);
  return n;
}
