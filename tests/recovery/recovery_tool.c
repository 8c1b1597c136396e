/*
 * recovery_tool — the recovery matrix's workload, fault injector and checker.
 *
 *   recovery_tool load DIR MODEL [options]   run a mixed workload, logging to
 *       MODEL every operation as it starts and once it is acknowledged; faults
 *       come through the engine's file layer (opts.env):
 *         --crash OP:PATTERN:N     SIGKILL itself just before the N-th call of kind
 *                                  OP on a path containing PATTERN
 *         --power-loss             with --crash: first write MODEL.powercut, what
 *                                  a power cut would leave (apply with `powercut`)
 *         --fail OP:PATTERN:ERRNO:N[:COUNT]  fail the N-th matching call (and the
 *                                  COUNT-1 after it) with ERRNO, as the OS would
 *         --space BYTES            a disk of this many bytes: appends past it fail
 *                                  with ENOSPC (what fits is written)
 *         --free-after-full        once a write fails for a full disk, free the
 *                                  space and go on writing (no reopen)
 *       OP: open append sync rename remove truncate syncdir.
 *       Workload: --seed --ops --keys --large-pct --sync-pct --threshold
 *       --segment --memtable --flush-every --compact-every --gc-every --no-close
 *   recovery_tool repair DIR MODEL           nokv_repair, then every key must hold
 *       a whole value some operation wrote to it (or nothing); prints a JSON object
 *   recovery_tool stale-reads|gc-txn|fds DIR MODEL   single-defect checks (reads
 *       without read_ts under flushes; a transaction across a GC; descriptors of
 *       many value-log segments), same JSON and exit codes
 *   recovery_tool powercut MODEL             cut every file to what was synced
 *                                            and drop names never made durable
 *   recovery_tool verify DIR MODEL [--power-loss] [same engine options]
 *       opens DIR and checks it against MODEL: with --power-loss the state must
 *       be the result of some prefix of the operations that includes every
 *       synced acknowledged one; without, every acknowledged operation (the one
 *       in flight may or may not be there). Prints one JSON object of recovery
 *       metrics; exit 0 recovered and consistent, 1 refused, 2 inconsistent.
 *
 * Values name their key and the operation that wrote them ("v<op>:<key>:..."),
 * so a value read back tells which write it is and whether its bytes are whole.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nokv/nokv.h"
#include "util/env.h"
#include "util/error.h"

/* ---- options ---- */

typedef struct config {
  const char *dir, *model;
  uint64_t seed;
  int ops, keys, large_pct, sync_pct;
  size_t threshold, segment, memtable;
  int flush_every, compact_every, gc_every;
  bool no_close, power_loss, free_after_full;
  const char *crash, *fail;
  long long space;
} config;

static void usage(void) {
  fprintf(stderr, "usage: recovery_tool load|verify DIR MODEL [options] | powercut MODEL\n");
  exit(64);
}

static void parse(int argc, char **argv, int first, config *c) {
  *c = (config){.seed = 1, .ops = 2000, .keys = 200, .large_pct = 30, .sync_pct = 20,
                .threshold = 1024, .segment = 64 << 10, .memtable = 256 << 10, .space = -1};
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NUM(name, field)                        \
  if (strcmp(a, name) == 0 && v != NULL) {      \
    c->field = strtoll(v, NULL, 10);            \
    i++;                                        \
    continue;                                   \
  }
    NUM("--seed", seed) NUM("--ops", ops) NUM("--keys", keys) NUM("--large-pct", large_pct)
    NUM("--sync-pct", sync_pct) NUM("--threshold", threshold) NUM("--segment", segment)
    NUM("--memtable", memtable) NUM("--flush-every", flush_every)
    NUM("--compact-every", compact_every) NUM("--gc-every", gc_every) NUM("--space", space)
#undef NUM
    if (strcmp(a, "--crash") == 0 && v != NULL) {
      c->crash = v;
      i++;
    } else if (strcmp(a, "--fail") == 0 && v != NULL) {
      c->fail = v;
      i++;
    } else if (strcmp(a, "--no-close") == 0) {
      c->no_close = true;
    } else if (strcmp(a, "--power-loss") == 0) {
      c->power_loss = true;
    } else if (strcmp(a, "--free-after-full") == 0) {
      c->free_after_full = true;
    } else {
      fprintf(stderr, "recovery_tool: unknown option %s\n", a);
      usage();
    }
  }
}

static void engine_options(const config *c, nokv_options *o) {
  nokv_options_init(o);
  o->value_threshold = c->threshold;
  o->value_log_segment_bytes = c->segment;
  o->memtable_max_bytes = c->memtable;
  o->level1_max_bytes = 256 << 10;
  o->target_file_bytes = 64 << 10;
  o->wal_segment_bytes = 64 << 10;
  o->value_log_gc_bytes_per_sec = 0;
}

/* ---- the fault layer ---- */

enum { OP_OPEN, OP_APPEND, OP_SYNC, OP_RENAME, OP_REMOVE, OP_TRUNCATE, OP_SYNCDIR, NOPS };
static const char *const op_names[NOPS] = {"open",   "append",   "sync",   "rename",
                                           "remove", "truncate", "syncdir"};

/* What the workload's own thread is doing, for rules that only hit then. */
enum { PH_ANY, PH_FLUSH, PH_COMPACT, PH_GC };
static const char *const phase_names[] = {"", "flush-", "compact-", "gc-"};
static atomic_int phase;  /* set by the workload thread around its calls */

typedef struct rule {
  bool active;
  int phase;  /* PH_ANY, or only while the workload is in that call */
  int op;
  char pattern[128];
  int err;      /* fail: errno; crash: 0 */
  long nth;     /* the first call it hits (1-based) */
  long count;   /* calls it hits from there */
  long seen;
} rule;

/* What a power cut would keep: per file, the bytes synced, and whether its
 * name is durable (its directory was synced since it was created). */
typedef struct tracked {
  char path[512];  /* "": a free slot */
  uint64_t synced;
  bool named;      /* name durable */
} tracked;

static struct {
  rule crash, fail;
  bool power_loss;
  const char *powercut_path;
  long long space;  /* bytes left on the disk; -1: unlimited */
  tracked files[8192];
  int nfiles;
  pthread_mutex_t mu;
} fx = {.space = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct fx_file {
  nk_file base;
  nk_file *inner;
  char path[512];
} fx_file;

static struct nokv_env fx_env;

static bool parse_rule(const char *spec, bool with_errno, rule *r) {
  char op[32];
  memset(r, 0, sizeof *r);
  r->count = 1;
  const char *p = spec;
  for (int ph = PH_FLUSH; ph <= PH_GC; ph++) {
    size_t n = strlen(phase_names[ph]);
    if (strncmp(p, phase_names[ph], n) == 0) {
      r->phase = ph;
      p += n;
    }
  }
  const char *c1 = strchr(p, ':');
  if (c1 == NULL || (size_t)(c1 - p) >= sizeof op) return false;
  memcpy(op, p, (size_t)(c1 - p));
  op[c1 - p] = '\0';
  r->op = -1;
  for (int i = 0; i < NOPS; i++) {
    if (strcmp(op, op_names[i]) == 0) r->op = i;
  }
  const char *c2 = strchr(c1 + 1, ':');
  if (r->op < 0 || c2 == NULL || (size_t)(c2 - c1 - 1) >= sizeof r->pattern) return false;
  memcpy(r->pattern, c1 + 1, (size_t)(c2 - c1 - 1));
  const char *rest = c2 + 1;
  if (with_errno) {
    r->err = (int)strtol(rest, (char **)&rest, 10);
    if (*rest != ':') return false;
    rest++;
  }
  r->nth = strtol(rest, (char **)&rest, 10);
  if (*rest == ':') r->count = strtol(rest + 1, NULL, 10);
  r->active = r->nth > 0;
  return r->active;
}

static uint64_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The record of path; a file first seen now was there before this process
 * (or is being created: the caller says so) and counts as durable as found.
 * REQUIRES: fx.mu. */
static tracked *track(const char *path) {
  tracked *free_slot = NULL;
  for (int i = 0; i < fx.nfiles; i++) {
    if (strcmp(fx.files[i].path, path) == 0) return &fx.files[i];
    if (free_slot == NULL && fx.files[i].path[0] == '\0') free_slot = &fx.files[i];
  }
  if (free_slot == NULL) {
    if (fx.nfiles == (int)(sizeof fx.files / sizeof fx.files[0])) return NULL;
    free_slot = &fx.files[fx.nfiles++];
  }
  snprintf(free_slot->path, sizeof free_slot->path, "%s", path);
  free_slot->named = true;
  free_slot->synced = file_size(path);
  return free_slot;
}

/* Writes what a power cut now would leave, for `powercut`. REQUIRES: fx.mu. */
static void write_powercut(void) {
  FILE *f = fopen(fx.powercut_path, "w");
  if (f == NULL) return;
  for (int i = 0; i < fx.nfiles; i++) {
    const tracked *t = &fx.files[i];
    if (!t->named) {
      fprintf(f, "D %s\n", t->path);
    } else {
      fprintf(f, "T %llu %s\n", (unsigned long long)t->synced, t->path);
    }
  }
  fclose(f);
}

/* Checks the rules for one call: may kill the process, or return an error. */
static int hook(int op, const char *path) {
  pthread_mutex_lock(&fx.mu);
  rule *c = &fx.crash;
  if (c->active && c->op == op && (c->phase == PH_ANY || c->phase == phase) &&
      strstr(path, c->pattern) != NULL && ++c->seen == c->nth) {
    if (fx.power_loss) write_powercut();
    fprintf(stderr, "recovery_tool: crashing before %s %s\n", op_names[op], path);
    fflush(stderr);
    raise(SIGKILL);
  }
  rule *r = &fx.fail;
  int rc = NOKV_OK;
  if (r->active && r->op == op && (r->phase == PH_ANY || r->phase == phase) &&
      strstr(path, r->pattern) != NULL) {
    r->seen++;
    if (r->seen >= r->nth && r->seen < r->nth + r->count) {
      rc = nk_err_errno(r->err, "%s %s (injected)", op_names[op], path);
    }
  }
  pthread_mutex_unlock(&fx.mu);
  return rc;
}

static int fx_wrap(const struct nokv_env *env, nk_file *inner, const char *path, nk_file **out) {
  fx_file *f = calloc(1, sizeof *f);
  if (f == NULL) {
    nk_file_close(inner);
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  f->base.env = env;
  f->inner = inner;
  snprintf(f->path, sizeof f->path, "%s", path);
  *out = &f->base;
  return NOKV_OK;
}

static const struct nokv_env *posix(void) { return nk_env_posix(); }

static int fx_open_append(const struct nokv_env *e, const char *path, bool truncate,
                          nk_file **out) {
  NK_RET(hook(OP_OPEN, path));
  bool existed = access(path, F_OK) == 0;
  nk_file *inner;
  NK_RET(posix()->open_append(posix(), path, truncate, &inner));
  pthread_mutex_lock(&fx.mu);
  tracked *t = track(path);
  if (t != NULL && !existed) t->named = false;
  if (t != NULL && (!existed || truncate)) t->synced = 0;
  pthread_mutex_unlock(&fx.mu);
  return fx_wrap(e, inner, path, out);
}

static int fx_open_read(const struct nokv_env *e, const char *path, nk_file **out) {
  NK_RET(hook(OP_OPEN, path));
  nk_file *inner;
  NK_RET(posix()->open_read(posix(), path, &inner));
  return fx_wrap(e, inner, path, out);
}

static int fx_append(nk_file *file, const void *data, size_t n) {
  fx_file *f = (fx_file *)file;
  NK_RET(hook(OP_APPEND, f->path));
  pthread_mutex_lock(&fx.mu);
  size_t fits = n;
  if (fx.space >= 0 && (long long)n > fx.space) fits = (size_t)fx.space;
  if (fx.space >= 0) fx.space -= (long long)fits;
  pthread_mutex_unlock(&fx.mu);
  if (fits > 0) NK_RET(posix()->append(f->inner, data, fits));
  if (fits < n) return nk_err_errno(ENOSPC, "write %s (disk full)", f->path);
  return NOKV_OK;
}

static int fx_sync(nk_file *file) {
  fx_file *f = (fx_file *)file;
  NK_RET(hook(OP_SYNC, f->path));
  NK_RET(posix()->sync(f->inner));
  uint64_t size = 0;
  posix()->size(f->inner, &size);
  pthread_mutex_lock(&fx.mu);
  tracked *t = track(f->path);
  if (t != NULL) t->synced = size;
  pthread_mutex_unlock(&fx.mu);
  return NOKV_OK;
}

static int fx_read_at(nk_file *file, uint64_t off, void *buf, size_t n, size_t *got) {
  return posix()->read_at(((fx_file *)file)->inner, off, buf, n, got);
}
static int fx_size(nk_file *file, uint64_t *out) {
  return posix()->size(((fx_file *)file)->inner, out);
}
static int fx_close(nk_file *file) {
  fx_file *f = (fx_file *)file;
  int rc = posix()->close(f->inner);
  free(f);
  return rc;
}

static int fx_truncate(const struct nokv_env *e, const char *path, uint64_t size) {
  (void)e;
  NK_RET(hook(OP_TRUNCATE, path));
  NK_RET(posix()->truncate(posix(), path, size));
  pthread_mutex_lock(&fx.mu);
  tracked *t = track(path);
  if (t != NULL && t->synced > size) t->synced = size;
  pthread_mutex_unlock(&fx.mu);
  return NOKV_OK;
}

static int fx_remove(const struct nokv_env *e, const char *path) {
  (void)e;
  NK_RET(hook(OP_REMOVE, path));
  NK_RET(posix()->remove(posix(), path));
  pthread_mutex_lock(&fx.mu);
  tracked *t = track(path);
  if (t != NULL) t->path[0] = '\0';  /* gone: nothing to cut */
  pthread_mutex_unlock(&fx.mu);
  return NOKV_OK;
}

static int fx_rename(const struct nokv_env *e, const char *from, const char *to) {
  (void)e;
  NK_RET(hook(OP_RENAME, from));
  bool replaces = access(to, F_OK) == 0;
  pthread_mutex_lock(&fx.mu);
  tracked *src = track(from), *dst = track(to);
  pthread_mutex_unlock(&fx.mu);
  NK_RET(posix()->rename(posix(), from, to));
  pthread_mutex_lock(&fx.mu);
  if (src != NULL && dst != NULL) {
    /* A rename over an existing name keeps one of the two files through a
     * power cut; like the engine's tests, assume the new one. A new name is
     * durable once its directory is synced. */
    dst->synced = src->synced;
    dst->named = replaces || src->named;
    src->path[0] = '\0';
  }
  pthread_mutex_unlock(&fx.mu);
  return NOKV_OK;
}

static int fx_sync_dir(const struct nokv_env *e, const char *dir) {
  (void)e;
  NK_RET(hook(OP_SYNCDIR, dir));
  NK_RET(posix()->sync_dir(posix(), dir));
  size_t n = strlen(dir);
  pthread_mutex_lock(&fx.mu);
  for (int i = 0; i < fx.nfiles; i++) {
    tracked *t = &fx.files[i];
    if (strncmp(t->path, dir, n) == 0 && t->path[n] == '/' && strchr(t->path + n + 1, '/') == NULL) {
      t->named = true;
    }
  }
  pthread_mutex_unlock(&fx.mu);
  return NOKV_OK;
}

static int fx_lock(const struct nokv_env *e, const char *path, nk_file **out) {
  nk_file *inner;
  NK_RET(posix()->lock(posix(), path, &inner));
  return fx_wrap(e, inner, path, out);
}

static const struct nokv_env *fault_env(const config *c) {
  fx_env = *nk_env_posix();
  fx_env.open_append = fx_open_append;
  fx_env.open_read = fx_open_read;
  fx_env.append = fx_append;
  fx_env.sync = fx_sync;
  fx_env.read_at = fx_read_at;
  fx_env.size = fx_size;
  fx_env.close = fx_close;
  fx_env.truncate = fx_truncate;
  fx_env.remove = fx_remove;
  fx_env.rename = fx_rename;
  fx_env.sync_dir = fx_sync_dir;
  fx_env.lock = fx_lock;
  if (c->crash != NULL && !parse_rule(c->crash, false, &fx.crash)) {
    fprintf(stderr, "recovery_tool: bad --crash %s\n", c->crash);
    exit(64);
  }
  if (c->fail != NULL && !parse_rule(c->fail, true, &fx.fail)) {
    fprintf(stderr, "recovery_tool: bad --fail %s\n", c->fail);
    exit(64);
  }
  fx.power_loss = c->power_loss;
  fx.space = c->space;
  static char cut[1024];
  snprintf(cut, sizeof cut, "%s.powercut", c->model);
  fx.powercut_path = cut;
  return &fx_env;
}

/* ---- the workload ---- */

static uint64_t rng_state;
static uint64_t rnd(void) {  /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static uint64_t below(uint64_t n) { return rnd() % n; }

static void key_of(int k, char *out) { snprintf(out, 32, "key%05d", k); }

/* The value operation op writes to key: len bytes naming both. */
static void value_of(long op, const char *key, size_t len, char *out) {
  int n = snprintf(out, len + 1, "v%ld:%s:", op, key);
  for (size_t i = (size_t)(n > 0 ? n : 0); i < len; i++) {
    out[i] = (char)('a' + (i * 31 + (size_t)op * 7 + (unsigned char)key[3 + i % 5]) % 26);
  }
}

static FILE *model_out;

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(model_out, fmt, ap);
  va_end(ap);
  fflush(model_out);  /* in the page cache before the next call: survives kill -9 */
}

typedef struct write_op {
  int key;
  size_t len;  /* 0: delete */
} write_op;

static int run_load(const config *c) {
  nokv_options o;
  engine_options(c, &o);
  o.env = fault_env(c);
  model_out = fopen(c->model, "a");
  if (model_out == NULL) {
    perror("recovery_tool: model");
    return 64;
  }
  rng_state = c->seed;
  nokv_db *db;
  int rc = nokv_open(c->dir, &o, &db);
  if (rc != NOKV_OK) {
    fprintf(stderr, "recovery_tool: open %s: %s\n", c->dir, nokv_errmsg());
    return 3;
  }
  size_t max_len = c->threshold * 4 + 64;
  char *val = malloc(max_len + 1);
  int status = 0;
  for (long op = 1; op <= c->ops; op++) {
    if (c->flush_every > 0 && op % c->flush_every == 0) {
      phase = PH_FLUSH;
      nokv_flush(db);
    }
    if (c->compact_every > 0 && op % c->compact_every == 0) {
      phase = PH_COMPACT;
      nokv_compact(db);
    }
    if (c->gc_every > 0 && op % c->gc_every == 0) {
      phase = PH_GC;
      nokv_vlog_gc(db, 0.2, NULL);
    }
    phase = PH_ANY;
    write_op w[6];
    int n = below(10) < 2 ? 2 + (int)below(5) : 1;
    for (int i = 0; i < n; i++) {
      w[i].key = (int)below((uint64_t)c->keys);
      bool del = below(100) < 12;
      bool large = (int)below(100) < c->large_pct;
      w[i].len = del ? 0 : large ? c->threshold + below(c->threshold * 3) : 16 + below(100);
      if (w[i].len > max_len) w[i].len = max_len;
    }
    bool sync = (int)below(100) < c->sync_pct;
    log_line("B %ld %d %d\n", op, sync ? 1 : 0, n);
    for (int i = 0; i < n; i++) log_line("K %ld %d %zu\n", op, w[i].key, w[i].len);
    nokv_write_options wo = {.sync = sync};
    nokv_batch *b = NULL;
    rc = nokv_batch_new(&b);
    char key[32];
    for (int i = 0; rc == NOKV_OK && i < n; i++) {
      key_of(w[i].key, key);
      if (w[i].len == 0) {
        rc = nokv_batch_delete(b, key, strlen(key));
      } else {
        value_of(op, key, w[i].len, val);
        rc = nokv_batch_put(b, key, strlen(key), val, w[i].len);
      }
    }
    if (rc == NOKV_OK) rc = nokv_write(db, &wo, b, NULL);
    nokv_batch_free(b);
    if (rc != NOKV_OK) {
      log_line("F %ld %d\n", op, rc);
      fprintf(stderr, "recovery_tool: write %ld failed: %s (%s)\n", op, nokv_errmsg(),
              nokv_strerror(rc));
      if (rc == NOKV_EFULL && c->free_after_full) {
        /* Space is freed: the next writes must work without a reopen. */
        pthread_mutex_lock(&fx.mu);
        fx.space = -1;
        fx.fail.active = false;
        pthread_mutex_unlock(&fx.mu);
        fprintf(stderr, "recovery_tool: space freed after write %ld\n", op);
        continue;
      }
      status = 4;
      break;
    }
    log_line("A %ld\n", op);
  }
  free(val);
  if (c->no_close) _exit(status);  /* a crash at the end: nothing closed or synced */
  rc = nokv_close(db);
  if (rc != NOKV_OK && status == 0) {
    fprintf(stderr, "recovery_tool: close: %s\n", nokv_errmsg());
    status = 5;
  }
  fclose(model_out);
  return status;
}

/* ---- power cut ---- */

static int run_powercut(const char *model) {
  char path[1024];
  snprintf(path, sizeof path, "%s.powercut", model);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, "recovery_tool: no %s (did the load crash with --power-loss?)\n", path);
    return 64;
  }
  char line[1200];
  int cut = 0, dropped = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    if (line[0] == 'D' && line[2] != '\0') {
      if (unlink(line + 2) == 0) dropped++;
    } else if (line[0] == 'T') {
      char *end;
      unsigned long long size = strtoull(line + 2, &end, 10);
      if (*end == ' ' && end[1] != '\0' && file_size(end + 1) > size) {
        if (truncate(end + 1, (off_t)size) == 0) cut++;
      }
    }
  }
  fclose(f);
  printf("powercut: %d files cut to their last sync, %d never-durable names dropped\n", cut,
         dropped);
  return 0;
}

/* ---- verification ---- */

typedef struct entry {
  long op;
  size_t len;  /* 0: deleted */
} entry;

typedef struct history {
  entry *v;
  size_t n, cap;
} history;

static void push(history *h, long op, size_t len) {
  if (h->n == h->cap) {
    h->cap = h->cap ? h->cap * 2 : 8;
    h->v = realloc(h->v, h->cap * sizeof *h->v);
  }
  h->v[h->n++] = (entry){op, len};
}

static void json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') {
      printf("\\%c", *s);
    } else if ((unsigned char)*s < 0x20) {
      printf("\\u%04x", *s);
    } else {
      putchar(*s);
    }
  }
  putchar('"');
}

static int run_verify(const config *c) {
  FILE *m = fopen(c->model, "r");
  if (m == NULL) {
    perror("recovery_tool: model");
    return 64;
  }
  history *h = calloc((size_t)c->keys, sizeof *h);
  long last_begun = 0, last_acked = 0, last_synced = 0;
  int *sync_of = NULL;
  long sync_cap = 0;
  char line[256];
  while (fgets(line, sizeof line, m) != NULL) {
    long op;
    int a, b;
    size_t len;
    if (sscanf(line, "B %ld %d %d", &op, &a, &b) == 3) {
      last_begun = op;
      if (op >= sync_cap) {
        sync_cap = (op + 1) * 2;
        sync_of = realloc(sync_of, (size_t)sync_cap * sizeof *sync_of);
      }
      sync_of[op] = a;
    } else if (sscanf(line, "K %ld %d %zu", &op, &a, &len) == 3 && a >= 0 && a < c->keys) {
      push(&h[a], op, len);
    } else if (sscanf(line, "A %ld", &op) == 1) {
      last_acked = op;
      if (sync_of[op]) last_synced = op;
    }
  }
  fclose(m);
  long kmin = c->power_loss ? last_synced : last_acked;
  long kmax = last_begun;
  size_t span = (size_t)(kmax - kmin + 1);
  unsigned char *feasible = malloc(span);
  memset(feasible, 1, span);

  nokv_options o;
  engine_options(c, &o);
  if (c->fail != NULL) o.env = fault_env(c);  /* a failing open (nothing may be harmed) */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  nokv_db *db;
  int rc = nokv_open(c->dir, &o, &db);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double wall_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  if (rc != NOKV_OK) {
    printf("{\"outcome\":\"refused\",\"recovery_ms\":%.1f,\"acked_ops\":%ld,\"synced_ops\":%ld,"
           "\"error_code\":",
           wall_ms, last_acked, last_synced);
    json_string(nokv_strerror(rc));
    printf(",\"error\":");
    json_string(nokv_errmsg());
    printf("}\n");
    for (int k = 0; k < c->keys; k++) free(h[k].v);
    free(h);
    free(sync_of);
    free(feasible);
    return 1;
  }
  long keys_verified = 0, keys_lost = 0, bad_bytes = 0, corrupt_reads = 0;
  char key[32];
  char *want = malloc(c->threshold * 4 + 128);
  unsigned char *mine = malloc(span);
  for (int k = 0; k < c->keys; k++) {
    if (h[k].n == 0) continue;
    key_of(k, key);
    void *v = NULL;
    size_t vlen = 0;
    rc = nokv_get(db, NULL, key, strlen(key), &v, &vlen, NULL);
    keys_verified++;
    memset(mine, 0, span);
    /* The operations after which key holds what was read. */
    long from = -1, to = -1;  /* [from, to) in op numbers */
    bool absent_ok = false;
    if (rc == NOKV_ENOTFOUND) {
      absent_ok = true;
    } else if (rc == NOKV_OK) {
      long op = strtol((char *)v + 1, NULL, 10);
      for (size_t i = 0; i < h[k].n; i++) {
        if (h[k].v[i].op == op && h[k].v[i].len == vlen) {
          value_of(op, key, vlen, want);
          if (memcmp(want, v, vlen) != 0) {
            bad_bytes++;
            break;
          }
          from = op;
          to = i + 1 < h[k].n ? h[k].v[i + 1].op : kmax + 1;
        }
      }
    } else {
      /* A damaged table block: the read says so (DATA_LOSS over gRPC); the key
       * is left out of the consistency check. */
      fprintf(stderr, "recovery_tool: get %s: %s (%s)\n", key, nokv_errmsg(), nokv_strerror(rc));
      corrupt_reads++;
      nokv_free(v);
      continue;
    }
    nokv_free(v);
    for (long kk = kmin; kk <= kmax; kk++) {
      bool ok;
      if (absent_ok) {
        /* Absent after kk: no write yet, or the newest write at or before kk deleted it. */
        ok = true;
        for (size_t i = 0; i < h[k].n && h[k].v[i].op <= kk; i++) ok = h[k].v[i].len == 0;
      } else {
        ok = from >= 0 && kk >= from && kk < to;
      }
      mine[kk - kmin] = ok;
      feasible[kk - kmin] &= ok;
    }
    bool any = false;
    for (size_t i = 0; i < span && !any; i++) any = mine[i];
    if (!any) {
      keys_lost++;
      fprintf(stderr, "recovery_tool: %s holds %s, which no state after op %ld..%ld has\n", key,
              rc == NOKV_OK ? "a value" : "nothing", kmin, kmax);
    }
  }
  long consistent_at = -1;
  for (size_t i = 0; i < span && consistent_at < 0; i++) {
    if (feasible[i]) consistent_at = kmin + (long)i;
  }
  /* The database must take writes again. */
  int post = nokv_put(db, &(nokv_write_options){.sync = true}, "post-recovery", 13, "ok", 2, NULL);
  nokv_statistics s;
  nokv_stats(db, &s);
  int close_rc = nokv_close(db);
  bool ok = keys_lost == 0 && bad_bytes == 0 && consistent_at >= 0 && post == NOKV_OK &&
            close_rc == NOKV_OK;
  printf("{\"outcome\":\"%s\",\"recovery_ms\":%.1f,\"recovery_micros\":%llu,"
         "\"manifest_micros\":%llu,\"table_check_micros\":%llu,\"vlog_micros\":%llu,"
         "\"wal_micros\":%llu,"
         "\"flush_micros\":%llu,\"cleanup_micros\":%llu,"
         "\"wal_segments_replayed\":%llu,\"wal_records_replayed\":%llu,"
         "\"wal_bytes_truncated\":%llu,\"wal_records_dangling\":%llu,"
         "\"vlog_bytes_validated\":%llu,\"vlog_bytes_truncated\":%llu,"
         "\"vlog_segments_removed\":%llu,\"tables_checked\":%llu,\"orphans_removed\":%llu,"
         "\"keys_verified\":%ld,\"acked_ops\":%ld,\"synced_ops\":%ld,\"ops_begun\":%ld,"
         "\"state_after_op\":%ld,\"acked_keys_lost\":%ld,\"damaged_values\":%ld,"
         "\"corrupt_reads\":%ld,\"writes_after\":%s}\n",
         ok ? "recovered" : "inconsistent", wall_ms, (unsigned long long)s.recovery_micros,
         (unsigned long long)s.recovery_manifest_micros,
         (unsigned long long)s.recovery_table_check_micros, (unsigned long long)s.recovery_vlog_micros,
         (unsigned long long)s.recovery_wal_micros, (unsigned long long)s.recovery_flush_micros,
         (unsigned long long)s.recovery_cleanup_micros,
         (unsigned long long)s.wal_segments_replayed, (unsigned long long)s.recovered_records,
         (unsigned long long)s.torn_tail_bytes, (unsigned long long)s.wal_records_dangling,
         (unsigned long long)s.vlog_validated_bytes, (unsigned long long)s.vlog_torn_bytes,
         (unsigned long long)s.vlog_segments_removed, (unsigned long long)s.tables_checked,
         (unsigned long long)s.orphan_tables_removed, keys_verified, last_acked, last_synced,
         last_begun, consistent_at, keys_lost + (consistent_at < 0 && keys_lost == 0 ? 1 : 0),
         bad_bytes, corrupt_reads, post == NOKV_OK ? "true" : "false");
  free(want);
  free(mine);
  free(feasible);
  for (int k = 0; k < c->keys; k++) free(h[k].v);
  free(h);
  free(sync_of);
  return ok ? 0 : 2;
}

/* ---- repair ---- */

/* nokv_repair, then a check of what came back: every key's value must be whole
 * and one that some operation wrote to it (the newest, or an older one where the
 * newest was lost), or the key absent. */
static int run_repair(const config *c) {
  nokv_repair_report r;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = nokv_repair(c->dir, NULL, &r);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  if (rc != NOKV_OK) {
    printf("{\"repair\":\"failed\",\"error\":");
    json_string(nokv_errmsg());
    printf("}\n");
    return 1;
  }
  FILE *m = fopen(c->model, "r");
  if (m == NULL) return 64;
  history *h = calloc((size_t)c->keys, sizeof *h);
  char line[256];
  while (fgets(line, sizeof line, m) != NULL) {
    long op;
    int k;
    size_t len;
    if (sscanf(line, "K %ld %d %zu", &op, &k, &len) == 3 && k >= 0 && k < c->keys) push(&h[k], op, len);
  }
  fclose(m);
  nokv_options o;
  engine_options(c, &o);
  nokv_db *db;
  rc = nokv_open(c->dir, &o, &db);
  long current = 0, older = 0, absent = 0, damaged = 0;
  char key[32];
  char *want = malloc(c->threshold * 4 + 128);
  for (int k = 0; rc == NOKV_OK && k < c->keys; k++) {
    if (h[k].n == 0) continue;
    key_of(k, key);
    void *v = NULL;
    size_t vlen = 0;
    int g = nokv_get(db, NULL, key, strlen(key), &v, &vlen, NULL);
    if (g == NOKV_ENOTFOUND) {
      absent++;
    } else if (g != NOKV_OK) {
      damaged++;
    } else {
      long op = strtol((char *)v + 1, NULL, 10);
      bool found = false;
      for (size_t i = 0; i < h[k].n && !found; i++) {
        if (h[k].v[i].op != op || h[k].v[i].len != vlen) continue;
        value_of(op, key, vlen, want);
        found = memcmp(want, v, vlen) == 0;
        if (found && i + 1 == h[k].n) current++;
        if (found && i + 1 < h[k].n) older++;
      }
      if (!found) damaged++;
    }
    nokv_free(v);
  }
  if (rc == NOKV_OK) rc = nokv_close(db);
  printf("{\"repair\":\"%s\",\"repair_ms\":%.1f,\"tables_verified\":%llu,"
         "\"tables_damaged\":%llu,\"wal_records_salvaged\":%llu,\"wal_bytes_skipped\":%llu,"
         "\"values_lost\":%llu,\"files_moved_to_lost\":%llu,\"keys_current\":%ld,"
         "\"keys_older\":%ld,\"keys_absent\":%ld,\"damaged_values\":%ld}\n",
         rc == NOKV_OK && damaged == 0 ? "ok" : "failed", ms,
         (unsigned long long)r.tables_verified, (unsigned long long)r.tables_damaged,
         (unsigned long long)r.wal_records, (unsigned long long)r.wal_bytes_skipped,
         (unsigned long long)r.values_lost, (unsigned long long)r.files_moved, current, older,
         absent, damaged);
  free(want);
  for (int k = 0; k < c->keys; k++) free(h[k].v);
  free(h);
  return rc == NOKV_OK && damaged == 0 ? 0 : 2;
}

/* ---- checks of single defects, as scenarios ---- */

static void put_big(nokv_db *db, const char *key, size_t len, long version) {
  char *v = malloc(len + 1);
  value_of(version, key, len, v);
  if (nokv_put(db, NULL, key, strlen(key), v, len, NULL) != NOKV_OK) {
    fprintf(stderr, "recovery_tool: put %s: %s\n", key, nokv_errmsg());
    exit(3);
  }
  free(v);
}

typedef struct flusher_arg {
  nokv_db *db;
  atomic_bool stop;
  atomic_long flushes;
} flusher_arg;

static void *flusher(void *p) {
  flusher_arg *a = p;
  for (long i = 0; !atomic_load(&a->stop); i++) {
    char v[32];
    int n = snprintf(v, sizeof v, "%ld", i);
    nokv_put(a->db, NULL, "hot", 3, v, (size_t)n, NULL);
    if (nokv_flush(a->db) == NOKV_OK) atomic_fetch_add(&a->flushes, 1);
  }
  return NULL;
}

/* Reads without read_ts while flushes raise the history horizon: none stale. */
static int run_stale_reads(const config *c) {
  nokv_options o;
  engine_options(c, &o);
  nokv_db *db;
  if (nokv_open(c->dir, &o, &db) != NOKV_OK) return 3;
  flusher_arg a = {.db = db};
  atomic_init(&a.stop, false);
  atomic_init(&a.flushes, 0);
  pthread_t t;
  pthread_create(&t, NULL, flusher, &a);
  long reads = 0, stale = 0, other = 0;
  /* At least --ops reads, and on until 50 flushes have raced them. */
  for (long i = 0; i < c->ops || (atomic_load(&a.flushes) < 50 && i < 100L * c->ops); i++) {
    void *v;
    size_t n;
    int rc = nokv_get(db, NULL, "hot", 3, &v, &n, NULL);
    reads++;
    if (rc == NOKV_OK) nokv_free(v);
    if (rc == NOKV_ESTALE) stale++;
    if (rc != NOKV_OK && rc != NOKV_ENOTFOUND && rc != NOKV_ESTALE) other++;
  }
  atomic_store(&a.stop, true);
  pthread_join(t, NULL);
  nokv_close(db);
  bool ok = stale == 0 && other == 0 && a.flushes > 0;
  printf("{\"outcome\":\"%s\",\"reads\":%ld,\"stale_reads\":%ld,\"failed_reads\":%ld,"
         "\"flushes\":%ld,\"acked_keys_lost\":0}\n",
         ok ? "recovered" : "inconsistent", reads, stale, other, atomic_load(&a.flushes));
  return ok ? 0 : 2;
}

/* A transaction that read keys GC then moved commits. */
static int run_gc_txn(const config *c) {
  nokv_options o;
  engine_options(c, &o);
  o.value_log_segment_bytes = 16 << 10;
  o.disable_auto_gc = true;
  nokv_db *db;
  if (nokv_open(c->dir, &o, &db) != NOKV_OK) return 3;
  char key[32];
  for (int i = 0; i < 40; i++) {
    key_of(i, key);
    put_big(db, key, 2000, 1);
  }
  for (int i = 0; i < 40; i += 2) {
    key_of(i, key);
    put_big(db, key, 2000, 2);
  }
  nokv_compact(db);
  nokv_txn *txn;
  nokv_txn_begin(db, 0, &txn);
  for (int i = 1; i < 40; i += 2) {
    key_of(i, key);
    void *v;
    size_t n;
    if (nokv_txn_get(txn, key, strlen(key), &v, &n) == NOKV_OK) nokv_free(v);
  }
  nokv_txn_put(txn, "out", 3, "1", 1);
  uint32_t collected = 0;
  int gc = nokv_vlog_gc(db, 0.2, &collected);
  nokv_statistics s;
  nokv_stats(db, &s);
  int rc = nokv_txn_commit(txn, NULL, NULL);
  nokv_close(db);
  bool ok = gc == NOKV_OK && collected > 0 && rc == NOKV_OK;
  printf("{\"outcome\":\"%s\",\"segments_collected\":%u,\"gc_bytes_rewritten\":%llu,"
         "\"commit\":\"%s\",\"acked_keys_lost\":0}\n",
         ok ? "recovered" : "inconsistent", collected, (unsigned long long)s.gc_bytes_rewritten,
         nokv_strerror(rc));
  return ok ? 0 : 2;
}

static int count_fds(void) {
  int n = 0;
  FILE *p = popen("ls /proc/self/fd 2>/dev/null | wc -l", "r");
  if (p == NULL || fscanf(p, "%d", &n) != 1) n = -1;
  if (p != NULL) pclose(p);
  return n;
}

/* Hundreds of value-log segments hold a handful of descriptors. */
static int run_fds(const config *c) {
  nokv_options o;
  engine_options(c, &o);
  o.value_log_segment_bytes = 8 << 10;
  o.disable_auto_gc = true;
  int before = count_fds();
  nokv_db *db;
  if (nokv_open(c->dir, &o, &db) != NOKV_OK) return 3;
  char key[32];
  for (int i = 0; i < 600; i++) {
    key_of(i, key);
    put_big(db, key, 3000, 1);
  }
  nokv_close(db);
  if (nokv_open(c->dir, &o, &db) != NOKV_OK) return 3;
  nokv_statistics s;
  nokv_stats(db, &s);
  int used = count_fds() - before;
  nokv_close(db);
  bool ok = s.vlog_segments >= 200 && used < 40;
  printf("{\"outcome\":\"%s\",\"vlog_segments\":%llu,\"descriptors\":%d,"
         "\"acked_keys_lost\":0}\n",
         ok ? "recovered" : "inconsistent", (unsigned long long)s.vlog_segments, used);
  return ok ? 0 : 2;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);  /* each JSON line out before any exit path */
  if (argc < 3) usage();
  config c;
  if (strcmp(argv[1], "powercut") == 0) return run_powercut(argv[2]);
  if (argc < 4) usage();
  parse(argc, argv, 4, &c);
  c.dir = argv[2];
  c.model = argv[3];
  if (strcmp(argv[1], "load") == 0) return run_load(&c);
  if (strcmp(argv[1], "verify") == 0) return run_verify(&c);
  if (strcmp(argv[1], "repair") == 0) return run_repair(&c);
  if (strcmp(argv[1], "stale-reads") == 0) return run_stale_reads(&c);
  if (strcmp(argv[1], "gc-txn") == 0) return run_gc_txn(&c);
  if (strcmp(argv[1], "fds") == 0) return run_fds(&c);
  usage();
  return 64;
}
