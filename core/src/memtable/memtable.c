#define _GNU_SOURCE /* madvise */
/*
 * memtable.c — entries are encoded once into the arena and linked by the
 * skiplist. A blocked bloom filter over the user keys (all of a key's probes in
 * one 64-byte line; sized for the budget at 64 bytes per entry, so 8 bits per key
 * at worst and about 17 for 100-byte values) lets a point read skip the skiplist search, a dozen
 * cache misses, when the key is not here: the common case for a read that ends
 * in a table. It costs the writer one cache line per insert.
 */
#include "memtable/memtable.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "nokv/status.h"
#include "util/arena.h"
#include "util/checksum.h"

#define NK_MEMTABLE_BLOCK (256u << 10)

/* Blocks of at most 1/16 of the budget (4 KiB..256 KiB), so the accounting,
 * which counts whole blocks, overshoots the budget by little; memtables of 32 MiB
 * and more use 2 MiB blocks, which the arena backs with huge pages. */
static size_t nk_memtable_block_size(size_t budget) {
  if (budget >= (32u << 20)) return 2u << 20;
  size_t b = budget / 16;
  if (b < 4096) b = 4096;
  if (b > NK_MEMTABLE_BLOCK) b = NK_MEMTABLE_BLOCK;
  return b;
}

#define NK_BLOOM_LINE_WORDS 8  /* 64-byte lines */
#define NK_BLOOM_PROBES 6

struct nk_memtable {
  uint64_t *bloom;       /* nlines * 8 words; bits set by the writer, atomically */
  size_t nlines;
  nk_arena *arena;
  nk_skiplist *index;
  atomic_uint_fast64_t entries;
  atomic_uint refs;
  uint64_t max_ts;  /* newest commit_ts added; written by the single writer */
  uint64_t max_point_ts;  /* the same of versions (range tombstones left out); atomic */
  const nk_mem_rdel *rdels;  /* newest first; published with a release store */
};

/* Zeroed, 64-byte aligned; whole 2 MiB pages (huge pages if the kernel grants
 * them) once the filter is past 1 MiB. */
static uint64_t *bloom_alloc(size_t bytes) {
  size_t align = bytes > (1u << 20) ? (2u << 20) : 64;
  size_t total = (bytes + align - 1) / align * align;
  void *p = NULL;
  if (posix_memalign(&p, align, total) != 0) return NULL;
  memset(p, 0, total);
  if (align > 64) madvise(p, total, MADV_HUGEPAGE);
  return p;
}

nk_memtable *nk_memtable_new(size_t budget, nk_arena_pool *pool) {
  nk_memtable *mt = calloc(1, sizeof *mt);
  if (mt == NULL) {
    return NULL;
  }
  /* Sized for the budget at a 64-byte minimum entry: 8 bits per key at most. */
  size_t keys = (budget ? budget : (64u << 20)) / 64;
  mt->nlines = keys * 8 / 512 + 1;
  if ((mt->bloom = bloom_alloc(mt->nlines * NK_BLOOM_LINE_WORDS * sizeof *mt->bloom)) == NULL ||
      (mt->arena = nk_arena_new(nk_memtable_block_size(budget), pool)) == NULL ||
      (mt->index = nk_skiplist_new(mt->arena)) == NULL) {
    nk_memtable_free(mt);
    return NULL;
  }
  atomic_init(&mt->entries, 0);
  atomic_init(&mt->refs, 1);
  return mt;
}

void nk_memtable_free(nk_memtable *mt) {
  if (mt != NULL) {
    free(mt->bloom);
    nk_arena_free(mt->arena);
    free(mt);
  }
}

void nk_memtable_ref(nk_memtable *mt) { atomic_fetch_add(&mt->refs, 1); }

void nk_memtable_unref(nk_memtable *mt) {
  if (mt != NULL && atomic_fetch_sub(&mt->refs, 1) == 1) nk_memtable_free(mt);
}

size_t nk_memtable_cost(size_t klen, size_t vlen) {
  return nk_entry_encoded_len(klen, vlen) + nk_skiplist_max_node_size() + 16;
}

/* The line of key's hash h (its high bits). */
static inline uint64_t *bloom_line(const nk_memtable *mt, uint64_t h) {
  return mt->bloom + (size_t)(((h >> 32) * (uint64_t)mt->nlines) >> 32) * NK_BLOOM_LINE_WORDS;
}

/* Probe bits come from a remix of h, independent of the line choice. */
static inline uint64_t probe_bits(uint64_t h) { return h * UINT64_C(0x9E3779B97F4A7C15); }

/* Sets key's bits; h = nk_hash64(key). The memtable has one writer at a time,
 * so plain (relaxed atomic) loads and stores do: no locked read-modify-write. */
static void bloom_add(nk_memtable *mt, uint64_t h) {
  uint64_t g = probe_bits(h), mask[NK_BLOOM_LINE_WORDS] = {0};
  uint64_t *line = bloom_line(mt, h);
  for (int i = 0; i < NK_BLOOM_PROBES; i++) {
    unsigned bit = (unsigned)(g >> (i * 9)) & 511;
    mask[bit >> 6] |= UINT64_C(1) << (bit & 63);
  }
  for (int w = 0; w < NK_BLOOM_LINE_WORDS; w++) {
    if (mask[w] != 0) {
      uint64_t old = __atomic_load_n(&line[w], __ATOMIC_RELAXED);
      __atomic_store_n(&line[w], old | mask[w], __ATOMIC_RELAXED);
    }
  }
}

/* Readers see every bit a write set before it was published: the oracle's
 * release/acquire orders them. */
static bool bloom_may_contain(const nk_memtable *mt, uint64_t h) {
  uint64_t g = probe_bits(h);
  const uint64_t *line = bloom_line(mt, h);
  for (int i = 0; i < NK_BLOOM_PROBES; i++) {
    unsigned bit = (unsigned)(g >> (i * 9)) & 511;
    if ((__atomic_load_n(&line[bit >> 6], __ATOMIC_RELAXED) & (UINT64_C(1) << (bit & 63))) == 0) {
      return false;
    }
  }
  return true;
}

/* Range tombstones go to their own list, in the arena like the entries. */
static int add_rdel(nk_memtable *mt, uint64_t ts, const char *start, size_t slen,
                    const char *end, size_t elen) {
  nk_mem_rdel *r = nk_arena_alloc(mt->arena, sizeof *r + slen + elen);
  if (r == NULL) return NOKV_ENOMEM;
  char *p = (char *)(r + 1);
  if (slen > 0) memcpy(p, start, slen);
  memcpy(p + slen, end, elen);
  r->del = (nk_rdel){.start = p, .slen = slen, .end = p + slen, .elen = elen, .ts = ts};
  r->next = mt->rdels;
  __atomic_store_n(&mt->rdels, r, __ATOMIC_RELEASE);
  atomic_fetch_add_explicit(&mt->entries, 1, memory_order_relaxed);
  if (ts > mt->max_ts) mt->max_ts = ts;
  return NOKV_OK;
}

const nk_mem_rdel *nk_memtable_rdels(const nk_memtable *mt) {
  return __atomic_load_n(&mt->rdels, __ATOMIC_ACQUIRE);
}

uint64_t nk_memtable_rdel_cover(const nk_memtable *mt, const char *key, size_t klen,
                                uint64_t read_ts) {
  uint64_t best = 0;
  for (const nk_mem_rdel *r = nk_memtable_rdels(mt); r != NULL; r = r->next) {
    const nk_rdel *d = &r->del;
    if (d->ts <= read_ts && d->ts > best &&
        nk_user_key_cmp(key, klen, d->start, d->slen) >= 0 &&
        nk_user_key_cmp(key, klen, d->end, d->elen) < 0) {
      best = d->ts;
    }
  }
  return best;
}

uint64_t nk_memtables_rdel_cover(const nk_memtable *mem, nk_memtable *const *imm, size_t n,
                                 const char *key, size_t klen, uint64_t read_ts) {
  uint64_t best = nk_memtable_rdel_cover(mem, key, klen, read_ts);
  for (size_t i = 0; i < n; i++) {
    uint64_t t = nk_memtable_rdel_cover(imm[i], key, klen, read_ts);
    if (t > best) best = t;
  }
  return best;
}

int nk_memtable_add(nk_memtable *mt, uint64_t ts, nk_kind kind, const char *key, size_t klen,
                    const char *val, size_t vlen) {
  if (kind == NK_KIND_RANGE_DEL) return add_rdel(mt, ts, key, klen, val, vlen);
  size_t len = nk_entry_encoded_len(klen, vlen);
  int height;
  char *entry = nk_skiplist_alloc(mt->index, len, &height);
  if (entry == NULL) {
    return NOKV_ENOMEM;
  }
  nk_entry_encode(entry, key, klen, ts, kind, val, vlen);
  uint64_t h = nk_hash64(key, klen);
  __builtin_prefetch(bloom_line(mt, h), 1);  /* its miss overlaps the skiplist search */
  nk_skiplist_link(mt->index, entry, height);
  bloom_add(mt, h);
  atomic_fetch_add_explicit(&mt->entries, 1, memory_order_relaxed);
  if (ts > mt->max_ts) mt->max_ts = ts;
  if (ts > __atomic_load_n(&mt->max_point_ts, __ATOMIC_RELAXED)) {
    __atomic_store_n(&mt->max_point_ts, ts, __ATOMIC_RELAXED);
  }
  return NOKV_OK;
}

int nk_memtable_has_version(const nk_memtable *mt, const char *lo, size_t lo_len, const char *hi,
                            size_t hi_len, uint64_t min_ts, uint64_t max_ts, int limit) {
  /* Read after the versions a reader may see were published (the oracle's
   * order): a newer one only raises it. */
  if (__atomic_load_n(&mt->max_point_ts, __ATOMIC_RELAXED) < min_ts) return 0;
  nk_sl_iter it;
  nk_sl_iter_init(&it, mt->index);
  nk_sl_iter_seek(&it, lo, lo_len, NK_MAX_TS);
  for (int n = 0; nk_sl_iter_valid(&it); n++, nk_sl_iter_next(&it)) {
    nk_entry e;
    nk_entry_decode(nk_sl_iter_entry(&it), &e);
    if (nk_user_key_cmp(e.key, e.klen, hi, hi_len) >= 0) return 0;
    if (e.ts >= min_ts && e.ts <= max_ts) return 1;
    if (n == limit) return -1;
  }
  return 0;
}

bool nk_memtable_get(const nk_memtable *mt, const char *key, size_t klen, uint64_t key_hash,
                     uint64_t read_ts, nk_entry *out) {
  if (!bloom_may_contain(mt, key_hash)) {
    return false;
  }
  nk_sl_iter it;
  nk_sl_iter_init(&it, mt->index);
  nk_sl_iter_seek(&it, key, klen, read_ts);
  if (!nk_sl_iter_valid(&it)) {
    return false;
  }
  nk_entry_decode(nk_sl_iter_entry(&it), out);
  return nk_user_key_cmp(out->key, out->klen, key, klen) == 0;
}

size_t nk_memtable_usage(const nk_memtable *mt) { return nk_arena_usage(mt->arena); }

uint64_t nk_memtable_entries(const nk_memtable *mt) {
  return atomic_load_explicit(&((nk_memtable *)mt)->entries, memory_order_relaxed);
}

const nk_skiplist *nk_memtable_index(const nk_memtable *mt) { return mt->index; }

uint64_t nk_memtable_max_ts(const nk_memtable *mt) { return mt->max_ts; }

/* ---- as an nk_iter ---- */

typedef struct mem_iter {
  nk_iter base;
  nk_sl_iter pos;
} mem_iter;

static bool mi_valid(const nk_iter *it) { return nk_sl_iter_valid(&((const mem_iter *)it)->pos); }
static void mi_seek_first(nk_iter *it) { nk_sl_iter_seek_first(&((mem_iter *)it)->pos); }
static void mi_seek(nk_iter *it, const char *k, size_t n) {
  size_t ulen = nk_ikey_user_len(n);
  nk_sl_iter_seek(&((mem_iter *)it)->pos, k, ulen, nk_trailer_ts(nk_ikey_trailer(k, n)));
}
static void mi_next(nk_iter *it) { nk_sl_iter_next(&((mem_iter *)it)->pos); }
/* An entry is varint klen | key | trailer | varint vlen | value: the internal
 * key is contiguous. */
static const char *mi_key(const nk_iter *it, size_t *n) {
  const char *p = nk_sl_iter_entry(&((const mem_iter *)it)->pos);
  uint32_t klen = 0;
  p = nk_get_varint32(p, p + NK_VARINT32_MAX, &klen);
  *n = (size_t)klen + NK_IKEY_TRAILER;
  return p;
}
static const char *mi_value(const nk_iter *it, size_t *n) {
  nk_entry e;
  nk_entry_decode(nk_sl_iter_entry(&((const mem_iter *)it)->pos), &e);
  *n = e.vlen;
  return e.val;
}
static int mi_status(const nk_iter *it) { (void)it; return NOKV_OK; }
static void mi_destroy(nk_iter *it) { free(it); }

static const nk_iter_ops mem_iter_ops = {mi_valid, mi_seek_first, mi_seek,   mi_next,
                                         mi_key,   mi_value,      mi_status, mi_destroy};

nk_iter *nk_memtable_iter_new(const nk_memtable *mt) {
  mem_iter *it = malloc(sizeof *it);
  if (it == NULL) return NULL;
  it->base.ops = &mem_iter_ops;
  nk_sl_iter_init(&it->pos, mt->index);
  return &it->base;
}
