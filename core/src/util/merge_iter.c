/* merge_iter.c — heap-based k-way merge of internal-key iterators. */
#include "util/merge_iter.h"

#include <stdlib.h>

#include "memtable/internal_key.h"
#include "nokv/status.h"

typedef struct merge_iter {
  nk_iter base;
  nk_iter **kids;
  size_t n;
  size_t *heap;  /* indexes of valid children */
  size_t nheap;
  int status;
} merge_iter;

static bool less(const merge_iter *m, size_t a, size_t b) {
  size_t an, bn;
  const char *ak = nk_iter_key(m->kids[a], &an), *bk = nk_iter_key(m->kids[b], &bn);
  int c = nk_ikey_cmp(ak, an, bk, bn);
  return c < 0 || (c == 0 && a < b);
}

static void sift_down(merge_iter *m, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, s = i;
    if (l < m->nheap && less(m, m->heap[l], m->heap[s])) s = l;
    if (r < m->nheap && less(m, m->heap[r], m->heap[s])) s = r;
    if (s == i) return;
    size_t t = m->heap[i];
    m->heap[i] = m->heap[s];
    m->heap[s] = t;
    i = s;
  }
}

static void note_status(merge_iter *m, nk_iter *kid) {
  int st = nk_iter_status(kid);
  if (st != NOKV_OK && m->status == NOKV_OK) m->status = st;
}

static void rebuild(merge_iter *m) {
  m->nheap = 0;
  for (size_t i = 0; i < m->n; i++) {
    if (nk_iter_valid(m->kids[i])) {
      m->heap[m->nheap++] = i;
    } else {
      note_status(m, m->kids[i]);
    }
  }
  for (size_t i = m->nheap / 2; i-- > 0;) sift_down(m, i);
}

static bool mg_valid(const nk_iter *it) {
  const merge_iter *m = (const merge_iter *)it;
  return m->status == NOKV_OK && m->nheap > 0;
}

static void mg_seek_first(nk_iter *it) {
  merge_iter *m = (merge_iter *)it;
  for (size_t i = 0; i < m->n; i++) nk_iter_seek_first(m->kids[i]);
  rebuild(m);
}

static void mg_seek(nk_iter *it, const char *k, size_t n) {
  merge_iter *m = (merge_iter *)it;
  for (size_t i = 0; i < m->n; i++) nk_iter_seek(m->kids[i], k, n);
  rebuild(m);
}

static void mg_next(nk_iter *it) {
  merge_iter *m = (merge_iter *)it;
  nk_iter *top = m->kids[m->heap[0]];
  nk_iter_next(top);
  if (!nk_iter_valid(top)) {
    note_status(m, top);
    m->heap[0] = m->heap[--m->nheap];
  }
  sift_down(m, 0);
}

static const char *mg_key(const nk_iter *it, size_t *n) {
  const merge_iter *m = (const merge_iter *)it;
  return nk_iter_key(m->kids[m->heap[0]], n);
}

static const char *mg_value(const nk_iter *it, size_t *n) {
  const merge_iter *m = (const merge_iter *)it;
  return nk_iter_value(m->kids[m->heap[0]], n);
}

static int mg_status(const nk_iter *it) { return ((const merge_iter *)it)->status; }

static void mg_destroy(nk_iter *it) {
  merge_iter *m = (merge_iter *)it;
  for (size_t i = 0; i < m->n; i++) nk_iter_destroy(m->kids[i]);
  free(m->kids);
  free(m->heap);
  free(m);
}

static const nk_iter_ops merge_ops = {mg_valid, mg_seek_first, mg_seek,   mg_next,
                                      mg_key,   mg_value,      mg_status, mg_destroy};

nk_iter *nk_merge_iter_new(nk_iter **children, size_t n) {
  merge_iter *m = calloc(1, sizeof *m);
  nk_iter **kids = malloc((n ? n : 1) * sizeof *kids);
  size_t *heap = malloc((n ? n : 1) * sizeof *heap);
  if (m == NULL || kids == NULL || heap == NULL) {
    for (size_t i = 0; i < n; i++) nk_iter_destroy(children[i]);
    free(m);
    free(kids);
    free(heap);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) kids[i] = children[i];
  m->base.ops = &merge_ops;
  m->kids = kids;
  m->heap = heap;
  m->n = n;
  return &m->base;
}
