/*
 * merge_iter.h — merges sorted iterators into one sorted stream (a binary
 * min-heap on the children's current keys). Equal keys cannot occur across
 * sources (each (user key, commit_ts) is written once), so no tie-breaking is
 * needed for correctness; ties go to the lower child index.
 */
#ifndef NOKV_UTIL_MERGE_ITER_H
#define NOKV_UTIL_MERGE_ITER_H

#include <stddef.h>

#include "util/iterator.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Takes ownership of the n children (also on failure). NULL on ENOMEM. */
nk_iter *nk_merge_iter_new(nk_iter **children, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_UTIL_MERGE_ITER_H */
