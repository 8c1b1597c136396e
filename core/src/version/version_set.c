/* version_set.c — manifest recovery and writing, version installation, cleanup. */
#include "version/version_set.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sst/format.h"
#include "util/error.h"
#include "util/grow.h"
#include "util/reaper.h"
#include "vlog/vlog.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

#define MANIFEST_PREFIX "MANIFEST-"

void nk_manifest_file_name(uint64_t number, char *buf) {
  snprintf(buf, 32, MANIFEST_PREFIX "%08llu", (unsigned long long)number);
}

static bool parse_manifest_name(const char *name, uint64_t *number) {
  size_t p = strlen(MANIFEST_PREFIX), n = strlen(name);
  if (n <= p || n - p > 19 || strncmp(name, MANIFEST_PREFIX, p) != 0) return false;
  uint64_t v = 0;
  for (size_t i = p; i < n; i++) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + (uint64_t)(name[i] - '0');
  }
  *number = v;
  return true;
}

void nk_vset_mark_file_used(nk_vset *vs, uint64_t number) {
  uint64_t cur = __atomic_load_n(&vs->next_file, __ATOMIC_RELAXED);
  while (cur <= number &&
         !__atomic_compare_exchange_n(&vs->next_file, &cur, number + 1, false, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED)) {
  }
}

static void delete_table(void *arg, uint64_t number, uint64_t unused) {
  (void)unused;
  nk_vset *vs = arg;
  nk_table_cache_evict(vs->tc, number);
  char name[32];
  nk_table_file_name(number, name);
  char *path = nk_path_join(vs->dir, name);
  if (path != NULL && vs->env->remove(vs->env, path) == NOKV_OK) {
    __atomic_fetch_add(&vs->tables_deleted, 1, __ATOMIC_RELAXED);
  }
  free(path);
}

/* A table left by the last version that held it: its file goes, on the
 * reaper's thread (the releasing one may be a reader, or hold locks). */
static void on_obsolete(void *arg, nk_file_meta *f) {
  nk_vset *vs = arg;
  if (vs->keep_files) return;
  nk_reaper_add(vs->reaper, delete_table, vs, f->number, 0);
}

nk_version *nk_vset_current(nk_vset *vs) {
  pthread_mutex_lock(&vs->mu);
  nk_version *v = vs->current;
  nk_version_ref(v);
  pthread_mutex_unlock(&vs->mu);
  return v;
}

static void install(nk_vset *vs, nk_version *v) {
  pthread_mutex_lock(&vs->mu);
  nk_version *old = vs->current;
  vs->current = v;
  pthread_mutex_unlock(&vs->mu);
  nk_version_unref(old);
}

/* ---- value log state ---- */

static size_t discard_find(const nk_vset *vs, uint32_t fid) {
  size_t lo = 0, hi = vs->ndiscard;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (vs->discard[mid].fid < fid) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

static void discard_remove(nk_vset *vs, uint32_t fid) {
  size_t i = discard_find(vs, fid);
  if (i < vs->ndiscard && vs->discard[i].fid == fid) {
    memmove(&vs->discard[i], &vs->discard[i + 1], (vs->ndiscard - i - 1) * sizeof *vs->discard);
    vs->ndiscard--;
  }
}

static bool is_retired(const nk_vset *vs, uint32_t fid) {
  for (size_t i = 0; i < vs->nretired; i++) {
    if (vs->retired[i] == fid) return true;
  }
  return false;
}

/* Applies e's value log parts. REQUIRES: install_mu (or replay), mu. */
static int absorb_vlog(nk_vset *vs, const nk_edit *e) {
  if (e->has_vlog_head &&
      (e->vlog_head_fid > vs->vlog_head_fid ||
       (e->vlog_head_fid == vs->vlog_head_fid && e->vlog_head_off > vs->vlog_head_off))) {
    vs->vlog_head_fid = e->vlog_head_fid;
    vs->vlog_head_off = e->vlog_head_off;
  }
  for (size_t k = 0; k < e->ndiscards; k++) {
    uint32_t fid = e->discards[k].fid;
    if (is_retired(vs, fid)) continue;
    size_t i = discard_find(vs, fid);
    if (i < vs->ndiscard && vs->discard[i].fid == fid) {
      vs->discard[i].bytes += e->discards[k].bytes;
      continue;
    }
    if (!nk_grow((void **)&vs->discard, &vs->discard_cap, vs->ndiscard, sizeof *vs->discard)) {
      return nk_err(NOKV_ENOMEM, "out of memory");
    }
    memmove(&vs->discard[i + 1], &vs->discard[i], (vs->ndiscard - i) * sizeof *vs->discard);
    vs->discard[i] = e->discards[k];
    vs->ndiscard++;
  }
  for (size_t k = 0; k < e->nretired; k++) {
    if (is_retired(vs, e->retired[k])) continue;
    if (!nk_grow((void **)&vs->retired, &vs->retired_cap, vs->nretired, sizeof *vs->retired)) {
      return nk_err(NOKV_ENOMEM, "out of memory");
    }
    vs->retired[vs->nretired++] = e->retired[k];
    discard_remove(vs, e->retired[k]);
  }
  return NOKV_OK;
}

int nk_vset_vlog_state(nk_vset *vs, nk_vset_vlog *out) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&vs->mu);
  out->head_fid = vs->durable_head_fid;
  out->head_off = vs->durable_head_off;
  out->discard = malloc((vs->ndiscard ? vs->ndiscard : 1) * sizeof *out->discard);
  out->retired = malloc((vs->nretired ? vs->nretired : 1) * sizeof *out->retired);
  if (out->discard != NULL && out->retired != NULL) {
    if (vs->ndiscard > 0) memcpy(out->discard, vs->discard, vs->ndiscard * sizeof *out->discard);
    if (vs->nretired > 0) memcpy(out->retired, vs->retired, vs->nretired * sizeof *out->retired);
    out->ndiscard = vs->ndiscard;
    out->nretired = vs->nretired;
  }
  pthread_mutex_unlock(&vs->mu);
  if (out->discard == NULL || out->retired == NULL) {
    nk_vset_vlog_release(out);
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  return NOKV_OK;
}

void nk_vset_vlog_release(nk_vset_vlog *s) {
  free(s->discard);
  free(s->retired);
  memset(s, 0, sizeof *s);
}

void nk_vset_forget_segment(nk_vset *vs, uint32_t fid) {
  pthread_mutex_lock(&vs->mu);
  discard_remove(vs, fid);
  for (size_t i = 0; i < vs->nretired; i++) {
    if (vs->retired[i] == fid) {
      vs->retired[i] = vs->retired[--vs->nretired];
      break;
    }
  }
  pthread_mutex_unlock(&vs->mu);
}

/* Adds the value log state to a snapshot edit. REQUIRES: install_mu. */
static int snapshot_vlog(nk_vset *vs, nk_edit *snap) {
  snap->has_vlog_head = true;
  snap->vlog_head_fid = vs->vlog_head_fid;
  snap->vlog_head_off = vs->vlog_head_off;
  for (size_t i = 0; i < vs->ndiscard; i++) {
    NK_RET(nk_edit_add_discard(snap, vs->discard[i].fid, vs->discard[i].bytes));
  }
  for (size_t i = 0; i < vs->nretired; i++) NK_RET(nk_edit_retire_segment(snap, vs->retired[i]));
  return NOKV_OK;
}

/* Puts back a state saved by nk_vset_vlog_state. REQUIRES: mu. */
static void restore_vlog(nk_vset *vs, const nk_vset_vlog *s) {
  vs->vlog_head_fid = s->head_fid;
  vs->vlog_head_off = s->head_off;
  /* Capacities never shrink, so s's contents fit. */
  if (s->ndiscard > 0) memcpy(vs->discard, s->discard, s->ndiscard * sizeof *s->discard);
  vs->ndiscard = s->ndiscard;
  if (s->nretired > 0) memcpy(vs->retired, s->retired, s->nretired * sizeof *s->retired);
  vs->nretired = s->nretired;
}

static void absorb_counters(nk_vset *vs, const nk_edit *e) {
  if (e->has_log_number && e->log_number > vs->log_number) vs->log_number = e->log_number;
  if (e->has_next_file) nk_vset_mark_file_used(vs, e->next_file - (e->next_file > 0));
  if (e->has_last_ts && e->last_ts > vs->last_ts) vs->last_ts = e->last_ts;
  if (e->has_horizon) {
    if (!vs->has_horizon || e->horizon > vs->horizon) vs->horizon = e->horizon;
    vs->has_horizon = true;
  }
}

typedef struct replay_ctx {
  nk_vset *vs;
  const char *path;
} replay_ctx;

static int replay_edit(void *arg, uint8_t type, const char *payload, size_t len) {
  replay_ctx *c = arg;
  (void)type;
  nk_edit e;
  int ret = nk_edit_decode(payload, len, &e);
  if (ret != NOKV_OK) return nk_err(ret, "manifest %s: %s", c->path, nokv_errmsg());
  nk_version *v;
  ret = nk_version_apply(c->vs->current, &e, &v);
  if (ret == NOKV_OK) {
    install(c->vs, v);
    absorb_counters(c->vs, &e);
    pthread_mutex_lock(&c->vs->mu);
    ret = absorb_vlog(c->vs, &e);
    c->vs->durable_head_fid = c->vs->vlog_head_fid;
    c->vs->durable_head_off = c->vs->vlog_head_off;
    pthread_mutex_unlock(&c->vs->mu);
    for (size_t i = 0; i < e.nadds; i++) nk_vset_mark_file_used(c->vs, e.adds[i].f->number);
  } else {
    ret = nk_err(ret, "manifest %s: %s", c->path, nokv_errmsg());
  }
  nk_edit_release(&e);
  return ret;
}

/* Reads CURRENT. Only "no such file" means there is none (*missing); any other
 * failure to read it (EACCES, EIO, EMFILE, ...) fails with the file and the OS
 * error: a database must never be taken for a new one because a read failed. */
static int read_current(nk_vset *vs, char **manifest_name, bool *missing) {
  char *path = nk_path_join(vs->dir, "CURRENT");
  if (path == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  char *data = NULL;
  size_t len = 0;
  *missing = false;
  int ret = nk_env_read_file(vs->env, path, &data, &len);
  free(path);
  if (ret != NOKV_OK && nk_err_os_errno() == ENOENT) {
    *missing = true;
    return NOKV_OK;
  }
  NK_RET(ret);
  uint64_t number;
  if (len < 2 || data[len - 1] != '\n') {
    free(data);
    return nk_err(NOKV_ECORRUPT, "%s/CURRENT is malformed", vs->dir);
  }
  data[len - 1] = '\0';
  if (!parse_manifest_name(data, &number)) {
    free(data);
    return nk_err(NOKV_ECORRUPT, "%s/CURRENT names no manifest", vs->dir);
  }
  vs->manifest_number = number;
  nk_vset_mark_file_used(vs, number);
  *manifest_name = data;
  return NOKV_OK;
}

/* Fails replaying a manifest at its first edit that names a table. */
static int edit_names_no_table(void *arg, uint8_t type, const char *payload, size_t len) {
  (void)type;
  nk_edit e;
  int ret = nk_edit_decode(payload, len, &e);
  if (ret == NOKV_OK && e.nadds > 0) {
    ret = nk_err(NOKV_ECORRUPT, "manifest %s names tables", (const char *)arg);
  }
  nk_edit_release(&e);
  return ret;
}

static int segment_has_no_batch(void *arg, uint8_t type, const char *payload, size_t len) {
  (void)payload, (void)len;
  if (!nk_wal_is_batch(type)) return NOKV_OK;  /* its link */
  return nk_err(NOKV_ECORRUPT, "WAL %s holds writes", (const char *)arg);
}

/* Does the file at path hold more than size_limit bytes? */
static int larger_than(const struct nokv_env *env, const char *path, uint64_t size_limit,
                       bool *larger) {
  nk_file *f;
  uint64_t size = 0;
  NK_RET(env->open_read(env, path, &f));
  int ret = nk_file_size(f, &size);
  nk_file_close(f);
  *larger = size > size_limit;
  return ret;
}

/* With no CURRENT, decides whether dir may become a new database: only if it
 * holds nothing a database could need. A table, a WAL segment with records, a
 * value log segment with entries or a manifest that names a table means a
 * database whose CURRENT was lost: refuse (`nokv repair` rebuilds it). Empty
 * segments and table-less manifests are what a crash during the very first open
 * leaves; they are abandoned and cleaned up as orphans. */
static int check_new_directory(nk_vset *vs) {
  char **names = NULL;
  size_t n = 0;
  NK_RET(vs->env->list_dir(vs->env, vs->dir, &names, &n));
  int ret = NOKV_OK;
  for (size_t i = 0; i < n && ret == NOKV_OK; i++) {
    uint64_t number;
    uint32_t fid;
    bool data = false;
    char *path = nk_path_join(vs->dir, names[i]);
    if (path == NULL) {
      ret = nk_err(NOKV_ENOMEM, "out of memory");
      break;
    }
    if (nk_table_parse_name(names[i], &number)) {
      data = true;
    } else if (nk_wal_parse_name(names[i], &number)) {
      ret = larger_than(vs->env, path, NK_WAL_LINK_RECORD, &data);  /* more than its link */
      if (ret == NOKV_OK && data) {
        /* A link and a close's sync point hold no writes; anything unreadable
         * might. */
        nk_wal_replay_stats st = {0};
        int rc = nk_log_replay(vs->env, path, NK_WAL_BATCH, false, segment_has_no_batch, path,
                               &st);
        if (rc == NOKV_OK) {
          data = false;
        } else if (rc != NOKV_ECORRUPT) {
          ret = rc;
        }
      }
    } else if (nk_vlog_parse_name(names[i], &fid)) {
      ret = larger_than(vs->env, path, NK_VLOG_HEADER, &data);
    } else if (parse_manifest_name(names[i], &number)) {
      nk_wal_replay_stats st = {0};
      int rc = nk_log_replay(vs->env, path, NK_WAL_EDIT, false, edit_names_no_table, path, &st);
      if (rc == NOKV_ECORRUPT) {
        data = true;  /* names tables, or cannot be read: not provably abandoned */
      } else {
        ret = rc;
      }
    }
    if (ret == NOKV_OK && data) {
      ret = nk_err(NOKV_ECORRUPT,
                   "%s has no CURRENT file but holds database files (%s); refusing to start a "
                   "new database over them (`nokv repair %s` rebuilds the manifest)",
                   vs->dir, names[i], vs->dir);
    }
    free(path);
  }
  nk_env_free_names(names, n);
  return ret;
}

int nk_vset_new_empty(const struct nokv_env *env, const char *dir, nk_table_cache *tc,
                      size_t manifest_max, nk_vset **out) {
  nk_vset *vs = calloc(1, sizeof *vs);
  if (vs == NULL || (vs->dir = strdup(dir)) == NULL) {
    free(vs);
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  vs->env = env;
  vs->tc = tc;
  vs->manifest_max = manifest_max;
  vs->next_file = 1;
  pthread_mutex_init(&vs->mu, NULL);
  pthread_mutex_init(&vs->install_mu, NULL);
  if ((vs->current = nk_version_new_empty(on_obsolete, vs)) == NULL) {
    nk_vset_close(vs);
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  *out = vs;
  return NOKV_OK;
}

int nk_vset_open(const struct nokv_env *env, const char *dir, nk_table_cache *tc,
                 size_t manifest_max, nk_vset **out, bool *fresh) {
  nk_vset *vs;
  NK_RET(nk_vset_new_empty(env, dir, tc, manifest_max, &vs));
  int ret = NOKV_OK;
  char *name = NULL, *path = NULL;
  bool missing = false;
  NK_ERR(read_current(vs, &name, &missing));
  if (missing) NK_ERR(check_new_directory(vs));
  *fresh = missing;
  if (!missing) {
    if ((path = nk_path_join(dir, name)) == NULL) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
    vs->keep_files = true;
    replay_ctx c = {vs, path};
    nk_wal_replay_stats st = {0};
    ret = nk_log_replay(env, path, NK_WAL_EDIT, true, replay_edit, &c, &st);
    vs->keep_files = false;
    vs->edits_replayed = st.records;
    if (ret == NOKV_EIO && st.records == 0) {
      ret = nk_err(NOKV_ECORRUPT, "CURRENT names %s, which cannot be read: %s", path,
                   nokv_errmsg());
    }
    NK_ERR(ret);
  }
  free(name);
  free(path);
  *out = vs;
  return NOKV_OK;
err:
  free(name);
  free(path);
  nk_vset_close(vs);
  return ret;
}

void nk_vset_close(nk_vset *vs) {
  if (vs == NULL) return;
  nk_file_close(vs->manifest);
  if (vs->current != NULL) {
    vs->keep_files = true;  /* closing drops the in-memory version, not files */
    nk_version_unref(vs->current);
  }
  pthread_mutex_destroy(&vs->mu);
  pthread_mutex_destroy(&vs->install_mu);
  free(vs->discard);
  free(vs->retired);
  free(vs->dir);
  free(vs);
}

/* Appends one framed edit record to f. */
static int append_record(nk_file *f, const nk_buf *payload, uint64_t *size) {
  char header[NK_WAL_HEADER];
  nk_wal_encode_header(header, NK_WAL_EDIT, payload->data, payload->len);
  NK_RET(nk_file_append(f, header, sizeof header));
  NK_RET(nk_file_append(f, payload->data, payload->len));
  *size += sizeof header + payload->len;
  return NOKV_OK;
}

/* Points dir's CURRENT at manifest number: temp file, fsync, rename, fsync of
 * the directory. */
static int write_current(const struct nokv_env *env, const char *dir, uint64_t number) {
  char name[32], line[40];
  nk_manifest_file_name(number, name);
  int n = snprintf(line, sizeof line, "%s\n", name);
  char *tmp = nk_path_join(dir, "CURRENT.tmp"), *cur = nk_path_join(dir, "CURRENT");
  nk_file *f = NULL;
  int ret = NOKV_OK;
  if (tmp == NULL || cur == NULL) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  NK_ERR(env->open_append(env, tmp, true, &f));
  NK_ERR(nk_file_append(f, line, (size_t)n));
  NK_ERR(nk_file_sync(f));
  ret = nk_file_close(f);
  f = NULL;
  NK_ERR(ret);
  NK_ERR(env->rename(env, tmp, cur));
  NK_ERR(env->sync_dir(env, dir));
err:
  nk_file_close(f);
  free(tmp);
  free(cur);
  return ret;
}

/* Writes MANIFEST-<number> in dir holding the snapshot edit snap (with v's
 * tables added), syncs it and points dir's CURRENT at it. *out (if non-NULL)
 * keeps the file open for appending edits, with *size its length. */
static int write_manifest(const struct nokv_env *env, const char *dir, uint64_t number,
                          const nk_version *v, nk_edit *snap, nk_file **out, uint64_t *size) {
  nk_buf buf = {0};
  nk_file *f = NULL;
  char *path = NULL;
  char name[32];
  int ret = NOKV_OK;
  uint64_t written = 0;
  for (int l = 0; l < NK_NUM_LEVELS; l++) {
    for (size_t i = 0; i < v->nfiles[l]; i++) NK_ERR(nk_edit_add_file(snap, l, v->files[l][i]));
  }
  for (size_t i = 0; v->rdels != NULL && i < v->rdels->n; i++) {
    NK_ERR(nk_edit_add_rdel(snap, &v->rdels->dels[i]));
  }
  NK_ERR(nk_edit_encode(snap, true, &buf));
  nk_manifest_file_name(number, name);
  if ((path = nk_path_join(dir, name)) == NULL) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  NK_ERR(env->open_append(env, path, true, &f));
  NK_ERR(append_record(f, &buf, &written));
  NK_ERR(nk_file_sync(f));
  /* Its name durable before CURRENT can name it (as LevelDB syncs the
   * directory with a new manifest): else a power loss may keep the rename of
   * CURRENT and lose the file it names. */
  NK_ERR(env->sync_dir(env, dir));
  NK_ERR(write_current(env, dir, number));
  if (out != NULL) {
    *out = f;
    *size = written;
    f = NULL;
  }
err:
  nk_file_close(f);
  free(path);
  nk_buf_release(&buf);
  return ret;
}

/* Starts a new manifest holding a snapshot of v, points CURRENT at it and drops
 * the old one. */
static int write_snapshot(nk_vset *vs, const nk_version *v) {
  nk_edit snap;
  nk_edit_init(&snap);
  nk_file *f = NULL;
  uint64_t number = nk_vset_new_file_number(vs), size = 0;
  snap.has_log_number = snap.has_next_file = snap.has_last_ts = true;
  snap.log_number = vs->log_number;
  snap.next_file = __atomic_load_n(&vs->next_file, __ATOMIC_RELAXED);
  snap.last_ts = vs->last_ts;
  snap.has_horizon = vs->has_horizon;
  snap.horizon = vs->horizon;
  int ret = snapshot_vlog(vs, &snap);
  if (ret == NOKV_OK) ret = write_manifest(vs->env, vs->dir, number, v, &snap, &f, &size);
  nk_edit_release(&snap);
  NK_RET(ret);
  if (vs->manifest_number != 0) {
    char name[32];
    nk_manifest_file_name(vs->manifest_number, name);
    char *old = nk_path_join(vs->dir, name);
    if (old != NULL) vs->env->remove(vs->env, old);  /* CURRENT no longer names it */
    free(old);
  }
  if (vs->manifest != NULL) {
    nk_file_close(vs->manifest);
    __atomic_fetch_add(&vs->manifest_rewrites, 1, __ATOMIC_RELAXED);
  }
  vs->manifest = f;
  vs->manifest_number = number;
  vs->manifest_size = size;
  return NOKV_OK;
}

int nk_vset_export(nk_vset *vs, const nk_version *v, const nk_vset_vlog *vl, uint64_t last_ts,
                   const char *dst) {
  nk_edit snap;
  nk_edit_init(&snap);
  /* Every table number is below next_file; the copy has no WAL to replay. */
  uint64_t next = __atomic_load_n(&vs->next_file, __ATOMIC_RELAXED) + 1;
  snap.has_log_number = snap.has_next_file = snap.has_last_ts = snap.has_vlog_head = true;
  snap.log_number = next;
  snap.next_file = next + 1;
  snap.last_ts = last_ts;
  snap.vlog_head_fid = vl->head_fid;
  snap.vlog_head_off = vl->head_off;
  int ret = NOKV_OK;
  for (size_t i = 0; i < vl->ndiscard && ret == NOKV_OK; i++) {
    ret = nk_edit_add_discard(&snap, vl->discard[i].fid, vl->discard[i].bytes);
  }
  if (ret == NOKV_OK) ret = write_manifest(vs->env, dst, next, v, &snap, NULL, NULL);
  nk_edit_release(&snap);
  return ret;
}

int nk_vset_create(nk_vset *vs) {
  pthread_mutex_lock(&vs->install_mu);
  /* A new database: no version was ever dropped. */
  vs->has_horizon = true;
  vs->horizon = 0;
  int ret = write_snapshot(vs, vs->current);
  pthread_mutex_unlock(&vs->install_mu);
  return ret;
}

int nk_vset_log_and_apply(nk_vset *vs, nk_edit *e) {
  pthread_mutex_lock(&vs->install_mu);
  nk_version *base = nk_vset_current(vs), *v = NULL;
  nk_buf buf = {0};
  uint64_t saved_log = vs->log_number, saved_ts = vs->last_ts, saved_horizon = vs->horizon;
  bool saved_has_horizon = vs->has_horizon;
  /* The value log state is small: keep a copy to put back if logging fails. */
  nk_vset_vlog saved_vlog;
  int ret = nk_vset_vlog_state(vs, &saved_vlog);
  if (ret == NOKV_OK) ret = nk_version_apply(base, e, &v);
  if (ret == NOKV_OK) {
    absorb_counters(vs, e);
    pthread_mutex_lock(&vs->mu);
    ret = absorb_vlog(vs, e);
    pthread_mutex_unlock(&vs->mu);
  }
  if (ret == NOKV_OK) {
    if (vs->manifest == NULL || vs->manifest_size >= vs->manifest_max) {
      ret = write_snapshot(vs, v);
    } else {
      e->has_next_file = true;
      e->next_file = __atomic_load_n(&vs->next_file, __ATOMIC_RELAXED);
      ret = nk_edit_encode(e, false, &buf);
      if (ret == NOKV_OK) {
        ret = append_record(vs->manifest, &buf, &vs->manifest_size);
        if (ret == NOKV_OK) ret = nk_file_sync(vs->manifest);
        if (ret != NOKV_OK) {
          /* Part of the record may be on disk, or all of it without its sync:
           * nothing may follow it in this file, or a reopen would find damage
           * with valid edits after it. The next edit starts a new manifest with
           * a snapshot instead; until then this one ends in a torn tail, which
           * a reopen cuts. */
          nk_file_close(vs->manifest);
          vs->manifest = NULL;
        }
      }
    }
  }
  if (ret == NOKV_OK) {
    pthread_mutex_lock(&vs->mu);
    vs->durable_head_fid = vs->vlog_head_fid;
    vs->durable_head_off = vs->vlog_head_off;
    pthread_mutex_unlock(&vs->mu);
    install(vs, v);
  } else {
    vs->log_number = saved_log;
    vs->last_ts = saved_ts;
    vs->horizon = saved_horizon;
    vs->has_horizon = saved_has_horizon;
    pthread_mutex_lock(&vs->mu);
    restore_vlog(vs, &saved_vlog);
    pthread_mutex_unlock(&vs->mu);
    if (v != NULL) {
      v->obsolete = NULL;  /* its new tables stay on disk: the manifest may name them */
      nk_version_unref(v);
    }
  }
  nk_version_unref(base);
  nk_buf_release(&buf);
  nk_vset_vlog_release(&saved_vlog);
  pthread_mutex_unlock(&vs->install_mu);
  return ret;
}

int nk_vset_check_tables(nk_vset *vs) {
  char **names;
  size_t n;
  NK_RET(vs->env->list_dir(vs->env, vs->dir, &names, &n));
  nk_version *v = nk_vset_current(vs);
  int ret = NOKV_OK;
  vs->tables_checked = 0;
  for (int l = 0; l < NK_NUM_LEVELS && ret == NOKV_OK; l++) {
    for (size_t i = 0; i < v->nfiles[l] && ret == NOKV_OK; i++) {
      char want[32];
      nk_table_file_name(v->files[l][i]->number, want);
      bool found = false;
      for (size_t j = 0; j < n && !found; j++) found = strcmp(names[j], want) == 0;
      if (found) {
        vs->tables_checked++;
      } else {
        ret = nk_err(NOKV_ECORRUPT,
                     "table %s/%s (L%d) named by the manifest is missing; refusing to open "
                     "without it",
                     vs->dir, want, l);
      }
    }
  }
  nk_version_unref(v);
  nk_env_free_names(names, n);
  return ret;
}

int nk_vset_remove_orphans(nk_vset *vs) {
  char **names;
  size_t n;
  NK_RET(vs->env->list_dir(vs->env, vs->dir, &names, &n));
  nk_version *v = nk_vset_current(vs);
  for (size_t j = 0; j < n; j++) {
    uint64_t number;
    bool drop = false, table = false;
    if ((table = nk_table_parse_name(names[j], &number))) {
      nk_vset_mark_file_used(vs, number);
      drop = true;
      for (int l = 0; l < NK_NUM_LEVELS && drop; l++) {
        for (size_t i = 0; i < v->nfiles[l] && drop; i++) drop = v->files[l][i]->number != number;
      }
    } else if (parse_manifest_name(names[j], &number)) {
      nk_vset_mark_file_used(vs, number);
      drop = number != vs->manifest_number;
    } else if (nk_wal_parse_name(names[j], &number)) {
      nk_vset_mark_file_used(vs, number);
      drop = number < vs->log_number;
    } else {
      drop = strcmp(names[j], "CURRENT.tmp") == 0;
    }
    if (drop) {
      char *path = nk_path_join(vs->dir, names[j]);
      if (path != NULL && vs->env->remove(vs->env, path) == NOKV_OK && table) {
        vs->orphans_deleted++;
      }
      free(path);
    }
  }
  nk_version_unref(v);
  nk_env_free_names(names, n);
  return NOKV_OK;
}
