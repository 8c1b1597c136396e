/*
 * table_builder.c — data blocks are cut at block_size, compressed with zstd when
 * that saves at least 1/8 of the bytes (otherwise stored raw, as LevelDB does),
 * and indexed by their last key.
 */
#include "sst/table_builder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "memtable/internal_key.h"
#include "sst/block_builder.h"
#include "sst/bloom.h"
#include "util/error.h"

struct nk_table_builder {
  nk_table_options o;
  nk_file *file;
  uint64_t offset;
  nk_block_builder data, index;
  nk_bloom_builder bloom;
  nk_buf last_key;   /* last internal key added */
  nk_buf scratch;    /* compression output */
  ZSTD_CCtx *zctx;
  nk_table_props props;
  int status;
};

int nk_table_builder_new(const nk_table_options *o, nk_file *f, nk_table_builder **out) {
  nk_table_builder *b = calloc(1, sizeof *b);
  if (b == NULL) return nk_err(NOKV_ENOMEM, "out of memory for a table builder");
  b->o = *o;
  b->file = f;
  nk_block_builder_init(&b->data, o->restart_interval);
  nk_block_builder_init(&b->index, 1);
  nk_bloom_builder_init(&b->bloom, o->bloom_bits_per_key);
  b->props.min_ts = UINT64_MAX;
  if (o->compression == NK_COMPRESS_ZSTD && (b->zctx = ZSTD_createCCtx()) == NULL) {
    free(b);
    return nk_err(NOKV_ENOMEM, "out of memory for a zstd context");
  }
  *out = b;
  return NOKV_OK;
}

void nk_table_builder_free(nk_table_builder *b) {
  if (b == NULL) return;
  nk_block_builder_release(&b->data);
  nk_block_builder_release(&b->index);
  nk_bloom_builder_release(&b->bloom);
  nk_buf_release(&b->last_key);
  nk_buf_release(&b->scratch);
  ZSTD_freeCCtx(b->zctx);
  nk_table_props_release(&b->props);
  free(b);
}

static int oom(void) { return nk_err(NOKV_ENOMEM, "out of memory building a table"); }

/* Writes raw (maybe compressing it) and its trailer; sets *h. */
static int write_block(nk_table_builder *b, const char *raw, size_t len, bool compressible,
                       nk_block_handle *h) {
  const char *stored = raw;
  size_t stored_len = len;
  uint8_t type = NK_COMPRESS_NONE;
  if (compressible && b->zctx != NULL) {
    size_t bound = ZSTD_compressBound(len);
    b->scratch.len = 0;
    if (!nk_buf_reserve(&b->scratch, bound)) return oom();
    size_t n = ZSTD_compressCCtx(b->zctx, b->scratch.data, bound, raw, len, b->o.zstd_level);
    if (!ZSTD_isError(n) && n < len - len / 8) {
      stored = b->scratch.data;
      stored_len = n;
      type = NK_COMPRESS_ZSTD;
    }
  }
  char trailer[NK_BLOCK_TRAILER];
  trailer[0] = (char)type;
  nk_put_u32(trailer + 1, nk_block_checksum(stored, stored_len, type));
  NK_RET(nk_file_append(b->file, stored, stored_len));
  NK_RET(nk_file_append(b->file, trailer, sizeof trailer));
  *h = (nk_block_handle){b->offset, stored_len};
  b->offset += stored_len + NK_BLOCK_TRAILER;
  return NOKV_OK;
}

static int flush_data_block(nk_table_builder *b) {
  if (nk_block_builder_empty(&b->data)) return NOKV_OK;
  if (!nk_block_builder_finish(&b->data)) return oom();
  nk_block_handle h;
  NK_RET(write_block(b, b->data.buf.data, b->data.buf.len, true, &h));
  b->props.data_blocks++;
  b->props.data_bytes += h.size;
  char enc[NK_BLOCK_HANDLE_MAX];
  size_t elen = (size_t)(nk_handle_encode(enc, h) - enc);
  if (!nk_block_builder_add(&b->index, b->last_key.data, b->last_key.len, enc, elen)) {
    return oom();
  }
  nk_block_builder_reset(&b->data);
  return NOKV_OK;
}

int nk_table_builder_add(nk_table_builder *b, const char *ikey, size_t n, const char *val,
                         size_t vlen) {
  if (b->status != NOKV_OK) return b->status;
  size_t ulen = nk_ikey_user_len(n);
  bool new_user_key = b->last_key.len == 0 ||
                      nk_user_key_cmp(b->last_key.data, nk_ikey_user_len(b->last_key.len), ikey,
                                      ulen) != 0;
  int ret = NOKV_OK;
  if (new_user_key && b->o.bloom_bits_per_key > 0 &&
      !nk_bloom_add_hash(&b->bloom, nk_hash64(ikey, ulen))) {
    NK_ERR(oom());
  }
  if (!nk_block_builder_add(&b->data, ikey, n, val, vlen)) NK_ERR(oom());
  b->last_key.len = 0;
  if (!nk_buf_append(&b->last_key, ikey, n)) NK_ERR(oom());
  if (b->props.entries == 0) {
    if ((b->props.smallest = malloc(n)) == NULL) NK_ERR(oom());
    memcpy(b->props.smallest, ikey, n);
    b->props.smallest_len = n;
  }
  uint64_t trailer = nk_ikey_trailer(ikey, n);
  uint64_t ts = nk_trailer_ts(trailer);
  if (ts < b->props.min_ts) b->props.min_ts = ts;
  if (ts > b->props.max_ts) b->props.max_ts = ts;
  if (nk_trailer_kind(trailer) == NK_KIND_DELETE) b->props.tombstones++;
  b->props.entries++;
  b->props.raw_key_bytes += ulen;
  b->props.raw_value_bytes += vlen;
  if (nk_block_builder_size_estimate(&b->data) >= b->o.block_size) NK_ERR(flush_data_block(b));
  return NOKV_OK;
err:
  b->status = ret;
  return ret;
}

static bool put_varints(nk_buf *out, const uint64_t *v, size_t n) {
  if (!nk_buf_reserve(out, n * NK_VARINT64_MAX)) return false;
  for (size_t i = 0; i < n; i++) {
    out->len = (size_t)(nk_put_varint64(out->data + out->len, v[i]) - out->data);
  }
  return true;
}

static bool put_bytes(nk_buf *out, const char *p, size_t n) {
  char len[NK_VARINT32_MAX];
  return nk_buf_append(out, len, (size_t)(nk_put_varint64(len, n) - len)) &&
         nk_buf_append(out, p, n);
}

int nk_table_builder_finish(nk_table_builder *b, nk_table_props *props, uint64_t *file_size) {
  int ret = b->status;
  nk_buf meta = {0};
  NK_ERR(ret);
  NK_ERR(flush_data_block(b));
  if (b->props.entries > 0) {
    free(b->props.largest);
    if ((b->props.largest = malloc(b->last_key.len)) == NULL) NK_ERR(oom());
    memcpy(b->props.largest, b->last_key.data, b->last_key.len);
    b->props.largest_len = b->last_key.len;
  } else {
    b->props.min_ts = 0;
  }
  nk_footer f = {.version = NK_SST_VERSION};
  if (!nk_bloom_finish(&b->bloom, &meta)) NK_ERR(oom());
  NK_ERR(write_block(b, meta.data, meta.len, false, &f.filter));

  meta.len = 0;
  const nk_table_props *p = &b->props;
  uint64_t v[] = {p->entries,       p->data_blocks,     p->tombstones,
                  p->min_ts,        p->max_ts,          p->raw_key_bytes,
                  p->raw_value_bytes, p->data_bytes,    p->value_pointer_bytes};
  if (!put_varints(&meta, v, sizeof v / sizeof v[0]) ||
      !put_bytes(&meta, p->smallest, p->smallest_len) ||
      !put_bytes(&meta, p->largest, p->largest_len)) {
    NK_ERR(oom());
  }
  NK_ERR(write_block(b, meta.data, meta.len, false, &f.props));

  if (!nk_block_builder_finish(&b->index)) NK_ERR(oom());
  NK_ERR(write_block(b, b->index.buf.data, b->index.buf.len, false, &f.index));

  char footer[NK_SST_FOOTER];
  nk_footer_encode(footer, &f);
  NK_ERR(nk_file_append(b->file, footer, sizeof footer));
  b->offset += sizeof footer;
  *file_size = b->offset;
  *props = b->props;
  memset(&b->props, 0, sizeof b->props);  /* ownership of the keys moved */
  nk_buf_release(&meta);
  return NOKV_OK;
err:
  nk_buf_release(&meta);
  b->status = ret;
  return ret;
}

uint64_t nk_table_builder_file_size(const nk_table_builder *b) {
  return b->offset + nk_block_builder_size_estimate(&b->data);
}


void nk_table_props_release(nk_table_props *p) {
  free(p->smallest);
  free(p->largest);
  p->smallest = p->largest = NULL;
}

void nk_table_file_name(uint64_t number, char *buf) {
  snprintf(buf, 32, "%08llu" NK_SST_SUFFIX, (unsigned long long)number);
}

bool nk_table_parse_name(const char *name, uint64_t *number) {
  size_t n = strlen(name), s = strlen(NK_SST_SUFFIX);
  if (n <= s || n - s > 19 || strcmp(name + n - s, NK_SST_SUFFIX) != 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n - s; i++) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + (uint64_t)(name[i] - '0');
  }
  *number = v;
  return true;
}
