/* wal_writer.c — segment files, appends, syncs and rotation. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

struct nk_wal {
  const struct nokv_env *env;
  char *dir;
  size_t segment_bytes;
  uint64_t *next_file; /* the database's file number counter (atomic) */
  uint64_t number;     /* current segment */
  uint64_t size;       /* bytes in the current segment */
  uint64_t written;    /* bytes appended by this process (atomic) */
  nk_file *file;
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

/* Starts segment after prev (0: none): creates it, makes its name durable and
 * writes the link record naming prev. */
static int start_segment(nk_wal *w, uint64_t prev) {
  uint64_t number = __atomic_fetch_add(w->next_file, 1, __ATOMIC_RELAXED);
  char name[32];
  nk_wal_segment_name(number, name);
  char *path = nk_path_join(w->dir, name);
  if (path == NULL) {
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  int ret = w->env->open_append(w->env, path, true, &w->file);
  free(path);
  NK_RET(ret);
  /* The new name must be durable before a synced write in it is acknowledged. */
  NK_RET(w->env->sync_dir(w->env, w->dir));
  w->number = number;
  w->size = 0;
  char link[NK_WAL_LINK_RECORD];
  nk_put_u64(link + NK_WAL_HEADER, prev);
  nk_wal_encode_header(link, NK_WAL_LINK, link + NK_WAL_HEADER, NK_WAL_LINK_PAYLOAD);
  return nk_wal_append(w, link, sizeof link);
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
  int ret = start_segment(w, prev);
  if (ret != NOKV_OK) {
    nk_file_close(w->file);
    free(w->dir);
    free(w);
    return ret;
  }
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

int nk_wal_sync(nk_wal *w) { return nk_file_sync(w->file); }

int nk_wal_maybe_rotate(nk_wal *w) {
  if (w->size < w->segment_bytes) {
    return NOKV_OK;
  }
  return nk_wal_switch(w);
}

int nk_wal_switch(nk_wal *w) {
  /* Only the newest segment may hold a torn tail: seal this one first. */
  NK_RET(nk_file_sync(w->file));
  nk_file *old = w->file;
  w->file = NULL;
  NK_RET(nk_file_close(old));
  return start_segment(w, w->number);
}

int nk_wal_close(nk_wal *w) {
  if (w == NULL) {
    return NOKV_OK;
  }
  int ret = NOKV_OK;
  if (w->file != NULL) {
    ret = nk_file_sync(w->file);
    int r2 = nk_file_close(w->file);
    if (ret == NOKV_OK) {
      ret = r2;
    }
  }
  free(w->dir);
  free(w);
  return ret;
}

uint64_t nk_wal_number(const nk_wal *w) { return w->number; }

uint64_t nk_wal_bytes_written(const nk_wal *w) {
  return __atomic_load_n(&w->written, __ATOMIC_RELAXED);
}
