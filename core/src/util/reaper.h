/*
 * reaper.h — one background thread that deletes what the engine no longer
 * needs (obsolete tables, collected value-log segments), so the thread that
 * happens to drop the last reference — a reader inside nokv_get, or a
 * compaction holding the manifest — never waits on an unlink. Deleting a large
 * file frees its extents and can take tens of milliseconds.
 *
 * Work is a function and two numbers. Adding never fails: if the queue cannot
 * grow (out of memory) or no reaper runs, the work is done on the spot. A job
 * must not block on anything a thread adding work may hold.
 */
#ifndef NOKV_UTIL_REAPER_H
#define NOKV_UTIL_REAPER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_reaper nk_reaper;
typedef void (*nk_reap_fn)(void *ctx, uint64_t a, uint64_t b);

/* Starts the thread. */
int nk_reaper_start(nk_reaper **out);
/* Queues fn(ctx, a, b); r may be NULL (runs it now). Any thread. */
void nk_reaper_add(nk_reaper *r, nk_reap_fn fn, void *ctx, uint64_t a, uint64_t b);
/* Returns once everything queued before the call has run. */
void nk_reaper_drain(nk_reaper *r);
/* Jobs queued or running now. */
uint64_t nk_reaper_pending(nk_reaper *r);
/* Runs what is queued, stops the thread and frees r. NULL is a no-op. */
void nk_reaper_stop(nk_reaper *r);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_UTIL_REAPER_H */
