/* clock.h — the monotonic clock in microseconds (stall accounting, GC
 * throttling, detecting cold value reads), and the wall clock in milliseconds
 * that TTL expiry is judged by. */
#ifndef NOKV_UTIL_CLOCK_H
#define NOKV_UTIL_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline uint64_t nk_now_micros(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* Tests replace the wall clock (NULL: CLOCK_REALTIME). */
extern uint64_t (*nk_wall_clock_override)(void);

/* Milliseconds since the Unix epoch: what a TTL's expiry is stated in. */
static inline uint64_t nk_wall_ms(void) {
  if (nk_wall_clock_override != NULL) return nk_wall_clock_override();
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

#ifdef __cplusplus
}
#endif

#endif /* NOKV_UTIL_CLOCK_H */
