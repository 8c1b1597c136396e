/*
 * bloom.h — the full bloom filter of a table, over user keys.
 *
 * Layout: bit array (a whole number of bytes) | u8 probes. Probes use double
 * hashing of one 64-bit XXH3 hash (Kirsch–Mitzenmacher): position i is
 * h1 + i * h2 modulo the bit count. At 10 bits per key and 6–7 probes the false
 * positive rate is about 1%.
 */
#ifndef NOKV_SST_BLOOM_H
#define NOKV_SST_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sst/block_builder.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_bloom_builder {
  int bits_per_key;
  uint64_t *hashes;
  size_t n, cap;
} nk_bloom_builder;

void nk_bloom_builder_init(nk_bloom_builder *b, int bits_per_key);
void nk_bloom_builder_release(nk_bloom_builder *b);
/* Adds a user key's hash (nk_hash64). false on ENOMEM. */
bool nk_bloom_add_hash(nk_bloom_builder *b, uint64_t h);
/* Appends the filter to out. false on ENOMEM. */
bool nk_bloom_finish(nk_bloom_builder *b, nk_buf *out);

/* true if the key with hash h may be in the filter. A malformed or empty filter
 * matches everything (it can only cost a read, never hide a key). */
bool nk_bloom_may_match(const char *filter, size_t len, uint64_t h);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_SST_BLOOM_H */
