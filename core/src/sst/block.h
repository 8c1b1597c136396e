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

/* Fills *b over data as nk_block_new does, with no allocation: for a block
 * used only while data is (a point lookup in a mapped table). */
int nk_block_init(nk_block *b, char *data, size_t len);

/* One entry found by nk_block_find. key points into the block (an entry stored
 * whole) or into the caller's buffer (rebuilt from a shared prefix). */
typedef struct nk_block_entry {
  const char *key, *val;
  size_t klen, vlen;
} nk_block_entry;

struct nk_buf;
/* A point lookup without an iterator: the first entry of b whose key is >=
 * target (nk_ikey_cmp). Keys stored after a restart share a prefix with the one
 * before them; they are rebuilt in *scratch (grown with malloc; the caller
 * releases it and may reuse it across calls). NOKV_ENOTFOUND if every key is
 * < target; NOKV_ECORRUPT (or NOKV_ENOMEM) otherwise on failure. */
int nk_block_find(const nk_block *b, const char *target, size_t tn, struct nk_buf *scratch,
                  nk_block_entry *e);

/* An iterator over b. The caller keeps b alive (cleanup runs at destroy, if
 * non-NULL, so a cached block can be unpinned). NULL on ENOMEM. */
nk_iter *nk_block_iter_new(const nk_block *b, void (*cleanup)(void *, void *), void *arg1,
                           void *arg2);
/* Re-aims an iterator from nk_block_iter_new at b (running its old cleanup),
 * keeping its buffers. false (nothing done) if it is NULL or no block iterator. */
bool nk_block_iter_reset(nk_iter *it, const nk_block *b, void (*cleanup)(void *, void *),
                         void *arg1, void *arg2);

/* An iterator over a copy of *b (a block over borrowed bytes, a mapped table's,
 * which outlive the iterator). reuse, if it is a block iterator, is re-aimed
 * (its old cleanup run) and returned: the block header lives in the iterator,
 * so stepping from block to block allocates nothing. Otherwise a new iterator
 * is returned and reuse is left alone. NULL (*status NOKV_ENOMEM) if out of
 * memory. */
nk_iter *nk_block_iter_borrow(nk_iter *reuse, const nk_block *b, int *status);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_SST_BLOCK_H */
