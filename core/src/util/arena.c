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

#include <pthread.h>
#include <sys/mman.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

struct block {
  struct block *next;
  size_t total;  /* bytes of the allocation, header included */
  alignas(max_align_t) char data[];
};

#define NK_HUGE_PAGE (2u << 20)

struct nk_arena_pool {
  pthread_mutex_t mu;
  struct block *free;  /* blocks of NK_HUGE_PAGE bytes */
  size_t bytes, max_bytes;
};

nk_arena_pool *nk_arena_pool_new(size_t max_bytes) {
  nk_arena_pool *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  pthread_mutex_init(&p->mu, NULL);
  p->max_bytes = max_bytes;
  return p;
}

void nk_arena_pool_free(nk_arena_pool *p) {
  if (p == NULL) return;
  for (struct block *b = p->free, *next; b != NULL; b = next) {
    next = b->next;
    free(b);
  }
  pthread_mutex_destroy(&p->mu);
  free(p);
}

static struct block *pool_take(nk_arena_pool *p) {
  if (p == NULL) return NULL;
  pthread_mutex_lock(&p->mu);
  struct block *b = p->free;
  if (b != NULL) {
    p->free = b->next;
    p->bytes -= b->total;
  }
  pthread_mutex_unlock(&p->mu);
  return b;
}

/* true if the pool kept b. */
static bool pool_put(nk_arena_pool *p, struct block *b) {
  if (p == NULL || b->total != NK_HUGE_PAGE) return false;
  pthread_mutex_lock(&p->mu);
  bool keep = p->bytes + b->total <= p->max_bytes;
  if (keep) {
    b->next = p->free;
    p->free = b;
    p->bytes += b->total;
  }
  pthread_mutex_unlock(&p->mu);
  return keep;
}

struct nk_arena {
  size_t block_size;
  nk_arena_pool *pool;
  char *ptr;          /* next free byte of the current block */
  size_t remaining;   /* bytes left after ptr */
  struct block *blocks;
  atomic_size_t usage;
};

#define NK_ALIGN 8u

nk_arena *nk_arena_new(size_t block_size, nk_arena_pool *pool) {
  nk_arena *a = calloc(1, sizeof *a);
  if (a == NULL) {
    return NULL;
  }
  a->block_size = block_size < 4096 ? 4096 : block_size;
  a->pool = pool;
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
    if (!pool_put(a->pool, b)) free(b);
    b = next;
  }
  free(a);
}

static char *new_block(nk_arena *a, size_t size) {
  size_t total = sizeof(struct block) + size;
  struct block *b = NULL;
  if (total == NK_HUGE_PAGE && (b = pool_take(a->pool)) != NULL) {
    /* reused: already faulted in */
  } else if (total % NK_HUGE_PAGE == 0) {
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
  b->total = total;
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
