/*
 * crash_writer — the victim of the crash tests. Opens the database in argv[1]
 * and has argv[2] threads write keys "r<round>/t<thread>/<seq>" with sync=true,
 * printing "<key>\n" to stdout only after the write was acknowledged. The
 * parent kills it with SIGKILL at a random moment and checks that every printed
 * key survived. Runs until killed.
 *
 * With a fifth argument "lsm", memtables and level targets are tiny and another
 * thread runs full compactions back to back, so a kill almost always lands in
 * the middle of a flush or a compaction.
 *
 * With "vlog", each thread overwrites 100 keys "v/t<thread>/<slot>" over and
 * over with values of 300..3299 bytes (all in the value log), printing
 * "<key> <seq>\n" once acknowledged, while another thread compacts and runs
 * value-log GC back to back: kills land in value-log appends and GC rewrites.
 * With "vlog-delete", the process kills itself (SIGKILL) the moment GC is about
 * to delete a value-log segment.
 *
 * With "txn", each thread runs bank transfers between CRASH_ACCOUNTS accounts in
 * transactions (synced commits, retried on conflict); each transfer also writes
 * a marker key "m/r<round>/t<thread>/<seq>" (its value: "from to amount"),
 * printed once the commit returned.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nokv/nokv.h"
#include "tests/crash/crash_value.h"
#include "util/env.h"

static nokv_db *db;
static const char *round_id;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void *writer(void *arg) {
  long t = (long)arg;
  nokv_write_options wo = {.sync = true};
  char key[64], val[CRASH_VALUE_MAX], line[80];
  for (long seq = 0;; seq++) {
    int klen = snprintf(key, sizeof key, "r%s/t%ld/%06ld", round_id, t, seq);
    size_t vlen;
    crash_value_of(key, val, &vlen);
    int rc = nokv_put(db, &wo, key, (size_t)klen, val, vlen, NULL);
    if (rc != NOKV_OK) {
      fprintf(stderr, "crash_writer: put %s: %s\n", key, nokv_errmsg());
      exit(2);
    }
    int n = snprintf(line, sizeof line, "%s\n", key);
    pthread_mutex_lock(&out_mu);
    if (write(1, line, (size_t)n) != n) exit(3);
    pthread_mutex_unlock(&out_mu);
  }
  return NULL;
}

static void *vlog_writer(void *arg) {
  long t = (long)arg;
  nokv_write_options wo = {.sync = true};
  char key[64], val[CRASH_VLOG_VALUE_MAX], line[96];
  /* Sequence numbers grow across rounds too, so later writes compare newer. */
  for (long seq = atol(round_id) * 10000000L;; seq++) {
    int klen = snprintf(key, sizeof key, "v/t%ld/%03ld", t, (seq * 37) % 100);
    size_t vlen = crash_vlog_value_of(key, seq, val);
    if (nokv_put(db, &wo, key, (size_t)klen, val, vlen, NULL) != NOKV_OK) {
      fprintf(stderr, "crash_writer: put %s: %s\n", key, nokv_errmsg());
      exit(2);
    }
    int n = snprintf(line, sizeof line, "%s %ld\n", key, seq);
    pthread_mutex_lock(&out_mu);
    if (write(1, line, (size_t)n) != n) exit(3);
    pthread_mutex_unlock(&out_mu);
  }
  return NULL;
}

static void *txn_writer(void *arg) {
  long t = (long)arg;
  nokv_write_options wo = {.sync = true};
  unsigned long long x = 88172645463325252ull + (unsigned long long)t * 7919 +
                         (unsigned long long)atol(round_id) * 104729;
  char line[96];
  for (long seq = 0;; seq++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int from = (int)(x % CRASH_ACCOUNTS), to = (int)((x >> 20) % CRASH_ACCOUNTS);
    long amount = (long)((x >> 40) % 100);
    char marker[64];
    int mlen = snprintf(marker, sizeof marker, "m/r%s/t%ld/%06ld", round_id, t, seq);
    for (;;) {
      nokv_txn *txn;
      if (nokv_txn_begin(db, 0, &txn) != NOKV_OK) exit(6);
      long a, b;
      if (!crash_read_account(txn, from, &a) || !crash_read_account(txn, to, &b)) exit(7);
      if (from != to) {
        crash_write_account(txn, from, a - amount);
        crash_write_account(txn, to, b + amount);
      }
      /* The marker says what the transfer did, so a reader can recompute every
       * balance from the markers alone. */
      char what[48];
      int wlen = snprintf(what, sizeof what, "%d %d %ld", from, to, from != to ? amount : 0);
      nokv_txn_put(txn, marker, (size_t)mlen, what, (size_t)wlen);
      int rc = nokv_txn_commit(txn, &wo, NULL);
      if (rc == NOKV_OK) break;
      if (rc != NOKV_ECONFLICT) {
        fprintf(stderr, "crash_writer: commit: %s\n", nokv_errmsg());
        exit(8);
      }
    }
    int n = snprintf(line, sizeof line, "%s\n", marker);
    pthread_mutex_lock(&out_mu);
    if (write(1, line, (size_t)n) != n) exit(3);
    pthread_mutex_unlock(&out_mu);
  }
  return NULL;
}

static bool collect_garbage;

static void *compactor(void *arg) {
  (void)arg;
  for (;;) {
    if (nokv_compact(db) != NOKV_OK) {
      fprintf(stderr, "crash_writer: compact: %s\n", nokv_errmsg());
      exit(4);
    }
    if (collect_garbage && nokv_vlog_gc(db, 0.1, NULL) != NOKV_OK) {
      fprintf(stderr, "crash_writer: vlog gc: %s\n", nokv_errmsg());
      exit(5);
    }
  }
  return NULL;
}

/* The POSIX file layer, except that deleting a value-log segment kills the
 * process first: the crash lands exactly between GC retiring a segment in the
 * manifest and its file going away. */
static struct nokv_env killing_env;

static int remove_or_die(const struct nokv_env *env, const char *path) {
  size_t n = strlen(path);
  if (n > 5 && strcmp(path + n - 5, ".vlog") == 0) kill(getpid(), SIGKILL);
  return nk_env_posix()->remove(env, path);
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: crash_writer DIR THREADS ROUND [lsm|vlog|vlog-delete|txn]\n");
    return 1;
  }
  round_id = argv[3];
  const char *mode = argc == 5 ? argv[4] : "";
  bool lsm = strcmp(mode, "lsm") == 0;
  bool vlog = strncmp(mode, "vlog", 4) == 0;
  bool txn = strcmp(mode, "txn") == 0;
  nokv_options o;
  crash_options(&o, lsm || strcmp(mode, "txn") == 0);
  if (vlog) {
    crash_vlog_options(&o);
    collect_garbage = true;
  }
  if (strcmp(mode, "vlog-delete") == 0) {
    killing_env = *nk_env_posix();
    killing_env.remove = remove_or_die;
    o.env = &killing_env;
  }
  if (nokv_open(argv[1], &o, &db) != NOKV_OK) {
    fprintf(stderr, "crash_writer: open %s: %s\n", argv[1], nokv_errmsg());
    return 1;
  }
  int threads = atoi(argv[2]);
  pthread_t tid[64];
  pthread_t ctid;
  if (txn && crash_init_accounts(db) != NOKV_OK) {
    fprintf(stderr, "crash_writer: accounts: %s\n", nokv_errmsg());
    return 1;
  }
  if (lsm || vlog || txn) pthread_create(&ctid, NULL, compactor, NULL);
  for (long t = 0; t < threads && t < 64; t++) {
    pthread_create(&tid[t], NULL, txn ? txn_writer : vlog ? vlog_writer : writer, (void *)t);
  }
  for (long t = 0; t < threads && t < 64; t++) pthread_join(tid[t], NULL);
  return 0;
}
