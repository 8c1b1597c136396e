/*
 * txn.c — optimistic snapshot-isolation transactions (nokv/txn.h), Badger's
 * design: a transaction holds a snapshot (its read_ts, which also holds back
 * version GC and value-log deletion), buffers its writes in a private memtable,
 * and remembers a 64-bit fingerprint of every key it reads. Its commit goes to
 * the write leader, which refuses it if a transaction committed after read_ts
 * wrote one of those keys (the oracle keeps each key's last commit while a
 * snapshot is older than it), and otherwise writes it as one batch.
 * Fingerprints can collide, which can only cause a spurious conflict.
 */
#include <stdlib.h>
#include <string.h>

#include "db/batch_internal.h"
#include "db/db_impl.h"
#include "hot/hot.h"
#include "nokv/txn.h"
#include "util/checksum.h"
#include "util/error.h"
#include "util/grow.h"

struct nokv_txn {
  nokv_db *db;
  bool read_only;
  nokv_snapshot *snap;
  nk_memtable *pending;  /* its writes, at version read_ts (NULL until the first) */
  uint32_t ops;
  size_t bytes;
  uint64_t *reads;       /* fingerprints of the keys read */
  size_t nreads, reads_cap;
  /* Read more than max_txn_reads keys (or out of memory recording one): the
   * fingerprints are freed and any write after read_ts conflicts. */
  bool read_all;
  /* The smallest and largest key read: a range deletion committed after
   * read_ts that covers part of [lo, hi] conflicts (coarse, never unsafe). */
  nk_buf read_lo, read_hi;
  bool any_read;
  /* NOKV_TXN_EXPORTABLE: the keys read, each as [u32 length] bytes. */
  bool exportable;
  nk_buf read_keys;
};

/* Small: most transactions write a few keys (the memtable grows past it). */
#define PENDING_BUDGET (64u << 10)

int nokv_txn_begin(nokv_db *db, unsigned flags, nokv_txn **out) {
  nk_err_clear();
  nokv_txn *t = calloc(1, sizeof *t);
  if (t == NULL) return nk_err(NOKV_ENOMEM, "out of memory beginning a transaction");
  t->db = db;
  t->read_only = (flags & NOKV_TXN_READ_ONLY) != 0;
  t->exportable = (flags & NOKV_TXN_EXPORTABLE) != 0;
  /* Counted before the snapshot: plain writes published after this record
   * their keys for the conflict check (write.c). */
  if (!t->read_only) atomic_fetch_add(&db->active_txns, 1);
  int rc = nokv_snapshot_create(db, &t->snap);
  if (rc != NOKV_OK) {
    if (!t->read_only) atomic_fetch_sub(&db->active_txns, 1);
    free(t);
    return rc;
  }
  *out = t;
  return NOKV_OK;
}

uint64_t nokv_txn_read_ts(const nokv_txn *txn) { return nokv_snapshot_ts(txn->snap); }

/* Remembers a read key's fingerprint for the commit's conflict check. */
static void record_read(nokv_txn *t, const char *key, size_t klen, uint64_t fp) {
  if (t->read_only || t->read_all) return;  /* never checked, or checked whole */
  bool ok = true;
  if (!t->any_read || nk_user_key_cmp(key, klen, t->read_lo.data, t->read_lo.len) < 0) {
    t->read_lo.len = 0;
    ok = nk_buf_append(&t->read_lo, key, klen);
  }
  if (ok && (!t->any_read || nk_user_key_cmp(key, klen, t->read_hi.data, t->read_hi.len) > 0)) {
    t->read_hi.len = 0;
    ok = nk_buf_append(&t->read_hi, key, klen);
  }
  t->any_read = true;
  if (ok && t->exportable) {
    uint32_t len = (uint32_t)klen;  /* keys are far below 4 GiB (max_key_size) */
    ok = nk_buf_append(&t->read_keys, &len, sizeof len) && nk_buf_append(&t->read_keys, key, klen);
  }
  if (!ok || t->nreads >= t->db->opts.max_txn_reads ||
      !nk_grow((void **)&t->reads, &t->reads_cap, t->nreads, sizeof *t->reads)) {
    t->read_all = true;  /* coarser, never unsafe */
    free(t->reads);
    t->reads = NULL;
    t->nreads = t->reads_cap = 0;
    nk_buf_release(&t->read_keys);
    return;
  }
  t->reads[t->nreads++] = fp;
}

/* An iterator's on_key callback. */
static void note_read(void *arg, const char *key, size_t klen) {
  record_read(arg, key, klen, nk_hash64(key, klen));
}

int nokv_txn_get(nokv_txn *txn, const void *key, size_t klen, void **val, size_t *vlen) {
  nk_err_clear();
  NK_RET(nk_db_check_key(txn->db, klen));
  uint64_t hash = nk_hash64(key, klen);  /* also the read's fingerprint */
  nk_entry e;
  if (txn->pending != NULL && nk_memtable_get(txn->pending, key, klen, hash, NK_MAX_TS, &e)) {
    if (e.kind == NK_KIND_DELETE) return NOKV_ENOTFOUND;
    nk_value v;
    nk_value_open(e.kind, e.val, e.vlen, &v);  /* buffer_write made it: it opens */
    if (nk_expired(v.expires_ms, txn->snap->time_ms)) return NOKV_ENOTFOUND;
    char *copy = malloc(v.vlen ? v.vlen : 1);
    if (copy == NULL) return nk_err(NOKV_ENOMEM, "out of memory copying a value");
    memcpy(copy, v.val, v.vlen);
    *val = copy;
    *vlen = v.vlen;
    return NOKV_OK;
  }
  record_read(txn, key, klen, hash);
  if (txn->db->hot != NULL && nk_hot_sampled()) {
    nk_hot_touch(txn->db->hot, NOKV_HOT_READS, key, klen, hash, NK_HOT_SAMPLE);
  }
  nokv_read_options ro = {.snapshot = txn->snap};
  return nk_db_get(txn->db, &ro, key, klen, hash, false, val, vlen, NULL);
}

/* Buffers a write; an expiring one (ttl_ms > 0) carries its expiry in front of
 * the value, as it will in the engine (internal_key.h). */
static int buffer_write(nokv_txn *txn, nk_kind kind, const void *key, size_t klen,
                        const void *val, size_t vlen, uint64_t ttl_ms) {
  nk_err_clear();
  nokv_db *db = txn->db;
  if (txn->read_only) return nk_err(NOKV_EINVAL, "write in a read-only transaction");
  NK_RET(nk_db_check_key(db, klen));
  if (vlen > db->opts.max_value_size) {
    return nk_err(NOKV_EINVAL, "value of %zu bytes exceeds max_value_size (%zu bytes)", vlen,
                  db->opts.max_value_size);
  }
  size_t max_bytes = db->opts.max_txn_bytes;
  if (max_bytes > db->opts.memtable_max_bytes / 2) max_bytes = db->opts.memtable_max_bytes / 2;
  if (txn->ops + 1 > db->opts.max_txn_ops || txn->bytes + klen + vlen > max_bytes) {
    return nk_err(NOKV_EINVAL,
                  "transaction too large: %u writes and %zu bytes already, limits %u writes "
                  "and %zu bytes (max_txn_ops, max_txn_bytes); split it",
                  txn->ops, txn->bytes, db->opts.max_txn_ops, max_bytes);
  }
  if (txn->pending == NULL &&
      (txn->pending = nk_memtable_new(PENDING_BUDGET, NULL)) == NULL) {
    return nk_err(NOKV_ENOMEM, "out of memory buffering a transaction's writes");
  }
  /* At the read timestamp: newer than nothing the snapshot sees, and the merge
   * puts the pending source first on an equal version. A second write of the
   * same key replaces the first. */
  char stack[256];
  char *buf = NULL;
  if (ttl_ms > 0) {
    uint64_t expires_ms;
    NK_RET(nk_ttl_expiry(ttl_ms, &expires_ms));
    buf = nk_expiring_value(expires_ms, val, vlen, stack, sizeof stack);
    if (buf == NULL) return nk_err(NOKV_ENOMEM, "out of memory buffering a transaction's writes");
    kind = NK_KIND_VALUE_TTL;
    val = buf;
    vlen += NK_TTL_PREFIX;
  }
  int rc = nk_memtable_add(txn->pending, nokv_txn_read_ts(txn), kind, key, klen, val, vlen);
  if (buf != NULL) nk_expiring_value_free(buf, stack);
  if (rc != NOKV_OK) return nk_err(NOKV_ENOMEM, "out of memory buffering a transaction's writes");
  txn->ops++;
  txn->bytes += klen + vlen;
  return NOKV_OK;
}

int nokv_txn_put(nokv_txn *txn, const void *key, size_t klen, const void *val, size_t vlen) {
  return buffer_write(txn, NK_KIND_VALUE, key, klen, val, vlen, 0);
}

int nokv_txn_put_ttl(nokv_txn *txn, const void *key, size_t klen, const void *val, size_t vlen,
                     uint64_t ttl_ms) {
  return buffer_write(txn, NK_KIND_VALUE, key, klen, val, vlen, ttl_ms);
}

int nokv_txn_delete(nokv_txn *txn, const void *key, size_t klen) {
  return buffer_write(txn, NK_KIND_DELETE, key, klen, NULL, 0, 0);
}

int nokv_txn_iter_new(nokv_txn *txn, const void *start, size_t start_len, const void *end,
                      size_t end_len, nokv_iter **out) {
  nk_err_clear();
  nokv_read_options ro = {.snapshot = txn->snap};
  return nk_db_iter_new(txn->db, &ro, txn->pending, note_read, txn, start, start_len, end,
                        end_len, out);
}

int nokv_txn_iter_new_prefix(nokv_txn *txn, const void *prefix, size_t len, nokv_iter **out) {
  nk_err_clear();
  nokv_read_options ro = {.snapshot = txn->snap};
  return nk_db_iter_new_prefix(txn->db, &ro, txn->pending, note_read, txn, prefix, len, out);
}

/* The pending writes as a new batch, and if writes is not NULL (room for
 * txn->ops) their keys' fingerprints, *nwrites of them. */
static int pending_batch(nokv_txn *txn, nokv_batch **out, uint64_t *writes, size_t *nwrites) {
  nokv_batch *b = NULL;
  NK_RET(nokv_batch_new(&b));
  size_t n = 0;
  int ret = NOKV_OK;
  nk_iter *it = NULL;
  if (txn->pending != NULL) {
    it = nk_memtable_iter_new(txn->pending);
    if (it == NULL) ret = nk_err(NOKV_ENOMEM, "out of memory committing");
    if (it != NULL) nk_iter_seek_first(it);
  }
  for (; ret == NOKV_OK && it != NULL && nk_iter_valid(it); nk_iter_next(it)) {
    size_t kn, vn;
    const char *k = nk_iter_key(it, &kn);
    const char *v = nk_iter_value(it, &vn);
    size_t ulen = nk_ikey_user_len(kn);
    nk_kind kind = nk_trailer_kind(nk_ikey_trailer(k, kn));
    ret = kind == NK_KIND_DELETE ? nokv_batch_delete(b, k, ulen)
                                 : nk_batch_put_kind(b, kind, k, ulen, v, vn, 0);
    if (writes != NULL) writes[n++] = nk_hash64(k, ulen);
  }
  nk_iter_destroy(it);
  if (ret != NOKV_OK) {
    nokv_batch_free(b);
    return ret;
  }
  *out = b;
  if (nwrites != NULL) *nwrites = n;
  return NOKV_OK;
}

int nokv_txn_commit(nokv_txn *txn, const nokv_write_options *wo, uint64_t *commit_ts) {
  nk_err_clear();
  nokv_db *db = txn->db;
  if (txn->read_only || txn->pending == NULL) {
    if (commit_ts != NULL) *commit_ts = nokv_txn_read_ts(txn);
    nokv_txn_discard(txn);
    nk_count(&db->stats.txn_commits, 1);
    return NOKV_OK;
  }
  nokv_batch *b = NULL;
  uint64_t *writes = malloc(txn->ops * sizeof *writes);
  size_t nwrites = 0;
  int ret = writes == NULL ? nk_err(NOKV_ENOMEM, "out of memory committing")
                           : pending_batch(txn, &b, writes, &nwrites);
  if (ret == NOKV_OK) {
    nk_txn_commit c = {.read_ts = nokv_txn_read_ts(txn),
                       .read_all = txn->read_all,
                       .reads = txn->reads,
                       .nreads = txn->nreads,
                       .writes = writes,
                       .nwrites = nwrites,
                       .read_lo = txn->any_read ? txn->read_lo.data : NULL,
                       .read_lo_len = txn->read_lo.len,
                       .read_hi = txn->read_hi.data,
                       .read_hi_len = txn->read_hi.len};
    ret = nk_db_write_txn(txn->db, wo, b, &c, commit_ts);
  }
  nokv_batch_free(b);
  free(writes);
  nokv_txn_discard(txn);
  if (ret == NOKV_OK) nk_count(&db->stats.txn_commits, 1);
  if (ret == NOKV_ECONFLICT) nk_count(&db->stats.txn_conflicts, 1);
  return ret;
}

static int cond_key_cmp(const void *a, const void *b) {
  const nokv_condition *x = a, *y = b;
  return nk_user_key_cmp(x->key, x->klen, y->key, y->klen);
}

/* The distinct keys read, as conditions pointing into t->read_keys (one key
 * per fingerprint recorded: t->nreads, until read_all released both). */
static int read_conditions(nokv_txn *t, size_t max_conds, nokv_condition **out, size_t *n) {
  size_t count = t->read_all ? 0 : t->nreads;
  nokv_condition *c = malloc((count ? count : 1) * sizeof *c);
  if (c == NULL) return nk_err(NOKV_ENOMEM, "out of memory exporting a transaction");
  uint64_t read_ts = nokv_txn_read_ts(t);
  const char *p = t->read_keys.data;
  for (size_t k = 0; k < count; k++) {
    uint32_t len;
    memcpy(&len, p, sizeof len);
    c[k] = (nokv_condition){.op = NOKV_COND_UNWRITTEN_SINCE, .key = p + sizeof len, .klen = len,
                            .commit_ts = read_ts};
    p += sizeof len + len;
  }
  qsort(c, count, sizeof *c, cond_key_cmp);
  size_t distinct = 0;
  for (size_t i = 0; i < count; i++) {
    if (distinct == 0 || cond_key_cmp(&c[distinct - 1], &c[i]) != 0) c[distinct++] = c[i];
  }
  if (t->read_all || distinct > max_conds) {  /* one condition on every key */
    c[0] = (nokv_condition){.op = NOKV_COND_UNWRITTEN_SINCE, .commit_ts = read_ts};
    distinct = 1;
  }
  *out = c;
  *n = distinct;
  return NOKV_OK;
}

int nokv_txn_export(nokv_txn *txn, size_t max_conds, nokv_batch **writes, nokv_condition **conds,
                    size_t *n) {
  nk_err_clear();
  if (!txn->exportable) {
    return nk_err(NOKV_EINVAL, "nokv_txn_export: begin the transaction with NOKV_TXN_EXPORTABLE");
  }
  if (max_conds == 0) return nk_err(NOKV_EINVAL, "nokv_txn_export: max_conds is 0");
  NK_RET(read_conditions(txn, max_conds, conds, n));
  int rc = pending_batch(txn, writes, NULL, NULL);
  if (rc != NOKV_OK) {
    free(*conds);
    *conds = NULL;
  }
  return rc;
}

void nokv_txn_discard(nokv_txn *txn) {
  if (txn == NULL) return;
  nokv_snapshot_release(txn->db, txn->snap);
  if (!txn->read_only) atomic_fetch_sub(&txn->db->active_txns, 1);
  nk_memtable_unref(txn->pending);
  free(txn->reads);
  nk_buf_release(&txn->read_lo);
  nk_buf_release(&txn->read_hi);
  nk_buf_release(&txn->read_keys);
  free(txn);
}
