/*
 * format.h — the SSTable file format (docs/table_format.md), as constants and
 * the small codecs every table reader and writer shares.
 *
 *   [data block 0] ... [data block n-1] [filter block] [properties block]
 *   [index block] [footer: 64 bytes]
 *
 * Every block is followed by a 5-byte trailer: u8 compression | fixed32 checksum,
 * where checksum = low 32 bits of XXH3-64(stored bytes, seed = stored_len << 8 |
 * compression). A block handle is (varint64 offset, varint64 stored size without
 * trailer). The footer holds the index, filter and properties handles as fixed64
 * pairs, the format version, a checksum of those 52 bytes, and the magic number.
 */
#ifndef NOKV_SST_FORMAT_H
#define NOKV_SST_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/checksum.h"
#include "util/coding.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_SST_MAGIC UINT64_C(0x5453536b764b6f4e) /* "NoKvkSST" little-endian */
#define NK_SST_VERSION 1u
#define NK_SST_FOOTER 64
#define NK_BLOCK_TRAILER 5
#define NK_SST_SUFFIX ".sst"

typedef enum nk_compression {
  NK_COMPRESS_NONE = 0,
  NK_COMPRESS_ZSTD = 1,
} nk_compression;

typedef struct nk_block_handle {
  uint64_t offset;
  uint64_t size;  /* stored bytes, trailer excluded */
} nk_block_handle;

enum { NK_BLOCK_HANDLE_MAX = 2 * NK_VARINT64_MAX };

static inline char *nk_handle_encode(char *p, nk_block_handle h) {
  p = nk_put_varint64(p, h.offset);
  return nk_put_varint64(p, h.size);
}

static inline const char *nk_handle_decode(const char *p, const char *limit, nk_block_handle *h) {
  p = nk_get_varint64(p, limit, &h->offset);
  return p == NULL ? NULL : nk_get_varint64(p, limit, &h->size);
}

static inline uint32_t nk_block_checksum(const char *data, size_t len, uint8_t compression) {
  return nk_checksum32(data, len, (uint64_t)len << 8 | compression);
}

typedef struct nk_footer {
  nk_block_handle index, filter, props;
  uint32_t version;
} nk_footer;

static inline void nk_footer_encode(char *p, const nk_footer *f) {
  nk_put_u64(p, f->index.offset);
  nk_put_u64(p + 8, f->index.size);
  nk_put_u64(p + 16, f->filter.offset);
  nk_put_u64(p + 24, f->filter.size);
  nk_put_u64(p + 32, f->props.offset);
  nk_put_u64(p + 40, f->props.size);
  nk_put_u32(p + 48, f->version);
  nk_put_u32(p + 52, nk_checksum32(p, 52, NK_SST_MAGIC));
  nk_put_u64(p + 56, NK_SST_MAGIC);
}

/* false if the magic or checksum is wrong; the version is checked by the caller. */
static inline bool nk_footer_decode(const char *p, nk_footer *f) {
  if (nk_get_u64(p + 56) != NK_SST_MAGIC || nk_get_u32(p + 52) != nk_checksum32(p, 52, NK_SST_MAGIC)) {
    return false;
  }
  f->index = (nk_block_handle){nk_get_u64(p), nk_get_u64(p + 8)};
  f->filter = (nk_block_handle){nk_get_u64(p + 16), nk_get_u64(p + 24)};
  f->props = (nk_block_handle){nk_get_u64(p + 32), nk_get_u64(p + 40)};
  f->version = nk_get_u32(p + 48);
  return true;
}

/* Table properties, stored in the properties block as a sequence of varint64s
 * (in this order), then the smallest and largest internal keys, each as
 * varint32 length | bytes. */
typedef struct nk_table_props {
  uint64_t entries;
  uint64_t data_blocks;
  uint64_t tombstones;
  uint64_t min_ts, max_ts;
  uint64_t raw_key_bytes, raw_value_bytes;
  uint64_t data_bytes;          /* stored data block bytes */
  uint64_t value_pointer_bytes; /* bytes of values kept in the value log */
  char *smallest, *largest;     /* internal keys, malloc'ed */
  size_t smallest_len, largest_len;
} nk_table_props;

void nk_table_props_release(nk_table_props *p);

/* The table file name of number: "%08llu.sst". buf must hold 32 bytes. */
void nk_table_file_name(uint64_t number, char *buf);
bool nk_table_parse_name(const char *name, uint64_t *number);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_SST_FORMAT_H */
