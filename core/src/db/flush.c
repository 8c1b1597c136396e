/*
 * flush.c — the flush pipeline: sealed memtables (db->imm, oldest first) are
 * written to L0 tables by a dedicated thread, so a long compaction never holds
 * up a flush. After the manifest records a table (with the WAL log number that
 * makes its segments obsolete), the memtable leaves imm, a new view is
 * published, stalled writers are woken and the old WAL segments are deleted.
 */
#include <stdlib.h>
#include <string.h>

#include "db/db_impl.h"
#include "util/error.h"

int nk_db_flush_memtable(nokv_db *db, nk_memtable *mem, uint64_t log_number, nk_vhead vhead) {
  nk_edit e;
  nk_edit_init(&e);
  uint64_t watermark = nk_db_watermark(db), max_ts = nk_memtable_max_ts(mem);
  /* Flushes run one at a time, in order: every range tombstone up to max_ts
   * is in this version, retired, or in mem itself. */
  nk_version *v = nk_vset_current(db->vset);
  int ret;
  nk_rdel_set *rdels = nk_db_collect_rdels(v, &mem, 1, watermark, &ret);
  nk_version_unref(v);
  NK_RET(ret);
  nk_build_job job = {
      .level = 0,
      .watermark = watermark,
      .expired_before_ms = nk_db_expiry_horizon(db),
      .max_file_bytes = UINT64_MAX,
      .abort = NULL,
      .rdels = rdels,
      .range_clean_ts = watermark < max_ts ? watermark : max_ts,
  };
  nk_iter *it = nk_memtable_iter_new(mem);
  if (it == NULL) {
    nk_rdel_set_unref(rdels);
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  nk_iter_seek_first(it);
  ret = nk_db_write_tables(db, it, &job, &e);
  nk_iter_destroy(it);
  nk_rdel_set_unref(rdels);
  /* Its range tombstones go to the version (the WAL held them so far). */
  for (const nk_mem_rdel *r = nk_memtable_rdels(mem); ret == NOKV_OK && r != NULL; r = r->next) {
    ret = nk_edit_add_rdel(&e, &r->del);
  }
  /* The manifest may call the values before the head durable only once they are. */
  if (ret == NOKV_OK) ret = nk_vlog_sync_to(db->vlog, vhead.fid);
  if (ret == NOKV_OK) {
    e.has_vlog_head = true;
    e.vlog_head_fid = vhead.fid;
    e.vlog_head_off = vhead.off;
    e.has_log_number = true;
    e.log_number = log_number;
    e.has_last_ts = true;
    e.last_ts = max_ts;
    e.has_horizon = true;
    e.horizon = watermark;
    ret = nk_db_log_and_apply(db, &e, "flush");
  }
  bool discards = e.ndiscards > 0;
  if (ret == NOKV_OK) {
    nk_count(&db->stats.flushes, 1);
    nk_count(&db->stats.flush_bytes, job.bytes_written);
  }
  nk_edit_release(&e);
  if (ret == NOKV_OK && discards && !db->opts.disable_auto_gc) nk_db_gc_wanted(db);
  return ret;
}

void nk_db_delete_obsolete_wal(nokv_db *db) {
  uint64_t keep_from = db->vset->log_number;
  /* Sealed segments nobody synced: their records are in durable tables now. */
  nk_wal_release(db->wal, keep_from);
  uint64_t *numbers = NULL;
  size_t n = 0;
  if (nk_wal_list(db->env, db->path, &numbers, &n) != NOKV_OK) return;
  for (size_t i = 0; i < n && numbers[i] < keep_from; i++) {
    char name[32];
    nk_wal_segment_name(numbers[i], name);
    char *path = nk_path_join(db->path, name);
    if (path != NULL) nk_env_remove_quiet(db->env, path);
    free(path);
  }
  free(numbers);
}

void *nk_db_flush_main(void *arg) {
  nokv_db *db = arg;
  pthread_mutex_lock(&db->mu);
  int full_attempts = 0;
  for (;;) {
    while (!db->stop_bg && (db->nimm == 0 || db->bg_error != NOKV_OK)) {
      pthread_cond_wait(&db->bg_cv, &db->mu);
    }
    if (db->stop_bg) break;
    nk_memtable *mem = db->imm[0];
    uint64_t log = db->imm_log[0];
    nk_vhead vhead = db->imm_vhead[0];
    pthread_mutex_unlock(&db->mu);
    int rc = nk_db_flush_memtable(db, mem, log, vhead);
    /* Its segments go before the memtable leaves imm, so whoever sees the queue
     * drained (nokv_flush) also sees them gone. */
    if (rc == NOKV_OK) nk_db_delete_obsolete_wal(db);
    pthread_mutex_lock(&db->mu);
    if (rc == NOKV_EFULL) {
      /* Disk full: the memtable stays sealed (its WAL keeps it safe) and writes
       * stall once the sealed ones fill up; retry until space is freed. */
      db->flush_full++;
      pthread_cond_broadcast(&db->room_cv);  /* nokv_flush callers learn of it */
      nk_db_full_backoff(db, full_attempts++);
      continue;
    }
    full_attempts = 0;
    if (rc != NOKV_OK) {
      nk_db_set_bg_error(db, rc, "flush");
      continue;
    }
    uint64_t max_ts = nk_memtable_max_ts(mem);
    if (max_ts > db->flushed_ts) db->flushed_ts = max_ts;
    memmove(&db->imm[0], &db->imm[1], (db->nimm - 1) * sizeof db->imm[0]);
    memmove(&db->imm_log[0], &db->imm_log[1], (db->nimm - 1) * sizeof db->imm_log[0]);
    memmove(&db->imm_vhead[0], &db->imm_vhead[1], (db->nimm - 1) * sizeof db->imm_vhead[0]);
    db->nimm--;
    if (nk_db_refresh_view(db) != NOKV_OK) {
      nk_db_set_bg_error(db, NOKV_ENOMEM, "flush");
    }
    nk_memtable_unref(mem);
    pthread_cond_broadcast(&db->room_cv);
    pthread_cond_broadcast(&db->bg_cv);  /* the compactor may have work now */
  }
  pthread_mutex_unlock(&db->mu);
  return NULL;
}
