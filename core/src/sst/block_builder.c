/* block_builder.c — prefix-compressed sorted blocks with restart points. */
#include "sst/block_builder.h"

#include <stdlib.h>
#include <string.h>

#include "util/coding.h"

bool nk_buf_reserve(nk_buf *b, size_t extra) {
  if (b->len + extra <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra) cap *= 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) return false;
  b->data = p;
  b->cap = cap;
  return true;
}

bool nk_buf_append(nk_buf *b, const void *p, size_t n) {
  if (!nk_buf_reserve(b, n)) return false;
  if (n > 0) memcpy(b->data + b->len, p, n);
  b->len += n;
  return true;
}

void nk_buf_release(nk_buf *b) {
  free(b->data);
  *b = (nk_buf){0};
}

void nk_block_builder_init(nk_block_builder *b, int restart_interval) {
  memset(b, 0, sizeof *b);
  b->interval = restart_interval < 1 ? 1 : restart_interval;
}

void nk_block_builder_release(nk_block_builder *b) {
  nk_buf_release(&b->buf);
  nk_buf_release(&b->last_key);
  free(b->restarts);
  b->restarts = NULL;
}

void nk_block_builder_reset(nk_block_builder *b) {
  b->buf.len = 0;
  b->last_key.len = 0;
  b->nrestarts = 0;
  b->counter = 0;
  b->finished = false;
  b->entries = 0;
}

static bool push_restart(nk_block_builder *b, uint32_t off) {
  if (b->nrestarts == b->restarts_cap) {
    size_t cap = b->restarts_cap ? b->restarts_cap * 2 : 64;
    uint32_t *r = realloc(b->restarts, cap * sizeof *r);
    if (r == NULL) return false;
    b->restarts = r;
    b->restarts_cap = cap;
  }
  b->restarts[b->nrestarts++] = off;
  return true;
}

bool nk_block_builder_add(nk_block_builder *b, const char *key, size_t klen, const char *val,
                          size_t vlen) {
  size_t shared = 0;
  if (b->counter < b->interval && b->entries > 0) {
    size_t n = klen < b->last_key.len ? klen : b->last_key.len;
    while (shared < n && b->last_key.data[shared] == key[shared]) shared++;
  } else {
    if (!push_restart(b, (uint32_t)b->buf.len)) return false;
    b->counter = 0;
  }
  size_t unshared = klen - shared;
  if (!nk_buf_reserve(&b->buf, 3 * NK_VARINT32_MAX + unshared + vlen)) return false;
  char *p = b->buf.data + b->buf.len;
  p = nk_put_varint64(p, shared);
  p = nk_put_varint64(p, unshared);
  p = nk_put_varint64(p, vlen);
  memcpy(p, key + shared, unshared);
  p += unshared;
  if (vlen > 0) memcpy(p, val, vlen);
  p += vlen;
  b->buf.len = (size_t)(p - b->buf.data);
  b->last_key.len = shared;
  if (!nk_buf_append(&b->last_key, key + shared, unshared)) return false;
  b->counter++;
  b->entries++;
  return true;
}

bool nk_block_builder_finish(nk_block_builder *b) {
  if (b->nrestarts == 0 && !push_restart(b, 0)) return false;
  if (!nk_buf_reserve(&b->buf, 4 * (b->nrestarts + 1))) return false;
  for (size_t i = 0; i < b->nrestarts; i++) {
    nk_put_u32(b->buf.data + b->buf.len, b->restarts[i]);
    b->buf.len += 4;
  }
  nk_put_u32(b->buf.data + b->buf.len, (uint32_t)b->nrestarts);
  b->buf.len += 4;
  b->finished = true;
  return true;
}

size_t nk_block_builder_size_estimate(const nk_block_builder *b) {
  return b->buf.len + 4 * (b->nrestarts + 1);
}
