/*
 * iterator.h — the one internal iterator shape (LevelDB's): valid / seek_first /
 * seek / next / key / value / status. Memtables, blocks, tables, levels and the
 * merge of all of them implement it, so they compose.
 *
 * Keys are encoded internal keys: user key | fixed64 (commit_ts << 8 | kind)
 * (memtable/internal_key.h). key() and value() borrow bytes that stay valid until
 * the iterator moves or is destroyed.
 */
#ifndef NOKV_UTIL_ITERATOR_H
#define NOKV_UTIL_ITERATOR_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_iter nk_iter;

typedef struct nk_iter_ops {
  bool (*valid)(const nk_iter *it);
  void (*seek_first)(nk_iter *it);
  /* Positions at the first entry >= ikey. */
  void (*seek)(nk_iter *it, const char *ikey, size_t n);
  void (*next)(nk_iter *it);  /* REQUIRES: valid */
  const char *(*key)(const nk_iter *it, size_t *n);
  const char *(*value)(const nk_iter *it, size_t *n);
  /* NOKV_OK, or the error that made the iterator stop early (then invalid). */
  int (*status)(const nk_iter *it);
  void (*destroy)(nk_iter *it);
} nk_iter_ops;

struct nk_iter {
  const nk_iter_ops *ops;
};

static inline bool nk_iter_valid(const nk_iter *it) { return it->ops->valid(it); }
static inline void nk_iter_seek_first(nk_iter *it) { it->ops->seek_first(it); }
static inline void nk_iter_seek(nk_iter *it, const char *k, size_t n) { it->ops->seek(it, k, n); }
static inline void nk_iter_next(nk_iter *it) { it->ops->next(it); }
static inline const char *nk_iter_key(const nk_iter *it, size_t *n) { return it->ops->key(it, n); }
static inline const char *nk_iter_value(const nk_iter *it, size_t *n) {
  return it->ops->value(it, n);
}
static inline int nk_iter_status(const nk_iter *it) { return it->ops->status(it); }
static inline void nk_iter_destroy(nk_iter *it) {
  if (it != NULL) it->ops->destroy(it);
}

/* An iterator that is always empty and reports status (OK or an error). NULL on
 * ENOMEM. */
nk_iter *nk_iter_new_empty(int status);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_UTIL_ITERATOR_H */
