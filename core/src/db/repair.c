/*
 * repair.c — salvages a database that refuses to open (LevelDB's RepairDB, for
 * this layout). The manifest is not trusted; everything readable is rebuilt
 * from the files themselves:
 *
 *   1. every table is read whole, every block's checksum checked; a damaged one
 *      gives up the entries before its damage;
 *   2. every WAL segment is read record by record, stepping over damage to the
 *      next intact record (nothing is assumed torn: the WAL is read for what it
 *      holds);
 *   3. all of it is merged (every version kept, duplicates dropped) into new
 *      tables at the bottom level; a version whose value-log entry is missing or
 *      damaged becomes a deletion at its timestamp, so no older value resurfaces;
 *   4. the old tables, WAL segments, manifests, CURRENT, and value-log segments
 *      with a bad header move to DIR/lost/ — nothing is deleted — and a new
 *      manifest naming the new tables, with the value log's head past every
 *      segment, becomes CURRENT.
 *
 * A crash during repair leaves the originals either in place or in lost/, and a
 * directory that refuses to open until repair is run again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/batch_internal.h"
#include "db/db_impl.h"
#include "memtable/internal_key.h"
#include "sst/format.h"
#include "util/error.h"
#include "util/merge_iter.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

typedef struct seg {
  uint32_t fid;
  nk_file *f;  /* NULL: unusable (bad header) */
} seg;

typedef struct repair {
  nokv_db db;  /* what building tables needs: path, opts, env, vset */
  nokv_repair_report *r;
  nk_table_cache *tc;
  char **names;
  size_t nnames;
  nk_table **tables;  /* verified, merged as they are */
  nk_sst_stats sst_stats;  /* the tables count into it while open */
  size_t ntables;
  char **moving;      /* names to move to lost/ */
  size_t nmoving;
  seg *segs;
  size_t nsegs;
  uint32_t max_fid;
  uint64_t max_number;
  nk_arena_pool *pool;
  nk_memtable *mem;   /* salvaged WAL batches and damaged tables' readable entries */
  nk_buf scratch;
} repair;

static int note_move(repair *rp, const char *name) {
  char **v = realloc(rp->moving, (rp->nmoving + 1) * sizeof *v);
  if (v == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  rp->moving = v;
  if ((v[rp->nmoving] = strdup(name)) == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  rp->nmoving++;
  return NOKV_OK;
}

static void see_ts(repair *rp, uint64_t ts) {
  if (ts > rp->r->last_commit_ts) rp->r->last_commit_ts = ts;
}

/* ---- the value log: which pointers still name an intact entry ---- */

static int open_segments(repair *rp) {
  for (size_t i = 0; i < rp->nnames; i++) {
    uint32_t fid;
    if (!nk_vlog_parse_name(rp->names[i], &fid)) continue;
    seg *v = realloc(rp->segs, (rp->nsegs + 1) * sizeof *v);
    if (v == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
    rp->segs = v;
    seg *s = &rp->segs[rp->nsegs++];
    *s = (seg){.fid = fid};
    if (fid > rp->max_fid) rp->max_fid = fid;
    char *path = nk_path_join(rp->db.path, rp->names[i]);
    if (path == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
    char h[NK_VLOG_HEADER];
    size_t got = 0;
    int ret = rp->db.env->open_read(rp->db.env, path, &s->f);
    if (ret == NOKV_OK) ret = nk_file_read_at(s->f, 0, h, sizeof h, &got);
    free(path);
    if (ret != NOKV_OK && ret != NOKV_EIO) return ret;
    bool ok = ret == NOKV_OK && got == sizeof h && nk_vlog_header_valid(h, fid);
    if (!ok) {
      nk_file_close(s->f);
      s->f = NULL;
      rp->r->vlog_segments_moved++;
      NK_RET(note_move(rp, rp->names[i]));
    }
  }
  return NOKV_OK;
}

/* Does the pointer (for user key) name an intact entry? */
static bool value_intact(repair *rp, const char *ptr, size_t n, const char *key, size_t klen) {
  nk_vptr p;
  if (!nk_vptr_decode(ptr, n, &p)) return false;
  for (size_t i = 0; i < rp->nsegs; i++) {
    seg *s = &rp->segs[i];
    if (s->fid != p.fid || s->f == NULL) continue;
    rp->scratch.len = 0;
    if (!nk_buf_reserve(&rp->scratch, p.len)) return false;
    size_t got = 0;
    if (nk_file_read_at(s->f, p.off, rp->scratch.data, p.len, &got) != NOKV_OK) return false;
    return nk_vlog_entry_matches(rp->scratch.data, got, &p, key, klen);
  }
  return false;
}

/* ---- an iterator turning versions with lost values into deletions ---- */

typedef struct lost_filter {
  nk_iter base;
  nk_iter *in;
  repair *rp;
  nk_buf key;  /* the rewritten key, when the current entry was turned */
  bool turned;
} lost_filter;

static void lf_settle(lost_filter *f) {
  f->turned = false;
  if (!nk_iter_valid(f->in)) return;
  size_t kn, vn;
  const char *k = nk_iter_key(f->in, &kn);
  const char *v = nk_iter_value(f->in, &vn);
  uint64_t trailer = nk_ikey_trailer(k, kn);
  see_ts(f->rp, nk_trailer_ts(trailer));
  nk_value val;
  if (!nk_kind_in_vlog(nk_trailer_kind(trailer)) ||
      (nk_value_open(nk_trailer_kind(trailer), v, vn, &val) &&
       value_intact(f->rp, val.val, val.vlen, k, nk_ikey_user_len(kn)))) {
    return;
  }
  f->rp->r->values_lost++;
  f->key.len = 0;
  if (nk_buf_reserve(&f->key, kn)) {
    nk_ikey_encode(f->key.data, k, nk_ikey_user_len(kn), nk_trailer_ts(trailer), NK_KIND_DELETE);
    f->key.len = kn;
    f->turned = true;
  }
}
static bool lf_valid(const nk_iter *b) { return nk_iter_valid(((const lost_filter *)b)->in); }
static void lf_seek_first(nk_iter *b) {
  lost_filter *f = (lost_filter *)b;
  nk_iter_seek_first(f->in);
  lf_settle(f);
}
static void lf_seek(nk_iter *b, const char *k, size_t n) {
  lost_filter *f = (lost_filter *)b;
  nk_iter_seek(f->in, k, n);
  lf_settle(f);
}
static void lf_next(nk_iter *b) {
  lost_filter *f = (lost_filter *)b;
  nk_iter_next(f->in);
  lf_settle(f);
}
static const char *lf_key(const nk_iter *b, size_t *n) {
  const lost_filter *f = (const lost_filter *)b;
  if (!f->turned) return nk_iter_key(f->in, n);
  *n = f->key.len;
  return f->key.data;
}
static const char *lf_value(const nk_iter *b, size_t *n) {
  const lost_filter *f = (const lost_filter *)b;
  if (!f->turned) return nk_iter_value(f->in, n);
  *n = 0;
  return "";
}
static int lf_status(const nk_iter *b) { return nk_iter_status(((const lost_filter *)b)->in); }
static void lf_destroy(nk_iter *b) {
  lost_filter *f = (lost_filter *)b;
  nk_iter_destroy(f->in);
  nk_buf_release(&f->key);
  free(f);
}
static const nk_iter_ops lost_filter_ops = {lf_valid, lf_seek_first, lf_seek,   lf_next,
                                            lf_key,   lf_value,      lf_status, lf_destroy};

/* ---- tables ---- */

/* Copies t's entries into the salvage memtable until its first damage. */
static int salvage_table(repair *rp, nk_table *t) {
  nk_iter *it = nk_table_iter_new(t);
  if (it == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  int ret = NOKV_OK;
  for (nk_iter_seek_first(it); nk_iter_valid(it) && ret == NOKV_OK; nk_iter_next(it)) {
    size_t kn, vn;
    const char *k = nk_iter_key(it, &kn);
    const char *v = nk_iter_value(it, &vn);
    uint64_t trailer = nk_ikey_trailer(k, kn);
    ret = nk_memtable_add(rp->mem, nk_trailer_ts(trailer), nk_trailer_kind(trailer), k,
                          nk_ikey_user_len(kn), v, vn);
    if (ret != NOKV_OK) ret = nk_err(NOKV_ENOMEM, "out of memory salvaging a table");
    rp->r->table_entries_salvaged++;
  }
  nk_iter_destroy(it);
  return ret;
}

static int read_tables(repair *rp) {
  for (size_t i = 0; i < rp->nnames; i++) {
    uint64_t number;
    if (!nk_table_parse_name(rp->names[i], &number)) continue;
    if (number > rp->max_number) rp->max_number = number;
    NK_RET(note_move(rp, rp->names[i]));
    char *path = nk_path_join(rp->db.path, rp->names[i]);
    if (path == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
    nk_table *t = NULL;
    int ret = nk_table_open(rp->db.env, path, 0, NULL, &rp->sst_stats, &t);
    free(path);
    if (ret == NOKV_ENOMEM) return ret;
    if (ret != NOKV_OK) {  /* footer, index or properties unreadable: nothing to salvage */
      rp->r->tables_damaged++;
      continue;
    }
    uint64_t entries = 0;
    nk_iter *it = nk_table_iter_new(t);
    if (it == NULL) {
      nk_table_close(t);
      return nk_err(NOKV_ENOMEM, "out of memory");
    }
    for (nk_iter_seek_first(it); nk_iter_valid(it); nk_iter_next(it)) entries++;
    int status = nk_iter_status(it);
    nk_iter_destroy(it);
    if (status == NOKV_OK) {
      nk_table **v = realloc(rp->tables, (rp->ntables + 1) * sizeof *v);
      if (v == NULL) {
        nk_table_close(t);
        return nk_err(NOKV_ENOMEM, "out of memory");
      }
      rp->tables = v;
      rp->tables[rp->ntables++] = t;
      rp->r->tables_verified++;
      continue;
    }
    rp->r->tables_damaged++;
    uint64_t want = nk_table_properties(t)->entries;
    ret = salvage_table(rp, t);
    if (want > entries) rp->r->table_entries_lost += want - entries;
    nk_table_close(t);
    NK_RET(ret);
  }
  return NOKV_OK;
}

/* ---- the WAL ---- */

/* An intact record of a type a WAL segment holds at off? */
static bool intact_at(const char *d, size_t off, size_t size) {
  if (size - off < NK_WAL_HEADER) return false;
  uint8_t type = (uint8_t)d[off + 8];
  return (nk_wal_is_batch(type) || nk_wal_is_link(type) || type == NK_WAL_SYNC_POINT) &&
         nk_wal_record_intact(d, off, size, type);
}

static int read_wal(repair *rp, const char *name) {
  char *path = nk_path_join(rp->db.path, name);
  if (path == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  char *data = NULL;
  size_t size = 0;
  int ret = nk_env_read_file(rp->db.env, path, &data, &size);
  free(path);
  if (ret == NOKV_ENOMEM) return ret;
  rp->r->wal_segments++;
  if (ret != NOKV_OK) {
    rp->r->wal_bytes_skipped += size;
    return NOKV_OK;  /* unreadable: it goes to lost/ as it is */
  }
  size_t off = 0;
  while (off < size && ret == NOKV_OK) {
    if (!intact_at(data, off, size)) {
      size_t next = off + 1;
      while (next < size && !intact_at(data, next, size)) next++;
      rp->r->wal_bytes_skipped += next - off;
      off = next;
      continue;
    }
    uint8_t type = (uint8_t)data[off + 8];
    uint32_t len = nk_get_u32(data + off + 4);
    const char *payload = data + off + NK_WAL_HEADER;
    off += NK_WAL_HEADER + len;
    if (!nk_wal_is_batch(type)) continue;  /* a link or a sync point */
    nk_batch_reader r;
    uint64_t ts;
    uint32_t count;
    if (nk_batch_reader_init(&r, payload, len, &ts, &count) != NOKV_OK ||
        nk_db_apply_batch(rp->mem, payload, len, ts) != NOKV_OK) {
      rp->r->wal_bytes_skipped += NK_WAL_HEADER + len;  /* well framed, malformed inside */
      continue;
    }
    see_ts(rp, ts);
    rp->r->wal_records++;
  }
  free(data);
  return ret;
}

/* ---- moving the originals aside ---- */

static int move_to_lost(repair *rp, const char *lost) {
  const struct nokv_env *env = rp->db.env;
  NK_RET(env->mkdir(env, lost));
  for (size_t i = 0; i < rp->nmoving; i++) {
    char *from = nk_path_join(rp->db.path, rp->moving[i]);
    char *to = nk_path_join(lost, rp->moving[i]);
    int ret = from != NULL && to != NULL ? NOKV_OK : nk_err(NOKV_ENOMEM, "out of memory");
    /* A name already in lost/ (an earlier repair) gets a suffix. */
    for (int n = 1; ret == NOKV_OK; n++) {
      nk_file *probe;
      if (env->open_read(env, to, &probe) != NOKV_OK) break;
      nk_file_close(probe);
      free(to);
      char *base = nk_path_join(lost, rp->moving[i]);
      size_t len = base != NULL ? strlen(base) + 16 : 0;
      to = base != NULL ? malloc(len) : NULL;
      if (to != NULL) snprintf(to, len, "%s.%d", base, n);
      free(base);
      if (to == NULL) ret = nk_err(NOKV_ENOMEM, "out of memory");
    }
    if (ret == NOKV_OK) ret = env->rename(env, from, to);
    free(from);
    free(to);
    NK_RET(ret);
    rp->r->files_moved++;
  }
  NK_RET(env->sync_dir(env, lost));
  return env->sync_dir(env, rp->db.path);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int nokv_repair(const char *path, const nokv_options *opts, nokv_repair_report *report) {
  nk_err_clear();
  nokv_options defaults;
  if (opts == NULL) {
    nokv_options_init(&defaults);
    opts = &defaults;
  }
  memset(report, 0, sizeof *report);
  repair rp;
  memset(&rp, 0, sizeof rp);
  rp.r = report;
  rp.db.opts = *opts;
  rp.db.env = opts->env != NULL ? opts->env : nk_env_posix();
  const struct nokv_env *env = rp.db.env;
  nk_file *lock = NULL;
  char *lock_path = nk_path_join(path, "LOCK"), *lost = nk_path_join(path, "lost");
  nk_iter **children = NULL;
  nk_iter *merged = NULL;
  nk_edit e;
  nk_edit_init(&e);
  int ret = NOKV_OK;
  if (lock_path == NULL || lost == NULL || (rp.db.path = strdup(path)) == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  }
  NK_ERR(env->lock(env, lock_path, &lock));
  NK_ERR(env->list_dir(env, path, &rp.names, &rp.nnames));
  qsort(rp.names, rp.nnames, sizeof *rp.names, cmp_names);  /* WAL segments in order */
  uint64_t wal_bytes = 0;
  for (size_t i = 0; i < rp.nnames; i++) {
    uint64_t number;
    const char *n = rp.names[i];
    bool wal = nk_wal_parse_name(n, &number);
    if (wal || nk_table_parse_name(n, &number)) {
      char *p = nk_path_join(path, n);
      nk_file *f;
      uint64_t size = 0;
      if (p != NULL && env->open_read(env, p, &f) == NOKV_OK) {
        nk_file_size(f, &size);
        nk_file_close(f);
      }
      free(p);
      wal_bytes += wal ? size : 8 * size;  /* a damaged table's entries, uncompressed */
    }
    if (wal || (strncmp(n, "MANIFEST-", 9) == 0) || strcmp(n, "CURRENT") == 0 ||
        strcmp(n, "CURRENT.tmp") == 0) {
      if (wal && number > rp.max_number) rp.max_number = number;
      NK_ERR(note_move(&rp, n));
    }
  }
  size_t budget = (size_t)(2 * wal_bytes) + (16u << 20);
  if ((rp.pool = nk_arena_pool_new(budget)) == NULL ||
      (rp.mem = nk_memtable_new(budget, rp.pool)) == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory for %zu bytes of salvage", budget));
  }
  NK_ERR(open_segments(&rp));
  NK_ERR(read_tables(&rp));
  for (size_t i = 0; i < rp.nnames; i++) {
    uint64_t number;
    if (nk_wal_parse_name(rp.names[i], &number)) NK_ERR(read_wal(&rp, rp.names[i]));
  }
  for (size_t i = 0; i < rp.nnames; i++) {  /* manifests: only their numbers matter */
    if (strncmp(rp.names[i], "MANIFEST-", 9) == 0) {
      uint64_t number = strtoull(rp.names[i] + 9, NULL, 10);
      if (number > rp.max_number) rp.max_number = number;
    }
  }

  /* Merge everything into new tables at the bottom level. */
  NK_ERR(nk_vset_new_empty(env, path, NULL, opts->manifest_max_bytes, &rp.db.vset));
  nk_vset_mark_file_used(rp.db.vset, rp.max_number);
  size_t nchildren = rp.ntables + 1;
  if ((children = calloc(nchildren, sizeof *children)) == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  }
  for (size_t i = 0; i < rp.ntables; i++) {
    if ((children[i] = nk_table_iter_new(rp.tables[i])) == NULL) {
      NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
    }
  }
  if ((children[rp.ntables] = nk_memtable_iter_new(rp.mem)) == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  }
  nk_iter *all = nk_merge_iter_new(children, nchildren);
  free(children);  /* the merge owns them now, even on failure */
  children = NULL;
  if (all == NULL) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  lost_filter *f = calloc(1, sizeof *f);
  if (f == NULL) {
    nk_iter_destroy(all);
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  }
  *f = (lost_filter){.base = {&lost_filter_ops}, .in = all, .rp = &rp};
  merged = &f->base;
  nk_iter_seek_first(merged);
  nk_build_job job = {
      .level = NK_NUM_LEVELS - 1,
      .watermark = 0,  /* keep every version */
      .max_file_bytes = opts->target_file_bytes,
  };
  NK_ERR(nk_db_write_tables(&rp.db, merged, &job, &e));
  report->entries_written = job.entries_in - job.entries_dropped;
  report->bytes_written = job.bytes_written;
  for (size_t i = 0; i < e.nadds; i++) {
    if (e.adds[i].f->max_ts > report->last_commit_ts) report->last_commit_ts = e.adds[i].f->max_ts;
  }

  /* The originals aside, then the new manifest. */
  NK_ERR(move_to_lost(&rp, lost));
  uint64_t log = nk_vset_new_file_number(rp.db.vset);
  /* The tables' watermarks are unknown: the history is exact from the newest
   * commit on only (the edit records no horizon, so the open assumes that). */
  e.has_log_number = e.has_last_ts = e.has_vlog_head = true;
  e.log_number = log;
  e.last_ts = report->last_commit_ts;
  e.vlog_head_fid = rp.max_fid + 1;  /* every segment sealed; appends start a new one */
  e.vlog_head_off = NK_VLOG_HEADER;
  NK_ERR(nk_vset_log_and_apply(rp.db.vset, &e));
err:
  nk_iter_destroy(merged);
  if (children != NULL) {
    for (size_t i = 0; i < rp.ntables + 1; i++) nk_iter_destroy(children[i]);
    free(children);
  }
  nk_edit_release(&e);
  nk_vset_close(rp.db.vset);
  for (size_t i = 0; i < rp.ntables; i++) nk_table_close(rp.tables[i]);
  free(rp.tables);
  for (size_t i = 0; i < rp.nsegs; i++) nk_file_close(rp.segs[i].f);
  free(rp.segs);
  for (size_t i = 0; i < rp.nmoving; i++) free(rp.moving[i]);
  free(rp.moving);
  nk_env_free_names(rp.names, rp.nnames);
  if (rp.mem != NULL) nk_memtable_unref(rp.mem);
  nk_arena_pool_free(rp.pool);
  nk_buf_release(&rp.scratch);
  nk_file_close(lock);
  free(rp.db.path);
  free(lock_path);
  free(lost);
  return ret;
}
