/*
 * skiplist.c — probabilistic levels with branching factor 4 and at most 12
 * levels (LevelDB's constants): expected 1.33 links per node.
 *
 * Layout (as RocksDB's InlineSkipList): a node's upper links sit below it in
 * memory and its entry right above it, so a search step touches one place:
 *
 *   [next[h-1] ... next[1]] [next[0] | entry ptr] [entry bytes]
 *                            ^ node
 */
#include "memtable/skiplist.h"

#include <stdatomic.h>

#include "memtable/internal_key.h"

#define NK_SL_MAX_HEIGHT 12
#define NK_SL_BRANCHING 4

typedef struct nk_sl_node {
  _Atomic(struct nk_sl_node *) next0;   /* next[i] is (&next0)[-i]: links grow down */
  _Atomic(const char *) entry;          /* usually the bytes right after the node */
} nk_sl_node;

typedef _Atomic(struct nk_sl_node *) nk_sl_link;

static inline nk_sl_link *link_of(const nk_sl_node *n, int level) {
  return (nk_sl_link *)&((nk_sl_node *)n)->next0 - level;
}

struct nk_skiplist {
  nk_arena *arena;
  nk_sl_node *head;
  atomic_int max_height;
  uint64_t rng;  /* writer-only */
};

/* A node of height with room for entry_len bytes after it. */
static nk_sl_node *new_node(nk_arena *arena, int height, size_t entry_len) {
  size_t upper = (size_t)(height - 1) * sizeof(nk_sl_link);
  char *p = nk_arena_alloc(arena, upper + sizeof(nk_sl_node) + entry_len);
  if (p == NULL) {
    return NULL;
  }
  nk_sl_node *n = (nk_sl_node *)(p + upper);
  atomic_init(&n->entry, (const char *)(n + 1));
  for (int i = 0; i < height; i++) {
    atomic_init(link_of(n, i), NULL);
  }
  return n;
}

size_t nk_skiplist_max_node_size(void) {
  return sizeof(nk_sl_node) + (NK_SL_MAX_HEIGHT - 1) * sizeof(nk_sl_link);
}

nk_skiplist *nk_skiplist_new(nk_arena *arena) {
  nk_skiplist *sl = nk_arena_alloc(arena, sizeof *sl);
  if (sl == NULL) {
    return NULL;
  }
  sl->arena = arena;
  sl->head = new_node(arena, NK_SL_MAX_HEIGHT, 0);
  if (sl->head == NULL) {
    return NULL;
  }
  atomic_init(&sl->max_height, 1);
  sl->rng = 0x9E3779B97F4A7C15ull;
  return sl;
}

static inline nk_sl_node *next_of(const nk_sl_node *n, int level) {
  return atomic_load_explicit(link_of(n, level), memory_order_acquire);
}

static int random_height(nk_skiplist *sl) {
  int h = 1;
  while (h < NK_SL_MAX_HEIGHT) {
    /* xorshift64 */
    sl->rng ^= sl->rng << 13;
    sl->rng ^= sl->rng >> 7;
    sl->rng ^= sl->rng << 17;
    if (sl->rng % NK_SL_BRANCHING != 0) {
      break;
    }
    h++;
  }
  return h;
}

/* <0, 0, >0 as node's internal key is before, equal to, after (key, ts). */
static inline int node_cmp(const nk_sl_node *n, const char *key, size_t klen, uint64_t ts) {
  const char *p = atomic_load_explicit(&((nk_sl_node *)n)->entry, memory_order_acquire);
  uint32_t nlen = 0;
  if ((unsigned char)*p < 0x80) {  /* keys under 128 bytes: a one-byte length */
    nlen = (unsigned char)*p++;
  } else {
    p = nk_get_varint32(p, p + NK_VARINT32_MAX, &nlen);
  }
  return nk_internal_cmp(p, nlen, nk_trailer_ts(nk_get_u64(p + nlen)), key, klen, ts);
}

/* First node >= (key, ts); fills prev[] with the last node < target per level. */
static nk_sl_node *find_ge(const nk_skiplist *sl, const char *key, size_t klen, uint64_t ts,
                           nk_sl_node **prev) {
  nk_sl_node *x = sl->head;
  int level = atomic_load_explicit(&((nk_skiplist *)sl)->max_height, memory_order_relaxed) - 1;
  for (;;) {
    nk_sl_node *next = next_of(x, level);
    if (next != NULL) __builtin_prefetch(next_of(next, 0));
    if (next != NULL && node_cmp(next, key, klen, ts) < 0) {
      x = next;
      continue;
    }
    if (prev != NULL) {
      prev[level] = x;
    }
    if (level == 0) {
      return next;
    }
    level--;
  }
}

char *nk_skiplist_alloc(nk_skiplist *sl, size_t len, int *height) {
  *height = random_height(sl);
  nk_sl_node *n = new_node(sl->arena, *height, len);
  return n == NULL ? NULL : (char *)(n + 1);
}

void nk_skiplist_link(nk_skiplist *sl, char *entry, int height) {
  nk_sl_node *x = (nk_sl_node *)entry - 1;
  nk_entry e;
  nk_entry_decode(entry, &e);
  nk_sl_node *prev[NK_SL_MAX_HEIGHT];
  nk_sl_node *found = find_ge(sl, e.key, e.klen, e.ts, prev);
  if (found != NULL && node_cmp(found, e.key, e.klen, e.ts) == 0) {
    atomic_store_explicit(&found->entry, entry, memory_order_release);
    return;  /* x stays unlinked: its entry now lives in found */
  }
  int max = atomic_load_explicit(&sl->max_height, memory_order_relaxed);
  if (height > max) {
    for (int i = max; i < height; i++) {
      prev[i] = sl->head;
    }
    /* Readers that see the new height before the links find NULL there and drop
     * a level, which is harmless. */
    atomic_store_explicit(&sl->max_height, height, memory_order_relaxed);
  }
  for (int i = 0; i < height; i++) {
    atomic_store_explicit(link_of(x, i), next_of(prev[i], i), memory_order_relaxed);
    atomic_store_explicit(link_of(prev[i], i), x, memory_order_release);
  }
}

void nk_sl_iter_init(nk_sl_iter *it, const nk_skiplist *sl) {
  it->sl = sl;
  it->node = NULL;
}

void nk_sl_iter_seek(nk_sl_iter *it, const char *key, size_t klen, uint64_t ts) {
  it->node = find_ge(it->sl, key, klen, ts, NULL);
}

void nk_sl_iter_seek_first(nk_sl_iter *it) { it->node = next_of(it->sl->head, 0); }

void nk_sl_iter_next(nk_sl_iter *it) { it->node = next_of(it->node, 0); }

const char *nk_sl_iter_entry(const nk_sl_iter *it) {
  return atomic_load_explicit(&((nk_sl_node *)it->node)->entry, memory_order_acquire);
}
