/*
 * batch_internal.h — the encoding of a write batch, which is also the payload of
 * a WAL record (one format, as in LevelDB's WriteBatch):
 *
 *   fixed64 commit_ts | fixed32 count | count × op
 *   op = u8 kind | [fixed64 ts] | varint32 key_len | key | [varint32 value_len | value]
 *
 * The kind's low 7 bits are an nk_kind; a value follows for puts, value
 * pointers and range deletions (whose key is the range's start, value its end). With the high bit (NK_BATCH_OP_TS) set, the op carries its own
 * timestamp instead of the batch's: value-log GC rewrites a version in place
 * (same key and timestamp, new pointer), which only the engine itself does.
 *
 * The commit timestamp is 0 while the batch is being built; the writer stamps a
 * copy of the header when the batch joins a WAL write, and moves values of at
 * least value_threshold bytes to the value log, leaving pointer ops in the copy.
 */
#ifndef NOKV_DB_BATCH_INTERNAL_H
#define NOKV_DB_BATCH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "memtable/internal_key.h"
#include "nokv/batch.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_BATCH_HEADER 12
#define NK_BATCH_OP_TS 0x80

struct nokv_batch {
  char *rep;         /* heap, or the caller's inline buffer until it outgrows it */
  size_t len, cap;
  uint32_t count;
  uint32_t deletes;  /* of count */
  uint32_t range_deletes;  /* of count */
  size_t mem_cost;   /* upper bound of memtable bytes to apply it */
  size_t user_bytes; /* key and value bytes of its operations */
  size_t max_klen, max_vlen, min_klen;  /* for limit checks without a pass */
  char *inline_buf;  /* not owned */
};

/* Initialises b over a caller-owned buffer of cap (>= NK_BATCH_HEADER) bytes;
 * the batch moves to the heap if it outgrows it. Release with nk_batch_release. */
void nk_batch_init_inline(struct nokv_batch *b, char *buf, size_t cap);
void nk_batch_release(struct nokv_batch *b);

typedef struct nk_batch_op {
  nk_kind kind;
  uint64_t ts;       /* 0: the batch's commit timestamp */
  const char *key;
  size_t klen;
  const char *val;
  size_t vlen;
} nk_batch_op;

typedef struct nk_batch_reader {
  const char *p, *limit;
  uint32_t remaining;
} nk_batch_reader;

/* Adds a put whose value stays in the caller's memory (NK_KIND_VALUE_REF) until
 * the write returns. Only for values the writer will move to the value log. */
int nk_batch_put_ref(struct nokv_batch *b, const void *key, size_t klen, const void *val,
                     size_t vlen);
/* The value a NK_KIND_VALUE_REF op refers to. */
void nk_batch_op_deref(nk_batch_op *op);

/* Adds an operation of any kind as is (a transaction's pending writes, value-log
 * GC's rewrites of expiring values); ts 0: the batch's commit timestamp. */
int nk_batch_put_kind(struct nokv_batch *b, nk_kind kind, const void *key, size_t klen,
                      const void *val, size_t vlen, uint64_t ts);

/* The expiry ttl_ms from now, or NOKV_EINVAL if it overflows the clock. */
int nk_ttl_expiry(uint64_t ttl_ms, uint64_t *expires_ms);

/* The stored value of a version expiring at expires_ms: the expiry, then val.
 * Built in stack (of stack_len bytes) if it fits, else on the heap; NULL if
 * out of memory. Free with nk_expiring_value_free. */
char *nk_expiring_value(uint64_t expires_ms, const void *val, size_t vlen, char *stack,
                        size_t stack_len);
static inline void nk_expiring_value_free(char *v, const char *stack) {
  if (v != stack) free(v);
}

/* Adds a put of a version expiring at expires_ms (the expiry goes in front of
 * the value: NK_KIND_VALUE_TTL); ts 0: the batch's commit timestamp. */
int nk_batch_put_expiring(struct nokv_batch *b, const void *key, size_t klen, const void *val,
                          size_t vlen, uint64_t expires_ms, uint64_t ts);

/* Adds a put that keeps timestamp ts (see NK_BATCH_OP_TS). */
int nk_batch_put_at(struct nokv_batch *b, const void *key, size_t klen, const void *val,
                    size_t vlen, uint64_t ts);

/* Encodes op at p (room for nk_batch_op_max_len bytes); returns the end. */
char *nk_batch_encode_op(char *p, const nk_batch_op *op);
static inline size_t nk_batch_op_max_len(size_t klen, size_t vlen) {
  return 1 + 8 + 2 * NK_VARINT32_MAX + klen + vlen;
}

/* Parses the header of an encoded batch. NOKV_ECORRUPT if it is malformed. */
int nk_batch_reader_init(nk_batch_reader *r, const char *rep, size_t len, uint64_t *ts,
                         uint32_t *count);
/* 1: *op filled; 0: end (and the batch had exactly `count` ops);
 * NOKV_ECORRUPT: malformed. */
int nk_batch_reader_next(nk_batch_reader *r, nk_batch_op *op);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_DB_BATCH_INTERNAL_H */
