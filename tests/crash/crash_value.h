/* crash_value.h — the value the crash writer stores under a key, so the test can
 * check contents, not just presence; and the options the writer and the test
 * both open the database with. */
#ifndef NOKV_TESTS_CRASH_CRASH_VALUE_H
#define NOKV_TESTS_CRASH_CRASH_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Transaction mode: a bank of accounts "acct/NN" holding decimal balances that
 * always sum to CRASH_ACCOUNTS * CRASH_START. */
#define CRASH_ACCOUNTS 16
#define CRASH_START 1000

/* The key of account i (0 <= i < CRASH_ACCOUNTS) into buf[16]. */
static inline int crash_account_key(int i, char *buf) {
  return snprintf(buf, 16, "acct/%02d", i % CRASH_ACCOUNTS);
}

static inline bool crash_read_account(nokv_txn *t, int i, long *out) {
  char k[16];
  int kn = crash_account_key(i, k);
  void *v;
  size_t n;
  if (nokv_txn_get(t, k, (size_t)kn, &v, &n) != NOKV_OK) return false;
  char tmp[32] = {0};
  memcpy(tmp, v, n < sizeof tmp - 1 ? n : sizeof tmp - 1);
  nokv_free(v);
  *out = strtol(tmp, NULL, 10);
  return true;
}

static inline void crash_write_account(nokv_txn *t, int i, long balance) {
  char k[16], v[32];
  int kn = crash_account_key(i, k), vn = snprintf(v, sizeof v, "%ld", balance);
  nokv_txn_put(t, k, (size_t)kn, v, (size_t)vn);
}

/* Creates the accounts (in one transaction) unless they exist. */
static inline int crash_init_accounts(nokv_db *db) {
  nokv_txn *t;
  int rc = nokv_txn_begin(db, 0, &t);
  if (rc != NOKV_OK) return rc;
  long have;
  if (crash_read_account(t, 0, &have)) {
    nokv_txn_discard(t);
    return NOKV_OK;
  }
  for (int i = 0; i < CRASH_ACCOUNTS; i++) crash_write_account(t, i, CRASH_START);
  nokv_write_options wo = {.sync = true};
  return nokv_txn_commit(t, &wo, NULL);
}

#endif /* NOKV_TESTS_CRASH_CRASH_VALUE_H */
