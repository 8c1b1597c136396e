/* checksum.c — XXH3. Short inputs use a copy compiled inline here (no call into
 * a .so on the hot path). On x86-64, long ones (values, blocks) go through
 * libxxhash's runtime dispatch, which picks the widest vector unit the CPU has
 * (AVX2/AVX-512) instead of the SSE2 code a portable build gets. Both give the
 * same hash. */
#include "util/checksum.h"

#if defined(__x86_64__)
/* From libxxhash (xxh_x86dispatch.h, which cannot be included next to the
 * inline copy: XXH_INLINE_ALL makes its declarations static). */
extern uint64_t XXH3_64bits_withSeed_dispatch(const void *input, size_t len, uint64_t seed);
#define DISPATCH_MIN 1024
#endif

#define XXH_INLINE_ALL
#include <xxhash.h>

uint32_t nk_checksum32(const void *data, size_t len, uint64_t seed) {
#if defined(DISPATCH_MIN)
  if (len >= DISPATCH_MIN) return (uint32_t)XXH3_64bits_withSeed_dispatch(data, len, seed);
#endif
  return (uint32_t)XXH3_64bits_withSeed(data, len, seed);
}

uint64_t nk_hash64(const void *data, size_t len) { return XXH3_64bits(data, len); }
