/*
 * two_level_iter.c — a seek positions the index, opens the child it names and
 * seeks in it; running off the end of a child moves the index on. The child
 * open for an index value is kept while a seek lands on the same value again.
 */
#include "sst/two_level_iter.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nokv/status.h"
#include "sst/block_builder.h"
#include "util/error.h"

typedef struct two_level_iter {
  nk_iter base;
  nk_iter *index;
  nk_iter *child;   /* NULL when not positioned in a child */
  nk_buf child_of;  /* the index value child was opened for */
  nk_open_child_fn open;
  void *arg;
  int status;
} two_level_iter;

static void set_child(two_level_iter *it, nk_iter *child) {
  nk_iter_destroy(it->child);
  it->child = child;
  if (child == NULL) it->child_of.len = 0;
}

/* Opens the child the index points at (unless it is open already); false at the
 * index's end or on error. */
static bool load_child(two_level_iter *it) {
  if (!nk_iter_valid(it->index)) {
    set_child(it, NULL);
    if (it->status == NOKV_OK) it->status = nk_iter_status(it->index);
    return false;
  }
  size_t n;
  const char *value = nk_iter_value(it->index, &n);
  if (it->child != NULL && it->child_of.len == n && memcmp(it->child_of.data, value, n) == 0) {
    return true;
  }
  int st = NOKV_OK;
  nk_iter *old = it->child;
  it->child = NULL;
  it->child_of.len = 0;
  nk_iter *child = it->open(it->arg, value, n, old, &st);
  if (child != old) nk_iter_destroy(old);
  if (child == NULL || !nk_buf_append(&it->child_of, value, n)) {
    nk_iter_destroy(child);
    it->status = child == NULL ? st : nk_err(NOKV_ENOMEM, "out of memory in an iterator");
    return false;
  }
  it->child = child;
  return true;
}

/* Moves forward past exhausted children. */
static void skip_empty(two_level_iter *it) {
  while (it->child != NULL && !nk_iter_valid(it->child)) {
    int st = nk_iter_status(it->child);
    if (st != NOKV_OK) {
      it->status = st;
      set_child(it, NULL);
      return;
    }
    nk_iter_next(it->index);
    if (!load_child(it)) return;
    nk_iter_seek_first(it->child);
  }
}

static bool tl_valid(const nk_iter *base) {
  const two_level_iter *it = (const two_level_iter *)base;
  return it->status == NOKV_OK && it->child != NULL && nk_iter_valid(it->child);
}

static void tl_seek_first(nk_iter *base) {
  two_level_iter *it = (two_level_iter *)base;
  nk_iter_seek_first(it->index);
  if (load_child(it)) nk_iter_seek_first(it->child);
  skip_empty(it);
}

static void tl_seek(nk_iter *base, const char *k, size_t n) {
  two_level_iter *it = (two_level_iter *)base;
  nk_iter_seek(it->index, k, n);
  if (load_child(it)) nk_iter_seek(it->child, k, n);
  skip_empty(it);
}

static void tl_next(nk_iter *base) {
  two_level_iter *it = (two_level_iter *)base;
  nk_iter_next(it->child);
  skip_empty(it);
}

static const char *tl_key(const nk_iter *base, size_t *n) {
  return nk_iter_key(((const two_level_iter *)base)->child, n);
}

static const char *tl_value(const nk_iter *base, size_t *n) {
  return nk_iter_value(((const two_level_iter *)base)->child, n);
}

static int tl_status(const nk_iter *base) { return ((const two_level_iter *)base)->status; }

static void tl_destroy(nk_iter *base) {
  two_level_iter *it = (two_level_iter *)base;
  nk_iter_destroy(it->child);
  nk_iter_destroy(it->index);
  nk_buf_release(&it->child_of);
  free(it);
}

static const nk_iter_ops two_level_ops = {tl_valid, tl_seek_first, tl_seek,   tl_next,
                                          tl_key,   tl_value,      tl_status, tl_destroy};

nk_iter *nk_two_level_iter_new(nk_iter *index, nk_open_child_fn open, void *arg) {
  two_level_iter *it = calloc(1, sizeof *it);
  if (it == NULL) {
    nk_iter_destroy(index);
    return NULL;
  }
  it->base.ops = &two_level_ops;
  it->index = index;
  it->open = open;
  it->arg = arg;
  return &it->base;
}
