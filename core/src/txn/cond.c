/*
 * cond.c — nokv_write_if: a batch applied only if conditions on keys hold,
 * atomically with them.
 *
 * It is an optimistic transaction with nothing to buffer: the conditions are
 * judged against a snapshot (read_ts), the keys they read are handed to the
 * write leader as the transaction's reads, and the leader refuses the commit if
 * any of them was written after read_ts (the oracle records plain writes as
 * well as transactions'). So when the batch commits, no write landed on a
 * condition's key between the judgement and the commit: the conditions hold at
 * the commit timestamp. A refused commit means the state of some condition's key
 * changed: the conditions are judged again at a newer snapshot, which either
 * fails them (the answer the caller wants) or commits. Each retry follows a
 * commit that wrote one of those keys, so the loop makes progress; it is bounded
 * all the same.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "db/batch_internal.h"
#include "db/db_impl.h"
#include "txn/cond.h"
#include "util/checksum.h"
#include "util/error.h"

#define MAX_JUDGEMENTS 1000

void (*nk_write_if_judged)(nokv_db *db, void *arg);
void *nk_write_if_judged_arg;

/* NOKV_COND_UNWRITTEN_SINCE on no key: on every key. */
static bool whole_database(const nokv_condition *c) {
  return c->op == NOKV_COND_UNWRITTEN_SINCE && c->key == NULL && c->klen == 0;
}

static int check_conditions(nokv_db *db, const nokv_condition *conds, size_t n) {
  if (n > 0 && conds == NULL) return nk_err(NOKV_EINVAL, "nokv_write_if: NULL conditions");
  for (size_t i = 0; i < n; i++) {
    const nokv_condition *c = &conds[i];
    if (c->op < NOKV_COND_ABSENT || c->op > NOKV_COND_UNWRITTEN_SINCE) {
      return nk_err(NOKV_EINVAL, "nokv_write_if: condition %zu has no valid op (%d)", i,
                    (int)c->op);
    }
    if (c->key == NULL && c->klen > 0) return nk_err(NOKV_EINVAL, "condition %zu: NULL key", i);
    if (whole_database(c)) continue;
    NK_RET(nk_db_check_key(db, c->klen));
    if (c->op == NOKV_COND_VALUE_EQUALS && c->value == NULL && c->vlen > 0) {
      return nk_err(NOKV_EINVAL, "condition %zu: NULL value", i);
    }
  }
  return NOKV_OK;
}

/* Whether condition c holds for a key found (or not) with value v at ts. */
static bool holds(const nokv_condition *c, bool found, const void *v, size_t vlen,
                  uint64_t ts) {
  switch (c->op) {
    case NOKV_COND_ABSENT: return !found;
    case NOKV_COND_PRESENT: return found;
    case NOKV_COND_VALUE_EQUALS:
      return found && vlen == c->vlen && (vlen == 0 || memcmp(v, c->value, vlen) == 0);
    case NOKV_COND_TS_EQUALS: return found && ts == c->commit_ts;
    case NOKV_COND_TS_BELOW: return !found || ts < c->commit_ts;
    case NOKV_COND_UNWRITTEN_SINCE: break;  /* judged on writes, not values: unwritten() */
  }
  return false;
}

/* Judges NOKV_COND_UNWRITTEN_SINCE at snap: whether anything newer than
 * c->commit_ts was written to c's key (*found, at *ts: the newest version,
 * deletions included, or the range deletion hiding it). Versions above the
 * watermark are never dropped and it only rises, so while commit_ts is at or
 * above it every such write is still there to find; below it, one may have
 * been dropped, and the condition fails. */
static int unwritten(nokv_db *db, nokv_snapshot *snap, const nokv_condition *c, uint64_t hash,
                     bool *holds_, bool *found, uint64_t *ts) {
  *found = false;
  *ts = 0;
  if (whole_database(c)) {
    *found = snap->ts > c->commit_ts;
    *ts = *found ? snap->ts : 0;
    *holds_ = !*found;
    return NOKV_OK;
  }
  if (c->commit_ts < nk_db_watermark_peek(db)) {
    *holds_ = false;
    return NOKV_OK;
  }
  nk_view *view = nk_db_acquire_view(db);
  nk_lookup r;
  int rc = nk_db_lookup(db, view, c->key, c->klen, hash, snap->ts, &r);
  if (rc == NOKV_OK && r.found) {
    *found = true;
    *ts = r.ts;
  }
  nk_lookup_release(&r);
  nk_view_unref(view);
  *holds_ = !*found || *ts <= c->commit_ts;
  return rc;
}

/* Judges every condition at snap. NOKV_OK: all hold; NOKV_ECONDITION: result
 * names the first that failed; else a read error. */
static int judge(nokv_db *db, nokv_snapshot *snap, const nokv_condition *conds, size_t n,
                 const uint64_t *hashes, nokv_cond_result *result) {
  nokv_read_options ro;
  nokv_read_options_init(&ro);
  ro.snapshot = snap;
  for (size_t i = 0; i < n; i++) {
    const nokv_condition *c = &conds[i];
    bool found, ok;
    uint64_t ts = 0;
    if (c->op == NOKV_COND_UNWRITTEN_SINCE) {
      NK_RET(unwritten(db, snap, c, hashes[i], &ok, &found, &ts));
    } else {
      void *v = NULL;
      size_t vlen = 0;
      int rc = nk_db_get(db, &ro, c->key, c->klen, hashes[i], false, &v, &vlen, &ts);
      if (rc != NOKV_OK && rc != NOKV_ENOTFOUND) return rc;
      found = rc == NOKV_OK;
      ok = holds(c, found, v, vlen, ts);
      free(v);
    }
    if (!ok) {
      result->failed = i;
      result->found = found;
      result->found_ts = found ? ts : 0;
      return NOKV_ECONDITION;
    }
  }
  return NOKV_OK;
}

/* The fingerprints of the keys b writes (what the oracle records). */
static int write_fingerprints(const nokv_batch *b, uint64_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (b->count == 0) return NOKV_OK;
  uint64_t *fps = malloc(b->count * sizeof *fps);
  if (fps == NULL) return nk_err(NOKV_ENOMEM, "out of memory for a conditional write");
  nk_batch_reader r;
  uint64_t ts;
  uint32_t count;
  int rc = nk_batch_reader_init(&r, b->rep, b->len, &ts, &count);
  nk_batch_op op;
  size_t k = 0;
  while (rc == NOKV_OK && (rc = nk_batch_reader_next(&r, &op)) == 1) {
    fps[k++] = nk_hash64(op.key, op.klen);
    rc = NOKV_OK;
  }
  if (rc < 0) {
    free(fps);
    return rc;
  }
  *out = fps;
  *n = k;
  return NOKV_OK;
}

/* One conditional write: the keys it reads and writes (as the oracle knows
 * them), and while it is judged and committed, its snapshot. */
typedef struct judgement {
  nokv_db *db;
  const nokv_condition *conds;
  size_t n;
  const nokv_batch *b;
  uint64_t *hashes, *writes;
  size_t nwrites;
  size_t lo, hi;  /* the conditions on the smallest and largest key, if keyed */
  bool keyed;
  bool read_all;  /* a condition on every key: any write since conflicts */
  nokv_snapshot *snap;
  nk_txn_commit commit;  /* what the leader checks, once judged true */
  nokv_cond_result result;
} judgement;

static void judgement_release(judgement *j) {
  if (j->snap != NULL) {
    nokv_snapshot_release(j->db, j->snap);
    atomic_fetch_sub(&j->db->active_txns, 1);
    j->snap = NULL;
  }
}

static void judgement_free(judgement *j) {
  judgement_release(j);
  free(j->hashes);
  free(j->writes);
}

static int judgement_init(judgement *j, nokv_db *db, const nokv_condition *conds, size_t n,
                          const nokv_batch *b) {
  *j = (judgement){.db = db, .conds = conds, .n = n, .b = b};
  j->hashes = malloc((n ? n : 1) * sizeof *j->hashes);
  if (j->hashes == NULL) return nk_err(NOKV_ENOMEM, "out of memory for a conditional write");
  bool keyed = false;  /* lo and hi name a condition on a key */
  for (size_t i = 0; i < n; i++) {
    if (whole_database(&conds[i])) {
      j->hashes[i] = 0;
      j->read_all = true;
      continue;
    }
    j->hashes[i] = nk_hash64(conds[i].key, conds[i].klen);
    if (!keyed ||
        nk_user_key_cmp(conds[i].key, conds[i].klen, conds[j->lo].key, conds[j->lo].klen) < 0) {
      j->lo = i;
    }
    if (!keyed ||
        nk_user_key_cmp(conds[i].key, conds[i].klen, conds[j->hi].key, conds[j->hi].klen) > 0) {
      j->hi = i;
    }
    keyed = true;
  }
  j->keyed = keyed;
  return write_fingerprints(b, &j->writes, &j->nwrites);
}

/* Takes a snapshot and judges the conditions at it. NOKV_OK: they hold, and
 * j->commit is what the leader must check; NOKV_ECONDITION: j->result names the
 * first that failed; else an error. The snapshot stays until judgement_release. */
static int judge_now(judgement *j) {
  nokv_db *db = j->db;
  /* Counted as a transaction before the snapshot, as nokv_txn_begin does:
   * plain writes published after it record their keys for the conflict
   * check (write.c), so one landing between judgement and commit is seen. */
  atomic_fetch_add(&db->active_txns, 1);
  int rc = nokv_snapshot_create(db, &j->snap);
  if (rc != NOKV_OK) {
    atomic_fetch_sub(&db->active_txns, 1);
    return rc;
  }
  j->result.read_ts = nokv_snapshot_ts(j->snap);
  rc = judge(db, j->snap, j->conds, j->n, j->hashes, &j->result);
  if (rc == NOKV_OK && j->b->count > 0 && nk_write_if_judged != NULL) {
    nk_write_if_judged(db, nk_write_if_judged_arg);
  }
  j->commit = (nk_txn_commit){.read_ts = j->result.read_ts,
                              .read_all = j->read_all,
                              .reads = j->hashes,
                              .nreads = j->n,
                              .writes = j->writes,
                              .nwrites = j->nwrites,
                              .read_lo = j->keyed ? j->conds[j->lo].key : NULL,
                              .read_lo_len = j->keyed ? j->conds[j->lo].klen : 0,
                              .read_hi = j->keyed ? j->conds[j->hi].key : NULL,
                              .read_hi_len = j->keyed ? j->conds[j->hi].klen : 0};
  return rc;
}

/* Counts how a conditional write ended (NOKV_ECONFLICT: judged again). */
static void count_outcome(judgement *j, int rc) {
  nokv_db *db = j->db;
  if (rc == NOKV_OK) nk_count(&db->stats.cond_writes, 1);
  if (rc == NOKV_ECONFLICT) nk_count(&db->stats.cond_rejudged, 1);
  if (rc == NOKV_ECONDITION) {
    nk_count(&db->stats.cond_failures, 1);
    nk_err(NOKV_ECONDITION, "condition %zu did not hold", j->result.failed);
  }
}

static int check_args(nokv_db *db, const nokv_condition *conds, size_t n, const nokv_batch *b) {
  if (b == NULL) return nk_err(NOKV_EINVAL, "nokv_write_if needs a batch (it may be empty)");
  return check_conditions(db, conds, n);
}

int nokv_write_if(nokv_db *db, const nokv_write_options *wo, const nokv_condition *conds,
                  size_t n, const nokv_batch *b, uint64_t *commit_ts, nokv_cond_result *result) {
  nk_err_clear();
  if (result != NULL) memset(result, 0, sizeof *result);
  NK_RET(check_args(db, conds, n, b));
  judgement j;
  int rc = judgement_init(&j, db, conds, n, b);
  for (int judged = 0; rc == NOKV_OK; judged++) {
    if (judged == MAX_JUDGEMENTS) {
      rc = nk_err(NOKV_ECONFLICT,
                  "nokv_write_if: its keys were written %d times between judgement and "
                  "commit; retry",
                  MAX_JUDGEMENTS);
      break;
    }
    rc = judge_now(&j);
    if (rc == NOKV_OK && b->count == 0) {
      if (commit_ts != NULL) *commit_ts = j.result.read_ts;  /* a pure check */
    } else if (rc == NOKV_OK) {
      rc = nk_db_write_txn(db, wo, b, &j.commit, commit_ts);
    }
    judgement_release(&j);
    if (rc != NOKV_ECONFLICT) break;
    count_outcome(&j, rc);
    nk_err_clear();
    rc = NOKV_OK;
  }
  if (rc != NOKV_ECONFLICT) count_outcome(&j, rc);
  if (result != NULL) *result = j.result;
  judgement_free(&j);
  return rc;
}

/* ---- without waiting: judged here, committed by the commit thread ---- */

typedef struct cond_async {
  judgement j;  /* its snapshot held until the commit */
  nokv_write_if_done done;
  void *arg;
} cond_async;

static void cond_async_committed(void *arg, int rc, uint64_t ts, const char *msg) {
  cond_async *a = arg;
  count_outcome(&a->j, rc);  /* NOKV_ECONFLICT: the caller judges again */
  /* The snapshot goes before the caller hears: one who counts open
   * transactions after the answer must not find this one. */
  judgement_release(&a->j);
  a->done(a->arg, rc, ts, &a->j.result, msg);
  judgement_free(&a->j);
  free(a);
}

int nokv_write_if_async(nokv_db *db, const nokv_write_options *wo, const nokv_condition *conds,
                        size_t n, const nokv_batch *b, nokv_write_if_done done, void *arg) {
  nk_err_clear();
  if (done == NULL) return nk_err(NOKV_EINVAL, "nokv_write_if_async needs a completion");
  NK_RET(check_args(db, conds, n, b));
  cond_async *a = calloc(1, sizeof *a);
  if (a == NULL) return nk_err(NOKV_ENOMEM, "out of memory for a conditional write");
  a->done = done;
  a->arg = arg;
  int rc = judgement_init(&a->j, db, conds, n, b);
  if (rc == NOKV_OK) rc = judge_now(&a->j);
  if (rc == NOKV_OK && b->count > 0) {
    rc = nk_db_write_txn_async(db, wo, b, &a->j.commit, cond_async_committed, a);
    if (rc == NOKV_OK) return NOKV_OK;  /* done runs on the commit thread */
  }
  if (rc != NOKV_OK && rc != NOKV_ECONDITION && a->j.snap == NULL) {
    judgement_free(&a->j);  /* refused before any judgement: done is not called */
    free(a);
    return rc;
  }
  /* Answered here: a condition failed, a read or the queueing failed, or a
   * pure check. */
  count_outcome(&a->j, rc);
  judgement_release(&a->j);  /* as in cond_async_committed */
  done(arg, rc, rc == NOKV_OK ? a->j.result.read_ts : 0, &a->j.result,
       rc == NOKV_OK ? "" : nokv_errmsg());
  judgement_free(&a->j);
  free(a);
  return NOKV_OK;
}
