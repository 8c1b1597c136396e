/*
 * table.h — reading an SSTable: point lookups (bloom filter first, then the
 * index and one data block) and a two-level iterator (index → data blocks).
 *
 * The index, filter and properties are read once at open and pinned for the
 * table's life; data blocks go through the shared block cache. Every block's
 * checksum is verified when it is read from disk, so a flipped byte surfaces as
 * NOKV_ECORRUPT naming the file and offset, never as wrong data.
 */
#ifndef NOKV_SST_TABLE_H
#define NOKV_SST_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memtable/internal_key.h"
#include "sst/format.h"
#include "util/cache.h"
#include "util/env.h"
#include "util/iterator.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Counters shared by every table of a database. */
typedef struct nk_sst_stats {
  uint64_t block_reads;   /* data blocks read from disk */
  uint64_t bloom_checks;
  uint64_t bloom_negatives; /* reads the filter saved */
  uint64_t checksum_errors;
} nk_sst_stats;

typedef struct nk_table nk_table;

/* Opens the table at path. expected_size (0: unchecked) must match the file's.
 * block_cache may be NULL (blocks are then read per access). */
int nk_table_open(const struct nokv_env *env, const char *path, uint64_t expected_size,
                  nk_cache *block_cache, nk_sst_stats *stats, nk_table **out);
void nk_table_close(nk_table *t);
/* A deleter for the table cache. */
void nk_table_close_void(void *t);

const nk_table_props *nk_table_properties(const nk_table *t);
uint64_t nk_table_file_size(const nk_table *t);

typedef struct nk_get_result {
  bool found;      /* a version of the key with ts <= the target's ts */
  uint64_t ts;
  nk_kind kind;
  char *val;       /* malloc'ed copy of the value or value pointer (caller frees), else NULL */
  size_t vlen;
} nk_get_result;

/* Looks up the newest version of target's user key at or below target's ts.
 * target is an encoded seek key (nk_ikey_encode with NK_KIND_SEEK); key_hash is
 * nk_hash64 of its user key. */
int nk_table_get(nk_table *t, const char *target, size_t n, uint64_t key_hash,
                 nk_get_result *r);

/* An iterator over every entry. The table must outlive it. NULL on ENOMEM. */
nk_iter *nk_table_iter_new(nk_table *t);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_SST_TABLE_H */
