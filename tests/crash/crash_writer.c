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
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nokv/nokv.h"
#include "tests/crash/crash_value.h"

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

static void *compactor(void *arg) {
  (void)arg;
  for (;;) {
    if (nokv_compact(db) != NOKV_OK) {
      fprintf(stderr, "crash_writer: compact: %s\n", nokv_errmsg());
      exit(4);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: crash_writer DIR THREADS ROUND [lsm]\n");
    return 1;
  }
  round_id = argv[3];
  bool lsm = argc == 5 && strcmp(argv[4], "lsm") == 0;
  nokv_options o;
  crash_options(&o, lsm);
  if (nokv_open(argv[1], &o, &db) != NOKV_OK) {
    fprintf(stderr, "crash_writer: open %s: %s\n", argv[1], nokv_errmsg());
    return 1;
  }
  int threads = atoi(argv[2]);
  pthread_t tid[64];
  pthread_t ctid;
  if (lsm) pthread_create(&ctid, NULL, compactor, NULL);
  for (long t = 0; t < threads && t < 64; t++) pthread_create(&tid[t], NULL, writer, (void *)t);
  for (long t = 0; t < threads && t < 64; t++) pthread_join(tid[t], NULL);
  return 0;
}
