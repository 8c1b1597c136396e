/* checksum.c — XXH3 compiled inline here so the hot path needs no call into a .so. */
#include "util/checksum.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

uint32_t nk_checksum32(const void *data, size_t len, uint64_t seed) {
  return (uint32_t)XXH3_64bits_withSeed(data, len, seed);
}

uint64_t nk_hash64(const void *data, size_t len) { return XXH3_64bits(data, len); }
