/* memtable.c — entries are encoded once into the arena and linked by the skiplist. */
#include "memtable/memtable.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "nokv/status.h"
#include "util/arena.h"

#define NK_MEMTABLE_BLOCK (256u << 10)

struct nk_memtable {
  nk_arena *arena;
  nk_skiplist *index;
  atomic_uint_fast64_t entries;
};

nk_memtable *nk_memtable_new(void) {
  nk_memtable *mt = calloc(1, sizeof *mt);
  if (mt == NULL) {
    return NULL;
  }
  if ((mt->arena = nk_arena_new(NK_MEMTABLE_BLOCK)) == NULL ||
      (mt->index = nk_skiplist_new(mt->arena)) == NULL) {
    nk_memtable_free(mt);
    return NULL;
  }
  atomic_init(&mt->entries, 0);
  return mt;
}

void nk_memtable_free(nk_memtable *mt) {
  if (mt != NULL) {
    nk_arena_free(mt->arena);
    free(mt);
  }
}

size_t nk_memtable_cost(size_t klen, size_t vlen) {
  return nk_entry_encoded_len(klen, vlen) + nk_skiplist_max_node_size() + 16;
}

int nk_memtable_add(nk_memtable *mt, uint64_t ts, nk_kind kind, const char *key, size_t klen,
                    const char *val, size_t vlen) {
  char *entry = nk_arena_alloc(mt->arena, nk_entry_encoded_len(klen, vlen));
  if (entry == NULL) {
    return NOKV_ENOMEM;
  }
  nk_entry_encode(entry, key, klen, ts, kind, val, vlen);
  if (!nk_skiplist_insert(mt->index, entry)) {
    return NOKV_ENOMEM;
  }
  atomic_fetch_add_explicit(&mt->entries, 1, memory_order_relaxed);
  return NOKV_OK;
}

bool nk_memtable_get(const nk_memtable *mt, const char *key, size_t klen, uint64_t read_ts,
                     nk_entry *out) {
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
