/*
 * block.h — reading a block built by block_builder.h. A block owns its bytes
 * (decompressed if need be); iterators borrow them. Keys in data and index blocks
 * are encoded internal keys and are compared with nk_ikey_cmp.
 *
 * The reader trusts nothing: every length is bounds-checked, so a corrupt block
 * that slipped past its checksum makes the iterator stop with NOKV_ECORRUPT, not
 * read out of bounds.
 */
#ifndef NOKV_SST_BLOCK_H
#define NOKV_SST_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/iterator.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_block {
  char *data;        /* malloc'ed and freed by nk_block_free if owned; else borrowed
                        (a mapped table file) */
  bool owned;
  size_t size;       /* bytes of entries (restart array excluded) */
  uint32_t nrestarts;
  const char *restarts;
} nk_block;

/* A block over data. If owned, data is malloc'ed and the block takes it over (on
 * success and on failure); otherwise it is borrowed and must outlive the block.
 * NOKV_ECORRUPT if the restart array does not fit. */
int nk_block_new(char *data, size_t len, bool owned, nk_block **out);
void nk_block_free(nk_block *b);
/* A deleter for the block cache. */
void nk_block_free_void(void *b);

/* An iterator over b. The caller keeps b alive (cleanup runs at destroy, if
 * non-NULL, so a cached block can be unpinned). NULL on ENOMEM. */
nk_iter *nk_block_iter_new(const nk_block *b, void (*cleanup)(void *, void *), void *arg1,
                           void *arg2);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_SST_BLOCK_H */
