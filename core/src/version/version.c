/* version.c — file metas, edits, applying an edit, and reads over a version. */
#include "version/version.h"

#include <stdlib.h>
#include <string.h>

#include "memtable/internal_key.h"
#include "sst/two_level_iter.h"
#include "util/error.h"
#include "util/grow.h"

nk_file_meta *nk_file_meta_new(uint64_t number, uint64_t size, const char *smallest,
                               size_t smallest_len, const char *largest, size_t largest_len) {
  nk_file_meta *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  f->smallest = malloc(smallest_len ? smallest_len : 1);
  f->largest = malloc(largest_len ? largest_len : 1);
  if (f->smallest == NULL || f->largest == NULL) {
    free(f->smallest);
    free(f->largest);
    free(f);
    return NULL;
  }
  memcpy(f->smallest, smallest, smallest_len);
  memcpy(f->largest, largest, largest_len);
  f->smallest_len = smallest_len;
  f->largest_len = largest_len;
  f->number = number;
  f->size = size;
  f->refs = 1;
  return f;
}

void nk_file_meta_ref(nk_file_meta *f) { __atomic_fetch_add(&f->refs, 1, __ATOMIC_RELAXED); }

static void meta_free(nk_file_meta *f) {
  free(f->smallest);
  free(f->largest);
  free(f);
}

bool nk_file_meta_unref(nk_file_meta *f) {
  if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) != 0) return false;
  meta_free(f);
  return true;
}

/* ---- edits ---- */

void nk_edit_init(nk_edit *e) { memset(e, 0, sizeof *e); }

void nk_edit_release(nk_edit *e) {
  for (size_t i = 0; i < e->nadds; i++) nk_file_meta_unref(e->adds[i].f);
  free(e->adds);
  free(e->removes);
  free(e->discards);
  free(e->retired);
  for (size_t i = 0; i < e->nrdels; i++) free((char *)e->rdels[i].start);
  free(e->rdels);
  nk_edit_init(e);
}

int nk_edit_add_file(nk_edit *e, int level, nk_file_meta *f) {
  if (!nk_grow((void **)&e->adds, &e->adds_cap, e->nadds, sizeof *e->adds)) {
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  nk_file_meta_ref(f);
  e->adds[e->nadds++] = (nk_edit_add){level, f};
  return NOKV_OK;
}

int nk_edit_remove_file(nk_edit *e, int level, uint64_t number) {
  if (!nk_grow((void **)&e->removes, &e->removes_cap, e->nremoves, sizeof *e->removes)) {
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  e->removes[e->nremoves++] = (nk_edit_remove){level, number};
  return NOKV_OK;
}

int nk_edit_add_discard(nk_edit *e, uint32_t fid, uint64_t bytes) {
  for (size_t i = 0; i < e->ndiscards; i++) {
    if (e->discards[i].fid == fid) {
      e->discards[i].bytes += bytes;
      return NOKV_OK;
    }
  }
  if (!nk_grow((void **)&e->discards, &e->discards_cap, e->ndiscards, sizeof *e->discards)) {
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  e->discards[e->ndiscards++] = (nk_vlog_discard){fid, bytes};
  return NOKV_OK;
}

int nk_edit_retire_segment(nk_edit *e, uint32_t fid) {
  if (!nk_grow((void **)&e->retired, &e->retired_cap, e->nretired, sizeof *e->retired)) {
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  e->retired[e->nretired++] = fid;
  return NOKV_OK;
}

int nk_edit_add_rdel(nk_edit *e, const nk_rdel *d) {
  char *copy = malloc(d->slen + d->elen + 1);
  if (copy == NULL ||
      !nk_grow((void **)&e->rdels, &e->rdels_cap, e->nrdels, sizeof *e->rdels)) {
    free(copy);
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  if (d->slen > 0) memcpy(copy, d->start, d->slen);  /* an empty start may be NULL */
  memcpy(copy + d->slen, d->end, d->elen);
  e->rdels[e->nrdels++] = (nk_rdel){.start = copy, .slen = d->slen, .end = copy + d->slen,
                                    .elen = d->elen, .ts = d->ts};
  return NOKV_OK;
}

/* ---- versions ---- */

nk_version *nk_version_new_empty(void (*obsolete)(void *, nk_file_meta *), void *arg) {
  nk_version *v = calloc(1, sizeof *v);
  if (v == NULL) return NULL;
  v->refs = 1;
  v->obsolete = obsolete;
  v->obsolete_arg = arg;
  return v;
}

void nk_version_ref(nk_version *v) { __atomic_fetch_add(&v->refs, 1, __ATOMIC_RELAXED); }

void nk_version_unref(nk_version *v) {
  if (v == NULL || __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  for (int l = 0; l < NK_NUM_LEVELS; l++) {
    for (size_t i = 0; i < v->nfiles[l]; i++) {
      nk_file_meta *f = v->files[l][i];
      if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        if (v->obsolete != NULL) v->obsolete(v->obsolete_arg, f);
        meta_free(f);
      }
    }
    free(v->files[l]);
  }
  nk_rdel_set_unref(v->rdels);
  free(v);
}

/* L0 newest first by file number, which is flush order (nothing else writes
 * L0). Not by max_ts: a table of value-log GC rewrites holds old timestamps yet
 * must shadow the older copies of the same versions. */
static int cmp_l0(const void *a, const void *b) {
  const nk_file_meta *x = *(nk_file_meta *const *)a, *y = *(nk_file_meta *const *)b;
  return x->number > y->number ? -1 : (x->number < y->number);
}

static int cmp_by_key(const void *a, const void *b) {
  const nk_file_meta *x = *(nk_file_meta *const *)a, *y = *(nk_file_meta *const *)b;
  return nk_ikey_cmp(x->smallest, x->smallest_len, y->smallest, y->smallest_len);
}

static bool removed(const nk_edit *e, int level, uint64_t number) {
  for (size_t i = 0; i < e->nremoves; i++) {
    if (e->removes[i].level == level && e->removes[i].number == number) return true;
  }
  return false;
}

bool nk_rdel_may_hide(const nk_rdel *d, const nk_file_meta *f) {
  return f->range_clean_ts < d->ts &&
         nk_user_key_cmp(f->smallest, nk_ikey_user_len(f->smallest_len), d->end, d->elen) < 0 &&
         nk_user_key_cmp(f->largest, nk_ikey_user_len(f->largest_len), d->start, d->slen) >= 0;
}

static bool still_needed(const nk_version *v, const nk_rdel *d) {
  for (int l = 0; l < NK_NUM_LEVELS; l++) {
    for (size_t i = 0; i < v->nfiles[l]; i++) {
      if (nk_rdel_may_hide(d, v->files[l][i])) return true;
    }
  }
  return false;
}

/* v's range tombstones: base's and e's, less those no table needs any more. */
static int apply_rdels(const nk_version *base, const nk_edit *e, nk_version *v) {
  size_t nbase = base->rdels != NULL ? base->rdels->n : 0, n = nbase + e->nrdels, k = 0;
  if (n == 0) return NOKV_OK;
  const nk_rdel **keep = malloc(n * sizeof *keep);
  if (keep == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const nk_rdel *d = i < nbase ? &base->rdels->dels[i] : &e->rdels[i - nbase];
    if (still_needed(v, d)) keep[k++] = d;
  }
  int ret = NOKV_OK;
  if (k == nbase && e->nrdels == 0) {
    v->rdels = base->rdels;  /* unchanged: shared */
    nk_rdel_set_ref(v->rdels);
  } else if (k > 0) {
    bool oom;
    v->rdels = nk_rdel_set_build(keep, k, NK_MAX_TS, &oom);
    if (v->rdels == NULL) ret = nk_err(NOKV_ENOMEM, "out of memory");
  }
  free(keep);
  return ret;
}

int nk_version_apply(const nk_version *base, const nk_edit *e, nk_version **out) {
  nk_version *v = nk_version_new_empty(base->obsolete, base->obsolete_arg);
  if (v == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  int ret = NOKV_OK;
  for (size_t i = 0; i < e->nremoves; i++) {
    int l = e->removes[i].level;
    bool found = false;
    for (size_t j = 0; l >= 0 && l < NK_NUM_LEVELS && j < base->nfiles[l] && !found; j++) {
      found = base->files[l][j]->number == e->removes[i].number;
    }
    if (!found) {
      NK_ERR(nk_err(NOKV_ECORRUPT, "version edit removes table %llu from L%d, which lacks it",
                    (unsigned long long)e->removes[i].number, l));
    }
  }
  for (int l = 0; l < NK_NUM_LEVELS; l++) {
    size_t cap = base->nfiles[l];
    for (size_t i = 0; i < e->nadds; i++) cap += e->adds[i].level == l;
    if (cap == 0) continue;
    if ((v->files[l] = malloc(cap * sizeof *v->files[l])) == NULL) {
      NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
    }
    for (size_t j = 0; j < base->nfiles[l]; j++) {
      nk_file_meta *f = base->files[l][j];
      if (!removed(e, l, f->number)) {
        nk_file_meta_ref(f);
        v->files[l][v->nfiles[l]++] = f;
        v->level_bytes[l] += f->size;
      }
    }
    for (size_t i = 0; i < e->nadds; i++) {
      if (e->adds[i].level != l) continue;
      nk_file_meta *f = e->adds[i].f;
      for (size_t j = 0; j < v->nfiles[l]; j++) {
        if (v->files[l][j]->number == f->number) {
          NK_ERR(nk_err(NOKV_ECORRUPT, "version edit adds table %llu to L%d twice",
                        (unsigned long long)f->number, l));
        }
      }
      nk_file_meta_ref(f);
      v->files[l][v->nfiles[l]++] = f;
      v->level_bytes[l] += f->size;
    }
    qsort(v->files[l], v->nfiles[l], sizeof *v->files[l], l == 0 ? cmp_l0 : cmp_by_key);
  }
  for (size_t i = 0; i < e->nadds; i++) {
    if (e->adds[i].level < 0 || e->adds[i].level >= NK_NUM_LEVELS) {
      NK_ERR(nk_err(NOKV_ECORRUPT, "version edit names level %d", e->adds[i].level));
    }
  }
  v->last_ts = base->last_ts;
  if (e->has_last_ts && e->last_ts > v->last_ts) v->last_ts = e->last_ts;
  NK_ERR(apply_rdels(base, e, v));
  *out = v;
  return NOKV_OK;
err:
  v->obsolete = NULL;  /* nothing here is obsolete: base still holds it all */
  nk_version_unref(v);
  return ret;
}

static int ucmp_ikey(const char *ukey, size_t ulen, const char *ikey, size_t ilen) {
  return nk_user_key_cmp(ukey, ulen, ikey, nk_ikey_user_len(ilen));
}

bool nk_file_overlaps(const nk_file_meta *f, const char *lo, size_t lo_len, const char *hi,
                      size_t hi_len) {
  if (lo != NULL && ucmp_ikey(lo, lo_len, f->largest, f->largest_len) > 0) return false;
  if (hi != NULL && ucmp_ikey(hi, hi_len, f->smallest, f->smallest_len) < 0) return false;
  return true;
}

static int probe(nk_table_cache *tc, const nk_file_meta *f, const char *target, size_t n,
                 uint64_t key_hash, nk_get_result *r, uint64_t *probed) {
  nk_table *t;
  nk_cache_handle *h;
  NK_RET(nk_table_cache_get(tc, f->number, f->size, &t, &h));
  (*probed)++;
  int ret = nk_table_get(t, target, n, key_hash, r);
  nk_table_cache_release(tc, h);
  return ret;
}

/* The first file of a sorted level whose largest key is >= ikey. */
static size_t find_file(nk_file_meta *const *files, size_t n, const char *ikey, size_t klen) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (nk_ikey_cmp(files[mid]->largest, files[mid]->largest_len, ikey, klen) < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

int nk_version_get(const nk_version *v, nk_table_cache *tc, const char *target, size_t n,
                   uint64_t key_hash, uint64_t min_ts, nk_get_result *r, uint64_t *probed) {
  const char *ukey = target;
  size_t ulen = nk_ikey_user_len(n);
  r->found = false;
  r->val = NULL;
  for (size_t i = 0; i < v->nfiles[0]; i++) {
    const nk_file_meta *f = v->files[0][i];
    if (f->max_ts < min_ts || !nk_file_overlaps(f, ukey, ulen, ukey, ulen)) continue;
    NK_RET(probe(tc, f, target, n, key_hash, r, probed));
    if (r->found) return NOKV_OK;
  }
  for (int l = 1; l < NK_NUM_LEVELS; l++) {
    size_t i = find_file(v->files[l], v->nfiles[l], target, n);
    if (i == v->nfiles[l]) continue;
    const nk_file_meta *f = v->files[l][i];
    if (f->max_ts < min_ts || ucmp_ikey(ukey, ulen, f->smallest, f->smallest_len) < 0) continue;
    NK_RET(probe(tc, f, target, n, key_hash, r, probed));
    if (r->found) return NOKV_OK;
  }
  return NOKV_OK;
}

/* ---- level iterator: the list of a level's tables over the tables ---- */

/* An iterator over a sorted array of file metas: key = the table's largest key,
 * value = the bytes of the meta pointer. */
typedef struct file_list_iter {
  nk_iter base;
  nk_file_meta *const *files;
  size_t n, i;  /* i == n: invalid */
} file_list_iter;

static bool fl_valid(const nk_iter *base) {
  const file_list_iter *it = (const file_list_iter *)base;
  return it->i < it->n;
}
static void fl_seek_first(nk_iter *base) { ((file_list_iter *)base)->i = 0; }
static void fl_seek(nk_iter *base, const char *k, size_t n) {
  file_list_iter *it = (file_list_iter *)base;
  it->i = find_file(it->files, it->n, k, n);
}
static void fl_next(nk_iter *base) { ((file_list_iter *)base)->i++; }
static const char *fl_key(const nk_iter *base, size_t *n) {
  const file_list_iter *it = (const file_list_iter *)base;
  *n = it->files[it->i]->largest_len;
  return it->files[it->i]->largest;
}
static const char *fl_value(const nk_iter *base, size_t *n) {
  const file_list_iter *it = (const file_list_iter *)base;
  *n = sizeof it->files[it->i];
  return (const char *)&it->files[it->i];
}
static int fl_status(const nk_iter *base) { (void)base; return NOKV_OK; }
static void fl_destroy(nk_iter *base) { free(base); }

static const nk_iter_ops file_list_ops = {fl_valid, fl_seek_first, fl_seek,   fl_next,
                                          fl_key,   fl_value,      fl_status, fl_destroy};

static nk_iter *open_table(void *tc, const char *value, size_t n, nk_iter *reuse, int *status) {
  nk_file_meta *f;
  memcpy(&f, value, sizeof f);
  (void)n, (void)reuse;
  nk_iter *it = nk_table_cache_iter(tc, f->number, f->size);
  if (it == NULL) *status = nk_err(NOKV_ENOMEM, "out of memory opening a table iterator");
  return it;
}

nk_iter *nk_files_iter_new(nk_file_meta *const *files, size_t n, nk_table_cache *tc) {
  file_list_iter *list = calloc(1, sizeof *list);
  if (list == NULL) return NULL;
  *list = (file_list_iter){.base.ops = &file_list_ops, .files = files, .n = n, .i = n};
  return nk_two_level_iter_new(&list->base, open_table, tc);
}

nk_iter *nk_level_iter_new(const nk_version *v, int level, nk_table_cache *tc) {
  return nk_files_iter_new(v->files[level], v->nfiles[level], tc);
}
