/*
 * block_builder.h — builds one sorted block with prefix compression (LevelDB's
 * block format). Each entry stores how many bytes its key shares with the
 * previous key; every restart_interval entries a key is stored whole and its
 * offset recorded, so readers can binary-search the restart points:
 *
 *   entry:  varint32 shared | varint32 unshared | varint32 value_len |
 *           key[shared..] | value
 *   block:  entries | fixed32 restart[num_restarts] | fixed32 num_restarts
 */
#ifndef NOKV_SST_BLOCK_BUILDER_H
#define NOKV_SST_BLOCK_BUILDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A growable byte buffer. */
typedef struct nk_buf {
  char *data;
  size_t len, cap;
} nk_buf;

/* false on ENOMEM (buf unchanged). */
bool nk_buf_reserve(nk_buf *b, size_t extra);
bool nk_buf_append(nk_buf *b, const void *p, size_t n);
void nk_buf_release(nk_buf *b);

typedef struct nk_block_builder {
  nk_buf buf;
  uint32_t *restarts;
  size_t nrestarts, restarts_cap;
  int interval, counter;
  nk_buf last_key;
  bool finished;
  uint64_t entries;
} nk_block_builder;

void nk_block_builder_init(nk_block_builder *b, int restart_interval);
void nk_block_builder_release(nk_block_builder *b);
void nk_block_builder_reset(nk_block_builder *b);
/* REQUIRES: key > every key added since the last reset. false on ENOMEM. */
bool nk_block_builder_add(nk_block_builder *b, const char *key, size_t klen, const char *val,
                          size_t vlen);
/* Appends the restart array; the block is b->buf until the next reset. */
bool nk_block_builder_finish(nk_block_builder *b);
size_t nk_block_builder_size_estimate(const nk_block_builder *b);
static inline bool nk_block_builder_empty(const nk_block_builder *b) { return b->buf.len == 0; }

#ifdef __cplusplus
}
#endif

#endif /* NOKV_SST_BLOCK_BUILDER_H */
