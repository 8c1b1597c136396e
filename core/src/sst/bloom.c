/* bloom.c — full-table bloom filter with double hashing. */
#include "sst/bloom.h"

#include <stdlib.h>
#include <string.h>

void nk_bloom_builder_init(nk_bloom_builder *b, int bits_per_key) {
  memset(b, 0, sizeof *b);
  b->bits_per_key = bits_per_key;
}

void nk_bloom_builder_release(nk_bloom_builder *b) {
  free(b->hashes);
  b->hashes = NULL;
  b->n = b->cap = 0;
}

bool nk_bloom_add_hash(nk_bloom_builder *b, uint64_t h) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 1024;
    uint64_t *p = realloc(b->hashes, cap * sizeof *p);
    if (p == NULL) return false;
    b->hashes = p;
    b->cap = cap;
  }
  b->hashes[b->n++] = h;
  return true;
}

static inline uint64_t probe_delta(uint64_t h) { return (h >> 33) | (h << 31) | 1; }

bool nk_bloom_finish(nk_bloom_builder *b, nk_buf *out) {
  if (b->bits_per_key <= 0) return true;  /* no filter */
  /* ln 2 * bits per key probes minimise the false positive rate. */
  int k = (int)(b->bits_per_key * 0.69);
  if (k < 1) k = 1;
  if (k > 30) k = 30;
  uint64_t bits = (uint64_t)b->n * (uint64_t)b->bits_per_key;
  if (bits < 64) bits = 64;
  size_t bytes = (size_t)((bits + 7) / 8);
  bits = (uint64_t)bytes * 8;
  if (!nk_buf_reserve(out, bytes + 1)) return false;
  unsigned char *arr = (unsigned char *)out->data + out->len;
  memset(arr, 0, bytes);
  for (size_t i = 0; i < b->n; i++) {
    uint64_t h = b->hashes[i], delta = probe_delta(h);
    for (int j = 0; j < k; j++) {
      uint64_t pos = h % bits;
      arr[pos / 8] |= (unsigned char)(1u << (pos % 8));
      h += delta;
    }
  }
  arr[bytes] = (unsigned char)k;
  out->len += bytes + 1;
  return true;
}

bool nk_bloom_may_match(const char *filter, size_t len, uint64_t h) {
  if (len < 2) return true;
  const unsigned char *arr = (const unsigned char *)filter;
  int k = arr[len - 1];
  if (k < 1 || k > 30) return true;
  uint64_t bits = (uint64_t)(len - 1) * 8, delta = probe_delta(h);
  for (int j = 0; j < k; j++) {
    uint64_t pos = h % bits;
    if ((arr[pos / 8] & (1u << (pos % 8))) == 0) return false;
    h += delta;
  }
  return true;
}
