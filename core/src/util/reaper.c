/* reaper.c — the background deleter (reaper.h). */
#include "util/reaper.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "util/error.h"

typedef struct job {
  struct job *next;
  nk_reap_fn fn;
  void *ctx;
  uint64_t a, b;
} job;

struct nk_reaper {
  pthread_mutex_t mu;
  pthread_cond_t work;  /* signalled when a job is queued or stop is set */
  pthread_cond_t done;  /* broadcast when a job has run */
  job *head, *tail;
  uint64_t queued;      /* jobs ever queued */
  uint64_t finished;    /* jobs ever run */
  bool stop;
  pthread_t thread;
};

static void *reaper_main(void *arg) {
  nk_reaper *r = arg;
  pthread_mutex_lock(&r->mu);
  for (;;) {
    while (r->head == NULL && !r->stop) pthread_cond_wait(&r->work, &r->mu);
    if (r->head == NULL) break;  /* stopping, and nothing is left */
    job *j = r->head;
    r->head = j->next;
    if (r->head == NULL) r->tail = NULL;
    pthread_mutex_unlock(&r->mu);
    j->fn(j->ctx, j->a, j->b);
    free(j);
    pthread_mutex_lock(&r->mu);
    r->finished++;
    pthread_cond_broadcast(&r->done);
  }
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

int nk_reaper_start(nk_reaper **out) {
  nk_reaper *r = calloc(1, sizeof *r);
  if (r == NULL) return nk_err(NOKV_ENOMEM, "out of memory starting the file reaper");
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->work, NULL);
  pthread_cond_init(&r->done, NULL);
  if (pthread_create(&r->thread, NULL, reaper_main, r) != 0) {
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->work);
    pthread_cond_destroy(&r->done);
    free(r);
    return nk_err(NOKV_ENOMEM, "cannot start the file reaper thread");
  }
  *out = r;
  return NOKV_OK;
}

void nk_reaper_add(nk_reaper *r, nk_reap_fn fn, void *ctx, uint64_t a, uint64_t b) {
  job *j = r != NULL ? malloc(sizeof *j) : NULL;
  if (j == NULL) {
    fn(ctx, a, b);
    return;
  }
  *j = (job){.fn = fn, .ctx = ctx, .a = a, .b = b};
  pthread_mutex_lock(&r->mu);
  if (r->tail != NULL) {
    r->tail->next = j;
  } else {
    r->head = j;
  }
  r->tail = j;
  r->queued++;
  pthread_cond_signal(&r->work);
  pthread_mutex_unlock(&r->mu);
}

void nk_reaper_drain(nk_reaper *r) {
  if (r == NULL) return;
  pthread_mutex_lock(&r->mu);
  uint64_t target = r->queued;
  while (r->finished < target) pthread_cond_wait(&r->done, &r->mu);
  pthread_mutex_unlock(&r->mu);
}

uint64_t nk_reaper_pending(nk_reaper *r) {
  if (r == NULL) return 0;
  pthread_mutex_lock(&r->mu);
  uint64_t n = r->queued - r->finished;
  pthread_mutex_unlock(&r->mu);
  return n;
}

void nk_reaper_stop(nk_reaper *r) {
  if (r == NULL) return;
  pthread_mutex_lock(&r->mu);
  r->stop = true;
  pthread_cond_signal(&r->work);
  pthread_mutex_unlock(&r->mu);
  pthread_join(r->thread, NULL);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->work);
  pthread_cond_destroy(&r->done);
  free(r);
}
