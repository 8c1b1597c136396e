/* crash_value.h — the value the crash writer stores under a key, so the test can
 * check contents, not just presence. */
#ifndef NOKV_TESTS_CRASH_CRASH_VALUE_H
#define NOKV_TESTS_CRASH_CRASH_VALUE_H

#include <stddef.h>
#include <string.h>

#define CRASH_VALUE_MAX 400

/* The key repeated to a length (20..319) that depends on it. */
static inline void crash_value_of(const char *key, char *buf, size_t *len) {
  size_t klen = strlen(key), n = 20 + (klen * 131 + (unsigned char)key[klen - 1] * 7) % 300;
  for (size_t i = 0; i < n; i++) buf[i] = key[i % klen];
  *len = n;
}

#endif /* NOKV_TESTS_CRASH_CRASH_VALUE_H */
