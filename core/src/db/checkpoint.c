/*
 * checkpoint.c — a consistent, openable copy of a live database at one commit
 * timestamp (RocksDB's Checkpoint, for this layout).
 *
 * The memtable is flushed first, so everything up to the copy's timestamp is in
 * tables and before the value log's durable head. Then one version is pinned
 * (its tables cannot be deleted while it is referenced) and, with value-log GC
 * held off, its tables and the value-log segments before the head are linked
 * into the copy (immutable files: a hard link costs nothing; across
 * filesystems they are copied), the head segment is copied up to the head, and
 * a manifest naming exactly those files is written, then CURRENT. The copy has
 * no WAL: it holds every write up to its timestamp and none after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db_impl.h"
#include "sst/format.h"
#include "util/error.h"

#define COPY_CHUNK (1u << 20)

/* Copies the first len bytes of from to a new file to, and syncs it. */
static int copy_prefix(const struct nokv_env *env, const char *from, const char *to,
                       uint64_t len) {
  nk_file *in = NULL, *out = NULL;
  char *buf = malloc(COPY_CHUNK);
  int ret = NOKV_OK;
  if (buf == NULL) return nk_err(NOKV_ENOMEM, "out of memory copying %s", from);
  NK_ERR(env->open_read(env, from, &in));
  NK_ERR(env->open_append(env, to, true, &out));
  for (uint64_t off = 0; off < len;) {
    size_t want = len - off < COPY_CHUNK ? (size_t)(len - off) : COPY_CHUNK, got = 0;
    NK_ERR(nk_file_read_at(in, off, buf, want, &got));
    if (got == 0) NK_ERR(nk_err(NOKV_ECORRUPT, "%s ended at %llu of %llu bytes", from,
                                (unsigned long long)off, (unsigned long long)len));
    NK_ERR(nk_file_append(out, buf, got));
    off += got;
  }
  NK_ERR(nk_file_sync(out));
err:
  nk_file_close(in);
  int r2 = nk_file_close(out);
  free(buf);
  return ret != NOKV_OK ? ret : r2;
}

/* Puts file name of dir src into dst: a hard link where possible, else a copy
 * (of the whole file: len UINT64_MAX, or of its first len bytes). */
static int place(nokv_db *db, const char *dst, const char *name, uint64_t len, bool link_ok) {
  char *from = nk_path_join(db->path, name), *to = nk_path_join(dst, name);
  int ret = NOKV_OK;
  if (from == NULL || to == NULL) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  if (link_ok && db->env->link != NULL && db->env->link(db->env, from, to) == NOKV_OK) goto err;
  if (len == UINT64_MAX) {
    nk_file *f;
    NK_ERR(db->env->open_read(db->env, from, &f));
    ret = nk_file_size(f, &len);
    nk_file_close(f);
    NK_ERR(ret);
  }
  ret = copy_prefix(db->env, from, to, len);
err:
  free(from);
  free(to);
  return ret;
}

static bool retired(const nk_vset_vlog *st, uint32_t fid) {
  for (size_t i = 0; i < st->nretired; i++) {
    if (st->retired[i] == fid) return true;
  }
  return false;
}

int nokv_checkpoint(nokv_db *db, const char *dst, uint64_t *ts) {
  nk_err_clear();
  char **names = NULL;
  size_t n = 0;
  NK_RET(db->env->mkdir(db->env, dst));
  NK_RET(db->env->list_dir(db->env, dst, &names, &n));
  nk_env_free_names(names, n);
  if (n > 0) return nk_err(NOKV_EINVAL, "checkpoint directory %s is not empty", dst);

  /* No GC collection runs while the files are placed: what it retires could
   * otherwise hold values the pinned tables need. */
  pthread_mutex_lock(&db->gc_mu);
  nk_version *v = NULL;
  nk_vset_vlog st = {0};
  nk_vlog_segment_info *segs = NULL;
  size_t nsegs = 0;
  uint64_t last_ts = 0;
  int ret = nokv_flush(db);
  if (ret == NOKV_OK) {
    nk_vset *vs = db->vset;
    pthread_mutex_lock(&vs->install_mu);  /* version, head and timestamp of one edit */
    v = nk_vset_current(vs);
    last_ts = vs->last_ts;
    ret = nk_vset_vlog_state(vs, &st);
    pthread_mutex_unlock(&vs->install_mu);
  }
  if (ret == NOKV_OK) ret = nk_vlog_segments(db->vlog, &segs, &nsegs);
  for (int l = 0; ret == NOKV_OK && l < NK_NUM_LEVELS; l++) {
    for (size_t i = 0; ret == NOKV_OK && i < v->nfiles[l]; i++) {
      char name[32];
      nk_table_file_name(v->files[l][i]->number, name);
      ret = place(db, dst, name, UINT64_MAX, true);
    }
  }
  for (size_t i = 0; ret == NOKV_OK && i < nsegs; i++) {
    uint32_t fid = segs[i].fid;
    if (fid > st.head_fid || retired(&st, fid)) continue;
    char name[32];
    nk_vlog_file_name(fid, name);
    /* Sealed segments never change; the head one is still appended to. */
    ret = fid < st.head_fid ? place(db, dst, name, UINT64_MAX, true)
                            : place(db, dst, name, st.head_off, false);
  }
  if (ret == NOKV_OK) ret = nk_vset_export(db->vset, v, &st, last_ts, dst);
  pthread_mutex_unlock(&db->gc_mu);
  if (ret == NOKV_OK && ts != NULL) *ts = last_ts;
  free(segs);
  nk_vset_vlog_release(&st);
  nk_version_unref(v);
  if (ret != NOKV_OK) {
    ret = nk_err(ret, "checkpoint into %s: %s", dst, nokv_errmsg());
  }
  return ret;
}
