/*
 * internal_key.h — versioned keys and memtable entries.
 *
 * An internal key is (user key, commit_ts, kind). Internal keys order by user key
 * ascending, then commit_ts descending, so a seek to (key, read_ts) lands on the
 * newest version visible at read_ts. The trailer packs commit_ts << 8 | kind into
 * 8 bytes, which caps timestamps at 2^56 - 1.
 *
 * A memtable entry, as stored in the arena:
 *   varint32 key_len | key | fixed64 trailer | varint32 value_len | value
 */
#ifndef NOKV_MEMTABLE_INTERNAL_KEY_H
#define NOKV_MEMTABLE_INTERNAL_KEY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/coding.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nk_kind {
  NK_KIND_DELETE = 0,
  NK_KIND_VALUE = 1,
  /* The value is a pointer into the value log (vlog/vlog.h), not the value. */
  NK_KIND_VPTR = 2,
  /* In a batch on its way to the write leader only, never on disk: the value is
   * the caller's memory (address and length), which the leader copies straight
   * to the value log. Saves nokv_put a copy of every large value. */
  NK_KIND_VALUE_REF = 3,
  /* VALUE and VPTR of a version that expires (nokv_batch_put_ttl): the value
   * bytes start with NK_TTL_PREFIX bytes, the expiry time (fixed64
   * milliseconds since the Unix epoch, wall clock), followed by what VALUE or
   * VPTR would hold. The value log holds the value alone. */
  NK_KIND_VALUE_TTL = 4,
  NK_KIND_VPTR_TTL = 5,
  /* A range tombstone (version/range_del.h) in a batch and the WAL: the key is
   * the range's start, the value its end (exclusive). The memtable keeps these
   * beside its skiplist and a flush hands them to the version: no table holds
   * one. */
  NK_KIND_RANGE_DEL = 6,
} nk_kind;

#define NK_TTL_PREFIX 8

/* A version that carries a value (inline or in the value log). */
static inline int nk_kind_has_value(nk_kind k) {
  return k == NK_KIND_VALUE || k == NK_KIND_VPTR || k == NK_KIND_VALUE_TTL ||
         k == NK_KIND_VPTR_TTL;
}
/* A version whose value is in the value log. */
static inline int nk_kind_in_vlog(nk_kind k) { return k == NK_KIND_VPTR || k == NK_KIND_VPTR_TTL; }
static inline int nk_kind_expires(nk_kind k) {
  return k == NK_KIND_VALUE_TTL || k == NK_KIND_VPTR_TTL;
}

/* A stored version's value, opened: kind is NK_KIND_VALUE or NK_KIND_VPTR (or
 * NK_KIND_DELETE), expires_ms its expiry (0: never), val what that kind holds. */
typedef struct nk_value {
  nk_kind kind;
  uint64_t expires_ms;
  const char *val;
  size_t vlen;
} nk_value;

/* Opens the value v of a version of kind k; false if an expiring one is too
 * short to hold its expiry (corruption). */
static inline int nk_value_open(nk_kind k, const char *v, size_t vn, nk_value *out) {
  out->kind = k;
  out->expires_ms = 0;
  out->val = v;
  out->vlen = vn;
  if (!nk_kind_expires(k)) return 1;
  if (vn < NK_TTL_PREFIX) return 0;
  out->kind = k == NK_KIND_VALUE_TTL ? NK_KIND_VALUE : NK_KIND_VPTR;
  out->expires_ms = nk_get_u64(v);
  out->val = v + NK_TTL_PREFIX;
  out->vlen = vn - NK_TTL_PREFIX;
  return 1;
}

/* Whether a version expiring at expires_ms (0: never) is gone at now_ms. */
static inline int nk_expired(uint64_t expires_ms, uint64_t now_ms) {
  return expires_ms != 0 && expires_ms <= now_ms;
}

#define NK_MAX_TS ((UINT64_C(1) << 56) - 1)

static inline uint64_t nk_trailer(uint64_t ts, nk_kind kind) { return ts << 8 | (uint64_t)kind; }
static inline uint64_t nk_trailer_ts(uint64_t trailer) { return trailer >> 8; }
static inline nk_kind nk_trailer_kind(uint64_t trailer) { return (nk_kind)(trailer & 0xff); }

/* A decoded memtable entry; pointers borrow the arena's bytes. */
typedef struct nk_entry {
  const char *key;
  size_t klen;
  uint64_t ts;
  nk_kind kind;
  const char *val;
  size_t vlen;
} nk_entry;

static inline size_t nk_entry_encoded_len(size_t klen, size_t vlen) {
  return nk_varint_len(klen) + klen + 8 + nk_varint_len(vlen) + vlen;
}

static inline void nk_entry_encode(char *p, const char *key, size_t klen, uint64_t ts,
                                   nk_kind kind, const char *val, size_t vlen) {
  p = nk_put_varint64(p, klen);
  memcpy(p, key, klen);
  p += klen;
  nk_put_u64(p, nk_trailer(ts, kind));
  p += 8;
  p = nk_put_varint64(p, vlen);
  if (vlen > 0) {
    memcpy(p, val, vlen);
  }
}

/* Decodes an entry the engine itself encoded (no bounds to check). */
static inline void nk_entry_decode(const char *p, nk_entry *e) {
  uint32_t n = 0;
  p = nk_get_varint32(p, p + NK_VARINT32_MAX, &n);
  e->key = p;
  e->klen = n;
  p += n;
  uint64_t trailer = nk_get_u64(p);
  e->ts = nk_trailer_ts(trailer);
  e->kind = nk_trailer_kind(trailer);
  p += 8;
  p = nk_get_varint32(p, p + NK_VARINT32_MAX, &n);
  e->val = p;
  e->vlen = n;
}

/* memcmp of n bytes, 8 at a time as big-endian words: no call for short keys,
 * which are what the memtable compares most. */
static inline int nk_bytes_cmp(const char *a, const char *b, size_t n) {
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
  return n ? memcmp(a, b, n) : 0;
#endif
  while (n >= 8) {
    uint64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x != y) {
      x = __builtin_bswap64(x);
      y = __builtin_bswap64(y);
      return x < y ? -1 : 1;
    }
    a += 8;
    b += 8;
    n -= 8;
  }
  for (; n > 0; n--, a++, b++) {
    if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
  }
  return 0;
}

/* Orders user keys bytewise (memcmp, shorter first on a tie). */
static inline int nk_user_key_cmp(const char *a, size_t alen, const char *b, size_t blen) {
  int c = nk_bytes_cmp(a, b, alen < blen ? alen : blen);
  if (c != 0) {
    return c;
  }
  return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

/* Orders (akey, ats) against (bkey, bts): user key ascending, ts descending. */
static inline int nk_internal_cmp(const char *akey, size_t alen, uint64_t ats, const char *bkey,
                                  size_t blen, uint64_t bts) {
  int c = nk_user_key_cmp(akey, alen, bkey, blen);
  if (c != 0) {
    return c;
  }
  if (ats != bts) {
    return ats > bts ? -1 : 1;
  }
  return 0;
}

/* ---- encoded internal keys: user key | fixed64 trailer ---- */

#define NK_IKEY_TRAILER 8
/* The kind byte a seek target uses: it sorts before every real kind of the same
 * (key, ts), so a seek to (key, ts) lands on the newest version <= ts. */
#define NK_KIND_SEEK 0xff

static inline uint64_t nk_ikey_trailer(const char *ikey, size_t n) {
  return nk_get_u64(ikey + n - NK_IKEY_TRAILER);
}
static inline size_t nk_ikey_user_len(size_t n) { return n - NK_IKEY_TRAILER; }

/* Orders encoded internal keys: user key ascending, trailer descending. */
static inline int nk_ikey_cmp(const char *a, size_t alen, const char *b, size_t blen) {
  int c = nk_user_key_cmp(a, alen - NK_IKEY_TRAILER, b, blen - NK_IKEY_TRAILER);
  if (c != 0) return c;
  uint64_t ta = nk_ikey_trailer(a, alen), tb = nk_ikey_trailer(b, blen);
  return ta > tb ? -1 : (ta < tb ? 1 : 0);
}

/* Writes key | trailer(ts, kind) at dst (klen + 8 bytes). */
static inline void nk_ikey_encode(char *dst, const char *key, size_t klen, uint64_t ts,
                                  unsigned kind) {
  if (klen > 0) memcpy(dst, key, klen);
  nk_put_u64(dst + klen, ts << 8 | kind);
}

#ifdef __cplusplus
}
#endif

#endif /* NOKV_MEMTABLE_INTERNAL_KEY_H */
