/*
 * two_level_iter.h — iterates the concatenation of child iterators named by an
 * index iterator (LevelDB's TwoLevelIterator): a table's index block over its
 * data blocks, or a level's list of tables over the tables. Each index entry's
 * value names one child, whose keys sort after the previous child's and at or
 * before the index key.
 */
#ifndef NOKV_SST_TWO_LEVEL_ITER_H
#define NOKV_SST_TWO_LEVEL_ITER_H

#include <stddef.h>

#include "util/iterator.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opens the child named by an index value. `reuse` is the child open until now
 * (or NULL): the function may return it re-aimed at the new value, saving an
 * allocation per child; whatever it does not return, the caller destroys.
 * Returns NULL with *status set on failure (leaving `reuse` destroyable). */
typedef nk_iter *(*nk_open_child_fn)(void *arg, const char *value, size_t n, nk_iter *reuse,
                                     int *status);

/* Takes ownership of index (also on failure). NULL on ENOMEM. */
nk_iter *nk_two_level_iter_new(nk_iter *index, nk_open_child_fn open, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_SST_TWO_LEVEL_ITER_H */
