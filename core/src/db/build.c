/*
 * build.c — turning a sorted stream of versions into tables, with version GC.
 *
 * For each user key (versions arrive newest first) every version above the
 * watermark is kept, since some reader may still read between it and the next;
 * of those at or below it only the newest is kept, and a tombstone there is
 * dropped too when no deeper level can hold the key. A second copy of the same
 * version (value-log GC moved it; the newer source comes first) is dropped
 * always, and so is a version a range tombstone at or below the watermark
 * hides. Every dropped value pointer adds its entry's bytes to the segment's
 * discard count in the edit (docs/vlog_format.md). Used by flush (one L0 table,
 * never dropping tombstones) and compaction (tables of target size).
 */
#include <stdlib.h>
#include <string.h>

#include "db/db_impl.h"
#include "util/clock.h"
#include "memtable/internal_key.h"
#include "util/error.h"

uint64_t nk_db_watermark_peek(nokv_db *db) {
  uint64_t oldest, live;
  nk_oracle_snapshots(&db->oracle, &oldest, &live);
  uint64_t visible = nk_oracle_read_ts(&db->oracle);
  uint64_t w = live > 0 && oldest < visible ? oldest : visible;
  uint64_t keep = db->opts.history_retention_commits;  /* the last this many commits */
  uint64_t cap = visible > keep ? visible - keep : 0;
  return w < cap ? w : cap;
}

uint64_t nk_db_watermark(nokv_db *db) {
  uint64_t w = nk_db_watermark_peek(db);
  nk_db_raise_horizon(db, w);
  return w;
}

uint64_t nk_db_expiry_horizon(nokv_db *db) {
  return nk_oracle_min_snapshot_time(&db->oracle, nk_wall_ms());
}

void nk_db_raise_horizon(nokv_db *db, uint64_t ts) {
  uint_fast64_t h = atomic_load(&db->history_horizon);
  while (h < ts && !atomic_compare_exchange_weak(&db->history_horizon, &h, ts)) {
  }
}

nk_rdel_set *nk_db_collect_rdels(const nk_version *v, nk_memtable *const *mems, size_t nmems,
                                 uint64_t max_ts, int *rc) {
  *rc = NOKV_OK;
  size_t n = v->rdels != NULL ? v->rdels->n : 0, k = 0;
  for (size_t m = 0; m < nmems; m++) {
    for (const nk_mem_rdel *r = nk_memtable_rdels(mems[m]); r != NULL; r = r->next) n++;
  }
  if (n == 0) return NULL;
  const nk_rdel **all = malloc(n * sizeof *all);
  if (all == NULL) {
    *rc = nk_err(NOKV_ENOMEM, "out of memory");
    return NULL;
  }
  for (size_t i = 0; v->rdels != NULL && i < v->rdels->n; i++) all[k++] = &v->rdels->dels[i];
  for (size_t m = 0; m < nmems; m++) {
    /* A list read once: entries added after n was counted are left out. */
    for (const nk_mem_rdel *r = nk_memtable_rdels(mems[m]); r != NULL && k < n; r = r->next) {
      all[k++] = &r->del;
    }
  }
  bool oom;
  nk_rdel_set *s = nk_rdel_set_build(all, k, max_ts, &oom);
  free(all);
  if (oom) *rc = nk_err(NOKV_ENOMEM, "out of memory");
  return s;
}

static nk_table_options table_options(const nokv_db *db, int level) {
  const nokv_options *o = &db->opts;
  bool compress = o->compression_start_level >= 0 && level >= o->compression_start_level;
  return (nk_table_options){
      .block_size = o->block_size,
      .restart_interval = o->block_restart_interval,
      .bloom_bits_per_key = o->bloom_bits_per_key,
      .compression = compress ? NK_COMPRESS_ZSTD : NK_COMPRESS_NONE,
      .zstd_level = o->zstd_level,
  };
}

typedef struct output {
  uint64_t number;
  char *path;
  nk_file *file;
  nk_table_builder *b;
} output;

static int open_output(nokv_db *db, int level, output *out) {
  memset(out, 0, sizeof *out);
  out->number = nk_vset_new_file_number(db->vset);
  char name[32];
  nk_table_file_name(out->number, name);
  if ((out->path = nk_path_join(db->path, name)) == NULL) {
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  NK_RET(db->env->open_append(db->env, out->path, true, &out->file));
  nk_table_options to = table_options(db, level);
  return nk_table_builder_new(&to, out->file, &out->b);
}

static void abandon_output(nokv_db *db, output *out) {
  nk_table_builder_free(out->b);
  nk_file_close(out->file);
  if (out->path != NULL) nk_env_remove_quiet(db->env, out->path);
  free(out->path);
  memset(out, 0, sizeof *out);
}

/* Finishes, syncs and closes out, and adds it to e. */
static int finish_output(nokv_db *db, output *out, nk_build_job *job, nk_edit *e) {
  nk_table_props props;
  uint64_t size;
  NK_RET(nk_table_builder_finish(out->b, &props, &size));
  int ret = nk_file_sync(out->file);
  if (ret == NOKV_OK) {
    ret = nk_file_close(out->file);
    out->file = NULL;
  }
  nk_file_meta *f = NULL;
  if (ret == NOKV_OK) {
    f = nk_file_meta_new(out->number, size, props.smallest, props.smallest_len, props.largest,
                         props.largest_len);
    if (f == NULL) ret = nk_err(NOKV_ENOMEM, "out of memory");
  }
  if (ret == NOKV_OK) {
    f->min_ts = props.min_ts;
    f->max_ts = props.max_ts;
    f->entries = props.entries;
    f->tombstones = props.tombstones;
    f->range_clean_ts = job->range_clean_ts;
    ret = nk_edit_add_file(e, job->level, f);
    nk_file_meta_unref(f);
  }
  nk_table_props_release(&props);
  if (ret == NOKV_OK) {
    job->bytes_written += size;
    nk_table_builder_free(out->b);
    free(out->path);
    memset(out, 0, sizeof *out);
  }
  return ret;
}

/* A version's value is dropped: one in the value log leaves that many dead
 * bytes in its segment (the discard statistics GC works from). */
static int drop_value(nk_edit *e, uint64_t trailer, const char *v, size_t vn) {
  nk_vptr p;
  nk_value val;
  if (nk_value_open(nk_trailer_kind(trailer), v, vn, &val) && val.kind == NK_KIND_VPTR &&
      nk_vptr_decode(val.val, val.vlen, &p)) {
    return nk_edit_add_discard(e, p.fid, p.len);
  }
  return NOKV_OK;
}

/* Counts a dropped version and drops its value. */
static int drop(nk_build_job *job, nk_edit *e, uint64_t trailer, const char *v, size_t vn) {
  job->entries_dropped++;
  return drop_value(e, trailer, v, vn);
}

int nk_db_write_tables(nokv_db *db, nk_iter *input, nk_build_job *job, nk_edit *e) {
  output out = {0};
  nk_buf cur = {0};          /* current user key */
  nk_buf tomb = {0};         /* the tombstone an expired version becomes */
  bool have_key = false, below_kept = false;
  uint64_t last_ts = 0;      /* of the last version of cur seen */
  uint64_t hidden_below = 0; /* cur's versions below it are hidden by a range tombstone */
  size_t rdel_hint = 0;
  int ret = NOKV_OK;
  size_t first_new = e->nadds;
  for (; nk_iter_valid(input); nk_iter_next(input)) {
    if (job->abort != NULL && __atomic_load_n(job->abort, __ATOMIC_RELAXED)) {
      NK_ERR(nk_err(NOKV_ECLOSED, "database is closing"));
    }
    size_t kn, vn;
    const char *k = nk_iter_key(input, &kn);
    const char *v = nk_iter_value(input, &vn);
    size_t ulen = nk_ikey_user_len(kn);
    uint64_t trailer = nk_ikey_trailer(k, kn);
    bool new_key = !have_key || nk_user_key_cmp(cur.data, cur.len, k, ulen) != 0;
    if (new_key && job->limit != NULL &&
        nk_user_key_cmp(k, ulen, job->limit, job->limit_len) >= 0) {
      break;  /* the next part's first key */
    }
    job->entries_in++;
    if (new_key) {
      /* A table may end only between user keys. */
      if (out.b != NULL && nk_table_builder_file_size(out.b) >= job->max_file_bytes) {
        NK_ERR(finish_output(db, &out, job, e));
      }
      cur.len = 0;
      if (!nk_buf_append(&cur, k, ulen)) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
      have_key = true;
      below_kept = false;
      hidden_below = nk_rdel_set_cover_seq(job->rdels, &rdel_hint, k, ulen, NK_MAX_TS);
    } else if (nk_trailer_ts(trailer) == last_ts) {
      /* The same version again, from an older source: value-log GC moved it. */
      NK_ERR(drop(job, e, trailer, v, vn));
      continue;
    }
    last_ts = nk_trailer_ts(trailer);
    if (last_ts < hidden_below) {
      /* A range tombstone at or below the watermark hides it from every reader. */
      job->range_dropped++;
      NK_ERR(drop(job, e, trailer, v, vn));
      continue;
    }
    if (nk_trailer_ts(trailer) <= job->watermark) {
      if (below_kept) {
        /* shadowed by a newer version below the watermark */
        NK_ERR(drop(job, e, trailer, v, vn));
        continue;
      }
      below_kept = true;
      nk_value val;
      if (job->expired_before_ms != 0 && nk_kind_expires(nk_trailer_kind(trailer)) &&
          nk_value_open(nk_trailer_kind(trailer), v, vn, &val) &&
          nk_expired(val.expires_ms, job->expired_before_ms)) {
        /* Expired to every reader: its value goes (the value log learns it is
         * dead), and a tombstone keeps hiding the older versions. */
        NK_ERR(drop_value(e, trailer, v, vn));  /* the entry: as the tombstone fares */
        job->expired++;
        if (!nk_buf_reserve(&tomb, kn)) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
        nk_ikey_encode(tomb.data, k, ulen, nk_trailer_ts(trailer), NK_KIND_DELETE);
        k = tomb.data;
        trailer = nk_ikey_trailer(k, kn);
        v = "";
        vn = 0;
      }
      if (nk_trailer_kind(trailer) == NK_KIND_DELETE && job->is_bottom != NULL &&
          job->is_bottom(job->arg, k, ulen)) {
        job->entries_dropped++;  /* nothing older anywhere for it to hide */
        continue;
      }
    }
    if (out.b == NULL) NK_ERR(open_output(db, job->level, &out));
    NK_ERR(nk_table_builder_add(out.b, k, kn, v, vn));
  }
  NK_ERR(nk_iter_status(input));
  if (out.b != NULL) NK_ERR(finish_output(db, &out, job, e));
  nk_count(&db->stats.ttl_expired, job->expired);
  nk_count(&db->stats.range_dropped, job->range_dropped);
  /* The new names must be durable before the manifest names them. */
  if (e->nadds > first_new) NK_ERR(db->env->sync_dir(db->env, db->path));
  nk_buf_release(&cur);
  nk_buf_release(&tomb);
  return NOKV_OK;
err:
  nk_buf_release(&cur);
  nk_buf_release(&tomb);
  abandon_output(db, &out);
  nk_db_remove_added_tables(db, e, first_new);  /* the finished outputs too */
  return ret;
}

void nk_db_remove_added_tables(nokv_db *db, const nk_edit *e, size_t from) {
  for (size_t i = from; i < e->nadds; i++) {
    char name[32];
    nk_table_file_name(e->adds[i].f->number, name);
    char *path = nk_path_join(db->path, name);
    if (path != NULL) nk_env_remove_quiet(db->env, path);
    free(path);
  }
}
