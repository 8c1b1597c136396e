/*
 * read.c — point reads, snapshots and iterators, all at a read timestamp.
 *
 * A read pins the current view (memtables + table version) and only then takes
 * the visible timestamp as its read timestamp: every compaction in the pinned
 * version used a watermark no newer than that, so no version the read needs can
 * have been dropped. Sources are searched newest first: memtable, sealed
 * memtables, L0 newest to oldest, then L1.. (version.h); the first version at or
 * below the read timestamp wins.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/db_impl.h"
#include "hot/hot.h"
#include "hot/row_cache.h"
#include "util/clock.h"
#include "memtable/internal_key.h"
#include "sst/block_builder.h"
#include "util/checksum.h"
#include "util/error.h"
#include "util/merge_iter.h"

int nk_db_read_ts(const nokv_db *db, const nokv_read_options *ro, uint64_t *read_ts) {
  uint64_t visible = nk_oracle_read_ts(&db->oracle);
  uint64_t ts = visible;
  if (ro != NULL && ro->snapshot != NULL) {
    ts = ro->snapshot->ts;
  } else if (ro != NULL && ro->read_ts != 0 && ro->read_ts < visible) {
    /* Nothing pins an explicit timestamp: it is exact only if no flush or
     * compaction in the caller's view dropped versions above it. */
    uint64_t horizon = atomic_load(&((nokv_db *)db)->history_horizon);
    if (ro->read_ts < horizon) {
      return nk_err(NOKV_ESTALE,
                    "read_ts %llu is older than the history the database keeps (%llu); "
                    "read at a newer timestamp, or hold a snapshot or read-only transaction",
                    (unsigned long long)ro->read_ts, (unsigned long long)horizon);
    }
    ts = ro->read_ts;
  }
  *read_ts = ts;
  if (ro != NULL && ro->served_ts != NULL) *ro->served_ts = ts;
  return NOKV_OK;
}

int nk_db_check_key(const nokv_db *db, size_t klen) {
  if (klen == 0) return nk_err(NOKV_EINVAL, "empty key");
  if (klen > db->opts.max_key_size) {
    return nk_err(NOKV_EINVAL, "key of %zu bytes exceeds max_key_size (%zu bytes)", klen,
                  db->opts.max_key_size);
  }
  return NOKV_OK;
}

static int copy_out(const char *v, size_t n, void **val, size_t *vlen) {
  char *copy = malloc(n ? n : 1);
  if (copy == NULL) return nk_err(NOKV_ENOMEM, "out of memory copying a %zu-byte value", n);
  memcpy(copy, v, n);
  *val = copy;
  *vlen = n;
  return NOKV_OK;
}

/* Reads the value a pointer version (key, ptr) names into a malloc'ed block. */
int nk_db_read_vptr(nokv_db *db, const char *key, size_t klen, const char *ptr, size_t n,
                        void **val, size_t *vlen) {
  nk_vptr p;
  if (!nk_vptr_decode(ptr, n, &p)) {
    return nk_err(NOKV_ECORRUPT, "malformed value pointer for a %zu-byte key", klen);
  }
  nk_buf buf = {0};
  const char *v;
  size_t vn;
  nk_count(&db->stats.vlog_reads, 1);
  int rc = nk_vlog_read(db->vlog, &p, key, klen, &buf, &v, &vn);
  if (rc != NOKV_OK) {
    nk_buf_release(&buf);
    return rc;
  }
  if (buf.data == NULL || v < buf.data || v >= buf.data + buf.len) {
    rc = copy_out(v, vn, val, vlen);  /* v is in the segment's mapping */
    nk_buf_release(&buf);
    return rc;
  }
  memmove(buf.data, v, vn);
  *val = buf.data;
  *vlen = vn;
  return NOKV_OK;
}


/* The newest range tombstone in view at or below read_ts covering key (0: none). */
static uint64_t rdel_cover(const nk_view *view, const char *key, size_t klen, uint64_t read_ts) {
  uint64_t t = nk_rdel_set_cover(view->version->rdels, key, klen, read_ts);
  uint64_t m = nk_memtables_rdel_cover(view->mem, view->imm, view->nimm, key, klen, read_ts);
  return m > t ? m : t;
}

nk_rdel_set *nk_view_rdels(const nk_view *v, uint64_t max_ts, int *rc) {
  nk_memtable *mems[1 + NK_MAX_IMM] = {v->mem};
  memcpy(mems + 1, v->imm, v->nimm * sizeof *mems);
  return nk_db_collect_rdels(v->version, mems, 1 + v->nimm, max_ts, rc);
}

int nk_db_lookup(nokv_db *db, nk_view *view, const char *key, size_t klen, uint64_t hash,
                 uint64_t read_ts, nk_lookup *out) {
  memset(out, 0, sizeof *out);
  /* The newest range tombstone covering the key first (memory only): a
   * version below it is hidden, so a source holding nothing newer is skipped,
   * and a hidden key reads as a deletion at the tombstone's timestamp. */
  uint64_t hidden_below = rdel_cover(view, key, klen, read_ts);
  nk_entry e;
  bool found = nk_memtable_get(view->mem, key, klen, hash, read_ts, &e);
  for (size_t i = 0; !found && i < view->nimm; i++) {
    found = nk_memtable_get(view->imm[i], key, klen, hash, read_ts, &e);
  }
  if (found && e.ts >= hidden_below) {
    *out = (nk_lookup){.found = true, .kind = e.kind, .ts = e.ts, .val = e.val, .vlen = e.vlen};
    return NOKV_OK;
  }
  if (!found) {
    char stack[256];
    char *target =
        klen + NK_IKEY_TRAILER <= sizeof stack ? stack : malloc(klen + NK_IKEY_TRAILER);
    if (target == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
    nk_ikey_encode(target, key, klen, read_ts, NK_KIND_SEEK);
    nk_get_result r;
    uint64_t probes = 0;
    int rc = nk_version_get(view->version, db->tc, target, klen + NK_IKEY_TRAILER, hash,
                            hidden_below, &r, &probes);
    nk_count(&db->stats.table_probes, probes);
    if (target != stack) free(target);
    NK_RET(rc);
    if (r.found && r.ts >= hidden_below) {
      *out = (nk_lookup){.found = true, .kind = r.kind, .ts = r.ts, .val = r.val,
                         .vlen = r.vlen, .owned = r.val};
      return NOKV_OK;
    }
    free(r.found ? r.val : NULL);
  }
  if (hidden_below > 0) {
    *out = (nk_lookup){.found = true, .kind = NK_KIND_DELETE, .ts = hidden_below};
  }
  return NOKV_OK;
}

void nk_lookup_release(nk_lookup *r) {
  free(r->owned);
  r->owned = NULL;
}

int nokv_get(nokv_db *db, const nokv_read_options *ro, const void *key, size_t klen,
             void **val, size_t *vlen, uint64_t *commit_ts) {
  nk_err_clear();
  NK_RET(nk_db_check_key(db, klen));
  uint64_t hash = nk_hash64(key, klen);
  bool sampled = db->hot != NULL && nk_hot_sampled();
  if (sampled) nk_hot_touch(db->hot, NOKV_HOT_READS, key, klen, hash, NK_HOT_SAMPLE);
  /* A sampled read may fill the hot-read cache (hot keys are sampled often). */
  return nk_db_get(db, ro, key, klen, hash, sampled, val, vlen, commit_ts);
}

/* The wall-clock time a read judges expiry against (options.h). */
static uint64_t read_time(const nokv_read_options *ro) {
  return ro != NULL && ro->snapshot != NULL ? ro->snapshot->time_ms : nk_wall_ms();
}

int nk_db_get(nokv_db *db, const nokv_read_options *ro, const void *key, size_t klen,
              uint64_t key_hash, bool may_fill, void **val, size_t *vlen, uint64_t *commit_ts) {
  nk_count(&db->stats.gets, 1);
  nk_row_cache *cache = db->row_cache;
  /* Only a read at the latest timestamp may fill (its value is the newest),
   * and its ticket is taken before that timestamp (row_cache.h). */
  may_fill = may_fill && cache != NULL &&
             (ro == NULL || (ro->snapshot == NULL && ro->read_ts == 0));
  uint64_t ticket = may_fill ? nk_row_cache_ticket(cache, key_hash) : 0;
  /* The view before the timestamp: no version the read needs is dropped. */
  nk_view *view = nk_db_acquire_view(db);
  uint64_t read_ts;
  int ret = nk_db_read_ts(db, ro, &read_ts);
  if (ret != NOKV_OK) {
    nk_view_unref(view);
    return ret;
  }
  uint64_t cached_ts;
  if (cache != NULL && nk_row_cache_get(cache, key, klen, key_hash, read_ts, val, vlen, &cached_ts)) {
    nk_view_unref(view);
    if (commit_ts != NULL) *commit_ts = cached_ts;
    if (ro != NULL && ro->expires_at_ms != NULL) *ro->expires_at_ms = 0;  /* none cached */
    nk_count(&db->stats.get_hits, 1);
    return NOKV_OK;
  }
  nk_lookup r;
  ret = nk_db_lookup(db, view, key, klen, key_hash, read_ts, &r);
  nk_value v = {0};
  if (ret == NOKV_OK && r.found && !nk_value_open(r.kind, r.val, r.vlen, &v)) {
    ret = nk_err(NOKV_ECORRUPT, "an expiring version too short for its expiry");
  }
  if (ret == NOKV_OK) {
    ret = NOKV_ENOTFOUND;
    /* An expired version hides the key as a deletion does. The clock is read
     * only for a version that can expire. */
    bool live = r.found && (v.expires_ms == 0 || !nk_expired(v.expires_ms, read_time(ro)));
    if (live && v.kind == NK_KIND_VALUE) {
      if (r.owned != NULL) {
        if (v.val != r.owned) memmove(r.owned, v.val, v.vlen);  /* drop the expiry */
        *val = r.owned;  /* hand over the table's copy */
        *vlen = v.vlen;
        r.owned = NULL;
        ret = NOKV_OK;
      } else {
        ret = copy_out(v.val, v.vlen, val, vlen);
      }
    } else if (live && v.kind == NK_KIND_VPTR) {
      ret = nk_db_read_vptr(db, key, klen, v.val, v.vlen, val, vlen);
    }
    if (ret == NOKV_OK && commit_ts != NULL) *commit_ts = r.ts;
    if (ret == NOKV_OK && ro != NULL && ro->expires_at_ms != NULL) {
      *ro->expires_at_ms = v.expires_ms;
    }
    /* The hot-read cache keeps no expiry: expiring versions stay out of it. */
    if (ret == NOKV_OK && may_fill && v.expires_ms == 0 &&
        nk_hot_estimate(db->hot, NOKV_HOT_READS, key_hash) >=
            nk_hot_count_at(db->opts.hot_key_min_rate)) {
      nk_row_cache_fill(cache, key, klen, key_hash, ticket, *val, *vlen, r.ts);
    }
  }
  nk_lookup_release(&r);
  nk_view_unref(view);
  if (ret == NOKV_OK) nk_count(&db->stats.get_hits, 1);
  return ret;
}

void nokv_free(void *p) { free(p); }

uint64_t nokv_last_commit_ts(nokv_db *db) { return nk_oracle_read_ts(&db->oracle); }

int nokv_snapshot_create(nokv_db *db, nokv_snapshot **out) {
  nk_err_clear();
  /* Pin first, then take the timestamp: a segment retired after the pin stays
   * until release, and one retired before it holds nothing this ts can read. */
  nk_epoch *pin = nk_db_pin_epoch(db);
  nokv_snapshot *s = nk_oracle_snapshot(&db->oracle);
  if (s == NULL) {
    nk_epoch_unref(pin);
    return nk_err(NOKV_ENOMEM, "out of memory creating a snapshot");
  }
  s->pin = pin;
  atomic_fetch_add(&db->live_handles, 1);
  *out = s;
  return NOKV_OK;
}

uint64_t nokv_snapshot_ts(const nokv_snapshot *snap) { return snap->ts; }

void nokv_snapshot_release(nokv_db *db, nokv_snapshot *snap) {
  if (snap != NULL) {
    nk_epoch *pin = snap->pin;
    nk_oracle_release(&db->oracle, snap);
    nk_epoch_unref(pin);
    atomic_fetch_sub(&db->live_handles, 1);
  }
}

/* ---- iterators: a merge of every source, resolved to one version per key ---- */

/* Read-ahead: values kept hinted ahead at most; bytes a run of adjacent
 * values extends its hint by; runs remembered; one value read in TIME_EVERY
 * is timed to find cold ones. */
#define PREFETCH_AHEAD 64
#define PREFETCH_RUN (256u << 10)
#define HINT_RUNS 4
#define TIME_EVERY 8

struct nokv_iter {
  nokv_db *db;
  nk_view *view;
  uint64_t read_ts;
  uint64_t time_ms;   /* what expiry is judged against (read_time) */
  char *start, *end;  /* owned copies; end == NULL: unbounded */
  size_t start_len, end_len;
  nk_iter *merged;
  nk_buf key;         /* current user key (the merged iterator's bytes move) */
  nk_buf vbuf;        /* the current value, when it was read from the value log */
  const char *val;
  size_t vlen;
  uint64_t ts;
  bool valid;
  int status;
  /* The range tombstones visible at read_ts (NULL: none), and where in them
   * the last key was. */
  nk_rdel_set *rdels;
  size_t rdel_hint;
  size_t rdel_judged;  /* 1 + the fragment rdel_skips is about (0: none) */
  bool rdel_skips;
  /* A transaction's pending writes (one version per key), merged over the
   * snapshot by user key: on an equal key the pending write wins, and a pending
   * deletion hides the key. out_valid and pend_cur say what the public
   * accessors show. */
  nk_memtable *extra;
  nk_iter *pend;
  bool pend_cur, pend_eq, out_valid;
  nk_kind pend_kind;  /* of the pending write shown, when pend_cur */
  void (*on_key)(void *arg, const char *key, size_t klen);  /* each key returned */
  void *on_key_arg;
  /* Read-ahead of value-log values, once a read shows they are not in memory
   * (scan_prefetch_micros): a second merge over the same view runs ahead of the
   * iterator and asks for the values of the next entries, up to PREFETCH_AHEAD
   * beyond the current one. */
  nk_iter *ahead;
  nk_buf ahead_key;   /* the last user key it passed */
  int ahead_budget;   /* values it may still hint */
  int ahead_window;   /* values kept hinted ahead: grows from 4 to PREFETCH_AHEAD */
  int ahead_consumed; /* values read since the window last grew */
  /* The value-log bytes the last HINT_RUNS runs of hints covered: a value
   * inside one needs no hint of its own, and one just past it (values written
   * in key order lie in key order) extends it by PREFETCH_RUN bytes with one
   * call. Several, because a range overwritten in part interleaves two runs. */
  struct hinted_run {
    uint32_t fid;
    uint64_t start, end;  /* end == 0: unused */
  } hinted[HINT_RUNS];
  unsigned hinted_next;  /* the slot a new run replaces */
  uint32_t reads;        /* value-log reads, to time one in TIME_EVERY */
};


static char *dup_bytes(const void *p, size_t n) {
  char *c = malloc(n ? n : 1);
  if (c != NULL && n > 0) memcpy(c, p, n);
  return c;
}

nk_iter *nk_db_merge_iter(nokv_db *db, nk_view *v) {
  size_t n = 1 + v->nimm + v->version->nfiles[0] + (NK_NUM_LEVELS - 1);
  nk_iter **kids = calloc(n, sizeof *kids);
  if (kids == NULL) return NULL;
  size_t k = 0;
  kids[k++] = nk_memtable_iter_new(v->mem);
  for (size_t i = 0; i < v->nimm; i++) kids[k++] = nk_memtable_iter_new(v->imm[i]);
  for (size_t i = 0; i < v->version->nfiles[0]; i++) {
    const nk_file_meta *f = v->version->files[0][i];
    kids[k++] = nk_table_cache_iter(db->tc, f->number, f->size);
  }
  for (int l = 1; l < NK_NUM_LEVELS; l++) {
    if (v->version->nfiles[l] > 0) kids[k++] = nk_level_iter_new(v->version, l, db->tc);
  }
  for (size_t i = 0; i < k; i++) {
    if (kids[i] == NULL) {
      for (size_t j = 0; j < k; j++) nk_iter_destroy(kids[j]);
      free(kids);
      return NULL;
    }
  }
  nk_iter *m = nk_merge_iter_new(kids, k);
  free(kids);
  return m;
}

/* Frees an iterator, whole or partly built (live_handles is the caller's). */
static void iter_free(nokv_iter *it) {
  nk_iter_destroy(it->ahead);
  nk_iter_destroy(it->merged);
  nk_iter_destroy(it->pend);
  nk_view_unref(it->view);
  nk_memtable_unref(it->extra);
  nk_rdel_set_unref(it->rdels);
  nk_buf_release(&it->key);
  nk_buf_release(&it->vbuf);
  nk_buf_release(&it->ahead_key);
  free(it->start);
  free(it->end);
  free(it);
}

int nokv_iter_new(nokv_db *db, const nokv_read_options *ro, const void *start,
                  size_t start_len, const void *end, size_t end_len, nokv_iter **out) {
  nk_err_clear();
  return nk_db_iter_new(db, ro, NULL, NULL, NULL, start, start_len, end, end_len, out);
}

int nk_db_iter_new(nokv_db *db, const nokv_read_options *ro, nk_memtable *extra,
                   void (*on_key)(void *, const char *, size_t), void *arg, const void *start,
                   size_t start_len, const void *end, size_t end_len, nokv_iter **out) {
  nokv_iter *it = calloc(1, sizeof *it);
  if (it == NULL || (it->start = dup_bytes(start, start_len)) == NULL ||
      (end_len > 0 && (it->end = dup_bytes(end, end_len)) == NULL)) {
    if (it != NULL) free(it->start);
    free(it);
    return nk_err(NOKV_ENOMEM, "out of memory creating an iterator");
  }
  it->db = db;
  it->view = nk_db_acquire_view(db);
  int ret = nk_db_read_ts(db, ro, &it->read_ts);
  if (ret != NOKV_OK) {
    iter_free(it);
    return ret;
  }
  it->time_ms = read_time(ro);
  it->rdels = nk_view_rdels(it->view, it->read_ts, &ret);
  if (ret != NOKV_OK) {
    iter_free(it);
    return ret;
  }
  it->start_len = start_len;
  it->end_len = end_len;
  it->on_key = on_key;
  it->on_key_arg = arg;
  if (extra != NULL && (it->pend = nk_memtable_iter_new(extra)) != NULL) {
    it->extra = extra;
    nk_memtable_ref(extra);
  }
  if ((extra != NULL && it->pend == NULL) ||
      (it->merged = nk_db_merge_iter(db, it->view)) == NULL) {
    iter_free(it);
    return nk_err(NOKV_ENOMEM, "out of memory creating an iterator");
  }
  atomic_fetch_add(&db->live_handles, 1);
  nk_count(&db->stats.iterators, 1);
  *out = it;
  return NOKV_OK;
}

/* Versions of one key stepped over one by one before an iterator seeks past
 * the rest instead (RocksDB's max_sequential_skip_in_iterations): an
 * overwritten key's versions wait in the memtable until a flush and in L0
 * until compaction, and stepping through hundreds of them per key made scans
 * of a hot key range crawl. */
#define NK_SKIPS_BEFORE_SEEK 8

/* Positions m at the first entry at or after (key, ts, kind); false (m not
 * moved) if there was no memory for the target. */
static bool seek_ikey(nk_iter *m, const char *key, size_t klen, uint64_t ts, unsigned kind) {
  char stack[256];
  char *target = klen + NK_IKEY_TRAILER <= sizeof stack ? stack : malloc(klen + NK_IKEY_TRAILER);
  if (target == NULL) return false;
  nk_ikey_encode(target, key, klen, ts, kind);
  nk_iter_seek(m, target, klen + NK_IKEY_TRAILER);
  if (target != stack) free(target);
  return true;
}

/* Positions the merged iterator at the first entry at or after (key, ts, kind);
 * with no memory for the target, steps to the next entry instead. */
static void seek_merged(nokv_iter *it, const char *key, size_t klen, uint64_t ts, unsigned kind) {
  if (!seek_ikey(it->merged, key, klen, ts, kind)) nk_iter_next(it->merged);
}

/* Skips every remaining version of the current user key (it->key). */
static void skip_key(nokv_iter *it) {
  for (int stepped = 0; nk_iter_valid(it->merged); stepped++) {
    size_t n;
    const char *k = nk_iter_key(it->merged, &n);
    if (nk_user_key_cmp(k, nk_ikey_user_len(n), it->key.data, it->key.len) != 0) return;
    if (stepped == NK_SKIPS_BEFORE_SEEK) {
      /* (key, 0, DELETE) sorts after every version of key. */
      seek_merged(it, it->key.data, it->key.len, 0, NK_KIND_DELETE);
      continue;
    }
    nk_iter_next(it->merged);
  }
}

/* Asks for the value p names unless the last hint covered it. Values that
 * follow each other in the log (a range written in key order) are hinted a
 * run at a time, so a scan over them costs one call per PREFETCH_RUN bytes
 * rather than one per value. */
static void hint(nokv_iter *it, const nk_vptr *p) {
  uint64_t off = p->off, end = off + p->len;
  struct hinted_run *run = NULL;
  for (unsigned i = 0; i < HINT_RUNS; i++) {
    struct hinted_run *r = &it->hinted[i];
    if (r->end == 0 || r->fid != p->fid || off < r->start) continue;
    if (end <= r->end) return;  /* covered */
    if (off <= r->end + PREFETCH_RUN / 4) run = r;  /* just past it: extend */
  }
  bool extend = run != NULL;
  nk_vlog_prefetch(it->db->vlog, p, extend ? PREFETCH_RUN : 0);
  if (!extend) {
    run = &it->hinted[it->hinted_next++ % HINT_RUNS];
    run->fid = p->fid;
  }
  run->start = off;
  run->end = extend ? end + PREFETCH_RUN : end;
}

/* Moves the read-ahead iterator on until it has hinted ahead_budget more values
 * (or looked at a bounded number of entries). */
static void run_ahead(nokv_iter *it) {
  for (int steps = 0; steps < 4 * PREFETCH_AHEAD && it->ahead_budget > 0 &&
                      nk_iter_valid(it->ahead);
       steps++, nk_iter_next(it->ahead)) {
    size_t n, vn;
    const char *k = nk_iter_key(it->ahead, &n);
    size_t ulen = nk_ikey_user_len(n);
    if (it->end != NULL && nk_user_key_cmp(k, ulen, it->end, it->end_len) >= 0) break;
    uint64_t trailer = nk_ikey_trailer(k, n);
    if (nk_trailer_ts(trailer) > it->read_ts ||
        nk_user_key_cmp(k, ulen, it->ahead_key.data, it->ahead_key.len) == 0) {
      continue;  /* too new, or an older version of a key already passed */
    }
    it->ahead_key.len = 0;
    if (!nk_buf_append(&it->ahead_key, k, ulen)) break;
    nk_vptr p;
    nk_value v;
    const char *raw = nk_iter_value(it->ahead, &vn);
    if (nk_value_open(nk_trailer_kind(trailer), raw, vn, &v) && v.kind == NK_KIND_VPTR &&
        !nk_expired(v.expires_ms, it->time_ms) && nk_vptr_decode(v.val, v.vlen, &p)) {
      hint(it, &p);
      it->ahead_budget--;
    }
  }
}

/* Starts reading ahead from the current key. */
static void start_ahead(nokv_iter *it) {
  if ((it->ahead = nk_db_merge_iter(it->db, it->view)) == NULL) return;  /* only a hint */
  if (!seek_ikey(it->ahead, it->key.data, it->key.len, NK_MAX_TS, NK_KIND_SEEK)) return;
  it->ahead_key.len = 0;
  nk_buf_append(&it->ahead_key, it->key.data, it->key.len);  /* the current key is read */
  /* Small at first, so a short scan wastes few reads; doubled each time the
   * scan has consumed a window's worth (RocksDB's auto readahead does the same). */
  it->ahead_window = it->ahead_budget = 4;
  it->ahead_consumed = 0;
  run_ahead(it);
}

static void stop_ahead(nokv_iter *it) {
  nk_iter_destroy(it->ahead);
  it->ahead = NULL;
}

/* Replaces the current pointer (it->val) with the value it names. */
static int read_value(nokv_iter *it) {
  nk_vptr p;
  if (!nk_vptr_decode(it->val, it->vlen, &p)) {
    return nk_err(NOKV_ECORRUPT, "malformed value pointer in an iterator");
  }
  nk_count(&it->db->stats.vlog_reads, 1);
  uint32_t slow = it->db->opts.scan_prefetch_micros;
  /* A read not in memory takes tens of microseconds and comes in runs: timing
   * one read in TIME_EVERY finds them without a clock read per value. */
  bool timed = it->ahead == NULL && slow != UINT32_MAX && it->reads++ % TIME_EVERY == 0;
  uint64_t t0 = timed ? nk_now_micros() : 0;
  int rc = nk_vlog_read(it->db->vlog, &p, it->key.data, it->key.len, &it->vbuf, &it->val,
                        &it->vlen);
  if (it->ahead != NULL) {
    it->ahead_budget++;  /* one consumed: keep the window in flight */
    if (++it->ahead_consumed >= it->ahead_window && it->ahead_window < PREFETCH_AHEAD) {
      it->ahead_budget += it->ahead_window;
      it->ahead_window *= 2;
      it->ahead_consumed = 0;
    }
    run_ahead(it);
  } else if (timed && nk_now_micros() - t0 >= slow) {
    start_ahead(it);
  }
  return rc;
}

/* Could a source of the view hold a version of a key in [lo, hi] at or after
 * min_ts that the iterator sees? Conservative: true when unsure. */
static bool may_hold_newer(const nokv_iter *it, const char *lo, size_t lo_len, const char *hi,
                           size_t hi_len, uint64_t min_ts) {
  const nk_view *v = it->view;
  for (size_t i = 0; i <= v->nimm; i++) {
    const nk_memtable *m = i == 0 ? v->mem : v->imm[i - 1];
    if (nk_memtable_has_version(m, lo, lo_len, hi, hi_len, min_ts, it->read_ts, 64) != 0) {
      return true;
    }
  }
  for (int l = 0; l < NK_NUM_LEVELS; l++) {
    for (size_t i = 0; i < v->version->nfiles[l]; i++) {
      const nk_file_meta *f = v->version->files[l][i];
      if (f->max_ts >= min_ts && f->min_ts <= it->read_ts &&
          nk_file_overlaps(f, lo, lo_len, hi, hi_len)) {
        return true;
      }
    }
  }
  return false;
}

/* The current key is hidden by the range tombstone at t of the fragment
 * rdel_hint names. If no source holds a version it does not hide in the rest
 * of the fragment (a range deleted and not written since: the usual case),
 * seeks past the fragment instead of stepping over every hidden key, as
 * RocksDB's iterators do; false (nothing moved) if one may. */
static bool skip_fragment(nokv_iter *it, uint64_t t) {
  const nk_rdel_frag *f = &it->rdels->frags[it->rdel_hint];
  if (it->rdel_judged != it->rdel_hint + 1) {
    it->rdel_judged = it->rdel_hint + 1;
    it->rdel_skips = !may_hold_newer(it, it->key.data, it->key.len, f->hi, f->hi_len, t);
  }
  if (!it->rdel_skips) return false;
  seek_merged(it, f->hi, f->hi_len, NK_MAX_TS, NK_KIND_SEEK);
  return true;
}

/* From the current position, settles on the newest visible version of the first
 * user key that has a live (non-deleted) one, or becomes invalid. */
static void settle(nokv_iter *it) {
  it->valid = false;
  int too_new = 0;
  while (nk_iter_valid(it->merged)) {
    size_t n;
    const char *k = nk_iter_key(it->merged, &n);
    size_t ulen = nk_ikey_user_len(n);
    if (it->end != NULL && nk_user_key_cmp(k, ulen, it->end, it->end_len) >= 0) return;
    uint64_t trailer = nk_ikey_trailer(k, n);
    bool visible = nk_trailer_ts(trailer) <= it->read_ts;
    if (!visible && ++too_new <= NK_SKIPS_BEFORE_SEEK) {
      nk_iter_next(it->merged);  /* too new for this snapshot */
      continue;
    }
    it->key.len = 0;
    if (!nk_buf_append(&it->key, k, ulen)) {
      it->status = nk_err(NOKV_ENOMEM, "out of memory in an iterator");
      return;
    }
    if (!visible) {
      /* Many versions too new: seek to this key's newest one at read_ts. */
      too_new = 0;
      seek_merged(it, it->key.data, it->key.len, it->read_ts, NK_KIND_SEEK);
      continue;
    }
    if (nk_trailer_kind(trailer) == NK_KIND_DELETE) {
      skip_key(it);
      continue;
    }
    if (it->rdels != NULL) {
      uint64_t t = nk_rdel_set_cover_seq(it->rdels, &it->rdel_hint, k, ulen, NK_MAX_TS);
      if (t > nk_trailer_ts(trailer)) {  /* hidden by a range tombstone */
        if (!skip_fragment(it, t)) skip_key(it);
        continue;
      }
    }
    size_t vn;
    const char *raw = nk_iter_value(it->merged, &vn);
    nk_value v;
    if (!nk_value_open(nk_trailer_kind(trailer), raw, vn, &v)) {
      it->status = nk_err(NOKV_ECORRUPT, "an expiring version too short for its expiry");
      return;
    }
    if (nk_expired(v.expires_ms, it->time_ms)) {  /* gone, as if deleted */
      skip_key(it);
      continue;
    }
    it->val = v.val;
    it->vlen = v.vlen;
    it->ts = nk_trailer_ts(trailer);
    if (v.kind == NK_KIND_VPTR) {
      int rc = read_value(it);
      if (rc != NOKV_OK) {
        it->status = rc;
        return;
      }
    }
    it->valid = true;
    if (it->on_key != NULL) it->on_key(it->on_key_arg, it->key.data, it->key.len);
    return;
  }
  if (it->status == NOKV_OK) it->status = nk_iter_status(it->merged);
}

/* Is pend on an entry before the range's end? */
static bool pend_valid(const nokv_iter *it) {
  if (it->pend == NULL || !nk_iter_valid(it->pend)) return false;
  size_t n;
  const char *k = nk_iter_key(it->pend, &n);
  return it->end == NULL || nk_user_key_cmp(k, nk_ikey_user_len(n), it->end, it->end_len) < 0;
}

/* Picks the current entry from the snapshot stream (settled) and pend. */
static void choose(nokv_iter *it) {
  for (;;) {
    it->pend_cur = false;
    if (!pend_valid(it)) {
      it->out_valid = it->valid;
      return;
    }
    size_t n;
    const char *k = nk_iter_key(it->pend, &n);
    size_t ulen = nk_ikey_user_len(n);
    int c = it->valid ? nk_user_key_cmp(it->key.data, it->key.len, k, ulen) : 1;
    if (c < 0) {
      it->out_valid = true;  /* the snapshot's key comes first */
      return;
    }
    nk_kind kind = nk_trailer_kind(nk_ikey_trailer(k, n));
    size_t pvn;
    nk_value pv;
    bool gone = kind == NK_KIND_DELETE;
    if (!gone) {  /* its own write, expired (or unreadable: none is) */
      const char *raw = nk_iter_value(it->pend, &pvn);  /* sets pvn first */
      gone = !nk_value_open(kind, raw, pvn, &pv) ||
             nk_expired(pv.expires_ms, it->time_ms);
    }
    if (gone) {
      if (c == 0) {  /* deleted by the transaction: hide the snapshot's version */
        skip_key(it);
        settle(it);
      }
      nk_iter_next(it->pend);
      continue;
    }
    it->pend_cur = true;
    it->pend_kind = kind;
    it->pend_eq = c == 0;
    it->out_valid = true;
    return;
  }
}

void nokv_iter_seek(nokv_iter *it, const void *key, size_t klen) {
  stop_ahead(it);  /* a new range: read ahead again only if it is cold too */
  if (nk_user_key_cmp(key, klen, it->start, it->start_len) < 0) {
    key = it->start;
    klen = it->start_len;
  }
  char stack[256];
  char *target = klen + NK_IKEY_TRAILER <= sizeof stack ? stack : malloc(klen + NK_IKEY_TRAILER);
  if (target == NULL) {
    it->valid = false;
    it->status = nk_err(NOKV_ENOMEM, "out of memory in an iterator");
    return;
  }
  nk_ikey_encode(target, key, klen, NK_MAX_TS, NK_KIND_SEEK);
  nk_iter_seek(it->merged, target, klen + NK_IKEY_TRAILER);
  if (it->pend != NULL) nk_iter_seek(it->pend, target, klen + NK_IKEY_TRAILER);
  if (target != stack) free(target);
  settle(it);
  choose(it);
  /* A scan's first key counts as a read of it. */
  if (it->out_valid && it->db->hot != NULL && nk_hot_sampled()) {
    size_t n;
    const void *k = nokv_iter_key(it, &n);
    nk_hot_touch(it->db->hot, NOKV_HOT_READS, k, n, nk_hash64(k, n), NK_HOT_SAMPLE);
  }
}

void nokv_iter_seek_first(nokv_iter *it) { nokv_iter_seek(it, it->start, it->start_len); }

bool nokv_iter_valid(const nokv_iter *it) { return it->out_valid; }

void nokv_iter_next(nokv_iter *it) {
  if (!it->pend_cur || it->pend_eq) {
    skip_key(it);
    settle(it);
  }
  if (it->pend_cur) nk_iter_next(it->pend);
  choose(it);
}

const void *nokv_iter_key(const nokv_iter *it, size_t *klen) {
  if (it->pend_cur) {
    const char *k = nk_iter_key(it->pend, klen);
    *klen = nk_ikey_user_len(*klen);
    return k;
  }
  *klen = it->key.len;
  return it->key.data;
}

const void *nokv_iter_value(const nokv_iter *it, size_t *vlen) {
  if (it->pend_cur) {  /* a transaction's own write: inline, perhaps expiring */
    size_t n;
    const char *raw = nk_iter_value(it->pend, &n);
    nk_value v;
    nk_value_open(it->pend_kind, raw, n, &v);  /* choose checked it opens */
    *vlen = v.vlen;
    return v.val;
  }
  *vlen = it->vlen;
  return it->val;
}

/* 0 for a transaction's own, uncommitted write. */
uint64_t nokv_iter_commit_ts(const nokv_iter *it) { return it->pend_cur ? 0 : it->ts; }

int nokv_iter_status(const nokv_iter *it) { return it->status; }

void nokv_iter_close(nokv_iter *it) {
  if (it == NULL) return;
  atomic_fetch_sub(&it->db->live_handles, 1);
  iter_free(it);
}

int nk_db_iter_new_prefix(nokv_db *db, const nokv_read_options *ro, nk_memtable *extra,
                          void (*on_key)(void *, const char *, size_t), void *arg,
                          const void *prefix, size_t len, nokv_iter **out) {
  /* [prefix, successor): the successor drops trailing 0xff bytes and increments the
   * last other byte; a prefix of only 0xff bytes has none (unbounded). */
  const unsigned char *p = prefix;
  size_t n = len;
  while (n > 0 && p[n - 1] == 0xff) n--;
  if (n == 0) return nk_db_iter_new(db, ro, extra, on_key, arg, prefix, len, NULL, 0, out);
  char stack[256];
  char *end = n <= sizeof stack ? stack : malloc(n);
  if (end == NULL) return nk_err(NOKV_ENOMEM, "out of memory creating an iterator");
  memcpy(end, prefix, n);
  end[n - 1] = (char)(p[n - 1] + 1);
  int rc = nk_db_iter_new(db, ro, extra, on_key, arg, prefix, len, end, n, out);
  if (end != stack) free(end);
  return rc;
}

int nokv_iter_new_prefix(nokv_db *db, const nokv_read_options *ro, const void *prefix,
                         size_t len, nokv_iter **out) {
  nk_err_clear();
  return nk_db_iter_new_prefix(db, ro, NULL, NULL, NULL, prefix, len, out);
}
