/*
 * table.c — table open, block reads, get and iteration.
 *
 * Where the env can map files (POSIX can), a table is read through a read-only
 * mapping, as LevelDB does on 64-bit systems: an uncompressed block is used in
 * place, with no read call and no copy, and its checksum is verified the first
 * time it is used after the table is opened (a per-block flag remembers it). A
 * block that fails stays unverified, so every later read fails the same way.
 * Compressed blocks are decompressed into the shared block cache. Without a
 * mapping, blocks are read with read_at into the block cache.
 */
#include "sst/table.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "sst/block.h"
#include "sst/bloom.h"
#include "sst/two_level_iter.h"
#include "util/counter.h"
#include "util/error.h"

struct nk_table {
  const struct nokv_env *env;
  char *path;
  nk_file *file;
  uint64_t size;
  const char *map;           /* the whole file, or NULL */
  uint64_t *block_offsets;   /* data block offsets in file order (mapped tables) */
  uint8_t *verified;         /* per data block: checksum checked (atomic bytes) */
  size_t nblocks;
  nk_cache *cache;
  uint64_t cache_id;
  nk_sst_stats *stats;
  nk_block *index;
  char *filter;
  size_t filter_len;
  bool filter_owned;
  nk_table_props props;
};

/* One zstd decompression context per thread, freed when the thread exits. */
static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;
static void free_dctx(void *p) { ZSTD_freeDCtx(p); }
static void make_dctx_key(void) { pthread_key_create(&dctx_key, free_dctx); }

static ZSTD_DCtx *thread_dctx(void) {
  pthread_once(&dctx_once, make_dctx_key);
  ZSTD_DCtx *d = pthread_getspecific(dctx_key);
  if (d == NULL && (d = ZSTD_createDCtx()) != NULL) pthread_setspecific(dctx_key, d);
  return d;
}

static int corrupt(const nk_table *t, uint64_t off, const char *what) {
  if (t->stats != NULL) nk_stat_add(&t->stats->checksum_errors, 1);
  return nk_err(NOKV_ECORRUPT, "table %s: %s at offset %llu", t->path, what,
                (unsigned long long)off);
}

static bool handle_ok(const nk_table *t, nk_block_handle h) {
  return h.offset <= t->size && h.size <= t->size - h.offset &&
         t->size - h.offset - h.size >= NK_BLOCK_TRAILER;
}

/* Decompresses a verified zstd block into a malloc'ed buffer. */
static int decompress(const nk_table *t, uint64_t off, const char *src, size_t n, char **out,
                      size_t *len) {
  unsigned long long raw = ZSTD_getFrameContentSize(src, n);
  ZSTD_DCtx *d = thread_dctx();
  char *plain = NULL;
  int ret = NOKV_OK;
  if (raw == ZSTD_CONTENTSIZE_ERROR || raw == ZSTD_CONTENTSIZE_UNKNOWN || raw > (64u << 20)) {
    ret = corrupt(t, off, "bad zstd frame");
  } else if (d == NULL || (plain = malloc(raw ? (size_t)raw : 1)) == NULL) {
    ret = nk_err(NOKV_ENOMEM, "out of memory decompressing %s", t->path);
  } else {
    size_t r = ZSTD_decompressDCtx(d, plain, (size_t)raw, src, n);
    if (ZSTD_isError(r) || r != raw) ret = corrupt(t, off, "zstd block does not decompress");
  }
  if (ret != NOKV_OK) {
    free(plain);
    return ret;
  }
  *out = plain;
  *len = (size_t)raw;
  return NOKV_OK;
}

/* The ordinal of the data block at off in a mapped table, or nblocks. */
static size_t block_ordinal(const nk_table *t, uint64_t off) {
  size_t lo = 0, hi = t->nblocks;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t->block_offsets[mid] < off) lo = mid + 1; else hi = mid;
  }
  return lo < t->nblocks && t->block_offsets[lo] == off ? lo : t->nblocks;
}

/* A mapped block's stored bytes, checksum verified (once per block and open). */
static int mapped_block(const nk_table *t, nk_block_handle h, const char **data, uint8_t *type) {
  if (!handle_ok(t, h)) return corrupt(t, h.offset, "block handle out of range");
  const char *p = t->map + h.offset;
  *type = (uint8_t)p[h.size];
  size_t ord = block_ordinal(t, h.offset);
  bool known = ord < t->nblocks && __atomic_load_n(&t->verified[ord], __ATOMIC_ACQUIRE);
  if (!known) {
    if (nk_get_u32(p + h.size + 1) != nk_block_checksum(p, (size_t)h.size, *type)) {
      return corrupt(t, h.offset, "block checksum mismatch");
    }
    if (ord < t->nblocks) __atomic_store_n(&t->verified[ord], 1, __ATOMIC_RELEASE);
  }
  *data = p;
  return NOKV_OK;
}

/* Reads the block at h, verifies its checksum and decompresses it into a
 * malloc'ed buffer (*out, *len; *owned) — or, for an uncompressed block of a
 * mapped table, points into the mapping (*owned = false). */
static int read_block_contents(const nk_table *t, nk_block_handle h, char **out, size_t *len,
                               bool *owned) {
  if (t->map != NULL) {
    const char *p = NULL;
    uint8_t type = 0;
    NK_RET(mapped_block(t, h, &p, &type));
    if (type == NK_COMPRESS_NONE) {
      *out = (char *)p;
      *len = (size_t)h.size;
      *owned = false;
      return NOKV_OK;
    }
    if (type != NK_COMPRESS_ZSTD) return corrupt(t, h.offset, "unknown block compression");
    *owned = true;
    return decompress(t, h.offset, p, (size_t)h.size, out, len);
  }
  *owned = true;
  if (!handle_ok(t, h)) return corrupt(t, h.offset, "block handle out of range");
  size_t n = (size_t)h.size + NK_BLOCK_TRAILER, got = 0;
  char *buf = malloc(n);
  if (buf == NULL) return nk_err(NOKV_ENOMEM, "out of memory reading %s", t->path);
  int ret = nk_file_read_at(t->file, h.offset, buf, n, &got);
  if (ret == NOKV_OK && got != n) ret = corrupt(t, h.offset, "block truncated");
  uint8_t type = (uint8_t)buf[h.size];
  if (ret == NOKV_OK &&
      nk_get_u32(buf + h.size + 1) != nk_block_checksum(buf, (size_t)h.size, type)) {
    ret = corrupt(t, h.offset, "block checksum mismatch");
  }
  if (ret != NOKV_OK) {
    free(buf);
    return ret;
  }
  if (type == NK_COMPRESS_NONE) {
    *out = buf;
    *len = (size_t)h.size;
    return NOKV_OK;
  }
  if (type != NK_COMPRESS_ZSTD) {
    free(buf);
    return corrupt(t, h.offset, "unknown block compression");
  }
  ret = decompress(t, h.offset, buf, (size_t)h.size, out, len);
  free(buf);
  return ret;
}

static int read_block(const nk_table *t, nk_block_handle h, nk_block **out) {
  char *data;
  size_t len;
  bool owned;
  NK_RET(read_block_contents(t, h, &data, &len, &owned));
  int ret = nk_block_new(data, len, owned, out);
  if (ret == NOKV_ECORRUPT) return corrupt(t, h.offset, "bad block layout");
  return ret;
}

static int parse_props(nk_table *t, const char *p, size_t len) {
  const char *limit = p + len;
  uint64_t v[9];
  for (size_t i = 0; i < 9; i++) {
    if ((p = nk_get_varint64(p, limit, &v[i])) == NULL) return corrupt(t, 0, "bad properties");
  }
  nk_table_props *pr = &t->props;
  pr->entries = v[0];
  pr->data_blocks = v[1];
  pr->tombstones = v[2];
  pr->min_ts = v[3];
  pr->max_ts = v[4];
  pr->raw_key_bytes = v[5];
  pr->raw_value_bytes = v[6];
  pr->data_bytes = v[7];
  pr->value_pointer_bytes = v[8];
  char **keys[2] = {&pr->smallest, &pr->largest};
  size_t *lens[2] = {&pr->smallest_len, &pr->largest_len};
  for (int i = 0; i < 2; i++) {
    uint32_t n;
    if ((p = nk_get_varint32(p, limit, &n)) == NULL || (size_t)(limit - p) < n) {
      return corrupt(t, 0, "bad properties keys");
    }
    if ((*keys[i] = malloc(n ? n : 1)) == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
    memcpy(*keys[i], p, n);
    *lens[i] = n;
    p += n;
  }
  return NOKV_OK;
}

/* Lists the data blocks of a mapped table (from the index) for the per-block
 * verified flags. */
static int collect_block_offsets(nk_table *t) {
  nk_iter *it = nk_block_iter_new(t->index, NULL, NULL, NULL);
  if (it == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  size_t cap = 64;
  int ret = NOKV_OK;
  if ((t->block_offsets = malloc(cap * sizeof *t->block_offsets)) == NULL) {
    ret = nk_err(NOKV_ENOMEM, "out of memory");
  }
  for (nk_iter_seek_first(it); ret == NOKV_OK && nk_iter_valid(it); nk_iter_next(it)) {
    size_t elen;
    const char *enc = nk_iter_value(it, &elen);
    nk_block_handle h;
    if (nk_handle_decode(enc, enc + elen, &h) == NULL) {
      ret = corrupt(t, 0, "bad block handle in the index");
      break;
    }
    if (t->nblocks == cap) {
      uint64_t *p = realloc(t->block_offsets, 2 * cap * sizeof *p);
      if (p == NULL) {
        ret = nk_err(NOKV_ENOMEM, "out of memory");
        break;
      }
      t->block_offsets = p;
      cap *= 2;
    }
    if (t->nblocks > 0 && h.offset <= t->block_offsets[t->nblocks - 1]) {
      ret = corrupt(t, h.offset, "index blocks out of order");
      break;
    }
    t->block_offsets[t->nblocks++] = h.offset;
  }
  if (ret == NOKV_OK) ret = nk_iter_status(it);
  nk_iter_destroy(it);
  if (ret == NOKV_OK && (t->verified = calloc(t->nblocks ? t->nblocks : 1, 1)) == NULL) {
    ret = nk_err(NOKV_ENOMEM, "out of memory");
  }
  return ret;
}

int nk_table_open(const struct nokv_env *env, const char *path, uint64_t expected_size,
                  nk_cache *block_cache, nk_sst_stats *stats, nk_table **out) {
  nk_table *t = calloc(1, sizeof *t);
  if (t == NULL || (t->path = strdup(path)) == NULL) {
    free(t);
    return nk_err(NOKV_ENOMEM, "out of memory opening %s", path);
  }
  t->env = env;
  t->cache = block_cache;
  t->stats = stats;
  int ret;
  char *buf = NULL;
  size_t len;
  uint64_t mapped_len = 0;
  if (env->map != NULL) {
    NK_ERR(env->map(env, path, &t->map, &mapped_len));
    t->size = mapped_len;
  } else {
    NK_ERR(env->open_read(env, path, &t->file));
    NK_ERR(nk_file_size(t->file, &t->size));
  }
  if (expected_size != 0 && t->size != expected_size) {
    NK_ERR(nk_err(NOKV_ECORRUPT, "table %s has %llu bytes, the manifest says %llu", path,
                  (unsigned long long)t->size, (unsigned long long)expected_size));
  }
  if (t->size < NK_SST_FOOTER) NK_ERR(corrupt(t, 0, "file too short for a footer"));
  char footer[NK_SST_FOOTER];
  size_t got = 0;
  if (t->map != NULL) {
    memcpy(footer, t->map + t->size - NK_SST_FOOTER, NK_SST_FOOTER);
    got = NK_SST_FOOTER;
  } else {
    NK_ERR(nk_file_read_at(t->file, t->size - NK_SST_FOOTER, footer, sizeof footer, &got));
  }
  nk_footer f = {0};
  if (got != sizeof footer || !nk_footer_decode(footer, &f)) {
    NK_ERR(corrupt(t, t->size - NK_SST_FOOTER, "bad footer (magic or checksum)"));
  }
  if (f.version != NK_SST_VERSION) {
    NK_ERR(nk_err(NOKV_ECORRUPT, "table %s has format version %u; this build reads %u", path,
                  f.version, NK_SST_VERSION));
  }
  NK_ERR(read_block(t, f.index, &t->index));
  NK_ERR(read_block_contents(t, f.filter, &t->filter, &t->filter_len, &t->filter_owned));
  bool props_owned;
  NK_ERR(read_block_contents(t, f.props, &buf, &len, &props_owned));
  ret = parse_props(t, buf, len);
  if (!props_owned) buf = NULL;
  NK_ERR(ret);
  free(buf);
  buf = NULL;
  if (t->map != NULL) NK_ERR(collect_block_offsets(t));
  if (block_cache != NULL) t->cache_id = nk_cache_new_id(block_cache);
  *out = t;
  return NOKV_OK;
err:
  free(buf);
  nk_table_close(t);
  return ret;
}

void nk_table_close(nk_table *t) {
  if (t == NULL) return;
  nk_file_close(t->file);
  nk_block_free(t->index);
  if (t->filter_owned) free(t->filter);
  free(t->block_offsets);
  free(t->verified);
  if (t->map != NULL) t->env->unmap(t->env, t->map, t->size);
  nk_table_props_release(&t->props);
  free(t->path);
  free(t);
}

void nk_table_close_void(void *t) { nk_table_close(t); }

const nk_table_props *nk_table_properties(const nk_table *t) { return &t->props; }
uint64_t nk_table_file_size(const nk_table *t) { return t->size; }

static void release_cached(void *cache, void *handle) { nk_cache_release(cache, handle); }
static void free_block(void *block, void *unused) { (void)unused; nk_block_free(block); }

/* The data block an index entry names: a mapped raw block in place, in *stack
 * (nothing allocated); else from the block cache (*ch, to release), or read
 * (*owned: nk_block_free it). */
static int lookup_block(nk_table *t, const char *enc, size_t elen, nk_block *stack,
                        nk_block **b, nk_cache_handle **ch, bool *owned) {
  nk_block_handle h;
  if (nk_handle_decode(enc, enc + elen, &h) == NULL) {
    return corrupt(t, 0, "bad block handle in the index");
  }
  if (t->map != NULL && handle_ok(t, h)) {
    if (t->map[h.offset + h.size] == NK_COMPRESS_NONE) {
      const char *p;
      uint8_t type;
      NK_RET(mapped_block(t, h, &p, &type));
      if (nk_block_init(stack, (char *)p, (size_t)h.size) != NOKV_OK) {
        return corrupt(t, h.offset, "bad block layout");
      }
      *b = stack;
      if (t->stats != NULL) nk_stat_add(&t->stats->block_reads, 1);
      return NOKV_OK;
    }
  }
  if (t->cache != NULL && (*ch = nk_cache_lookup(t->cache, t->cache_id, h.offset)) != NULL) {
    *b = nk_cache_value(*ch);
    return NOKV_OK;
  }
  NK_RET(read_block(t, h, b));
  if (t->stats != NULL) nk_stat_add(&t->stats->block_reads, 1);
  if (t->cache == NULL) {
    *owned = true;
    return NOKV_OK;
  }
  *ch = nk_cache_insert(t->cache, t->cache_id, h.offset, *b, (*b)->size + 4 * (*b)->nrestarts,
                        nk_block_free_void);
  if (*ch == NULL) return nk_err(NOKV_ENOMEM, "out of memory caching a block");  /* freed */
  return NOKV_OK;
}

/* An iterator over the data block at the index entry's value: reuse, re-aimed,
 * if it is a block iterator. */
static nk_iter *data_block_iter(nk_table *t, const char *enc, size_t elen, nk_iter *reuse,
                                int *status) {
  nk_block stack, *b = NULL;
  nk_cache_handle *ch = NULL;
  bool owned = false;
  if ((*status = lookup_block(t, enc, elen, &stack, &b, &ch, &owned)) != NOKV_OK) return NULL;
  if (b == &stack) return nk_block_iter_borrow(reuse, &stack, status);  /* mapped, raw */
  if (ch != NULL ? nk_block_iter_reset(reuse, b, release_cached, t->cache, ch)
                 : nk_block_iter_reset(reuse, b, free_block, b, NULL)) {
    return reuse;
  }
  nk_iter *it = ch != NULL ? nk_block_iter_new(b, release_cached, t->cache, ch)
                           : nk_block_iter_new(b, free_block, b, NULL);
  if (it == NULL) {
    if (ch != NULL) nk_cache_release(t->cache, ch); else nk_block_free(b);
    *status = nk_err(NOKV_ENOMEM, "out of memory for a block iterator");
  }
  return it;
}

int nk_table_get(nk_table *t, const char *target, size_t n, uint64_t key_hash,
                 nk_get_result *r) {
  r->found = false;
  r->val = NULL;
  if (t->filter_len > 0) {
    if (t->stats != NULL) nk_stat_add(&t->stats->bloom_checks, 1);
    if (!nk_bloom_may_match(t->filter, t->filter_len, key_hash)) {
      if (t->stats != NULL) {
        nk_stat_add(&t->stats->bloom_negatives, 1);
      }
      return NOKV_OK;
    }
  }
  /* A point lookup needs no iterator: the index entry, then the entry in its
   * data block, found in place (keys rebuilt in one scratch buffer). */
  nk_buf scratch = {0};
  nk_block_entry ie, de;
  nk_block stack, *b = NULL;
  nk_cache_handle *ch = NULL;
  bool owned = false;
  int ret = nk_block_find(t->index, target, n, &scratch, &ie);
  if (ret == NOKV_ENOTFOUND) {
    ret = NOKV_OK;  /* past the table's last key */
    goto done;
  }
  if (ret == NOKV_ECORRUPT) ret = corrupt(t, 0, "bad index block entry");
  if (ret != NOKV_OK) goto done;
  if ((ret = lookup_block(t, ie.val, ie.vlen, &stack, &b, &ch, &owned)) != NOKV_OK) goto done;
  ret = nk_block_find(b, target, n, &scratch, &de);
  if (ret != NOKV_OK) {
    /* The index entry is the block's last key, which is >= target: only
     * corruption can leave the block without such a key. */
    if (ret == NOKV_ENOTFOUND || ret == NOKV_ECORRUPT) ret = corrupt(t, 0, "bad data block entry");
    goto done;
  }
  if (nk_user_key_cmp(de.key, nk_ikey_user_len(de.klen), target, nk_ikey_user_len(n)) != 0) {
    goto done;
  }
  uint64_t trailer = nk_ikey_trailer(de.key, de.klen);
  r->found = true;
  r->ts = nk_trailer_ts(trailer);
  r->kind = nk_trailer_kind(trailer);
  if (nk_kind_has_value(r->kind)) {
    if ((r->val = malloc(de.vlen ? de.vlen : 1)) == NULL) {
      r->found = false;
      ret = nk_err(NOKV_ENOMEM, "out of memory copying a %zu-byte value", de.vlen);
      goto done;
    }
    memcpy(r->val, de.val, de.vlen);
    r->vlen = de.vlen;
  }
done:
  if (ch != NULL) {
    nk_cache_release(t->cache, ch);
  } else if (owned) {
    nk_block_free(b);
  }
  nk_buf_release(&scratch);
  return ret;
}

/* ---- iteration: the index block over the data blocks ---- */

static nk_iter *open_data_block(void *table, const char *value, size_t n, nk_iter *reuse,
                                int *status) {
  return data_block_iter(table, value, n, reuse, status);
}

nk_iter *nk_table_iter_new(nk_table *t) {
  nk_iter *index = nk_block_iter_new(t->index, NULL, NULL, NULL);
  return index == NULL ? NULL : nk_two_level_iter_new(index, open_data_block, t);
}
