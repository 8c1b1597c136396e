/* clock.h — the monotonic clock in microseconds (stall accounting, GC
 * throttling, detecting cold value reads). */
#ifndef NOKV_UTIL_CLOCK_H
#define NOKV_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t nk_now_micros(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

#endif /* NOKV_UTIL_CLOCK_H */
