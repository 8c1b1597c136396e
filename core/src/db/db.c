/*
 * db.c — opening (with recovery from the WAL), closing, options and stats.
 *
 * Data directory layout:
 *   LOCK            advisory lock: one process per database
 *   NNNNNNNN.wal    WAL segments, replayed in number order on open
 *
 * Opening replays every segment into a fresh memtable (repairing a torn tail of
 * the newest one), restores the oracle from the newest commit timestamp found,
 * and starts a new segment for this run's writes.
 */
#include <stdlib.h>
#include <string.h>

#include "db/batch_internal.h"
#include "db/db_impl.h"
#include "util/error.h"
#include "wal/wal_format.h"

void nokv_options_init(nokv_options *o) {
  memset(o, 0, sizeof *o);
  o->create_if_missing = true;
  o->max_key_size = NOKV_MAX_KEY_SIZE_LIMIT;
  o->max_value_size = 64u << 20;
  o->memtable_max_bytes = 256u << 20;
  o->wal_segment_bytes = 64u << 20;
  o->max_group_commit_bytes = 1u << 20;
}

void nokv_write_options_init(nokv_write_options *wo) { memset(wo, 0, sizeof *wo); }
void nokv_read_options_init(nokv_read_options *ro) { memset(ro, 0, sizeof *ro); }

static int check_options(const nokv_options *o) {
  if (o->max_key_size == 0 || o->max_key_size > NOKV_MAX_KEY_SIZE_LIMIT) {
    return nk_err(NOKV_EINVAL, "max_key_size must be in [1, %u], not %zu",
                  NOKV_MAX_KEY_SIZE_LIMIT, o->max_key_size);
  }
  if (o->max_value_size == 0 || o->max_value_size > NK_WAL_MAX_RECORD / 2) {
    return nk_err(NOKV_EINVAL, "max_value_size must be in [1, %u], not %zu",
                  NK_WAL_MAX_RECORD / 2, o->max_value_size);
  }
  if (o->memtable_max_bytes < (1u << 20)) {
    return nk_err(NOKV_EINVAL, "memtable_max_bytes must be at least 1 MiB, not %zu",
                  o->memtable_max_bytes);
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
  uint64_t last_ts;
} replay_ctx;

static int replay_record(void *arg, uint8_t type, const char *payload, size_t len) {
  replay_ctx *c = arg;
  nokv_db *db = c->db;
  (void)type;  /* the reader accepts only batches */
  nk_batch_reader r;
  uint64_t ts;
  uint32_t count;
  NK_RET(nk_batch_reader_init(&r, payload, len, &ts, &count));
  if (ts <= c->last_ts || ts > NK_MAX_TS) {
    return nk_err(NOKV_ECORRUPT, "WAL %s: commit timestamp %llu after %llu is out of order",
                  c->segment, (unsigned long long)ts, (unsigned long long)c->last_ts);
  }
  if (nk_memtable_usage(db->mem) > db->opts.memtable_max_bytes) {
    return nk_err(NOKV_EFULL,
                  "the WAL holds more than memtable_max_bytes (%zu); reopen with a larger limit",
                  db->opts.memtable_max_bytes);
  }
  int rc = nk_db_apply_batch(db, payload, len, ts);
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

/* Replays every WAL segment; *next_number is the number for this run's segment. */
static int recover(nokv_db *db, uint64_t *next_number) {
  uint64_t *numbers = NULL;
  size_t n = 0;
  NK_RET(nk_wal_list(db->env, db->path, &numbers, &n));
  if (n > 0 && db->opts.error_if_exists) {
    free(numbers);
    return nk_err(NOKV_EINVAL, "database %s already exists (error_if_exists)", db->path);
  }
  replay_ctx c = {.db = db, .last_ts = 0};
  int ret = NOKV_OK;
  for (size_t i = 0; i < n && ret == NOKV_OK; i++) {
    char name[32];
    nk_wal_segment_name(numbers[i], name);
    char *path = nk_path_join(db->path, name);
    if (path == NULL) {
      ret = nk_err(NOKV_ENOMEM, "out of memory");
      break;
    }
    c.segment = path;
    ret = nk_wal_replay_segment(db->env, path, i + 1 == n, replay_record, &c, &db->stats.replay);
    free(path);
  }
  *next_number = n > 0 ? numbers[n - 1] + 1 : 1;
  db->stats.wal_segments_replayed = n;
  free(numbers);
  NK_RET(ret);
  nk_oracle_init(&db->oracle, c.last_ts);
  return NOKV_OK;
}

static void db_free(nokv_db *db) {
  nk_memtable_free(db->mem);
  nk_file_close(db->lock);
  free(db->group_buf);
  free(db->path);
  pthread_mutex_destroy(&db->mu);
  pthread_cond_destroy(&db->idle);
  free(db);
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
  pthread_cond_init(&db->idle, NULL);
  db->opts = *opts;
  db->env = opts->env != NULL ? opts->env : nk_env_posix();
  atomic_init(&db->live_handles, 0);

  int ret;
  bool oracle_ready = false;
  if (opts->create_if_missing) {
    NK_ERR(db->env->mkdir(db->env, path));
  }
  char *lock_path = nk_path_join(path, "LOCK");
  if (lock_path == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  }
  ret = db->env->lock(db->env, lock_path, &db->lock);
  free(lock_path);
  NK_ERR(ret);
  if ((db->mem = nk_memtable_new()) == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory creating the memtable"));
  }
  uint64_t next_number = 1;
  NK_ERR(recover(db, &next_number));
  oracle_ready = true;
  NK_ERR(nk_wal_open(db->env, path, next_number, opts->wal_segment_bytes, &db->wal));
  *out = db;
  return NOKV_OK;
err:
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
  while (db->queue_head != NULL) {
    pthread_cond_wait(&db->idle, &db->mu);
  }
  pthread_mutex_unlock(&db->mu);
  int ret = nk_wal_close(db->wal);
  nk_oracle_destroy(&db->oracle);
  db_free(db);
  return ret;
}

int nokv_stats(nokv_db *db, nokv_statistics *s) {
  nk_err_clear();
  memset(s, 0, sizeof *s);
  s->last_commit_ts = nk_oracle_read_ts(&db->oracle);
  nk_oracle_snapshots(&db->oracle, &s->oldest_snapshot_ts, &s->live_snapshots);
  s->memtable_entries = nk_memtable_entries(db->mem);
  s->memtable_bytes = nk_memtable_usage(db->mem);
  s->memtable_limit_bytes = db->opts.memtable_max_bytes;
  s->puts = nk_counter_get(&db->stats.puts);
  s->deletes = nk_counter_get(&db->stats.deletes);
  s->batches = nk_counter_get(&db->stats.batches);
  s->write_groups = nk_counter_get(&db->stats.write_groups);
  s->wal_syncs = nk_counter_get(&db->stats.wal_syncs);
  s->wal_bytes_written = nk_counter_get(&db->stats.wal_bytes);
  s->writes_rejected_full = nk_counter_get(&db->stats.rejected_full);
  s->gets = nk_counter_get(&db->stats.gets);
  s->get_hits = nk_counter_get(&db->stats.get_hits);
  s->iterators_created = nk_counter_get(&db->stats.iterators);
  s->recovered_records = db->stats.replay.records;
  s->recovered_bytes = db->stats.replay.bytes;
  s->torn_tail_truncations = db->stats.replay.torn_tails;
  s->torn_tail_bytes = db->stats.replay.torn_bytes;
  /* Segments: those replayed at open plus those this run created. */
  s->wal_segments = db->stats.wal_segments_replayed + nk_wal_segments_created(db->wal);
  s->wal_segment_bytes = db->stats.replay.bytes + s->wal_bytes_written;
  return NOKV_OK;
}
