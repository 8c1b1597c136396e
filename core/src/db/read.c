/*
 * read.c — point reads, snapshots and iterators, all at a read timestamp.
 *
 * Readers take no lock: the memtable's skiplist is safe to read while the leader
 * inserts, and entries stamped after the visible timestamp are simply skipped.
 */
#include <stdlib.h>
#include <string.h>

#include "db/db_impl.h"
#include "util/error.h"

uint64_t nk_db_read_ts(const nokv_db *db, const nokv_read_options *ro) {
  uint64_t visible = nk_oracle_read_ts(&db->oracle);
  uint64_t ts = visible;
  if (ro != NULL && ro->snapshot != NULL) {
    ts = ro->snapshot->ts;
  } else if (ro != NULL && ro->read_ts != 0) {
    ts = ro->read_ts;
  }
  return ts < visible ? ts : visible;
}

int nokv_get(nokv_db *db, const nokv_read_options *ro, const void *key, size_t klen,
             void **val, size_t *vlen, uint64_t *commit_ts) {
  nk_err_clear();
  if (klen == 0) {
    return nk_err(NOKV_EINVAL, "empty key");
  }
  if (klen > db->opts.max_key_size) {
    return nk_err(NOKV_EINVAL, "key of %zu bytes exceeds max_key_size (%zu bytes)", klen,
                  db->opts.max_key_size);
  }
  nk_count(&db->stats.gets, 1);
  nk_entry e;
  if (!nk_memtable_get(db->mem, key, klen, nk_db_read_ts(db, ro), &e) ||
      e.kind != NK_KIND_VALUE) {
    return NOKV_ENOTFOUND;
  }
  char *copy = malloc(e.vlen ? e.vlen : 1);
  if (copy == NULL) {
    return nk_err(NOKV_ENOMEM, "out of memory copying a %zu-byte value", e.vlen);
  }
  memcpy(copy, e.val, e.vlen);
  *val = copy;
  *vlen = e.vlen;
  if (commit_ts != NULL) *commit_ts = e.ts;
  nk_count(&db->stats.get_hits, 1);
  return NOKV_OK;
}

void nokv_free(void *p) { free(p); }

uint64_t nokv_last_commit_ts(nokv_db *db) { return nk_oracle_read_ts(&db->oracle); }

int nokv_snapshot_create(nokv_db *db, nokv_snapshot **out) {
  nk_err_clear();
  nokv_snapshot *s = nk_oracle_snapshot(&db->oracle);
  if (s == NULL) {
    return nk_err(NOKV_ENOMEM, "out of memory creating a snapshot");
  }
  atomic_fetch_add(&db->live_handles, 1);
  *out = s;
  return NOKV_OK;
}

uint64_t nokv_snapshot_ts(const nokv_snapshot *snap) { return snap->ts; }

void nokv_snapshot_release(nokv_db *db, nokv_snapshot *snap) {
  if (snap != NULL) {
    nk_oracle_release(&db->oracle, snap);
    atomic_fetch_sub(&db->live_handles, 1);
  }
}

/* ---- iterators ---- */

struct nokv_iter {
  nokv_db *db;
  uint64_t read_ts;
  char *start, *end;  /* owned copies; end == NULL: unbounded */
  size_t start_len, end_len;
  nk_sl_iter pos;
  nk_entry cur;
  bool valid;
  int status;
};

static char *dup_bytes(const void *p, size_t n) {
  char *c = malloc(n ? n : 1);
  if (c != NULL && n > 0) memcpy(c, p, n);
  return c;
}

int nokv_iter_new(nokv_db *db, const nokv_read_options *ro, const void *start,
                  size_t start_len, const void *end, size_t end_len, nokv_iter **out) {
  nk_err_clear();
  nokv_iter *it = calloc(1, sizeof *it);
  if (it == NULL || (it->start = dup_bytes(start, start_len)) == NULL ||
      (end_len > 0 && (it->end = dup_bytes(end, end_len)) == NULL)) {
    if (it != NULL) free(it->start);
    free(it);
    return nk_err(NOKV_ENOMEM, "out of memory creating an iterator");
  }
  it->db = db;
  it->read_ts = nk_db_read_ts(db, ro);
  it->start_len = start_len;
  it->end_len = end_len;
  nk_sl_iter_init(&it->pos, nk_memtable_index(db->mem));
  atomic_fetch_add(&db->live_handles, 1);
  nk_count(&db->stats.iterators, 1);
  *out = it;
  return NOKV_OK;
}

/* Skips every remaining version of user key (key, klen). */
static void skip_key(nokv_iter *it, const char *key, size_t klen) {
  while (nk_sl_iter_valid(&it->pos)) {
    nk_entry e;
    nk_entry_decode(nk_sl_iter_entry(&it->pos), &e);
    if (nk_user_key_cmp(e.key, e.klen, key, klen) != 0) return;
    nk_sl_iter_next(&it->pos);
  }
}

/* From the current position, settles on the newest visible version of the first
 * user key that has a live (non-deleted) one, or becomes invalid. */
static void settle(nokv_iter *it) {
  it->valid = false;
  while (nk_sl_iter_valid(&it->pos)) {
    nk_entry e;
    nk_entry_decode(nk_sl_iter_entry(&it->pos), &e);
    if (it->end != NULL && nk_user_key_cmp(e.key, e.klen, it->end, it->end_len) >= 0) {
      return;
    }
    if (e.ts > it->read_ts) {
      nk_sl_iter_next(&it->pos);  /* too new for this snapshot */
      continue;
    }
    if (e.kind == NK_KIND_DELETE) {
      skip_key(it, e.key, e.klen);
      continue;
    }
    it->cur = e;
    it->valid = true;
    return;
  }
}

void nokv_iter_seek(nokv_iter *it, const void *key, size_t klen) {
  if (nk_user_key_cmp(key, klen, it->start, it->start_len) < 0) {
    key = it->start;
    klen = it->start_len;
  }
  nk_sl_iter_seek(&it->pos, key, klen, NK_MAX_TS);
  settle(it);
}

void nokv_iter_seek_first(nokv_iter *it) { nokv_iter_seek(it, it->start, it->start_len); }

bool nokv_iter_valid(const nokv_iter *it) { return it->valid; }

void nokv_iter_next(nokv_iter *it) {
  skip_key(it, it->cur.key, it->cur.klen);
  settle(it);
}

const void *nokv_iter_key(const nokv_iter *it, size_t *klen) {
  *klen = it->cur.klen;
  return it->cur.key;
}

const void *nokv_iter_value(const nokv_iter *it, size_t *vlen) {
  *vlen = it->cur.vlen;
  return it->cur.val;
}

uint64_t nokv_iter_commit_ts(const nokv_iter *it) { return it->cur.ts; }

int nokv_iter_status(const nokv_iter *it) { return it->status; }

void nokv_iter_close(nokv_iter *it) {
  if (it == NULL) return;
  atomic_fetch_sub(&it->db->live_handles, 1);
  free(it->start);
  free(it->end);
  free(it);
}
