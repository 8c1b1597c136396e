/*
 * write.c — the write path: a queue of writers with group commit (LevelDB's
 * design). Each caller enqueues its batch and waits; the writer at the front
 * becomes the leader, takes a run of queued batches, stamps each with the next
 * commit timestamp, writes them to the WAL in one append (one fsync if any of
 * them asked for sync), inserts them into the memtable and only then publishes
 * the last timestamp to readers and wakes the followers.
 *
 * The leader does the I/O without holding mu, so new writers can queue up behind
 * it and form the next group while the disk works.
 *
 * nokv_write_async queues a writer that no thread waits for: when one reaches
 * the front, the commit thread leads its group, and every such writer's
 * completion runs once its group is done, outside mu, on whichever thread led
 * the group. A server can then keep any number of writes in flight without a
 * thread blocked on each, and they all join one group.
 *
 * Before writing, the leader makes room (make_room): when the memtable is full it
 * seals it (switching to a new WAL segment) and queues it for the flush thread.
 * Writes are never refused for lack of room; they slow down (1 ms, once) when L0
 * or the compaction debt grows, and wait when too many memtables are sealed or L0
 * reaches its stop trigger, until a flush or compaction makes room.
 */
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/batch_internal.h"
#include "db/db_impl.h"
#include "hot/hot.h"
#include "hot/row_cache.h"
#include "util/clock.h"
#include "util/checksum.h"
#include "util/error.h"
#include "wal/wal_format.h"

typedef struct nk_writer {
  const nokv_batch *batch;  /* NULL: a flush request (seal the memtable) */
  uint64_t gc_read_ts;      /* value-log GC rewrite checked at this timestamp (gc.c) */
  nokv_batch *filtered;     /* its live part, made by the leader */
  const nk_txn_commit *txn; /* a transaction's commit: checked for conflicts first */
  uint64_t at_ts;           /* nokv_write_at: its commit timestamp (leads alone); 0: next */
  size_t mem_cost;          /* memtable bytes it takes (check_limits) */
  bool conflicted;          /* a transaction the leader refused: not written */
  const char *refusal;      /* why, when conflicted */
  char why[256];            /* a follower's copy of the leader's error message */
  bool sync;
  bool barrier;             /* no batch: mark the logs for nk_db_sync_logs */
  nk_wal_pos wal_mark;      /* a barrier's: what it syncs, after leaving the queue */
  uint32_t vlog_fid;
  bool done;
  int rc;
  uint64_t ts;
  size_t framed_len;        /* of its WAL record's payload */
  pthread_cond_t cv;        /* a waiting writer's; async ones have none */
  struct nk_writer *next;
  /* nokv_write_async: no thread waits; done runs once the group is done. */
  nokv_write_done done_fn;
  void *done_arg;
  struct nk_writer *done_next;  /* the completions one leader runs */
} nk_writer;

/* Whether op's value goes to the value log (at least threshold bytes, an
 * expiry in front not counted); *meta: the bytes of that expiry. */
static bool moves_to_vlog(const nk_batch_op *op, size_t threshold, size_t *meta) {
  *meta = op->kind == NK_KIND_VALUE_TTL ? NK_TTL_PREFIX : 0;
  return (op->kind == NK_KIND_VALUE || op->kind == NK_KIND_VALUE_TTL) && op->vlen >= *meta &&
         op->vlen - *meta >= threshold;
}

/* Memtable bytes applying b takes: a value at or past value_threshold goes to
 * the value log, and the memtable keeps only a pointer to it. */
static size_t memtable_cost(const nokv_db *db, const nokv_batch *b) {
  size_t threshold = db->opts.value_threshold;
  if (threshold == 0 || b->max_vlen < threshold) return b->mem_cost;
  nk_batch_reader r;
  nk_batch_op op;
  uint64_t ts;
  uint32_t count;
  if (nk_batch_reader_init(&r, b->rep, b->len, &ts, &count) != NOKV_OK) return b->mem_cost;
  size_t cost = 0;
  while (nk_batch_reader_next(&r, &op) == 1) {
    if (op.kind == NK_KIND_VALUE_REF) nk_batch_op_deref(&op);
    size_t meta;
    bool moved = moves_to_vlog(&op, threshold, &meta);
    cost += nk_memtable_cost(op.klen, moved ? meta + NK_VPTR_SIZE : op.vlen);
  }
  return cost;
}

/* The one place a batch's size is judged: what passes here fits an empty
 * memtable (make_room then always takes it), so no write can wait for room
 * that can never be made. *cost receives its memtable bytes. */
static int check_limits(const nokv_db *db, const nokv_batch *b, size_t *cost) {
  *cost = 0;
  if (b->count == 0) {
    return NOKV_OK;
  }
  if (b->min_klen == 0) {
    return nk_err(NOKV_EINVAL, "empty key");
  }
  if (b->max_klen > db->opts.max_key_size) {
    return nk_err(NOKV_EINVAL, "key of %zu bytes exceeds max_key_size (%zu bytes)",
                  b->max_klen, db->opts.max_key_size);
  }
  if (b->max_vlen > db->opts.max_value_size) {
    return nk_err(NOKV_EINVAL, "value of %zu bytes exceeds max_value_size (%zu bytes)",
                  b->max_vlen, db->opts.max_value_size);
  }
  if (b->len > NK_WAL_MAX_RECORD) {
    return nk_err(NOKV_EINVAL, "batch of %zu bytes exceeds the %u-byte WAL record limit",
                  b->len, NK_WAL_MAX_RECORD);
  }
  *cost = memtable_cost(db, b);
  if (*cost > db->opts.memtable_max_bytes) {
    return nk_err(NOKV_EINVAL,
                  "batch needs %zu memtable bytes, more than memtable_max_bytes (%zu); values "
                  "of at least value_threshold (%zu) bytes would take only a pointer's",
                  *cost, db->opts.memtable_max_bytes, db->opts.value_threshold);
  }
  return NOKV_OK;
}

/* Seals mem into imm and starts a new memtable on a new WAL segment.
 * REQUIRES: mu held, leader. */
static int seal_memtable(nokv_db *db) {
  nk_memtable *fresh = nk_memtable_new(db->opts.memtable_max_bytes, db->arena_pool);
  if (fresh == NULL) return nk_err(NOKV_ENOMEM, "out of memory creating a memtable");
  int rc = nk_wal_switch(db->wal);
  if (rc != NOKV_OK) {
    nk_memtable_free(fresh);
    nk_db_set_bg_error(db, rc, "log switch");
    return rc;
  }
  db->imm[db->nimm] = db->mem;
  db->imm_log[db->nimm] = nk_wal_number(db->wal);
  nk_vlog_head(db->vlog, &db->imm_vhead[db->nimm].fid, &db->imm_vhead[db->nimm].off);
  db->nimm++;
  db->mem = fresh;
  db->mem_vlog_bytes = 0;
  rc = nk_db_refresh_view(db);
  if (rc != NOKV_OK) {
    nk_db_set_bg_error(db, rc, "memtable switch");
    return rc;
  }
  pthread_cond_broadcast(&db->bg_cv);
  return NOKV_OK;
}

/* Waits for a flush or compaction to make room. REQUIRES: mu held. */
static void stall(nokv_db *db) {
  uint64_t start = nk_now_micros();
  nk_count(&db->stats.stalls, 1);
  pthread_cond_wait(&db->room_cv, &db->mu);
  nk_count(&db->stats.stall_micros, nk_now_micros() - start);
}

/* Makes room in the memtable for cost bytes (or, if force, seals a non-empty
 * memtable). REQUIRES: mu held, leader. */
static int make_room(nokv_db *db, size_t cost, bool force) {
  bool slowed = false;
  const nokv_options *o = &db->opts;
  for (;;) {
    if (db->bg_error != NOKV_OK) return nk_err(db->bg_error, "%s", db->bg_errmsg);
    /* Closing never waits on a stalled writer: it fails instead. */
    if (db->stop_bg || db->closing) return nk_err(NOKV_ECLOSED, "database is closing");
    int l0 = db->l0_files;
    uint64_t debt = db->compaction_debt;
    bool throttle = !o->disable_auto_compaction;
    if (throttle && !slowed &&
        (l0 >= o->l0_slowdown_trigger || debt >= o->soft_pending_compaction_bytes)) {
      /* LevelDB's trick: spread the delay over many writes instead of stopping
       * one for seconds once the hard limit is hit. */
      slowed = true;
      nk_count(&db->stats.slowdowns, 1);
      pthread_mutex_unlock(&db->mu);
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, NULL);
      pthread_mutex_lock(&db->mu);
      continue;
    }
    /* Values sent to the value log count too: they bound how much of it a
     * reopen must validate. */
    size_t usage = nk_memtable_usage(db->mem) + db->mem_vlog_bytes;
    /* An empty memtable takes any batch check_limits passed, growing past its
     * target for one oversized batch (as LevelDB's does): sealing an empty one
     * would make no room, forever. */
    bool empty = nk_memtable_entries(db->mem) == 0;
    if (!force && (usage + cost <= o->memtable_max_bytes || empty)) return NOKV_OK;
    if (force && empty) return NOKV_OK;
    if (db->nimm >= (size_t)o->max_immutable_memtables ||
        (throttle && (l0 >= o->l0_stop_trigger || debt >= o->hard_pending_compaction_bytes))) {
      stall(db);
      continue;
    }
    NK_RET(seal_memtable(db));
    force = false;
  }
}

/* Grows the group buffer to n bytes. REQUIRES: leader. */
static int reserve_group_buf(nokv_db *db, size_t n) {
  if (n <= db->group_cap) {
    return NOKV_OK;
  }
  size_t cap = db->group_cap ? db->group_cap : 4096;
  while (cap < n) {
    cap *= 2;
  }
  char *p = realloc(db->group_buf, cap);
  if (p == NULL) {
    return nk_err(NOKV_ENOMEM, "out of memory for a %zu-byte write group", n);
  }
  db->group_buf = p;
  db->group_cap = cap;
  return NOKV_OK;
}

/* Copies batch b into dst, moving each value of at least value_threshold bytes
 * to the value log (as a version at ts, or at the op's own ts) and leaving a
 * pointer op in its place. Returns the copy's length; *vbytes grows by the
 * bytes appended to the value log. */
static int separate_values(nokv_db *db, const nokv_batch *b, uint64_t ts, char *dst,
                           size_t *len, uint64_t *vbytes) {
  nk_batch_reader r;
  nk_batch_op op;
  uint64_t unused_ts;
  uint32_t count;
  int rc;
  NK_RET(nk_batch_reader_init(&r, b->rep, b->len, &unused_ts, &count));
  memcpy(dst, b->rep, NK_BATCH_HEADER);
  char *p = dst + NK_BATCH_HEADER;
  while ((rc = nk_batch_reader_next(&r, &op)) == 1) {
    char ptr[NK_TTL_PREFIX + NK_VPTR_SIZE];
    if (op.kind == NK_KIND_VALUE_REF) nk_batch_op_deref(&op);
    /* An expiring value goes to the value log without its expiry, which stays
     * in front of the pointer (internal_key.h). */
    size_t meta;
    if (moves_to_vlog(&op, db->opts.value_threshold, &meta)) {
      nk_vptr vp;
      NK_RET(nk_vlog_add(db->vlog, op.key, op.klen, op.ts ? op.ts : ts, op.val + meta,
                         op.vlen - meta, &vp));
      memcpy(ptr, op.val, meta);
      nk_vptr_encode(&vp, ptr + meta);
      *vbytes += vp.len;
      op.kind = meta ? NK_KIND_VPTR_TTL : NK_KIND_VPTR;
      op.val = ptr;
      op.vlen = meta + NK_VPTR_SIZE;
    }
    p = nk_batch_encode_op(p, &op);
  }
  NK_RET(rc);
  *len = (size_t)(p - dst);
  return NOKV_OK;
}

/* Frames every batch of the group [first, last] into group_buf, stamping
 * commit timestamps from first_ts and moving large values to the value log
 * (buffered there: the caller writes them). Returns the framed length in *len
 * and the value-log bytes in *vbytes. */
static int frame_group(nokv_db *db, nk_writer *first, nk_writer *last, uint64_t first_ts,
                       bool sync, size_t *len, uint64_t *vbytes) {
  size_t total = 0, threshold = db->opts.value_threshold;
  for (nk_writer *w = first;; w = w->next) {
    /* A pointer op is at most 24 bytes longer than the op it replaces. */
    total += NK_WAL_HEADER + w->batch->len + (threshold > 0 ? 24 * (size_t)w->batch->count : 0);
    if (w == last) break;
  }
  NK_RET(reserve_group_buf(db, total));
  char *p = db->group_buf;
  uint64_t ts = first_ts;
  *vbytes = 0;
  for (nk_writer *w = first;; w = w->next) {
    if (w->conflicted) {  /* refused: not written, its timestamp unused */
      w->framed_len = 0;
      w->ts = ts++;
      if (w == last) break;
      continue;
    }
    char *payload = p + NK_WAL_HEADER;
    size_t n = w->batch->len;
    if (threshold > 0 && w->batch->max_vlen >= threshold) {
      NK_RET(separate_values(db, w->batch, ts, payload, &n, vbytes));
    } else {
      memcpy(payload, w->batch->rep, n);
    }
    nk_put_u64(payload, ts);
    /* The type records whether the group syncs before acknowledging: recovery
     * must then treat damage before the record as corruption, not a torn tail. */
    nk_wal_encode_header(p, sync ? NK_WAL_BATCH_SYNCED : NK_WAL_BATCH, payload, n);
    w->framed_len = n;
    w->ts = ts++;
    p = payload + n;
    if (w == last) break;
  }
  *len = (size_t)(p - db->group_buf);
  return NOKV_OK;
}

int nk_db_apply_batch(nk_memtable *mem, const char *rep, size_t len, uint64_t commit_ts) {
  nk_batch_reader r;
  nk_batch_op op;
  uint64_t unused_ts;
  uint32_t count;
  int rc;
  NK_RET(nk_batch_reader_init(&r, rep, len, &unused_ts, &count));
  while ((rc = nk_batch_reader_next(&r, &op)) == 1) {
    uint64_t ts = op.ts != 0 ? op.ts : commit_ts;
    if (op.kind == NK_KIND_VALUE_REF) {
      return nk_err(NOKV_ECORRUPT, "batch holds an in-memory value reference");
    }
    if (ts > commit_ts) {
      return nk_err(NOKV_ECORRUPT, "batch operation at timestamp %llu is newer than its batch",
                    (unsigned long long)ts);
    }
    if (nk_memtable_add(mem, ts, op.kind, op.key, op.klen, op.val, op.vlen) != NOKV_OK) {
      return nk_err(NOKV_ENOMEM, "out of memory inserting into the memtable");
    }
  }
  return rc;
}

/* Drops from a GC rewrite the entries whose key gained a newer version after
 * the GC checked it at gc_read_ts. Every such version is newer than
 * gc_read_ts, so it is in a memtable unless one holding writes past
 * gc_read_ts was flushed meanwhile: then the check is refused (NOKV_ECONFLICT)
 * and GC repeats it. REQUIRES: mu held, leader. */
static int filter_gc_batch(nokv_db *db, nk_writer *w) {
  if (db->flushed_ts > w->gc_read_ts) {
    return nk_err(NOKV_ECONFLICT, "a flush raced a value log GC check");
  }
  NK_RET(nokv_batch_new(&w->filtered));
  nk_batch_reader r;
  nk_batch_op op;
  uint64_t unused_ts;
  uint32_t count;
  int rc;
  NK_RET(nk_batch_reader_init(&r, w->batch->rep, w->batch->len, &unused_ts, &count));
  while ((rc = nk_batch_reader_next(&r, &op)) == 1) {
    uint64_t hash = nk_hash64(op.key, op.klen);
    nk_entry e;
    bool found = nk_memtable_get(db->mem, op.key, op.klen, hash, NK_MAX_TS, &e);
    for (size_t i = db->nimm; !found && i > 0; i--) {
      found = nk_memtable_get(db->imm[i - 1], op.key, op.klen, hash, NK_MAX_TS, &e);
    }
    if (found && e.ts > op.ts) continue;  /* overwritten or deleted since */
    /* Or deleted by a range: tombstones newer than gc_read_ts are here too. */
    if (nk_memtables_rdel_cover(db->mem, db->imm, db->nimm, op.key, op.klen, NK_MAX_TS) > op.ts) {
      continue;
    }
    NK_RET(nk_batch_put_kind(w->filtered, op.kind, op.key, op.klen, op.val, op.vlen, op.ts));
  }
  NK_RET(rc);
  w->batch = w->filtered;
  return NOKV_OK;
}

static const char conflict_message[] =
    "transaction conflict: a key it read was written by a transaction that committed after "
    "it began; retry";
static const char read_all_message[] =
    "transaction conflict: it read more keys than are checked one by one (max_txn_reads), "
    "and a write committed after it began; retry";
static const char too_old_message[] =
    "transaction conflict: more keys were written since it began than conflict tracking "
    "holds (max_txn_conflict_bytes); retry";

static const char *refusal_message(nk_conflict c) {
  switch (c) {
    case NK_CONFLICT_TOO_OLD: return too_old_message;
    case NK_CONFLICT_ANY: return read_all_message;
    default: return conflict_message;
  }
}

/* Records the range deletions of w's batch as committed at ts. REQUIRES: leader. */
static void record_ranges(nokv_db *db, const nk_writer *w, uint64_t ts) {
  nk_batch_reader r;
  nk_batch_op op;
  uint64_t unused_ts;
  uint32_t count;
  if (w->batch->range_deletes == 0 ||
      nk_batch_reader_init(&r, w->batch->rep, w->batch->len, &unused_ts, &count) != NOKV_OK) {
    return;
  }
  while (nk_batch_reader_next(&r, &op) == 1) {
    if (op.kind == NK_KIND_RANGE_DEL) {
      nk_oracle_record_range(&db->oracle, ts, op.key, op.klen, op.val, op.vlen);
    }
  }
}

/* Records the keys the group [first, last] wrote as committed at ts, for
 * transactions' conflict checks. REQUIRES: leader. */
static void record_plain_writes(nokv_db *db, nk_writer *first, nk_writer *last, uint64_t ts) {
  for (nk_writer *w = first;; w = w->next) {
    if (!w->conflicted) record_ranges(db, w, ts);
    if (w == last) break;
  }
  size_t n = 0;
  for (nk_writer *w = first;; w = w->next) {
    if (!w->conflicted) n += w->batch->count;
    if (w == last) break;
  }
  uint64_t *fps = malloc((n ? n : 1) * sizeof *fps);
  size_t k = 0;
  for (nk_writer *w = first; fps != NULL; w = w->next) {
    nk_batch_reader r;
    nk_batch_op op;
    uint64_t unused_ts;
    uint32_t count;
    if (!w->conflicted &&
        nk_batch_reader_init(&r, w->batch->rep, w->batch->len, &unused_ts, &count) == NOKV_OK) {
      while (nk_batch_reader_next(&r, &op) == 1) fps[k++] = nk_hash64(op.key, op.klen);
    }
    if (w == last) break;
  }
  if (fps == NULL) {
    nk_oracle_lose_record(&db->oracle, ts);
    return;
  }
  nk_oracle_record_commit(&db->oracle, ts, fps, k);
  free(fps);
}

/* Copies the error message of w's group into w (a waiting follower or an async
 * writer reads it there). */
static void keep_why(nk_writer *w, const char *why) {
  size_t n = strnlen(why, sizeof w->why - 1);
  memcpy(w->why, why, n);
  w->why[n] = '\0';
}

/* Calls fn for the hash of every key the group writes. */
static void for_group_keys(nk_writer *leader, nk_writer *last, void (*fn)(void *, uint64_t),
                           void *arg) {
  for (nk_writer *w = leader;; w = w->next) {
    nk_batch_reader r;
    nk_batch_op op;
    uint64_t ts;
    uint32_t count;
    if (!w->conflicted && w->batch != NULL &&
        nk_batch_reader_init(&r, w->batch->rep, w->batch->len, &ts, &count) == NOKV_OK) {
      while (nk_batch_reader_next(&r, &op) == 1) fn(arg, nk_hash64(op.key, op.klen));
    }
    if (w == last) break;
  }
}

static void add_guard(void *arg, uint64_t hash) { *(uint64_t *)arg |= nk_row_cache_guard_bit(hash); }
static void drop_cached(void *arg, uint64_t hash) { nk_row_cache_drop(arg, hash); }

/* Tells the hot-read cache that the group's keys are being written: before
 * anything is published, their guards count a write in flight (so no read
 * fills meanwhile) and any cached value of theirs is dropped (row_cache.h).
 * Returns the guards, for cache_writes_done. */
static uint64_t cache_writes_begin(nokv_db *db, nk_writer *leader, nk_writer *last) {
  if (db->row_cache == NULL) return 0;
  uint64_t guards = 0;
  bool ranges = false;
  for (nk_writer *w = leader;; w = w->next) {
    ranges |= !w->conflicted && w->batch != NULL && w->batch->range_deletes > 0;
    if (w == last) break;
  }
  if (ranges) {  /* keys not listed: every shard, and every entry goes */
    guards = ~UINT64_C(0);
    nk_row_cache_begin_write(db->row_cache, guards);
    nk_row_cache_drop_all(db->row_cache);
    return guards;
  }
  for_group_keys(leader, last, add_guard, &guards);
  nk_row_cache_begin_write(db->row_cache, guards);
  if (nk_row_cache_holds_any(db->row_cache)) {
    for_group_keys(leader, last, drop_cached, db->row_cache);
  }
  return guards;
}

/* Runs one group as leader. REQUIRES: mu held, leader == queue_head. Returns with
 * mu held and the group's writers marked done; returns the group's last writer. */
static nk_writer *lead_group(nokv_db *db, nk_writer *leader) {
  int rc = db->closing ? nk_err(NOKV_ECLOSED, "database is closing") : NOKV_OK;
  if (rc == NOKV_OK && leader->barrier) {
    /* As leader, no other writer touches the logs: mark how far they go. The
     * fsyncs happen after this writer has left the queue (nk_db_sync_logs),
     * so the groups behind it do not wait for them. */
    rc = db->bg_error != NOKV_OK ? nk_err(db->bg_error, "%s", db->bg_errmsg) : NOKV_OK;
    if (rc == NOKV_OK) {
      uint64_t off;
      nk_vlog_head(db->vlog, &leader->vlog_fid, &off);
      nk_wal_mark(db->wal, &leader->wal_mark);
    }
    db->queue_head = leader->next;
    if (db->queue_head == NULL) db->queue_tail = NULL;
    leader->rc = rc;
    leader->done = true;
    return leader;
  }
  if (rc == NOKV_OK) {
    rc = make_room(db, leader->mem_cost, leader->batch == NULL);
  }
  if (rc == NOKV_OK && leader->gc_read_ts != 0) rc = filter_gc_batch(db, leader);
  if (rc == NOKV_OK && leader->at_ts != 0 && leader->at_ts < db->oracle.next_ts) {
    rc = nk_err(NOKV_EINVAL, "commit timestamp %llu is not above the last one used (%llu)",
                (unsigned long long)leader->at_ts,
                (unsigned long long)(db->oracle.next_ts - 1));
  }
  if (rc != NOKV_OK || leader->batch == NULL || leader->batch->count == 0) {
    db->queue_head = leader->next;
    if (db->queue_head == NULL) db->queue_tail = NULL;
    leader->rc = rc;
    if (rc != NOKV_OK && leader->done_fn != NULL) keep_why(leader, nokv_errmsg());
    leader->done = true;
    return leader;
  }

  /* Take followers while they fit the group's byte budget and the memtable, and
   * (as LevelDB) don't make a no-sync leader wait for a sync. */
  nk_writer *last = leader;
  size_t bytes = leader->batch->len, n = 1;
  bool sync = leader->sync;
  /* GC rewrites lead alone (their check needs the memtables as of the leader),
   * and so do writes at a given timestamp. */
  bool alone = leader->gc_read_ts != 0 || leader->at_ts != 0;
  for (nk_writer *w = leader->next; w != NULL && w->batch != NULL && !alone &&
                                    w->gc_read_ts == 0 && w->at_ts == 0;
       w = w->next) {
    if ((w->sync && !leader->sync) || bytes + w->batch->len > db->opts.max_group_commit_bytes) {
      break;
    }
    bytes += w->batch->len;
    last = w;
    n++;
  }
  if (leader->at_ts != 0) db->oracle.next_ts = leader->at_ts;  /* checked above */
  uint64_t first_ts = nk_oracle_reserve(&db->oracle, n);
  size_t len = 0;
  uint64_t vbytes = 0;
  /* Transactions are checked in group order, each against everything committed
   * before it, the group's earlier writers included: their keys are recorded
   * first, at their own timestamps. A refused transaction keeps its timestamp
   * unused. */
  bool recorded = atomic_load(&db->active_txns) > 0;
  /* A GC rewrite moves values without changing any key's version: it is no
   * write a transaction can conflict with (it leads alone). */
  bool gc = leader->gc_read_ts != 0;
  size_t refused = 0;
  uint64_t ts = first_ts;
  for (nk_writer *w = leader;; w = w->next, ts++) {
    const nk_txn_commit *t = w->txn;
    nk_conflict c = t == NULL ? NK_NO_CONFLICT
                              : nk_oracle_conflicts(&db->oracle, t->read_ts, t->read_all,
                                                    t->reads, t->nreads, t->read_lo,
                                                    t->read_lo_len, t->read_hi, t->read_hi_len);
    if (c != NK_NO_CONFLICT) {
      w->conflicted = true;
      w->refusal = refusal_message(c);
      refused++;
    } else if (w->txn != NULL) {
      nk_oracle_record_commit(&db->oracle, ts, w->txn->writes, w->txn->nwrites);
      record_ranges(db, w, ts);
    } else if (recorded && !gc) {
      record_plain_writes(db, w, w, ts);
    }
    if (w == last) break;
  }

  pthread_mutex_unlock(&db->mu);
  uint64_t cache_guards = cache_writes_begin(db, leader, last);  /* before publishing */
  rc = frame_group(db, leader, last, first_ts, sync, &len, &vbytes);
  /* From here on a failure may leave the logs ahead of the memtable. Only a
   * failed append can be undone (cut back to where the group began); a failed
   * sync or segment switch cannot. */
  bool touched_log = rc == NOKV_OK || vbytes > 0;
  bool undoable = true;
  /* Values first: a WAL record never points at a value not yet written. A sync
   * makes every earlier WAL record durable, so it syncs the values of earlier
   * unsynced groups too, even when this group has none of its own. */
  if (rc == NOKV_OK && vbytes > 0) rc = nk_vlog_write(db->vlog, false);
  if (rc == NOKV_OK && sync && (rc = nk_vlog_write(db->vlog, true)) != NOKV_OK) undoable = false;
  if (rc == NOKV_OK && (rc = nk_wal_maybe_rotate(db->wal)) != NOKV_OK) undoable = false;
  bool wal_failed = false;
  if (rc == NOKV_OK && (rc = nk_wal_append(db->wal, db->group_buf, len)) != NOKV_OK) {
    wal_failed = true;
  }
  if (rc == NOKV_OK && sync) {
    rc = nk_wal_sync(db->wal);
    nk_count(&db->stats.wal_syncs, 1);
    if (rc != NOKV_OK) undoable = false;
  }
  if (rc == NOKV_OK) {
    nk_count(&db->stats.write_groups, 1);
    db->mem_vlog_bytes += vbytes;
    const char *p = db->group_buf;
    for (nk_writer *w = leader; rc == NOKV_OK; w = w->next) {
      if (w->conflicted) {
        if (w == last) break;
        continue;
      }
      rc = nk_db_apply_batch(db->mem, p + NK_WAL_HEADER, w->framed_len, w->ts);
      p += NK_WAL_HEADER + w->framed_len;
      if (w->gc_read_ts == 0) {  /* GC's rewrites are not the user's writes */
        nk_count(&db->stats.user_bytes, w->batch->user_bytes);
        nk_count(&db->stats.puts,
                 w->batch->count - w->batch->deletes - w->batch->range_deletes);
        nk_count(&db->stats.deletes, w->batch->deletes);
        nk_count(&db->stats.range_deletes, w->batch->range_deletes);
      }
      if (w == last) break;
    }
  }
  if (rc == NOKV_OK) {
    nk_oracle_publish(&db->oracle, first_ts + n - 1);
    /* Plain writes conflict with transactions too. A transaction counts itself
     * active before taking its snapshot, so one whose snapshot predates this
     * publish is counted by now. One record per group at its last timestamp is
     * exact: no snapshot falls inside a group. */
    if (!recorded && !gc && atomic_load(&db->active_txns) > 0) {
      record_plain_writes(db, leader, last, first_ts + n - 1);
    }
    /* Watches: after publishing, in timestamp order (one leader at a time). */
    if (!gc && nk_watch_ring_active(db->watch)) {
      for (nk_writer *w = leader;; w = w->next) {
        if (!w->conflicted) nk_watch_record(db->watch, w->ts, w->batch);
        if (w == last) break;
      }
    }
    nk_count(&db->stats.batches, n - refused);
  }
  if (db->row_cache != NULL) nk_row_cache_end_write(db->row_cache, cache_guards);
  pthread_mutex_lock(&db->mu);

  if (rc != NOKV_OK && touched_log) {
    /* A full disk during an append: cut both logs back to where this group
     * began; it fails with nothing logged, and writes work again once space is
     * freed. Anything else (or a cut that fails): the log and the memtable may
     * disagree with what callers were told, so writes stop until the database
     * is reopened and replays its log. */
    bool undone = rc == NOKV_EFULL && undoable && nk_vlog_undo(db->vlog) == NOKV_OK &&
                  (!wal_failed || nk_wal_undo(db->wal) == NOKV_OK);
    if (undone) {
      nk_count(&db->stats.writes_refused_full, 1);
      rc = nk_err(NOKV_EFULL, "disk full: the write was not logged (nothing of it applied); "
                              "retry once space is freed");
    } else {
      nk_db_set_bg_error(db, rc, "log write");
    }
  }
  for (nk_writer *w = leader;;) {
    nk_writer *next = w->next;
    w->rc = w->conflicted ? NOKV_ECONFLICT : rc;
    if ((w != leader || w->done_fn != NULL) && rc != NOKV_OK) {
      keep_why(w, rc == db->bg_error ? db->bg_errmsg : nokv_errmsg());
    }
    if (w == leader && w->conflicted) nk_err(NOKV_ECONFLICT, "%s", w->refusal);
    w->done = true;
    if (w != leader && w->done_fn == NULL) pthread_cond_signal(&w->cv);
    if (w == last) {
      db->queue_head = next;
      break;
    }
    w = next;
  }
  if (db->queue_head == NULL) db->queue_tail = NULL;
  return last;
}

/* Wakes whoever leads next: the writer now at the front, or the commit thread
 * if that writer is async; with the queue empty, whoever waits for it to drain.
 * REQUIRES: mu held. */
static void wake_next_leader(nokv_db *db) {
  nk_writer *head = db->queue_head;
  if (head == NULL) {
    pthread_cond_broadcast(&db->idle);
  } else if (head->done_fn != NULL) {
    pthread_cond_signal(&db->commit_cv);
  } else {
    pthread_cond_signal(&head->cv);
  }
}

/* The async writers of the group [leader, last], in order, linked by done_next.
 * REQUIRES: mu held (a waiting writer of the group returns, and its writer is
 * gone, once mu is released). */
static nk_writer *take_completions(nk_writer *leader, nk_writer *last) {
  nk_writer *head = NULL, **tail = &head;
  for (nk_writer *w = leader;; w = w->next) {
    if (w->done_fn != NULL) {
      *tail = w;
      tail = &w->done_next;
    }
    if (w == last) break;
  }
  *tail = NULL;
  return head;
}

/* Runs the completions and frees their writers. REQUIRES: mu not held. */
static void run_completions(nk_writer *w) {
  while (w != NULL) {
    nk_writer *next = w->done_next;
    const char *msg = w->rc == NOKV_OK ? "" : w->why[0] != '\0' ? w->why : nokv_strerror(w->rc);
    w->done_fn(w->done_arg, w->rc, w->rc == NOKV_OK ? w->ts : 0, msg);
    free(w);
    w = next;
  }
}

/* The commit thread (started by the first nokv_write_async): leads every group
 * whose first writer is async. */
void *nk_db_commit_main(void *arg) {
  nokv_db *db = arg;
  pthread_mutex_lock(&db->mu);
  while (!db->commit_stop) {
    nk_writer *head = db->queue_head;
    if (head == NULL || head->done_fn == NULL) {
      pthread_cond_wait(&db->commit_cv, &db->mu);
      continue;
    }
    nk_writer *last = lead_group(db, head);
    nk_writer *done = take_completions(head, last);
    wake_next_leader(db);
    pthread_mutex_unlock(&db->mu);
    run_completions(done);
    pthread_mutex_lock(&db->mu);
  }
  pthread_mutex_unlock(&db->mu);
  return NULL;
}

/* Queues w and returns once its group is done (leading one if it gets to the
 * front). */
static int enqueue_and_wait(nokv_db *db, nk_writer *w) {
  pthread_cond_init(&w->cv, NULL);
  pthread_mutex_lock(&db->mu);
  if (db->queue_tail != NULL) {
    db->queue_tail->next = w;
  } else {
    db->queue_head = w;
  }
  db->queue_tail = w;
  while (!w->done && db->queue_head != w) {
    pthread_cond_wait(&w->cv, &db->mu);
  }
  nk_writer *done = NULL;
  if (!w->done) {
    done = take_completions(w, lead_group(db, w));
    wake_next_leader(db);
  } else if (w->rc == NOKV_ECONFLICT) {
    nk_err(w->rc, "%s", w->refusal);
  } else if (w->rc != NOKV_OK) {
    nk_err(w->rc, "%s", w->why[0] != '\0' ? w->why : nokv_strerror(w->rc));
  }
  pthread_mutex_unlock(&db->mu);
  pthread_cond_destroy(&w->cv);
  if (done != NULL) {  /* async writers that joined this group */
    if (w->rc != NOKV_OK) keep_why(w, nokv_errmsg());
    run_completions(done);
    if (w->rc != NOKV_OK) nk_err(w->rc, "%s", w->why);
  }
  return w->rc;
}

/* Refuses b if one of its keys was written hot_write_limit times over the last
 * second (NOKV_EHOTKEY); else counts its keys in the hot-key tracker. GC's
 * rewrites are not the user's writes and do not come here. */
static int hot_writes(nokv_db *db, const nokv_batch *b) {
  if (db->hot == NULL) return NOKV_OK;
  uint32_t limit = db->opts.hot_write_limit;
  nk_batch_reader r;
  nk_batch_op op;
  uint64_t ts;
  uint32_t count;
  if (limit > 0) {
    if (nk_batch_reader_init(&r, b->rep, b->len, &ts, &count) != NOKV_OK) return NOKV_OK;
    uint64_t max_count = nk_hot_count_at(limit);
    while (nk_batch_reader_next(&r, &op) == 1) {
      uint64_t n = nk_hot_estimate(db->hot, NOKV_HOT_WRITES, nk_hash64(op.key, op.klen));
      if (n >= max_count) {
        nk_count(&db->stats.hot_writes_throttled, 1);
        char shown[NK_KEY_SHOWN];
        return nk_err(NOKV_EHOTKEY,
                      "key %s was written about %llu times in the last second, at "
                      "hot_write_limit (%u a second): nothing written; retry later",
                      nk_show_key(op.key, op.klen, shown), (unsigned long long)n, limit);
      }
    }
  }
  if (nk_batch_reader_init(&r, b->rep, b->len, &ts, &count) != NOKV_OK) return NOKV_OK;
  while (nk_batch_reader_next(&r, &op) == 1) {
    if (limit > 0) {  /* the limit needs every write counted */
      nk_hot_touch(db->hot, NOKV_HOT_WRITES, op.key, op.klen, nk_hash64(op.key, op.klen), 1);
    } else if (nk_hot_sampled()) {
      nk_hot_touch(db->hot, NOKV_HOT_WRITES, op.key, op.klen, nk_hash64(op.key, op.klen),
                   NK_HOT_SAMPLE);
    }
  }
  return NOKV_OK;
}

/* The timestamp wo asks to commit at (0: the next one). */
static uint64_t asked_ts(const nokv_write_options *wo) { return wo != NULL ? wo->commit_ts : 0; }

/* NOKV_EINVAL for a timestamp the write path cannot take (the leader checks it
 * against the last one used), or an empty batch with one. */
static int check_asked_ts(const nokv_write_options *wo, const nokv_batch *b) {
  uint64_t ts = asked_ts(wo);
  if (ts == 0) return NOKV_OK;
  if (ts > NK_MAX_TS) {
    return nk_err(NOKV_EINVAL, "commit timestamp %llu is past 2^56 - 1", (unsigned long long)ts);
  }
  if (b == NULL || b->count == 0) return nk_err(NOKV_EINVAL, "an empty batch takes no timestamp");
  return NOKV_OK;
}

static int write_batch(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
                       uint64_t *commit_ts) {
  NK_RET(check_asked_ts(wo, b));
  size_t cost = 0;
  if (b != NULL) NK_RET(check_limits(db, b, &cost));
  if (b != NULL && b->count == 0) {
    if (commit_ts != NULL) *commit_ts = nk_oracle_read_ts(&db->oracle);
    return NOKV_OK;
  }
  if (b != NULL) NK_RET(hot_writes(db, b));
  nk_writer w = {.batch = b, .sync = wo != NULL && wo->sync, .mem_cost = cost,
                 .at_ts = asked_ts(wo)};
  int rc = enqueue_and_wait(db, &w);
  if (rc == NOKV_OK && commit_ts != NULL) *commit_ts = w.ts;
  return rc;
}

int nk_db_write_txn(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
                    const nk_txn_commit *txn, uint64_t *commit_ts) {
  size_t cost;
  NK_RET(check_limits(db, b, &cost));
  NK_RET(check_asked_ts(wo, b));
  NK_RET(hot_writes(db, b));
  nk_writer w = {.batch = b, .sync = wo != NULL && wo->sync, .txn = txn, .mem_cost = cost,
                 .at_ts = asked_ts(wo)};
  int rc = enqueue_and_wait(db, &w);
  if (rc == NOKV_OK && commit_ts != NULL) *commit_ts = w.ts;
  return rc;
}

int nk_db_sync_logs(nokv_db *db) {
  nk_writer w = {.barrier = true, .sync = true};
  NK_RET(enqueue_and_wait(db, &w));
  /* Out of the queue: writes go on while these fsyncs run. Values first: a
   * synced WAL record never points at a value that is not. (Records appended
   * since the mark may become durable with it: as unsynced records written
   * back early, which replay already takes.) */
  int rc = nk_vlog_sync_to(db->vlog, w.vlog_fid);
  if (rc == NOKV_OK) {
    rc = nk_wal_sync_to(db->wal, &w.wal_mark);
    nk_count(&db->stats.wal_syncs, 1);
  }
  if (rc != NOKV_OK) {
    pthread_mutex_lock(&db->mu);
    nk_db_set_bg_error(db, rc, "log sync");
    pthread_mutex_unlock(&db->mu);
  }
  return rc;
}

int nokv_sync(nokv_db *db) {
  nk_err_clear();
  return nk_db_sync_logs(db);
}

int nk_db_write_gc(nokv_db *db, const nokv_batch *b, uint64_t read_ts) {
  nk_writer w = {.batch = b, .sync = true, .gc_read_ts = read_ts, .mem_cost = memtable_cost(db, b)};
  int rc = enqueue_and_wait(db, &w);
  nokv_batch_free(w.filtered);
  return rc;
}

int nokv_write_at(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
                  uint64_t commit_ts) {
  nk_err_clear();
  if (commit_ts == 0) return nk_err(NOKV_EINVAL, "commit timestamp 0");
  nokv_write_options o = {.sync = wo != NULL && wo->sync, .commit_ts = commit_ts};
  return write_batch(db, &o, b, NULL);
}

int nokv_write(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
               uint64_t *commit_ts) {
  nk_err_clear();
  return write_batch(db, wo, b, commit_ts);
}

/* nokv_write_async, for a transaction's commit too (txn, which must live until
 * done, may be NULL). */
static int write_async(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
                       const nk_txn_commit *txn, nokv_write_done done, void *arg) {
  if (b == NULL || done == NULL) {
    return nk_err(NOKV_EINVAL, "nokv_write_async needs a batch and a completion");
  }
  size_t cost = 0;
  NK_RET(check_limits(db, b, &cost));
  if (b->count == 0) {
    done(arg, NOKV_OK, nk_oracle_read_ts(&db->oracle), "");
    return NOKV_OK;
  }
  NK_RET(check_asked_ts(wo, b));
  NK_RET(hot_writes(db, b));
  nk_writer *w = calloc(1, sizeof *w);
  if (w == NULL) return nk_err(NOKV_ENOMEM, "out of memory queueing a write");
  w->batch = b;
  w->txn = txn;
  w->at_ts = asked_ts(wo);
  w->sync = wo != NULL && wo->sync;
  w->mem_cost = cost;
  w->done_fn = done;
  w->done_arg = arg;
  pthread_mutex_lock(&db->mu);
  int rc = NOKV_OK;
  if (db->closing) {
    rc = nk_err(NOKV_ECLOSED, "database is closing");
  } else if (!db->commit_started) {
    int err = pthread_create(&db->commit_thread, NULL, nk_db_commit_main, db);
    if (err != 0) {
      rc = nk_err(NOKV_ENOMEM, "cannot start the commit thread: %s", strerror(err));
    } else {
      db->commit_started = true;
    }
  }
  if (rc != NOKV_OK) {
    pthread_mutex_unlock(&db->mu);
    free(w);
    return rc;
  }
  if (db->queue_tail != NULL) {
    db->queue_tail->next = w;
  } else {
    db->queue_head = w;
  }
  db->queue_tail = w;
  if (db->queue_head == w) pthread_cond_signal(&db->commit_cv);
  pthread_mutex_unlock(&db->mu);
  return NOKV_OK;
}

int nokv_write_async(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
                     nokv_write_done done, void *arg) {
  nk_err_clear();
  return write_async(db, wo, b, NULL, done, arg);
}

int nk_db_write_txn_async(nokv_db *db, const nokv_write_options *wo, const nokv_batch *b,
                          const nk_txn_commit *txn, nokv_write_done done, void *arg) {
  return write_async(db, wo, b, txn, done, arg);
}

int nokv_put(nokv_db *db, const nokv_write_options *wo, const void *key, size_t klen,
             const void *val, size_t vlen, uint64_t *commit_ts) {
  nk_err_clear();
  char buf[512];
  struct nokv_batch b;
  nk_batch_init_inline(&b, buf, sizeof buf);
  /* A value bound for the value log is copied there straight from the caller. */
  bool by_ref = db->opts.value_threshold > 0 && vlen >= db->opts.value_threshold;
  int rc = by_ref ? nk_batch_put_ref(&b, key, klen, val, vlen)
                  : nokv_batch_put(&b, key, klen, val, vlen);
  if (rc == NOKV_OK) rc = write_batch(db, wo, &b, commit_ts);
  nk_batch_release(&b);
  return rc;
}

int nokv_delete(nokv_db *db, const nokv_write_options *wo, const void *key, size_t klen,
                uint64_t *commit_ts) {
  nk_err_clear();
  char buf[512];
  struct nokv_batch b;
  nk_batch_init_inline(&b, buf, sizeof buf);
  int rc = nokv_batch_delete(&b, key, klen);
  if (rc == NOKV_OK) rc = write_batch(db, wo, &b, commit_ts);
  nk_batch_release(&b);
  return rc;
}

int nokv_delete_range(nokv_db *db, const nokv_write_options *wo, const void *start,
                      size_t start_len, const void *end, size_t end_len, uint64_t *commit_ts) {
  nk_err_clear();
  char buf[512];
  struct nokv_batch b;
  nk_batch_init_inline(&b, buf, sizeof buf);
  int rc = nokv_batch_delete_range(&b, start, start_len, end, end_len);
  if (rc == NOKV_OK) rc = write_batch(db, wo, &b, commit_ts);
  nk_batch_release(&b);
  return rc;
}

int nokv_flush(nokv_db *db) {
  nk_err_clear();
  NK_RET(write_batch(db, NULL, NULL, NULL));  /* seals the memtable as leader */
  pthread_mutex_lock(&db->mu);
  uint64_t full = db->flush_full;
  while (db->nimm > 0 && db->bg_error == NOKV_OK && !db->stop_bg && db->flush_full == full) {
    pthread_cond_wait(&db->room_cv, &db->mu);
  }
  int rc = db->bg_error;
  if (rc != NOKV_OK) {
    nk_err(rc, "%s", db->bg_errmsg);
  } else if (db->nimm > 0 && db->flush_full != full) {
    rc = nk_err(NOKV_EFULL, "disk full: the flush failed and is retried in the background "
                            "once space is freed (the data is safe in the WAL)");
  }
  pthread_mutex_unlock(&db->mu);
  return rc;
}

int nokv_compact(nokv_db *db) {
  NK_RET(nokv_flush(db));
  pthread_mutex_lock(&db->mu);
  uint64_t target = db->manual_done + 1;
  db->manual_compactions++;
  pthread_cond_broadcast(&db->bg_cv);
  while (db->manual_done < target && !db->stop_bg) pthread_cond_wait(&db->room_cv, &db->mu);
  int rc = db->bg_error;
  if (rc != NOKV_OK) {
    nk_err(rc, "%s", db->bg_errmsg);
  } else if (db->manual_rc == NOKV_EFULL) {
    rc = nk_err(NOKV_EFULL, "disk full: the compaction stopped; the database works on, and "
                            "compactions retry once space is freed");
  }
  pthread_mutex_unlock(&db->mu);
  /* The inputs no read holds are deleted when this returns. */
  nk_reaper_drain(db->reaper);
  return rc;
}
