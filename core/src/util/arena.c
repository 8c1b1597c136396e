/*
 * arena.c — blocks are chained through a small header; a request larger than a
 * quarter block gets a block of its own so the current block's tail is not wasted
 * (LevelDB's rule).
 *
 * Blocks of 2 MiB (large memtables) are 2 MiB-aligned and marked for transparent
 * huge pages: a skiplist search touches a dozen random nodes, and with 4 KiB
 * pages nearly every one of them is also a TLB miss.
 */
#define _GNU_SOURCE
#include "util/arena.h"

#include <sys/mman.h>
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

#define NK_HUGE_PAGE (2u << 20)

static char *new_block(nk_arena *a, size_t size) {
  size_t total = sizeof(struct block) + size;
  struct block *b = NULL;
  if (total % NK_HUGE_PAGE == 0) {
    void *p = NULL;
    if (posix_memalign(&p, NK_HUGE_PAGE, total) == 0) {
      b = p;
      madvise(p, total, MADV_HUGEPAGE);  /* a hint: failure only costs speed */
    }
  } else {
    b = malloc(total);
  }
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
  /* A standard block is block_size bytes in all, header included. */
  size_t cap = a->block_size - sizeof(struct block);
  char *p = new_block(a, cap);
  if (p == NULL) {
    return NULL;
  }
  a->ptr = p + n;
  a->remaining = cap - n;
  return p;
}

size_t nk_arena_usage(const nk_arena *a) {
  return atomic_load_explicit(&a->usage, memory_order_relaxed);
}
