/*
 * checksum.h — the checksum of every on-disk record: the low 32 bits of XXH3-64
 * (xxHash, Debian's libxxhash) seeded with a caller-chosen 64-bit value, so a
 * record's header fields (length, type) are covered without copying them in
 * front of the payload.
 */
#ifndef NOKV_UTIL_CHECKSUM_H
#define NOKV_UTIL_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

uint32_t nk_checksum32(const void *data, size_t len, uint64_t seed);

/* A 64-bit hash (XXH3-64) for bloom filters and caches; not a checksum. */
uint64_t nk_hash64(const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_UTIL_CHECKSUM_H */
