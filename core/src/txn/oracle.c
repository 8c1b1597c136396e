/*
 * oracle.c — snapshots are taken at the visible timestamp, which never decreases,
 * so appending to the list keeps it sorted and the oldest is at its head.
 */
#include "txn/oracle.h"

#include <stdlib.h>

void nk_oracle_init(nk_oracle *o, uint64_t last_ts) {
  o->next_ts = last_ts + 1;
  atomic_init(&o->visible, last_ts);
  pthread_mutex_init(&o->mu, NULL);
  o->oldest = o->newest = NULL;
  o->live = 0;
}

void nk_oracle_destroy(nk_oracle *o) { pthread_mutex_destroy(&o->mu); }

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
  pthread_mutex_unlock(&o->mu);
  free(s);
}

void nk_oracle_snapshots(nk_oracle *o, uint64_t *oldest, uint64_t *live) {
  pthread_mutex_lock(&o->mu);
  *oldest = o->oldest != NULL ? o->oldest->ts : 0;
  *live = o->live;
  pthread_mutex_unlock(&o->mu);
}
