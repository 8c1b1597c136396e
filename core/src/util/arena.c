/*
 * arena.c — blocks are chained through a small header; a request larger than a
 * quarter block gets a block of its own so the current block's tail is not wasted
 * (LevelDB's rule).
 */
#include "util/arena.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

struct block {
  struct block *next;
  alignas(max_align_t) char data[];
};

struct nk_arena {
  size_t block_size;
  char *ptr;          /* next free byte of the current block */
  size_t remaining;   /* bytes left after ptr */
  struct block *blocks;
  atomic_size_t usage;
};

#define NK_ALIGN 8u

nk_arena *nk_arena_new(size_t block_size) {
  nk_arena *a = calloc(1, sizeof *a);
  if (a == NULL) {
    return NULL;
  }
  a->block_size = block_size < 4096 ? 4096 : block_size;
  atomic_init(&a->usage, sizeof *a);
  return a;
}

void nk_arena_free(nk_arena *a) {
  if (a == NULL) {
    return;
  }
  struct block *b = a->blocks;
  while (b != NULL) {
    struct block *next = b->next;
    free(b);
    b = next;
  }
  free(a);
}

static char *new_block(nk_arena *a, size_t size) {
  struct block *b = malloc(sizeof *b + size);
  if (b == NULL) {
    return NULL;
  }
  b->next = a->blocks;
  a->blocks = b;
  atomic_fetch_add_explicit(&a->usage, sizeof *b + size, memory_order_relaxed);
  return b->data;
}

void *nk_arena_alloc(nk_arena *a, size_t n) {
  size_t pad = (NK_ALIGN - ((uintptr_t)a->ptr & (NK_ALIGN - 1))) & (NK_ALIGN - 1);
  if (a->ptr != NULL && n + pad <= a->remaining) {
    char *p = a->ptr + pad;
    a->ptr = p + n;
    a->remaining -= n + pad;
    return p;
  }
  if (n > a->block_size / 4) {
    return new_block(a, n);  /* keeps the current block's tail for small requests */
  }
  char *p = new_block(a, a->block_size);
  if (p == NULL) {
    return NULL;
  }
  a->ptr = p + n;
  a->remaining = a->block_size - n;
  return p;
}

size_t nk_arena_usage(const nk_arena *a) {
  return atomic_load_explicit(&a->usage, memory_order_relaxed);
}
