/* wal_writer.c — segment files, appends, syncs and rotation. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/grow.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

/* A segment switched away from but not yet fsync'ed. */
typedef struct sealed_segment {
  uint64_t number;
  nk_file *file;
} sealed_segment;

struct nk_wal {
  const struct nokv_env *env;
  char *dir;
  size_t segment_bytes;
  uint64_t *next_file; /* the database's file number counter (atomic) */
  uint64_t size;       /* bytes in the current segment */
  uint64_t written;    /* bytes appended by this process (atomic) */
  /* The current segment. The writer changes them under sealed_mu (a rotation),
   * so that nk_wal_sync_to can find a mark's file from another thread. */
  uint64_t number;
  nk_file *file;
  uint64_t dir_synced; /* under sync_mu: segments up to this number have durable names */
  /* Segments sealed without a sync, oldest first: the next sync syncs them
   * before the current one; nk_wal_release closes those the tables hold. */
  pthread_mutex_t sealed_mu;
  sealed_segment *sealed;
  size_t nsealed, sealed_cap;
  size_t nsealed_seen;  /* atomic copy of nsealed, read without the lock */
  /* Held through every fsync, and every close of a segment: a sync from
   * another thread (nk_wal_sync_to) holds a file no one closes meanwhile, and
   * syncs are ordered. After a failed fsync the kernel may have dropped the
   * pages and reports the error once: every later sync fails too. */
  pthread_mutex_t sync_mu;
  int sync_failed;      /* under sync_mu: the first failed sync's status */
  char sync_why[256];   /* and its message */
};

void nk_wal_segment_name(uint64_t number, char *buf) {
  snprintf(buf, 32, "%08" PRIu64 NK_WAL_SUFFIX, number);
}

bool nk_wal_parse_name(const char *name, uint64_t *number) {
  size_t n = strlen(name), s = strlen(NK_WAL_SUFFIX);
  if (n <= s || strcmp(name + n - s, NK_WAL_SUFFIX) != 0 || n - s > 19) {
    return false;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < n - s; i++) {
    if (name[i] < '0' || name[i] > '9') {
      return false;
    }
    v = v * 10 + (uint64_t)(name[i] - '0');
  }
  *number = v;
  return true;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int nk_wal_list(const struct nokv_env *env, const char *dir, uint64_t **numbers, size_t *n) {
  char **names;
  size_t count;
  NK_RET(env->list_dir(env, dir, &names, &count));
  uint64_t *v = malloc((count ? count : 1) * sizeof *v);
  if (v == NULL) {
    nk_env_free_names(names, count);
    return nk_err(NOKV_ENOMEM, "out of memory listing %s", dir);
  }
  size_t k = 0;
  for (size_t i = 0; i < count; i++) {
    if (nk_wal_parse_name(names[i], &v[k])) {
      k++;
    }
  }
  nk_env_free_names(names, count);
  qsort(v, k, sizeof *v, cmp_u64);
  *numbers = v;
  *n = k;
  return NOKV_OK;
}

int nk_wal_append(nk_wal *w, const char *data, size_t len);

/* Starts the segment after prev (0: none), whose final size was prev_size,
 * with the link record naming it. The name is made durable by the first sync
 * in the segment (nk_wal_sync), not here: creating a file is cheap, an fsync of
 * the directory is not, and a write nobody asked to sync needs neither. */
static int start_segment(nk_wal *w, uint64_t prev, uint64_t prev_size, uint8_t flags) {
  uint64_t number = __atomic_fetch_add(w->next_file, 1, __ATOMIC_RELAXED);
  char name[32];
  nk_wal_segment_name(number, name);
  char *path = nk_path_join(w->dir, name);
  if (path == NULL) {
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  nk_file *file = NULL;
  int ret = w->env->open_append(w->env, path, true, &file);
  free(path);
  NK_RET(ret);
  pthread_mutex_lock(&w->sealed_mu);
  w->number = number;
  w->file = file;
  pthread_mutex_unlock(&w->sealed_mu);
  w->size = 0;
  char link[NK_WAL_LINK_RECORD];
  char *payload = link + NK_WAL_HEADER;
  nk_put_u64(payload, prev);
  nk_put_u64(payload + 8, prev_size);
  payload[16] = (char)flags;
  nk_wal_encode_header(link, NK_WAL_LINK, payload, NK_WAL_LINK_PAYLOAD);
  return nk_wal_append(w, link, sizeof link);
}

static uint64_t file_size(const struct nokv_env *env, const char *dir, uint64_t number) {
  char name[32];
  nk_wal_segment_name(number, name);
  char *path = nk_path_join(dir, name);
  nk_file *f = NULL;
  uint64_t size = 0;
  if (path != NULL && env->open_read(env, path, &f) == NOKV_OK) {
    if (env->size(f, &size) != NOKV_OK) size = 0;
    nk_file_close(f);
  }
  free(path);
  return size;
}

int nk_wal_open(const struct nokv_env *env, const char *dir, uint64_t *next_file,
                size_t segment_bytes, uint64_t prev, nk_wal **out) {
  nk_wal *w = calloc(1, sizeof *w);
  if (w == NULL || (w->dir = strdup(dir)) == NULL) {
    free(w);
    return nk_err(NOKV_ENOMEM, "out of memory opening the WAL");
  }
  w->env = env;
  w->segment_bytes = segment_bytes;
  w->next_file = next_file;
  pthread_mutex_init(&w->sealed_mu, NULL);
  pthread_mutex_init(&w->sync_mu, NULL);
  /* The replay synced prev: say so, and make this link durable at once, so a
   * later replay can trust it to tell how prev was left. */
  uint64_t prev_size = prev != 0 ? file_size(env, dir, prev) : 0;
  int ret = start_segment(w, prev, prev_size, 0);
  if (ret == NOKV_OK) ret = nk_file_sync(w->file);
  if (ret == NOKV_OK) ret = env->sync_dir(env, dir);
  if (ret != NOKV_OK) {
    nk_file_close(w->file);
    pthread_mutex_destroy(&w->sealed_mu);
    pthread_mutex_destroy(&w->sync_mu);
    free(w->dir);
    free(w);
    return ret;
  }
  w->dir_synced = w->number;
  *out = w;
  return NOKV_OK;
}

int nk_wal_append(nk_wal *w, const char *data, size_t len) {
  NK_RET(nk_file_append(w->file, data, len));
  w->size += len;
  __atomic_fetch_add(&w->written, len, __ATOMIC_RELAXED);
  return NOKV_OK;
}

int nk_wal_undo(nk_wal *w) {
  char name[32];
  nk_wal_segment_name(w->number, name);
  char *path = nk_path_join(w->dir, name);
  if (path == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  int ret = w->env->truncate(w->env, path, w->size);
  free(path);
  return ret;
}

/* Forgets the first n sealed segments (closed by the caller).
 * REQUIRES: sealed_mu held. */
static void drop_sealed(nk_wal *w, size_t n) {
  memmove(w->sealed, w->sealed + n, (w->nsealed - n) * sizeof *w->sealed);
  w->nsealed -= n;
  __atomic_store_n(&w->nsealed_seen, w->nsealed, __ATOMIC_RELAXED);
}

/* Records a failed sync: every later one fails with it. REQUIRES: sync_mu. */
static int sync_failed(nk_wal *w, int ret) {
  if (w->sync_failed == NOKV_OK) {
    w->sync_failed = ret;
    snprintf(w->sync_why, sizeof w->sync_why, "%s", nokv_errmsg());
  }
  return ret;
}

/* Syncs and closes the sealed segments numbered below `below`, oldest first,
 * one at a time. The list's lock is not held through an fsync (a rotation
 * takes it, and may move the list): sync_mu keeps the files, and the list's
 * front, as they are. REQUIRES: sync_mu held. */
static int sync_sealed_below(nk_wal *w, uint64_t below) {
  for (;;) {
    if (__atomic_load_n(&w->nsealed_seen, __ATOMIC_RELAXED) == 0) return NOKV_OK;
    pthread_mutex_lock(&w->sealed_mu);
    nk_file *f = w->nsealed > 0 && w->sealed[0].number < below ? w->sealed[0].file : NULL;
    pthread_mutex_unlock(&w->sealed_mu);
    if (f == NULL) return NOKV_OK;
    NK_RET(nk_file_sync(f));
    pthread_mutex_lock(&w->sealed_mu);
    nk_file_close(f); /* synced: closed even if that fails */
    drop_sealed(w, 1);
    pthread_mutex_unlock(&w->sealed_mu);
  }
}

/* Makes segment `number` (file f, open while sync_mu is held) durable, with
 * every sealed one before it and its name. REQUIRES: sync_mu held. */
static int sync_through(nk_wal *w, uint64_t number, nk_file *f) {
  if (w->sync_failed != NOKV_OK) {
    return nk_err(w->sync_failed, "WAL: an earlier sync failed (%s)", w->sync_why);
  }
  int ret = sync_sealed_below(w, number);
  if (ret == NOKV_OK && w->dir_synced < number) {
    ret = w->env->sync_dir(w->env, w->dir);
    if (ret == NOKV_OK) w->dir_synced = number; /* number's name at least is durable now */
  }
  if (ret == NOKV_OK && f != NULL) ret = nk_file_sync(f);
  return ret == NOKV_OK ? NOKV_OK : sync_failed(w, ret);
}

int nk_wal_sync(nk_wal *w) {
  pthread_mutex_lock(&w->sync_mu);
  int ret = sync_through(w, w->number, w->file);
  pthread_mutex_unlock(&w->sync_mu);
  return ret;
}

void nk_wal_mark(const nk_wal *w, nk_wal_pos *m) { m->number = w->number; }

int nk_wal_sync_to(nk_wal *w, const nk_wal_pos *m) {
  pthread_mutex_lock(&w->sync_mu);
  /* The mark's segment: sealed since, still the current one, or closed by
   * nk_wal_release (its records are in tables: nothing of it to sync). The
   * sealed list first: a rotation puts the file there before it clears
   * w->file and moves w->number on. */
  nk_file *f = NULL;
  pthread_mutex_lock(&w->sealed_mu);
  for (size_t i = 0; i < w->nsealed && f == NULL; i++) {
    if (w->sealed[i].number == m->number) f = w->sealed[i].file;
  }
  if (f == NULL && w->number == m->number) f = w->file;
  pthread_mutex_unlock(&w->sealed_mu);
  int ret = sync_through(w, m->number, f);
  pthread_mutex_unlock(&w->sync_mu);
  return ret;
}

int nk_wal_maybe_rotate(nk_wal *w) {
  if (w->size < w->segment_bytes) {
    return NOKV_OK;
  }
  return nk_wal_switch(w);
}

int nk_wal_switch(nk_wal *w) {
  uint64_t prev = w->number, prev_size = w->size;
  pthread_mutex_lock(&w->sealed_mu);
  bool kept = nk_grow((void **)&w->sealed, &w->sealed_cap, w->nsealed, sizeof *w->sealed);
  if (kept) {
    w->sealed[w->nsealed++] = (sealed_segment){.number = prev, .file = w->file};
    __atomic_store_n(&w->nsealed_seen, w->nsealed, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&w->sealed_mu);
  if (!kept) {
    /* No memory to remember it: seal it the slow way, synced. */
    NK_RET(nk_wal_sync(w));
    pthread_mutex_lock(&w->sync_mu);
    pthread_mutex_lock(&w->sealed_mu);
    nk_file *f = w->file;
    w->file = NULL;
    pthread_mutex_unlock(&w->sealed_mu);
    int ret = nk_file_close(f);
    pthread_mutex_unlock(&w->sync_mu);
    NK_RET(ret);
  } else {
    pthread_mutex_lock(&w->sealed_mu);
    w->file = NULL;
    pthread_mutex_unlock(&w->sealed_mu);
  }
  return start_segment(w, prev, prev_size, kept ? NK_WAL_LINK_PREV_UNSYNCED : 0);
}

void nk_wal_release(nk_wal *w, uint64_t below) {
  pthread_mutex_lock(&w->sync_mu); /* not under a sync from another thread */
  pthread_mutex_lock(&w->sealed_mu);
  size_t done = 0;
  while (done < w->nsealed && w->sealed[done].number < below) {
    nk_file_close(w->sealed[done].file);
    done++;
  }
  if (done > 0) drop_sealed(w, done);
  pthread_mutex_unlock(&w->sealed_mu);
  pthread_mutex_unlock(&w->sync_mu);
}

int nk_wal_close(nk_wal *w, bool sync_point) {
  if (w == NULL) {
    return NOKV_OK;
  }
  /* A clean close leaves the whole log durable, its names too, and says so
   * with a sync point: damage found before it later is corruption, not a tear
   * (the links of segments sealed unsynced say their tails might tear). */
  pthread_mutex_lock(&w->sync_mu);
  int ret = NOKV_OK;
  if (w->file != NULL) {
    ret = sync_through(w, w->number, w->file);
    if (ret == NOKV_OK && sync_point) {
      char mark[NK_WAL_HEADER];
      nk_wal_encode_header(mark, NK_WAL_SYNC_POINT, mark, 0);
      ret = nk_wal_append(w, mark, sizeof mark);
      if (ret == NOKV_OK) ret = nk_file_sync(w->file);
    }
    int r2 = nk_file_close(w->file);
    if (ret == NOKV_OK) {
      ret = r2;
    }
  } else {
    ret = sync_sealed_below(w, UINT64_MAX);
  }
  pthread_mutex_unlock(&w->sync_mu);
  for (size_t i = 0; i < w->nsealed; i++) nk_file_close(w->sealed[i].file);
  free(w->sealed);
  pthread_mutex_destroy(&w->sealed_mu);
  pthread_mutex_destroy(&w->sync_mu);
  free(w->dir);
  free(w);
  return ret;
}

uint64_t nk_wal_number(const nk_wal *w) { return w->number; }

uint64_t nk_wal_bytes_written(const nk_wal *w) {
  return __atomic_load_n(&w->written, __ATOMIC_RELAXED);
}
