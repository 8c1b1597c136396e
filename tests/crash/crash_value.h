/* crash_value.h — the value the crash writer stores under a key, so the test can
 * check contents, not just presence; and the options the writer and the test
 * both open the database with. */
#ifndef NOKV_TESTS_CRASH_CRASH_VALUE_H
#define NOKV_TESTS_CRASH_CRASH_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "nokv/nokv.h"

#define CRASH_VALUE_MAX 400

/* The key repeated to a length (20..319) that depends on it. */
static inline void crash_value_of(const char *key, char *buf, size_t *len) {
  size_t klen = strlen(key), n = 20 + (klen * 131 + (unsigned char)key[klen - 1] * 7) % 300;
  for (size_t i = 0; i < n; i++) buf[i] = key[i % klen];
  *len = n;
}

/* Defaults, or (lsm) tiny memtables and levels so flushes and compactions run
 * all the time. */
static inline void crash_options(nokv_options *o, bool lsm) {
  nokv_options_init(o);
  if (lsm) {
    o->memtable_max_bytes = 64 << 10;
    o->level1_max_bytes = 128 << 10;
    o->target_file_bytes = 32 << 10;
    o->block_size = 1024;
    o->compression_start_level = 1;
  }
}

/* Value-log mode: key "v/t<thread>/<slot>" is overwritten again and again; the
 * value names the key and the write's sequence number, then filler to a length
 * (300..3299 bytes, so it goes to the value log) that depends on both. */
#define CRASH_VLOG_VALUE_MAX 3400

static inline size_t crash_vlog_value_of(const char *key, long seq, char *buf) {
  int n = snprintf(buf, CRASH_VLOG_VALUE_MAX, "%s#%ld#", key, seq);
  size_t len = 300 + (size_t)((seq * 2654435761u + (unsigned char)key[strlen(key) - 1]) % 3000);
  for (size_t i = (size_t)n; i < len; i++) buf[i] = (char)('a' + (i + (size_t)seq) % 26);
  return len;
}

/* Tiny memtables, levels and value-log segments; GC collects at 10% garbage. */
static inline void crash_vlog_options(nokv_options *o) {
  crash_options(o, true);
  o->value_threshold = 256;
  o->value_log_segment_bytes = 64 << 10;
  o->value_log_gc_ratio = 0.1;
  o->value_log_gc_bytes_per_sec = 0;
}

#endif /* NOKV_TESTS_CRASH_CRASH_VALUE_H */
