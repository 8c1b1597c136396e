/*
 * hot.h — the hot-key tracker: which keys are read (or written) most often
 * right now, and how often, in a fixed amount of memory.
 *
 * Design (docs/hot_keys.md): a count-min sketch (Cormode and Muthukrishnan,
 * 2005) per kind estimates each key's count; a small set of candidates per
 * shard remembers the keys whose estimate is among the shard's largest (the
 * "count-min with a top-k" heavy-hitter scheme). Time decays the counts with a
 * sliding window of two sketch generations, as rate limiters do: a key's
 * count is the current window's plus the previous window's scaled by the part
 * of it that still falls inside one window back. Accesses are sampled (one
 * in NK_HOT_SAMPLE per thread, counting that many), so the untracked ones
 * cost a thread-local increment.
 *
 * Threads: touch is lock-free but for a shard's try-lock when a key newly
 * qualifies as a candidate (no one ever waits for it); any thread may query.
 * Counters are bumped with a relaxed load and store, not a locked add: two
 * threads bumping one counter at once may lose a sample, and one landing in
 * a window being cleared may survive it; estimates move by a sample, no more.
 */
#ifndef NOKV_HOT_HOT_H
#define NOKV_HOT_HOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nokv/db.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_HOT_SAMPLE 8u        /* one access in this many is counted, with this weight */
#define NK_HOT_WINDOW_MS 1000u  /* the sliding window; rates are per second */

typedef struct nk_hot nk_hot;

/* The count over one window that a rate of per_sec accesses a second makes. */
static inline uint64_t nk_hot_count_at(uint32_t per_sec) {
  return (uint64_t)per_sec * NK_HOT_WINDOW_MS / 1000u;
}

typedef struct nk_hot_options {
  size_t budget_bytes;         /* sketches and candidates of both kinds, together */
  uint64_t (*now_ms)(void);    /* NULL: the monotonic clock (tests pass their own) */
} nk_hot_options;

/* NULL on ENOMEM. */
nk_hot *nk_hot_new(const nk_hot_options *o);
/* For tests: a new clock, the window starting at its now. Before any touch. */
void nk_hot_set_clock(nk_hot *h, uint64_t (*now_ms)(void));
/* For tests: a database's tracker (NULL when tracking is off). */
nk_hot *nk_db_hot(nokv_db *db);
void nk_hot_free(nk_hot *h);

/* Counts one access of kind to key (hash: nk_hash64 of it) with the given
 * weight. */
void nk_hot_touch(nk_hot *h, nokv_hot_kind kind, const char *key, size_t klen, uint64_t hash,
                  uint32_t weight);

/* Should this thread count this access? True once in NK_HOT_SAMPLE calls. */
bool nk_hot_sampled(void);

/* The candidates of kind with their estimated counts over the last window,
 * largest first: up to n of them (*count), those estimated at least
 * min_count. NOKV_ENOMEM if out of memory. */
int nk_hot_top(nk_hot *h, nokv_hot_kind kind, size_t n, uint64_t min_count, nokv_hot_key *out,
               size_t *count);

/* The estimated count of key over the last window (0 if never seen). */
uint64_t nk_hot_estimate(nk_hot *h, nokv_hot_kind kind, uint64_t hash);

typedef struct nk_hot_stats {
  uint64_t samples[2];    /* touches counted, by kind */
  uint64_t candidates[2]; /* keys held as candidates, by kind */
  uint64_t bytes;         /* memory of the tracker */
} nk_hot_stats;
void nk_hot_get_stats(nk_hot *h, nk_hot_stats *s);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_HOT_HOT_H */
