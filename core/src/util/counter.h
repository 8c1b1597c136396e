/*
 * counter.h — relaxed atomic statistics counters as plain uint64_t fields, so
 * structs holding them can be shared with C++ tests (C11 _Atomic types are not
 * C++ types). Uses the GCC/Clang __atomic builtins.
 */
#ifndef NOKV_UTIL_COUNTER_H
#define NOKV_UTIL_COUNTER_H

#include <stdint.h>

static inline void nk_stat_add(uint64_t *c, uint64_t n) {
  __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

static inline uint64_t nk_stat_get(const uint64_t *c) {
  return __atomic_load_n(c, __ATOMIC_RELAXED);
}

#endif /* NOKV_UTIL_COUNTER_H */
