/*
 * table_builder.h — writes one SSTable (sst/format.h) from entries added in
 * internal-key order. The builder appends to a file it does not own; the caller
 * syncs and closes it after nk_table_builder_finish.
 */
#ifndef NOKV_SST_TABLE_BUILDER_H
#define NOKV_SST_TABLE_BUILDER_H

#include <stddef.h>
#include <stdint.h>

#include "sst/format.h"
#include "util/env.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_table_options {
  size_t block_size;        /* target uncompressed data block size */
  int restart_interval;     /* keys between restart points */
  int bloom_bits_per_key;   /* 0: no filter */
  nk_compression compression;
  int zstd_level;
} nk_table_options;

typedef struct nk_table_builder nk_table_builder;

int nk_table_builder_new(const nk_table_options *o, nk_file *f, nk_table_builder **out);
/* REQUIRES: ikey sorts after every key added before. */
int nk_table_builder_add(nk_table_builder *b, const char *ikey, size_t n, const char *val,
                         size_t vlen);
/* Writes the filter, properties, index and footer. On success fills *props
 * (caller releases with nk_table_props_release) and *file_size. */
int nk_table_builder_finish(nk_table_builder *b, nk_table_props *props, uint64_t *file_size);
/* Bytes written so far plus the pending block. */
uint64_t nk_table_builder_file_size(const nk_table_builder *b);
void nk_table_builder_free(nk_table_builder *b);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_SST_TABLE_BUILDER_H */
