/* range_del.c — fragmenting range tombstones, and looking keys up in them. */
#include "version/range_del.h"

#include <stdlib.h>
#include <string.h>

#include "memtable/internal_key.h"
#include "util/grow.h"

typedef struct bound {
  const char *k;
  size_t n;
} bound;

static int cmp_bound(const void *a, const void *b) {
  const bound *x = a, *y = b;
  return nk_user_key_cmp(x->k, x->n, y->k, y->n);
}

static int cmp_ts_desc(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x > y ? -1 : (x < y);
}

static int cmp_by_start(const void *a, const void *b) {
  const nk_rdel *x = a, *y = b;
  return nk_user_key_cmp(x->start, x->slen, y->start, y->slen);
}

void nk_rdel_set_ref(nk_rdel_set *s) { __atomic_fetch_add(&s->refs, 1, __ATOMIC_RELAXED); }

static void set_free(nk_rdel_set *s) {
  free(s->dels);
  free(s->frags);
  free(s->ts_pool);
  free(s->bytes);
  free(s);
}

void nk_rdel_set_unref(nk_rdel_set *s) {
  if (s != NULL && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) set_free(s);
}

/* Cuts s->dels into fragments. false on ENOMEM. */
static bool fragment(nk_rdel_set *s) {
  size_t m = s->n, nb = 0;
  bound *b = malloc(2 * m * sizeof *b);
  size_t *active = malloc(m * sizeof *active);
  uint64_t *tmp = malloc(m * sizeof *tmp);
  size_t frags_cap = 0, pool_cap = 0, pool_len = 0;
  bool ok = b != NULL && active != NULL && tmp != NULL;
  if (!ok) goto done;
  for (size_t i = 0; i < m; i++) {
    b[nb++] = (bound){s->dels[i].start, s->dels[i].slen};
    b[nb++] = (bound){s->dels[i].end, s->dels[i].elen};
  }
  qsort(b, nb, sizeof *b, cmp_bound);
  size_t u = 0;
  for (size_t i = 0; i < nb; i++) {
    if (u == 0 || cmp_bound(&b[u - 1], &b[i]) != 0) b[u++] = b[i];
  }
  nb = u;
  qsort(s->dels, m, sizeof *s->dels, cmp_by_start);
  /* Pool offsets, not pointers, while it may move. */
  size_t *offs = NULL, offs_cap = 0;
  size_t p = 0, nactive = 0;
  for (size_t i = 0; ok && i + 1 < nb; i++) {
    const bound *lo = &b[i], *hi = &b[i + 1];
    while (p < m && nk_user_key_cmp(s->dels[p].start, s->dels[p].slen, lo->k, lo->n) <= 0) {
      active[nactive++] = p++;
    }
    size_t k = 0, nts = 0;
    for (size_t j = 0; j < nactive; j++) {
      const nk_rdel *d = &s->dels[active[j]];
      if (nk_user_key_cmp(d->end, d->elen, lo->k, lo->n) <= 0) continue;  /* ended */
      active[k++] = active[j];
      tmp[nts++] = d->ts;
    }
    nactive = k;
    if (nts == 0) continue;
    qsort(tmp, nts, sizeof *tmp, cmp_ts_desc);
    size_t w = 0;
    for (size_t j = 0; j < nts; j++) {
      if (w == 0 || tmp[w - 1] != tmp[j]) tmp[w++] = tmp[j];
    }
    nts = w;
    nk_rdel_frag *prev = s->nfrags > 0 ? &s->frags[s->nfrags - 1] : NULL;
    if (prev != NULL && prev->nts == nts &&
        nk_user_key_cmp(prev->hi, prev->hi_len, lo->k, lo->n) == 0 &&
        memcmp(s->ts_pool + offs[s->nfrags - 1], tmp, nts * sizeof *tmp) == 0) {
      prev->hi = hi->k;  /* the same tombstones go on: one fragment */
      prev->hi_len = hi->n;
      continue;
    }
    if (!nk_grow((void **)&s->frags, &frags_cap, s->nfrags, sizeof *s->frags) ||
        !nk_grow((void **)&offs, &offs_cap, s->nfrags, sizeof *offs)) {
      ok = false;
      break;
    }
    while (pool_len + nts > pool_cap) {
      size_t cap = pool_cap ? 2 * pool_cap : 64;
      uint64_t *np = realloc(s->ts_pool, cap * sizeof *np);
      if (np == NULL) {
        ok = false;
        break;
      }
      s->ts_pool = np;
      pool_cap = cap;
    }
    if (!ok) break;
    memcpy(s->ts_pool + pool_len, tmp, nts * sizeof *tmp);
    offs[s->nfrags] = pool_len;
    s->frags[s->nfrags++] =
        (nk_rdel_frag){.lo = lo->k, .lo_len = lo->n, .hi = hi->k, .hi_len = hi->n, .nts = nts};
    pool_len += nts;
  }
  for (size_t i = 0; ok && i < s->nfrags; i++) s->frags[i].ts = s->ts_pool + offs[i];
  free(offs);
done:
  free(b);
  free(active);
  free(tmp);
  return ok;
}

nk_rdel_set *nk_rdel_set_build(const nk_rdel *const *dels, size_t n, uint64_t max_ts, bool *oom) {
  *oom = false;
  size_t m = 0, bytes = 0;
  for (size_t i = 0; i < n; i++) {
    if (dels[i]->ts <= max_ts) {
      m++;
      bytes += dels[i]->slen + dels[i]->elen;
    }
  }
  if (m == 0) return NULL;
  nk_rdel_set *s = calloc(1, sizeof *s);
  if (s == NULL || (s->dels = malloc(m * sizeof *s->dels)) == NULL ||
      (s->bytes = malloc(bytes ? bytes : 1)) == NULL) {
    if (s != NULL) set_free(s);
    *oom = true;
    return NULL;
  }
  s->refs = 1;
  char *p = s->bytes;
  for (size_t i = 0; i < n; i++) {
    const nk_rdel *d = dels[i];
    if (d->ts > max_ts) continue;
    nk_rdel *c = &s->dels[s->n++];
    *c = (nk_rdel){.start = p, .slen = d->slen, .ts = d->ts};
    if (d->slen > 0) memcpy(p, d->start, d->slen);  /* an empty start may be NULL */
    p += d->slen;
    c->end = p;
    c->elen = d->elen;
    memcpy(p, d->end, d->elen);
    p += d->elen;
  }
  if (!fragment(s)) {
    set_free(s);
    *oom = true;
    return NULL;
  }
  return s;
}

/* The first fragment from `from` on whose end is past key. */
static size_t first_ending_after(const nk_rdel_set *s, size_t from, const char *key, size_t n) {
  size_t lo = from, hi = s->nfrags;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (nk_user_key_cmp(s->frags[mid].hi, s->frags[mid].hi_len, key, n) <= 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

static uint64_t cover_at(const nk_rdel_set *s, size_t i, const char *key, size_t n,
                         uint64_t read_ts) {
  if (i >= s->nfrags) return 0;
  const nk_rdel_frag *f = &s->frags[i];
  if (nk_user_key_cmp(key, n, f->lo, f->lo_len) < 0) return 0;
  for (size_t j = 0; j < f->nts; j++) {
    if (f->ts[j] <= read_ts) return f->ts[j];
  }
  return 0;
}

uint64_t nk_rdel_set_cover(const nk_rdel_set *s, const char *key, size_t klen, uint64_t read_ts) {
  if (s == NULL) return 0;
  return cover_at(s, first_ending_after(s, 0, key, klen), key, klen, read_ts);
}

uint64_t nk_rdel_set_cover_seq(const nk_rdel_set *s, size_t *hint, const char *key, size_t klen,
                               uint64_t read_ts) {
  if (s == NULL) return 0;
  size_t h = *hint <= s->nfrags ? *hint : 0;
  if (h > 0 && nk_user_key_cmp(key, klen, s->frags[h - 1].hi, s->frags[h - 1].hi_len) < 0) {
    h = first_ending_after(s, 0, key, klen);  /* went back: search afresh */
  } else {
    for (int steps = 0;
         h < s->nfrags && nk_user_key_cmp(key, klen, s->frags[h].hi, s->frags[h].hi_len) >= 0;
         steps++, h++) {
      if (steps == 8) {
        h = first_ending_after(s, h, key, klen);
        break;
      }
    }
  }
  *hint = h;
  return cover_at(s, h, key, klen, read_ts);
}

bool nk_rdel_overlaps(const nk_rdel *d, const char *lo, size_t lo_len, const char *hi,
                      size_t hi_len) {
  if (lo != NULL && nk_user_key_cmp(lo, lo_len, d->end, d->elen) >= 0) return false;
  if (hi != NULL && nk_user_key_cmp(hi, hi_len, d->start, d->slen) < 0) return false;
  return true;
}
