/* block.c — block decoding and the block iterator (binary search over restarts). */
#include "sst/block.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "memtable/internal_key.h"
#include "sst/block_builder.h"
#include "util/coding.h"
#include "util/error.h"

int nk_block_init(nk_block *b, char *data, size_t len) {
  uint32_t n = len < 4 ? 0 : nk_get_u32(data + len - 4);
  if (n == 0 || n > (len - 4) / 4) return nk_err(NOKV_ECORRUPT, "bad block restart array");
  b->data = data;
  b->owned = false;
  b->size = len - 4 - 4 * (size_t)n;
  b->nrestarts = n;
  b->restarts = data + b->size;
  return NOKV_OK;
}

int nk_block_new(char *data, size_t len, bool owned, nk_block **out) {
  nk_block *b = malloc(sizeof *b);
  int rc = b == NULL ? nk_err(NOKV_ENOMEM, "out of memory for a block") : nk_block_init(b, data, len);
  if (rc != NOKV_OK) {
    free(b);
    if (owned) free(data);
    return rc;
  }
  b->owned = owned;
  *out = b;
  return NOKV_OK;
}

void nk_block_free(nk_block *b) {
  if (b != NULL) {
    if (b->owned) free(b->data);
    free(b);
  }
}

void nk_block_free_void(void *b) { nk_block_free(b); }

typedef struct block_iter {
  nk_iter base;
  const nk_block *b;
  size_t cur;       /* offset of the current entry; b->size when invalid */
  size_t next_off;  /* offset of the entry after it */
  uint32_t restart; /* restart region holding cur */
  nk_buf key;
  const char *val;
  size_t vlen;
  int status;
  void (*cleanup)(void *, void *);
  void *arg1, *arg2;
  nk_block borrowed; /* the block's header, for nk_block_iter_borrow */
} block_iter;

static uint32_t restart_at(const nk_block *b, uint32_t i) { return nk_get_u32(b->restarts + 4 * (size_t)i); }

/* The entry at off: its header (shared and unshared key bytes, value length)
 * and a pointer to its unshared key bytes, which the value follows. NULL if
 * the header is malformed or the entry runs past the block. */
static const char *decode_entry(const nk_block *b, size_t off, uint32_t *shared,
                                uint32_t *unshared, uint32_t *vlen) {
  const char *p = b->data + off, *limit = b->data + b->size;
  if ((p = nk_get_varint32(p, limit, shared)) == NULL ||
      (p = nk_get_varint32(p, limit, unshared)) == NULL ||
      (p = nk_get_varint32(p, limit, vlen)) == NULL ||
      (size_t)(limit - p) < (size_t)*unshared + *vlen) {
    return NULL;
  }
  return p;
}

static void corrupt(block_iter *it) {
  it->status = nk_err(NOKV_ECORRUPT, "corrupt block entry");
  it->cur = it->next_off = it->b->size;
}

/* Decodes the entry at it->next_off into the current position. false at the end
 * or on corruption. */
static bool parse_next(block_iter *it) {
  const nk_block *b = it->b;
  it->cur = it->next_off;
  if (it->cur >= b->size) {
    it->cur = it->next_off = b->size;
    return false;
  }
  uint32_t shared, unshared, vlen;
  const char *p = decode_entry(b, it->cur, &shared, &unshared, &vlen);
  if (p == NULL || shared > it->key.len) {
    corrupt(it);
    return false;
  }
  it->key.len = shared;
  if (!nk_buf_append(&it->key, p, unshared)) {
    it->status = nk_err(NOKV_ENOMEM, "out of memory in a block iterator");
    it->cur = it->next_off = b->size;
    return false;
  }
  if (it->key.len < NK_IKEY_TRAILER) {
    corrupt(it);
    return false;
  }
  it->val = p + unshared;
  it->vlen = vlen;
  it->next_off = (size_t)(it->val + vlen - b->data);
  while (it->restart + 1 < b->nrestarts && restart_at(b, it->restart + 1) <= it->cur) {
    it->restart++;
  }
  return true;
}

static void seek_to_restart(block_iter *it, uint32_t i) {
  it->key.len = 0;
  it->restart = i;
  it->next_off = restart_at(it->b, i);
}

static bool bi_valid(const nk_iter *base) {
  const block_iter *it = (const block_iter *)base;
  return it->cur < it->b->size;
}

static void bi_seek_first(nk_iter *base) {
  block_iter *it = (block_iter *)base;
  seek_to_restart(it, 0);
  parse_next(it);
}

static void bi_next(nk_iter *base) { parse_next((block_iter *)base); }

/* The key stored whole at restart i, or NULL if malformed. */
static const char *restart_key(const nk_block *b, uint32_t i, size_t *n) {
  uint32_t off = restart_at(b, i);
  if (off >= b->size) return NULL;
  uint32_t shared, unshared, vlen;
  const char *p = decode_entry(b, off, &shared, &unshared, &vlen);
  if (p == NULL || shared != 0 || unshared < NK_IKEY_TRAILER) return NULL;
  *n = unshared;
  return p;
}

/* The last restart of b whose key is < target (0 if none), by binary search.
 * false if a restart key is malformed. */
static bool last_restart_below(const nk_block *b, const char *target, size_t tn, uint32_t *out) {
  uint32_t lo = 0, hi = b->nrestarts - 1;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo + 1) / 2;
    size_t n;
    const char *k = restart_key(b, mid, &n);
    if (k == NULL) return false;
    if (nk_ikey_cmp(k, n, target, tn) < 0) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  *out = lo;
  return true;
}

static void bi_seek(nk_iter *base, const char *target, size_t tn) {
  block_iter *it = (block_iter *)base;
  uint32_t lo;
  if (!last_restart_below(it->b, target, tn, &lo)) {
    corrupt(it);
    return;
  }
  seek_to_restart(it, lo);
  while (parse_next(it)) {
    if (nk_ikey_cmp(it->key.data, it->key.len, target, tn) >= 0) return;
  }
}

int nk_block_find(const nk_block *b, const char *target, size_t tn, nk_buf *scratch,
                  nk_block_entry *e) {
  uint32_t lo;
  if (!last_restart_below(b, target, tn, &lo)) return nk_err(NOKV_ECORRUPT, "corrupt block entry");
  /* Then entry by entry. A key stored whole is used in place; one sharing a
   * prefix is rebuilt in scratch (the previous key is either there or in place,
   * and is copied there first). */
  const char *prev = NULL;
  size_t prev_len = 0;
  for (size_t off = restart_at(b, lo); off < b->size;) {
    uint32_t shared, unshared, vlen;
    const char *p = decode_entry(b, off, &shared, &unshared, &vlen);
    if (p == NULL || shared > prev_len || shared + unshared < NK_IKEY_TRAILER) {
      return nk_err(NOKV_ECORRUPT, "corrupt block entry");
    }
    const char *key;
    size_t klen = (size_t)shared + unshared;
    if (shared == 0) {
      key = p;
    } else {
      if (prev != scratch->data) {
        scratch->len = 0;
        if (!nk_buf_append(scratch, prev, shared)) return nk_err(NOKV_ENOMEM, "out of memory");
      }
      scratch->len = shared;
      if (!nk_buf_append(scratch, p, unshared)) return nk_err(NOKV_ENOMEM, "out of memory");
      key = scratch->data;
    }
    if (nk_ikey_cmp(key, klen, target, tn) >= 0) {
      *e = (nk_block_entry){.key = key, .klen = klen, .val = p + unshared, .vlen = vlen};
      return NOKV_OK;
    }
    prev = key;
    prev_len = klen;
    off = (size_t)(p + unshared + vlen - b->data);
  }
  return NOKV_ENOTFOUND;
}

static const char *bi_key(const nk_iter *base, size_t *n) {
  const block_iter *it = (const block_iter *)base;
  *n = it->key.len;
  return it->key.data;
}

static const char *bi_value(const nk_iter *base, size_t *n) {
  const block_iter *it = (const block_iter *)base;
  *n = it->vlen;
  return it->val;
}

static int bi_status(const nk_iter *base) { return ((const block_iter *)base)->status; }

static void bi_destroy(nk_iter *base) {
  block_iter *it = (block_iter *)base;
  nk_buf_release(&it->key);
  if (it->cleanup != NULL) it->cleanup(it->arg1, it->arg2);
  free(it);
}

static const nk_iter_ops block_iter_ops = {bi_valid, bi_seek_first, bi_seek,   bi_next,
                                           bi_key,   bi_value,      bi_status, bi_destroy};

/* Aims it at b, keeping its key buffer's capacity (what reuse saves). */
static void aim(block_iter *it, const nk_block *b, void (*cleanup)(void *, void *), void *arg1,
                void *arg2) {
  nk_buf key = it->key;
  key.len = 0;
  *it = (block_iter){.base.ops = &block_iter_ops, .b = b, .cur = b->size, .next_off = b->size,
                     .key = key, .cleanup = cleanup, .arg1 = arg1, .arg2 = arg2};
}

bool nk_block_iter_reset(nk_iter *base, const nk_block *b, void (*cleanup)(void *, void *),
                         void *arg1, void *arg2) {
  if (base == NULL || base->ops != &block_iter_ops) return false;
  block_iter *it = (block_iter *)base;
  if (it->cleanup != NULL) it->cleanup(it->arg1, it->arg2);
  aim(it, b, cleanup, arg1, arg2);
  return true;
}

nk_iter *nk_block_iter_new(const nk_block *b, void (*cleanup)(void *, void *), void *arg1,
                           void *arg2) {
  block_iter *it = calloc(1, sizeof *it);
  if (it == NULL) return NULL;
  aim(it, b, cleanup, arg1, arg2);
  return &it->base;
}

nk_iter *nk_block_iter_borrow(nk_iter *reuse, const nk_block *b, int *status) {
  block_iter *it = (block_iter *)reuse;
  if (!nk_block_iter_reset(reuse, b, NULL, NULL, NULL)) {
    if ((it = calloc(1, sizeof *it)) == NULL) {
      *status = nk_err(NOKV_ENOMEM, "out of memory for a block iterator");
      return NULL;
    }
    aim(it, b, NULL, NULL, NULL);
  }
  it->borrowed = *b;
  it->b = &it->borrowed;
  return &it->base;
}
