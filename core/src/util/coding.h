/*
 * coding.h — little-endian fixed-width integers and LEB128 varints, the two
 * encodings of every on-disk and in-memory format (as in LevelDB's util/coding).
 */
#ifndef NOKV_UTIL_CODING_H
#define NOKV_UTIL_CODING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline void nk_put_u32(char *p, uint32_t v) {
  unsigned char *b = (unsigned char *)p;
  b[0] = (unsigned char)v;
  b[1] = (unsigned char)(v >> 8);
  b[2] = (unsigned char)(v >> 16);
  b[3] = (unsigned char)(v >> 24);
}

static inline void nk_put_u64(char *p, uint64_t v) {
  nk_put_u32(p, (uint32_t)v);
  nk_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t nk_get_u32(const char *p) {
  const unsigned char *b = (const unsigned char *)p;
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t nk_get_u64(const char *p) {
  return (uint64_t)nk_get_u32(p) | (uint64_t)nk_get_u32(p + 4) << 32;
}

enum { NK_VARINT32_MAX = 5, NK_VARINT64_MAX = 10 };

/* Writes v at p; returns the byte after it. */
static inline char *nk_put_varint64(char *p, uint64_t v) {
  unsigned char *b = (unsigned char *)p;
  while (v >= 0x80) {
    *b++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *b++ = (unsigned char)v;
  return (char *)b;
}

static inline size_t nk_varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Decodes a varint from [p, limit) into *v; returns the byte after it, or NULL
 * if the input is truncated or the value exceeds 64 bits. */
static inline const char *nk_get_varint64(const char *p, const char *limit, uint64_t *v) {
  uint64_t result = 0;
  for (unsigned shift = 0; shift <= 63 && p < limit; shift += 7) {
    uint64_t byte = (unsigned char)*p++;
    if (shift == 63 && byte > 1) {
      return NULL;
    }
    result |= (byte & 0x7f) << shift;
    if (byte < 0x80) {
      *v = result;
      return p;
    }
  }
  return NULL;
}

/* Like nk_get_varint64 but rejects values above UINT32_MAX. */
static inline const char *nk_get_varint32(const char *p, const char *limit, uint32_t *v) {
  uint64_t x;
  p = nk_get_varint64(p, limit, &x);
  if (p == NULL || x > UINT32_MAX) {
    return NULL;
  }
  *v = (uint32_t)x;
  return p;
}

#ifdef __cplusplus
}
#endif

#endif /* NOKV_UTIL_CODING_H */
