/*
 * db.c — opening (with recovery), closing, options and stats.
 *
 * Data directory layout:
 *   LOCK               advisory lock: one process per database
 *   CURRENT            names the live manifest
 *   MANIFEST-NNNNNNNN  version edits: the tables of each level (version_set.h)
 *   NNNNNNNN.sst       tables (docs/table_format.md)
 *   NNNNNNNN.wal       WAL segments not yet flushed to a table
 *   NNNNNNNN.vlog      value log segments (vlog/vlog.h)
 *
 * Opening replays the manifest (which tables exist, and the WAL log number below
 * which segments are already in tables), then the WAL segments from the log
 * number on into a memtable, repairing a torn tail of the newest. The recovered
 * memtable is written to an L0 table right away and a fresh manifest is started,
 * so old segments can go; files no version needs (a crash can leave a half-written
 * table behind) are deleted. A table the manifest names but the disk lacks fails
 * the open with its name.
 */
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "db/batch_internal.h"
#include "db/db_impl.h"
#include "hot/hot.h"
#include "hot/row_cache.h"
#include "util/clock.h"
#include "util/error.h"
#include "wal/wal_format.h"

void nokv_options_init(nokv_options *o) {
  memset(o, 0, sizeof *o);
  o->create_if_missing = true;
  o->max_key_size = NOKV_MAX_KEY_SIZE_LIMIT;
  o->max_value_size = 64u << 20;
  o->memtable_max_bytes = 64u << 20;
  o->max_immutable_memtables = 2;
  o->wal_segment_bytes = 64u << 20;
  o->max_group_commit_bytes = 1u << 20;
  o->block_size = 4096;
  o->block_restart_interval = 16;
  o->bloom_bits_per_key = 10;
  o->compression_start_level = 2;
  o->zstd_level = 1;
  o->block_cache_bytes = 64u << 20;
  o->max_open_files = 1000;
  o->l0_compaction_trigger = 4;
  o->l0_slowdown_trigger = 20;
  o->l0_stop_trigger = 36;
  o->level1_max_bytes = 64u << 20;
  o->level_size_ratio = 10;
  o->target_file_bytes = 8u << 20;
  o->soft_pending_compaction_bytes = UINT64_C(64) << 30;
  o->hard_pending_compaction_bytes = UINT64_C(256) << 30;
  o->max_background_compactions = 2;
  o->max_subcompactions = 2;
  o->manifest_max_bytes = 4u << 20;
  o->value_threshold = 1024;
  o->value_log_segment_bytes = 256u << 20;
  o->value_log_gc_ratio = 0.5;
  o->value_log_gc_bytes_per_sec = 32u << 20;
  o->value_log_gc_idle_ms = 10000;
  o->scan_prefetch_micros = 30;
  o->max_txn_ops = 100000;
  o->max_txn_bytes = 32u << 20;
  o->max_txn_reads = 1000000;
  o->max_txn_conflict_bytes = 64u << 20;
  o->hot_key_tracking = true;
  o->hot_key_tracker_bytes = 2u << 20;
  o->hot_key_min_rate = 100;
  o->hot_read_cache_bytes = 4u << 20;
  o->watch_ring_bytes = 16u << 20;
}

void nokv_write_options_init(nokv_write_options *wo) { memset(wo, 0, sizeof *wo); }
void nokv_read_options_init(nokv_read_options *ro) { memset(ro, 0, sizeof *ro); }

static int check_options(const nokv_options *o) {
  if (o->watch_ring_bytes < (64u << 10)) {
    return nk_err(NOKV_EINVAL, "watch_ring_bytes must be at least 64 KiB, not %zu",
                  o->watch_ring_bytes);
  }
  if (o->max_key_size == 0 || o->max_key_size > NOKV_MAX_KEY_SIZE_LIMIT) {
    return nk_err(NOKV_EINVAL, "max_key_size must be in [1, %u], not %zu",
                  NOKV_MAX_KEY_SIZE_LIMIT, o->max_key_size);
  }
  if (o->max_value_size == 0 || o->max_value_size > NK_WAL_MAX_RECORD / 2) {
    return nk_err(NOKV_EINVAL, "max_value_size must be in [1, %u], not %zu",
                  NK_WAL_MAX_RECORD / 2, o->max_value_size);
  }
  if (o->memtable_max_bytes < (64u << 10)) {
    return nk_err(NOKV_EINVAL, "memtable_max_bytes must be at least 64 KiB, not %zu",
                  o->memtable_max_bytes);
  }
  if (o->max_immutable_memtables < 1 || o->max_immutable_memtables > NK_MAX_IMM) {
    return nk_err(NOKV_EINVAL, "max_immutable_memtables must be in [1, %d], not %d", NK_MAX_IMM,
                  o->max_immutable_memtables);
  }
  if (o->block_size < 256 || o->block_size > (64u << 20) || o->block_restart_interval < 1) {
    return nk_err(NOKV_EINVAL, "block_size must be in [256 B, 64 MiB] and the restart interval >= 1");
  }
  if (o->bloom_bits_per_key < 0 || o->bloom_bits_per_key > 64) {
    return nk_err(NOKV_EINVAL, "bloom_bits_per_key must be in [0, 64], not %d",
                  o->bloom_bits_per_key);
  }
  if (o->zstd_level < 1 || o->zstd_level > 19 || o->max_open_files < 16) {
    return nk_err(NOKV_EINVAL, "zstd_level must be in [1, 19] and max_open_files >= 16");
  }
  if (o->l0_compaction_trigger < 1 || o->l0_slowdown_trigger < o->l0_compaction_trigger ||
      o->l0_stop_trigger < o->l0_slowdown_trigger) {
    return nk_err(NOKV_EINVAL, "need 1 <= l0_compaction_trigger <= l0_slowdown_trigger <= "
                               "l0_stop_trigger");
  }
  if (o->level1_max_bytes < (64u << 10) || o->level_size_ratio < 2 ||
      o->target_file_bytes < (16u << 10)) {
    return nk_err(NOKV_EINVAL, "need level1_max_bytes >= 64 KiB, level_size_ratio >= 2, "
                               "target_file_bytes >= 16 KiB");
  }
  if (o->max_subcompactions < 1 || o->max_subcompactions > NK_MAX_SUBCOMPACTIONS) {
    return nk_err(NOKV_EINVAL, "max_subcompactions must be in [1, %d], not %d",
                  NK_MAX_SUBCOMPACTIONS, o->max_subcompactions);
  }
  if (o->max_background_compactions < 1 || o->max_background_compactions > NK_MAX_COMPACTIONS) {
    return nk_err(NOKV_EINVAL, "max_background_compactions must be in [1, %d], not %d",
                  NK_MAX_COMPACTIONS, o->max_background_compactions);
  }
  if (o->value_log_segment_bytes < 4096 || o->value_log_segment_bytes > (UINT64_C(2) << 30)) {
    return nk_err(NOKV_EINVAL, "value_log_segment_bytes must be 4 KiB to 2 GiB, not %llu",
                  (unsigned long long)o->value_log_segment_bytes);
  }
  if (o->hot_write_limit > 0 && !o->hot_key_tracking) {
    return nk_err(NOKV_EINVAL, "hot_write_limit needs hot_key_tracking");
  }
  if (o->hot_key_tracking && o->hot_key_tracker_bytes < (64u << 10)) {
    return nk_err(NOKV_EINVAL, "hot_key_tracker_bytes must be at least 64 KiB, not %zu",
                  o->hot_key_tracker_bytes);
  }
  if (o->max_txn_conflict_bytes < (64u << 10)) {
    return nk_err(NOKV_EINVAL, "max_txn_conflict_bytes must be at least 64 KiB, not %zu",
                  o->max_txn_conflict_bytes);
  }
  if (!(o->value_log_gc_ratio > 0 && o->value_log_gc_ratio <= 1)) {
    return nk_err(NOKV_EINVAL, "value_log_gc_ratio must be in (0, 1], not %g",
                  o->value_log_gc_ratio);
  }
  if (o->wal_segment_bytes < 4096) {
    return nk_err(NOKV_EINVAL, "wal_segment_bytes must be at least 4 KiB, not %zu",
                  o->wal_segment_bytes);
  }
  return NOKV_OK;
}

typedef struct replay_ctx {
  nokv_db *db;
  const char *segment;
  uint64_t prev;        /* the segment replayed before it (0: it is the first) */
  uint64_t last_ts;
  bool dangling;  /* a record pointed past the value log: it and all after are dropped */
} replay_ctx;

/* Does every value pointer of the batch name an entry the value log holds? A
 * batch whose values did not reach the disk (written without sync, then power
 * lost) fails this; so does every later one, since values are written in order.
 * On false, *bad is the first pointer that failed. */
static bool pointers_intact(nokv_db *db, const char *payload, size_t len, nk_vptr *bad) {
  nk_batch_reader r;
  nk_batch_op op;
  uint64_t ts;
  uint32_t count;
  if (nk_batch_reader_init(&r, payload, len, &ts, &count) != NOKV_OK) return true;
  int rc;
  while ((rc = nk_batch_reader_next(&r, &op)) == 1) {
    nk_value v;
    if (!nk_kind_in_vlog(op.kind)) continue;
    if (!nk_value_open(op.kind, op.val, op.vlen, &v) || !nk_vptr_decode(v.val, v.vlen, bad)) {
      memset(bad, 0, sizeof *bad);
      return false;
    }
    if (!nk_vlog_contains(db->vlog, bad)) return false;
  }
  return true;  /* a malformed batch is reported by the apply that follows */
}

/* A record written by a synced group (or a clean close's sync point, p NULL)
 * was durable with every value before it, so finding it after a value it (or
 * an earlier record) needs is gone means the disk lost acknowledged data:
 * refuse, naming the damage. */
static int refuse_lost_values(replay_ctx *c, uint64_t ts, const nk_vptr *p) {
  const nk_vlog_recovery *rec = &c->db->stats.vlog_recovery;
  char damage[256] = "";
  if (rec->torn_bytes > 0) {
    snprintf(damage, sizeof damage, "; value log segment %08u.vlog is damaged at %s", rec->torn_fid,
             rec->torn_why);
  }
  if (p == NULL) {  /* a sync point */
    return nk_err(NOKV_ECORRUPT,
                  "WAL %s: a clean close synced every value, but an earlier record's value is "
                  "missing from the value log%s; refusing to open, since skipping it would "
                  "lose acknowledged writes (`nokv repair` salvages)",
                  c->segment, damage);
  }
  if (c->dangling) {
    return nk_err(NOKV_ECORRUPT,
                  "WAL %s: the record at commit timestamp %llu was synced, but an earlier "
                  "record's value is missing from the value log%s; refusing to open, since "
                  "skipping it would lose acknowledged writes (`nokv repair` salvages)",
                  c->segment, (unsigned long long)ts, damage);
  }
  return nk_err(NOKV_ECORRUPT,
                "WAL %s: the synced record at commit timestamp %llu points at value log entry "
                "%u:%u (%u bytes), which is missing or damaged%s; refusing to open, since "
                "skipping it would lose acknowledged writes (`nokv repair` salvages)",
                c->segment, (unsigned long long)ts, p->fid, p->off, p->len, damage);
}

/* A segment's link names the segment written before it: that must be the one
 * replayed before it, or (for the first replayed) one the manifest retired. */
static int check_link(replay_ctx *c, uint8_t type, const char *payload, size_t len) {
  if (len != (type == NK_WAL_LINK ? NK_WAL_LINK_PAYLOAD : NK_WAL_LINK_V1_PAYLOAD)) {
    return nk_err(NOKV_ECORRUPT, "WAL %s: malformed link record", c->segment);
  }
  uint64_t linked = nk_get_u64(payload);
  uint64_t log_number = c->db->vset->log_number;
  if (c->prev != 0 ? linked != c->prev : linked != 0 && linked >= log_number) {
    char name[32];
    nk_wal_segment_name(linked, name);
    return nk_err(NOKV_ECORRUPT,
                  "WAL segment %s is missing: %s was written after it, and it holds writes no "
                  "table has (the manifest's log number is %llu); refusing to open, since "
                  "skipping it would lose acknowledged writes",
                  name, c->segment, (unsigned long long)log_number);
  }
  return NOKV_OK;
}

static int replay_record(void *arg, uint8_t type, const char *payload, size_t len) {
  replay_ctx *c = arg;
  nokv_db *db = c->db;
  if (nk_wal_is_link(type)) return check_link(c, type, payload, len);
  if (type == NK_WAL_SYNC_POINT) {
    /* A clean close synced every value before it: one missing is damage. */
    return c->dangling ? refuse_lost_values(c, 0, NULL) : NOKV_OK;
  }
  nk_batch_reader r;
  uint64_t ts;
  uint32_t count;
  NK_RET(nk_batch_reader_init(&r, payload, len, &ts, &count));
  nk_vptr bad = {0};
  if (c->dangling || !pointers_intact(db, payload, len, &bad)) {
    if (type == NK_WAL_BATCH_SYNCED) return refuse_lost_values(c, ts, &bad);
    /* Never synced: a power loss was free to keep this record and lose its
     * value (pages reach the disk in any order). It and every later record
     * were unsynced, so all of them go. */
    c->dangling = true;
    db->stats.wal_records_dangling++;
    return NOKV_OK;
  }
  if (ts <= c->last_ts || ts > NK_MAX_TS) {
    return nk_err(NOKV_ECORRUPT, "WAL %s: commit timestamp %llu after %llu is out of order",
                  c->segment, (unsigned long long)ts, (unsigned long long)c->last_ts);
  }
  int rc = nk_db_apply_batch(db->mem, payload, len, ts);
  if (rc != NOKV_OK) {
    if (rc == NOKV_ECORRUPT) {
      return nk_err(rc, "WAL %s: malformed batch at commit timestamp %llu (%s)", c->segment,
                    (unsigned long long)ts, nokv_errmsg());
    }
    return rc;
  }
  c->last_ts = ts;
  return NOKV_OK;
}

/* Replays the WAL segments the manifest has not seen flushed into db->mem. */
static int replay_wal(nokv_db *db) {
  uint64_t *numbers = NULL;
  size_t n = 0;
  NK_RET(nk_wal_list(db->env, db->path, &numbers, &n));
  replay_ctx c = {.db = db, .last_ts = 0};
  int ret = NOKV_OK;
  size_t first = 0;
  while (first < n && numbers[first] < db->vset->log_number) first++;
  for (size_t i = 0; i < n; i++) nk_vset_mark_file_used(db->vset, numbers[i]);
  bool ended = false;
  for (size_t i = first; i < n && ret == NOKV_OK && !ended; i++) {
    char name[32];
    nk_wal_segment_name(numbers[i], name);
    char *path = nk_path_join(db->path, name);
    if (path == NULL) {
      ret = nk_err(NOKV_ENOMEM, "out of memory");
      break;
    }
    c.segment = path;
    c.prev = i > first ? numbers[i - 1] : 0;
    ret = nk_wal_replay_segment(db->env, db->path, numbers + first, n - first, i - first,
                                replay_record, &c, &db->stats.replay, &ended);
    free(path);
  }
  db->stats.wal_segments_replayed = n - first;
  db->newest_wal = n > 0 ? numbers[n - 1] : 0;
  free(numbers);
  NK_RET(ret);
  uint64_t last = c.last_ts > db->vset->last_ts ? c.last_ts : db->vset->last_ts;
  nk_oracle_init(&db->oracle, last, db->opts.max_txn_conflict_bytes);
  /* Tables hold every version above the newest watermark they were built
   * with; a manifest from before that was recorded: assume the newest. */
  if (!db->vset->has_horizon) {  /* from now on recorded (the next manifest snapshot) */
    db->vset->has_horizon = true;
    db->vset->horizon = last;
  }
  atomic_init(&db->history_horizon, db->vset->horizon);
  return NOKV_OK;
}

static void db_free(nokv_db *db) {
  nk_view_unref(db->view);
  nk_epoch_unref(db->epoch);  /* deletes segments retired since the last view */
  for (size_t i = 0; i < db->nimm; i++) nk_memtable_unref(db->imm[i]);
  nk_memtable_unref(db->mem);
  nk_reaper_stop(db->reaper);  /* its jobs use the value log and the version set */
  nk_arena_pool_free(db->arena_pool);
  nk_hot_free(db->hot);
  nk_row_cache_free(db->row_cache);
  nk_watch_ring_free(db->watch);
  nk_vlog_close(db->vlog);
  nk_vset_close(db->vset);
  nk_table_cache_free(db->tc);
  nk_cache_free(db->block_cache);
  for (int l = 0; l < NK_NUM_LEVELS; l++) free(db->compact_pointer[l]);
  nk_file_close(db->lock);
  free(db->group_buf);
  free(db->path);
  pthread_mutex_destroy(&db->mu);
  pthread_mutex_destroy(&db->view_mu);
  pthread_cond_destroy(&db->idle);
  pthread_cond_destroy(&db->commit_cv);
  pthread_cond_destroy(&db->bg_cv);
  pthread_cond_destroy(&db->room_cv);
  pthread_cond_destroy(&db->gc_cv);
  pthread_mutex_destroy(&db->gc_mu);
  free(db);
}

/* Opens the value log at the manifest's head, deletes the segments GC retired
 * and forgets discard totals of segments that are gone. */
static int open_vlog(nokv_db *db) {
  nk_vset_vlog st;
  NK_RET(nk_vset_vlog_state(db->vset, &st));
  int ret = nk_vlog_open(db->env, db->path, db->opts.value_log_segment_bytes, st.head_fid,
                         st.head_off, st.retired, st.nretired, &db->vlog,
                         &db->stats.vlog_recovery);
  if (ret == NOKV_OK) {
    for (size_t i = 0; i < st.nretired; i++) nk_vset_forget_segment(db->vset, st.retired[i]);
    nk_vlog_segment_info *segs = NULL;
    size_t n = 0;
    ret = nk_vlog_segments(db->vlog, &segs, &n);
    for (size_t i = 0; ret == NOKV_OK && i < st.ndiscard; i++) {
      bool present = false;
      for (size_t j = 0; j < n && !present; j++) present = segs[j].fid == st.discard[i].fid;
      if (!present) nk_vset_forget_segment(db->vset, st.discard[i].fid);
    }
    free(segs);
  }
  nk_vset_vlog_release(&st);
  return ret;
}

/* NOKV_RECOVERY_TRACE=1 (or the seed's RECOVERY_TRACE_METRICS=1) in the
 * environment: one line per recovery phase on stderr. */
static bool tracing(void) {
  const char *a = getenv("NOKV_RECOVERY_TRACE"), *b = getenv("RECOVERY_TRACE_METRICS");
  return (a != NULL && a[0] == '1') || (b != NULL && b[0] == '1');
}

/* Ends a phase begun at *mark: adds its time to *slot and traces it. */
static void phase_done(nokv_db *db, const char *phase, uint64_t *mark, uint64_t *slot,
                       const char *detail) {
  uint64_t now = nk_now_micros();
  *slot = now - *mark;
  *mark = now;
  if (tracing()) {
    fprintf(stderr, "RECOVERY_TRACE dir=%s phase=%s micros=%llu %s\n", db->path, phase,
            (unsigned long long)*slot, detail);
  }
}

/* Writes the recovered memtable to L0 (if it holds anything) and logs a fresh
 * manifest whose log number retires every replayed segment. */
static int finish_recovery(nokv_db *db, uint64_t *mark) {
  uint64_t log = nk_wal_number(db->wal);
  nk_vhead head;
  nk_vlog_head(db->vlog, &head.fid, &head.off);
  if (nk_memtable_entries(db->mem) > 0) {
    NK_RET(nk_db_flush_memtable(db, db->mem, log, head));
    nk_memtable_unref(db->mem);
    if ((db->mem = nk_memtable_new(db->opts.memtable_max_bytes, db->arena_pool)) == NULL) {
      return nk_err(NOKV_ENOMEM, "out of memory creating the memtable");
    }
  } else {
    nk_edit e;
    nk_edit_init(&e);
    e.has_log_number = true;
    e.log_number = log;
    e.has_vlog_head = true;
    e.vlog_head_fid = head.fid;
    e.vlog_head_off = head.off;
    int ret = nk_vlog_sync_to(db->vlog, head.fid);
    if (ret == NOKV_OK) ret = nk_db_log_and_apply(db, &e, "manifest write");
    nk_edit_release(&e);
    NK_RET(ret);
  }
  char detail[96];
  snprintf(detail, sizeof detail, "entries=%llu", (unsigned long long)db->stats.replay.records);
  phase_done(db, "flush_recovered", mark, &db->stats.recovery.flush, detail);
  return nk_vset_remove_orphans(db->vset);
}

int nokv_open(const char *path, const nokv_options *opts, nokv_db **out) {
  nk_err_clear();
  nokv_options defaults;
  if (opts == NULL) {
    nokv_options_init(&defaults);
    opts = &defaults;
  }
  NK_RET(check_options(opts));
  nokv_db *db = calloc(1, sizeof *db);
  if (db == NULL || (db->path = strdup(path)) == NULL) {
    free(db);
    return nk_err(NOKV_ENOMEM, "out of memory opening %s", path);
  }
  pthread_mutex_init(&db->mu, NULL);
  pthread_mutex_init(&db->view_mu, NULL);
  pthread_cond_init(&db->idle, NULL);
  pthread_cond_init(&db->commit_cv, NULL);
  pthread_cond_init(&db->bg_cv, NULL);
  pthread_cond_init(&db->room_cv, NULL);
  pthread_cond_init(&db->gc_cv, NULL);
  pthread_mutex_init(&db->gc_mu, NULL);
  db->opts = *opts;
  db->env = opts->env != NULL ? opts->env : nk_env_posix();
  atomic_init(&db->live_handles, 0);
  atomic_init(&db->active_txns, 0);

  int ret;
  bool oracle_ready = false, fresh = false;
  if (opts->create_if_missing) {
    NK_ERR(db->env->mkdir(db->env, path));
  }
  NK_ERR(nk_reaper_start(&db->reaper));
  char *lock_path = nk_path_join(path, "LOCK");
  if (lock_path == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  }
  ret = db->env->lock(db->env, lock_path, &db->lock);
  free(lock_path);
  NK_ERR(ret);
  /* Two memtables' worth of blocks: one being filled while one is flushed. */
  if ((db->arena_pool = nk_arena_pool_new(2 * opts->memtable_max_bytes)) == NULL ||
      (opts->block_cache_bytes > 0 &&
       (db->block_cache = nk_cache_new(opts->block_cache_bytes, 4)) == NULL) ||
      (db->tc = nk_table_cache_new(db->env, path, (size_t)opts->max_open_files,
                                   db->block_cache, &db->sst_stats)) == NULL ||
      (db->mem = nk_memtable_new(db->opts.memtable_max_bytes, db->arena_pool)) == NULL ||
      (db->epoch = nk_epoch_new(db)) == NULL ||
      (opts->hot_key_tracking &&
       (db->hot = nk_hot_new(&(nk_hot_options){.budget_bytes = opts->hot_key_tracker_bytes})) ==
           NULL) ||
      (opts->hot_key_tracking && opts->hot_read_cache_bytes > 0 &&
       (db->row_cache = nk_row_cache_new(opts->hot_read_cache_bytes)) == NULL) ||
      (db->watch = nk_watch_ring_new(opts->watch_ring_bytes)) == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory opening %s", path));
  }
  nk_recovery_times *rt = &db->stats.recovery;
  uint64_t start = nk_now_micros(), mark = start;
  char detail[200];
  NK_ERR(nk_vset_open(db->env, path, db->tc, opts->manifest_max_bytes, &db->vset, &fresh));
  db->vset->reaper = db->reaper;
  rt->manifest_edits = db->vset->edits_replayed;
  snprintf(detail, sizeof detail, "fresh=%d edits=%llu log_number=%llu", fresh,
           (unsigned long long)rt->manifest_edits, (unsigned long long)db->vset->log_number);
  phase_done(db, "manifest_replay", &mark, &rt->manifest, detail);
  /* Before anything is written: a refused open must leave the files as they were. */
  NK_ERR(nk_vset_check_tables(db->vset));
  snprintf(detail, sizeof detail, "tables_checked=%llu",
           (unsigned long long)db->vset->tables_checked);
  phase_done(db, "table_check", &mark, &rt->tables, detail);
  if (!fresh && opts->error_if_exists) {
    NK_ERR(nk_err(NOKV_EINVAL, "database %s already exists (error_if_exists)", path));
  }
  if (fresh && !opts->create_if_missing) {
    NK_ERR(nk_err(NOKV_EINVAL, "%s holds no database (no CURRENT) and create_if_missing is false",
                  path));
  }
  /* CURRENT first: from here on the directory is a database, whatever else a
   * crash leaves in it. */
  if (fresh) NK_ERR(nk_vset_create(db->vset));
  NK_ERR(open_vlog(db));
  nk_vlog_set_reaper(db->vlog, db->reaper);
  const nk_vlog_recovery *vr = &db->stats.vlog_recovery;
  snprintf(detail, sizeof detail, "validated_bytes=%llu torn_bytes=%llu retired_removed=%llu",
           (unsigned long long)vr->validated_bytes, (unsigned long long)vr->torn_bytes,
           (unsigned long long)vr->obsolete_removed);
  phase_done(db, "vlog_validation", &mark, &rt->vlog, detail);
  NK_ERR(replay_wal(db));
  oracle_ready = true;
  NK_ERR(nk_vlog_start(db->vlog));
  const nk_wal_replay_stats *wr = &db->stats.replay;
  snprintf(detail, sizeof detail,
           "segments=%llu records=%llu bytes=%llu torn_bytes=%llu dangling=%llu",
           (unsigned long long)db->stats.wal_segments_replayed, (unsigned long long)wr->records,
           (unsigned long long)wr->bytes, (unsigned long long)wr->torn_bytes,
           (unsigned long long)db->stats.wal_records_dangling);
  phase_done(db, "wal_replay", &mark, &rt->wal, detail);
  NK_ERR(nk_wal_open(db->env, path, &db->vset->next_file, opts->wal_segment_bytes,
                     db->newest_wal, &db->wal));
  NK_ERR(finish_recovery(db, &mark));
  snprintf(detail, sizeof detail, "orphans_removed=%llu",
           (unsigned long long)db->vset->orphans_deleted);
  phase_done(db, "orphan_removal", &mark, &rt->cleanup, detail);
  rt->total = mark - start;
  if (tracing()) {
    fprintf(stderr, "RECOVERY_TRACE dir=%s phase=total micros=%llu outcome=recovered\n", path,
            (unsigned long long)rt->total);
  }
  NK_ERR(nk_db_refresh_view(db));
  NK_ERR(nk_db_start_background(db));
  *out = db;
  return NOKV_OK;
err:
  if (tracing()) {
    fprintf(stderr, "RECOVERY_TRACE dir=%s phase=total outcome=refused error=\"%s\"\n", path,
            nokv_errmsg());
  }
  nk_wal_close(db->wal, false);  /* a refused open promises nothing */
  if (oracle_ready) nk_oracle_destroy(&db->oracle);
  db_free(db);
  return ret;
}

int nokv_close(nokv_db *db) {
  nk_err_clear();
  if (db == NULL) return NOKV_OK;
  int live = atomic_load(&db->live_handles);
  if (live > 0) {
    return nk_err(NOKV_EBUSY, "%d iterators or snapshots are still open", live);
  }
  pthread_mutex_lock(&db->mu);
  db->closing = true;
  pthread_cond_broadcast(&db->room_cv);  /* a writer stalled for room gives up */
  while (db->queue_head != NULL) {
    pthread_cond_wait(&db->idle, &db->mu);
  }
  bool commit_started = db->commit_started;
  db->commit_stop = true;
  pthread_cond_signal(&db->commit_cv);
  pthread_mutex_unlock(&db->mu);
  if (commit_started) pthread_join(db->commit_thread, NULL);
  nk_db_stop_background(db);
  /* Values before the log records that point at them. */
  int ret = nk_vlog_write(db->vlog, true);
  int wal_ret = nk_wal_close(db->wal, ret == NOKV_OK);
  if (ret == NOKV_OK) ret = wal_ret;
  nk_oracle_destroy(&db->oracle);
  db_free(db);
  return ret;
}

void nk_db_set_bg_error(nokv_db *db, int rc, const char *what) {
  if (db->bg_error == NOKV_OK) {
    db->bg_error = rc;
    snprintf(db->bg_errmsg, sizeof db->bg_errmsg,
             "writes stopped after a failed %s (%s); reopen the database to recover", what,
             nokv_errmsg());
  }
  pthread_cond_broadcast(&db->room_cv);
}

int nk_db_bg_error(nokv_db *db) {
  pthread_mutex_lock(&db->mu);
  int ret = db->bg_error;
  if (ret != NOKV_OK) nk_err(ret, "%s", db->bg_errmsg);
  pthread_mutex_unlock(&db->mu);
  return ret;
}

int nk_db_log_and_apply(nokv_db *db, nk_edit *e, const char *what) {
  int ret = nk_db_bg_error(db);
  NK_RET(ret);
  ret = nk_vset_log_and_apply(db->vset, e);
  /* A full disk is not fatal: the manifest took no partial edit (the next one
   * starts a new manifest), and the job retries once space is freed. */
  if (ret != NOKV_OK && ret != NOKV_EFULL) {
    pthread_mutex_lock(&db->mu);
    nk_db_set_bg_error(db, ret, what);
    pthread_mutex_unlock(&db->mu);
  }
  return ret;
}

void nk_db_full_backoff(nokv_db *db, int attempt) {
  nk_count(&db->stats.bg_full_retries, 1);
  uint64_t ms = attempt < 6 ? 50u << attempt : 2000;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)(ms / 1000);
  until.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  if (!db->stop_bg) pthread_cond_timedwait(&db->bg_cv, &db->mu, &until);
}

int nk_db_start_background(nokv_db *db) {
  if (pthread_create(&db->flush_thread, NULL, nk_db_flush_main, db) != 0) {
    return nk_err(NOKV_ENOMEM, "cannot start the flush thread");
  }
  db->threads_started = true;
  for (int i = 0; i < db->opts.max_background_compactions; i++) {
    if (pthread_create(&db->compact_threads[i], NULL, nk_db_compact_main, db) != 0) {
      nk_db_stop_background(db);
      return nk_err(NOKV_ENOMEM, "cannot start a compaction thread");
    }
    db->ncompact_threads++;
  }
  /* Dead bytes may have been reported before the last close. */
  db->gc_wanted = !db->opts.disable_auto_gc;
  if (pthread_create(&db->gc_thread, NULL, nk_db_gc_main, db) != 0) {
    nk_db_stop_background(db);
    return nk_err(NOKV_ENOMEM, "cannot start the value log GC thread");
  }
  db->gc_thread_started = true;
  return NOKV_OK;
}

void nk_db_stop_background(nokv_db *db) {
  if (!db->threads_started) return;
  pthread_mutex_lock(&db->mu);
  __atomic_store_n(&db->stop_bg, true, __ATOMIC_RELAXED);
  pthread_cond_broadcast(&db->bg_cv);
  pthread_cond_broadcast(&db->room_cv);
  pthread_cond_broadcast(&db->gc_cv);
  pthread_mutex_unlock(&db->mu);
  if (db->gc_thread_started) pthread_join(db->gc_thread, NULL);
  db->gc_thread_started = false;
  pthread_join(db->flush_thread, NULL);
  for (int i = 0; i < db->ncompact_threads; i++) pthread_join(db->compact_threads[i], NULL);
  db->ncompact_threads = 0;
  db->threads_started = false;
}

static uint64_t count_wal_segments(nokv_db *db) {
  uint64_t *numbers = NULL;
  size_t n = 0;
  if (nk_wal_list(db->env, db->path, &numbers, &n) != NOKV_OK) return 0;
  free(numbers);
  return n;
}

static void vlog_stats(nokv_db *db, nokv_statistics *s) {
  nk_vlog_segment_info *segs = NULL;
  size_t n = 0;
  nk_vset_vlog st;
  if (nk_vlog_segments(db->vlog, &segs, &n) != NOKV_OK) return;
  if (nk_vset_vlog_state(db->vset, &st) == NOKV_OK) {
    for (size_t i = 0; i < n; i++) {
      s->vlog_bytes += segs[i].size;
      for (size_t j = 0; j < st.ndiscard; j++) {
        if (st.discard[j].fid == segs[i].fid) s->vlog_garbage_bytes += st.discard[j].bytes;
      }
    }
    nk_vset_vlog_release(&st);
  }
  free(segs);
  s->vlog_segments = n;
  if (s->vlog_bytes > 0) s->vlog_garbage_permille = s->vlog_garbage_bytes * 1000 / s->vlog_bytes;
  s->vlog_bytes_written = nk_vlog_bytes_written(db->vlog);
  s->vlog_reads = nk_counter_get(&db->stats.vlog_reads);
  s->vlog_prefetches = nk_vlog_prefetches(db->vlog);
  s->gc_runs = nk_counter_get(&db->stats.gc_runs);
  s->gc_segments_collected = nk_counter_get(&db->stats.gc_collected);
  s->gc_bytes_rewritten = nk_counter_get(&db->stats.gc_rewritten);
  s->gc_bytes_reclaimed = nk_counter_get(&db->stats.gc_reclaimed);
  s->gc_idle_checks = nk_counter_get(&db->stats.gc_idle_checks);
  s->gc_segments_measured = nk_counter_get(&db->stats.gc_measured);
}

nk_hot *nk_db_hot(nokv_db *db) { return db->hot; }

int nokv_hot_keys(nokv_db *db, nokv_hot_kind kind, size_t n, nokv_hot_key *out, size_t *count) {
  nk_err_clear();
  *count = 0;
  if (kind != NOKV_HOT_READS && kind != NOKV_HOT_WRITES) {
    return nk_err(NOKV_EINVAL, "unknown hot-key kind %d", (int)kind);
  }
  if (db->hot == NULL || n == 0) return NOKV_OK;
  return nk_hot_top(db->hot, kind, n, nk_hot_count_at(db->opts.hot_key_min_rate), out, count);
}

int nokv_stats(nokv_db *db, nokv_statistics *s) {
  nk_err_clear();
  memset(s, 0, sizeof *s);
  s->last_commit_ts = nk_oracle_read_ts(&db->oracle);
  nk_oracle_snapshots(&db->oracle, &s->oldest_snapshot_ts, &s->live_snapshots);
  s->history_horizon = atomic_load(&db->history_horizon);
  s->txns_active = (uint64_t)atomic_load(&db->active_txns);
  s->txn_commits = nk_counter_get(&db->stats.txn_commits);
  s->txn_conflicts = nk_counter_get(&db->stats.txn_conflicts);
  s->cond_writes = nk_counter_get(&db->stats.cond_writes);
  s->cond_failures = nk_counter_get(&db->stats.cond_failures);
  s->cond_rejudged = nk_counter_get(&db->stats.cond_rejudged);
  s->ttl_expired = nk_counter_get(&db->stats.ttl_expired);
  s->range_deletes = nk_counter_get(&db->stats.range_deletes);
  s->range_dropped = nk_counter_get(&db->stats.range_dropped);
  s->txn_tracked_keys = nk_oracle_tracked_keys(&db->oracle, &s->txn_tracking_overflows);
  if (db->hot != NULL) {
    nk_hot_stats hs;
    nk_hot_get_stats(db->hot, &hs);
    s->hot_reads_sampled = hs.samples[NOKV_HOT_READS];
    s->hot_writes_sampled = hs.samples[NOKV_HOT_WRITES];
    s->hot_read_candidates = hs.candidates[NOKV_HOT_READS];
    s->hot_write_candidates = hs.candidates[NOKV_HOT_WRITES];
    s->hot_tracker_bytes = hs.bytes;
  }
  nk_view *view = nk_db_acquire_view(db);
  s->memtable_entries = nk_memtable_entries(view->mem);
  s->memtable_bytes = nk_memtable_usage(view->mem);
  s->memtable_limit_bytes = db->opts.memtable_max_bytes;
  s->immutable_memtables = view->nimm;
  const nk_version *v = view->version;
  s->range_tombstones = v->rdels != NULL ? v->rdels->n : 0;
  for (size_t i = 0; i <= view->nimm; i++) {
    const nk_memtable *m = i == 0 ? view->mem : view->imm[i - 1];
    for (const nk_mem_rdel *r = nk_memtable_rdels(m); r != NULL; r = r->next) {
      s->range_tombstones++;
    }
  }
  for (int l = 0; l < NK_NUM_LEVELS && l < NOKV_NUM_LEVELS; l++) {
    s->level_files[l] = v->nfiles[l];
    s->level_bytes[l] = v->level_bytes[l];
    s->tables += v->nfiles[l];
    s->table_bytes += v->level_bytes[l];
  }
  s->pending_compaction_bytes = nk_db_pending_compaction_bytes(db, v);
  nk_view_unref(view);
  s->user_bytes_written = nk_counter_get(&db->stats.user_bytes);
  s->write_stalls = nk_counter_get(&db->stats.stalls);
  s->write_stall_micros = nk_counter_get(&db->stats.stall_micros);
  s->write_slowdowns = nk_counter_get(&db->stats.slowdowns);
  s->hot_writes_throttled = nk_counter_get(&db->stats.hot_writes_throttled);
  if (db->row_cache != NULL) {
    nk_row_cache_stats rs;
    nk_row_cache_get_stats(db->row_cache, &rs);
    s->hot_cache_hits = rs.hits;
    s->hot_cache_fills = rs.fills;
    s->hot_cache_bytes = rs.usage;
  }
  s->flushes = nk_counter_get(&db->stats.flushes);
  s->flush_bytes_written = nk_counter_get(&db->stats.flush_bytes);
  s->compactions = nk_counter_get(&db->stats.compactions);
  s->trivial_moves = nk_counter_get(&db->stats.trivial_moves);
  s->subcompactions = nk_counter_get(&db->stats.subcompactions);
  s->compaction_bytes_read = nk_counter_get(&db->stats.compact_read);
  s->compaction_bytes_written = nk_counter_get(&db->stats.compact_written);
  s->tables_deleted = nk_stat_get(&db->vset->tables_deleted);
  s->files_pending_delete = nk_reaper_pending(db->reaper);
  s->manifest_rewrites = nk_stat_get(&db->vset->manifest_rewrites);
  s->get_table_probes = nk_counter_get(&db->stats.table_probes);
  if (db->block_cache != NULL) {
    nk_cache_stats cs;
    nk_cache_get_stats(db->block_cache, &cs);
    s->block_cache_hits = cs.hits;
    s->block_cache_misses = cs.misses;
    s->block_cache_bytes = cs.usage;
  }
  s->block_reads = nk_stat_get(&db->sst_stats.block_reads);
  s->bloom_checks = nk_stat_get(&db->sst_stats.bloom_checks);
  s->bloom_negatives = nk_stat_get(&db->sst_stats.bloom_negatives);
  s->checksum_errors = nk_stat_get(&db->sst_stats.checksum_errors);
  s->puts = nk_counter_get(&db->stats.puts);
  s->deletes = nk_counter_get(&db->stats.deletes);
  s->batches = nk_counter_get(&db->stats.batches);
  s->write_groups = nk_counter_get(&db->stats.write_groups);
  s->wal_syncs = nk_counter_get(&db->stats.wal_syncs);
  s->writes_refused_full = nk_counter_get(&db->stats.writes_refused_full);
  s->bg_full_retries = nk_counter_get(&db->stats.bg_full_retries);
  s->wal_bytes_written = nk_wal_bytes_written(db->wal);
  s->gets = nk_counter_get(&db->stats.gets);
  s->get_hits = nk_counter_get(&db->stats.get_hits);
  s->iterators_created = nk_counter_get(&db->stats.iterators);
  s->recovered_records = db->stats.replay.records;
  s->recovered_bytes = db->stats.replay.bytes;
  s->torn_tail_truncations = db->stats.replay.torn_tails;
  s->torn_tail_bytes = db->stats.replay.torn_bytes;
  s->orphan_tables_removed = db->vset->orphans_deleted;
  s->wal_segments = count_wal_segments(db);
  s->wal_segment_bytes = db->stats.replay.bytes + s->wal_bytes_written;
  s->wal_records_dangling = db->stats.wal_records_dangling;
  s->vlog_validated_bytes = db->stats.vlog_recovery.validated_bytes;
  s->vlog_torn_bytes = db->stats.vlog_recovery.torn_bytes;
  s->wal_segments_replayed = db->stats.wal_segments_replayed;
  s->tables_checked = db->vset->tables_checked;
  s->vlog_segments_removed = db->stats.vlog_recovery.obsolete_removed;
  s->recovery_micros = db->stats.recovery.total;
  s->recovery_manifest_micros = db->stats.recovery.manifest;
  s->recovery_table_check_micros = db->stats.recovery.tables;
  s->recovery_vlog_micros = db->stats.recovery.vlog;
  s->recovery_wal_micros = db->stats.recovery.wal;
  s->recovery_flush_micros = db->stats.recovery.flush;
  s->recovery_cleanup_micros = db->stats.recovery.cleanup;
  vlog_stats(db, s);
  s->disk_bytes_written = s->wal_bytes_written + s->vlog_bytes_written +
                          s->flush_bytes_written + s->compaction_bytes_written;
  return NOKV_OK;
}
