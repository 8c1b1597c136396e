/*
 * batch_internal.h — the encoding of a write batch, which is also the payload of
 * a WAL record (one format, as in LevelDB's WriteBatch):
 *
 *   fixed64 commit_ts | fixed32 count | count × op
 *   op = u8 kind | varint32 key_len | key | [varint32 value_len | value]  (value for puts)
 *
 * The commit timestamp is 0 while the batch is being built; the writer stamps a
 * copy of the header when the batch joins a WAL write.
 */
#ifndef NOKV_DB_BATCH_INTERNAL_H
#define NOKV_DB_BATCH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "memtable/internal_key.h"
#include "nokv/batch.h"

#define NK_BATCH_HEADER 12

struct nokv_batch {
  char *rep;         /* heap, or the caller's inline buffer until it outgrows it */
  size_t len, cap;
  uint32_t count;
  uint32_t deletes;  /* of count */
  size_t mem_cost;   /* upper bound of memtable bytes to apply it */
  size_t max_klen, max_vlen, min_klen;  /* for limit checks without a pass */
  char *inline_buf;  /* not owned */
};

/* Initialises b over a caller-owned buffer of cap (>= NK_BATCH_HEADER) bytes;
 * the batch moves to the heap if it outgrows it. Release with nk_batch_release. */
void nk_batch_init_inline(struct nokv_batch *b, char *buf, size_t cap);
void nk_batch_release(struct nokv_batch *b);

typedef struct nk_batch_op {
  nk_kind kind;
  const char *key;
  size_t klen;
  const char *val;
  size_t vlen;
} nk_batch_op;

typedef struct nk_batch_reader {
  const char *p, *limit;
  uint32_t remaining;
} nk_batch_reader;

/* Parses the header of an encoded batch. NOKV_ECORRUPT if it is malformed. */
int nk_batch_reader_init(nk_batch_reader *r, const char *rep, size_t len, uint64_t *ts,
                         uint32_t *count);
/* 1: *op filled; 0: end (and the batch had exactly `count` ops);
 * NOKV_ECORRUPT: malformed. */
int nk_batch_reader_next(nk_batch_reader *r, nk_batch_op *op);

#endif /* NOKV_DB_BATCH_INTERNAL_H */
