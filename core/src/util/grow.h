/* grow.h — growing a malloc'ed array by doubling. */
#ifndef NOKV_UTIL_GROW_H
#define NOKV_UTIL_GROW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

/* Makes room for element n of *arr (capacity *cap, elements of elem bytes),
 * doubling the capacity (from 16) when it is full. false on ENOMEM (*arr
 * unchanged). */
static inline bool nk_grow(void **arr, size_t *cap, size_t n, size_t elem) {
  if (n < *cap) return true;
  size_t c = *cap ? *cap * 2 : 16;
  void *p = realloc(*arr, c * elem);
  if (p == NULL) return false;
  *arr = p;
  *cap = c;
  return true;
}

#endif /* NOKV_UTIL_GROW_H */
