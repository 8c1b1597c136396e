/*
 * arena.h — bump allocator for memtable entries and skiplist nodes.
 *
 * Memory is carved from large blocks and released all at once with the arena, so
 * a memtable pays one malloc per block, not per entry. One thread allocates at a
 * time (the memtable's writer); nk_arena_usage may be read by any thread.
 */
#ifndef NOKV_UTIL_ARENA_H
#define NOKV_UTIL_ARENA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_arena nk_arena;

/* A thread-safe pool of freed 2 MiB blocks that later arenas reuse, so a new
 * memtable does not page-fault and zero fresh memory for every block. */
typedef struct nk_arena_pool nk_arena_pool;
nk_arena_pool *nk_arena_pool_new(size_t max_bytes);  /* NULL on ENOMEM */
/* REQUIRES: every arena using the pool is freed. */
void nk_arena_pool_free(nk_arena_pool *p);

/* pool may be NULL. NULL on ENOMEM. */
nk_arena *nk_arena_new(size_t block_size, nk_arena_pool *pool);
/* Returns pool-sized blocks to the pool (up to its limit), frees the rest. */
void nk_arena_free(nk_arena *a);

/* Returns n bytes aligned for any pointer or uint64_t, or NULL on ENOMEM.
 * REQUIRES: n > 0; one allocating thread at a time. */
void *nk_arena_alloc(nk_arena *a, size_t n);

/* Bytes of blocks held, including unused tails. Safe from any thread. */
size_t nk_arena_usage(const nk_arena *a);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_UTIL_ARENA_H */
