/* iterator.c — the empty iterator, used where a source has nothing or failed. */
#include "util/iterator.h"

#include <stdlib.h>

typedef struct empty_iter {
  nk_iter base;
  int status;
} empty_iter;

static bool e_valid(const nk_iter *it) { (void)it; return false; }
static void e_seek_first(nk_iter *it) { (void)it; }
static void e_seek(nk_iter *it, const char *k, size_t n) { (void)it; (void)k; (void)n; }
static void e_next(nk_iter *it) { (void)it; }
static const char *e_bytes(const nk_iter *it, size_t *n) { (void)it; *n = 0; return NULL; }
static int e_status(const nk_iter *it) { return ((const empty_iter *)it)->status; }
static void e_destroy(nk_iter *it) { free(it); }

static const nk_iter_ops empty_ops = {e_valid, e_seek_first, e_seek, e_next,
                                      e_bytes, e_bytes,      e_status, e_destroy};

nk_iter *nk_iter_new_empty(int status) {
  empty_iter *it = malloc(sizeof *it);
  if (it == NULL) return NULL;
  it->base.ops = &empty_ops;
  it->status = status;
  return &it->base;
}
