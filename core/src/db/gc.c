/*
 * gc.c — value-log garbage collection, and the epochs that say when a
 * collected segment may be deleted.
 *
 * Discard statistics: whenever a flush or compaction drops a version whose
 * value lives in the value log, the entry's bytes are added to its segment's
 * dead-byte total, logged in the manifest with the edit (build.c).
 *
 * Collecting a segment (one older than the durable head, so every entry in it
 * is in a table): read it front to back; an entry is live if the newest
 * version of its key, read at a fresh snapshot, is exactly that entry. Live
 * entries are written again through the normal write path, keeping their key
 * and commit timestamp (so snapshots, commit timestamps and conflict checks see
 * no change) with a new pointer; the newer source wins on an equal version. The
 * write is conditional: the leader drops any entry whose key gained a newer
 * version since the snapshot (it can tell from the memtables alone, and refuses
 * the batch if a memtable with newer writes was flushed meanwhile). Then the
 * manifest records the segment as retired.
 *
 * Deleting it: readers may still hold old pointers into it. Every view and
 * every snapshot pins the epoch that was current when it was taken; retiring a
 * segment ends the epoch (and publishes a new view). Each epoch holds a
 * reference to the next one, so an epoch dies only after all older ones, and
 * when it dies no reader that could have read a pointer into its retired
 * segments is left: they are deleted then.
 *
 * Background GC runs when compaction reports dead bytes, picks the segment with
 * the largest dead share above value_log_gc_ratio, and is throttled to
 * value_log_gc_bytes_per_sec of rewrites; nokv_vlog_gc() collects on demand.
 *
 * Compaction learns of dead values only when it rewrites the versions that
 * point at them, and an idle database does not compact: overwritten values
 * would hold their disk space forever. So once no write has committed for
 * value_log_gc_idle_ms, GC measures instead (an idle check): it flushes the
 * memtable (values only the WAL points at keep their segment uncollectable),
 * then reads each sealed segment not known to be past the ratio and checks
 * every entry's liveness as a collection would, and collects those whose
 * measured dead share reaches it. This reads the value log once, only while
 * nothing is written, and once per idle period.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/batch_internal.h"
#include "db/db_impl.h"
#include "db/gc_internal.h"
#include "util/clock.h"
#include "util/checksum.h"
#include "util/error.h"

/* ---- epochs ---- */

struct nk_epoch {
  uint32_t refs;  /* atomic */
  nokv_db *db;
  struct nk_epoch *next;  /* the newer epoch (referenced) */
  nk_vlog_segment_info *doomed;  /* segments to delete when this epoch dies */
  size_t ndoomed;
};

nk_epoch *nk_epoch_new(nokv_db *db) {
  nk_epoch *e = calloc(1, sizeof *e);
  if (e != NULL) {
    e->refs = 1;
    e->db = db;
  }
  return e;
}

void nk_epoch_ref(nk_epoch *e) { __atomic_fetch_add(&e->refs, 1, __ATOMIC_RELAXED); }

void nk_epoch_unref(nk_epoch *e) {
  while (e != NULL && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    nokv_db *db = e->db;
    for (size_t i = 0; i < e->ndoomed; i++) {
      if (nk_vlog_remove_segment(db->vlog, e->doomed[i].fid) == NOKV_OK) {
        nk_vset_forget_segment(db->vset, e->doomed[i].fid);
        nk_count(&db->stats.gc_reclaimed, e->doomed[i].size);
      }
    }
    nk_epoch *next = e->next;
    free(e->doomed);
    free(e);
    e = next;  /* drop the reference the dead epoch held */
  }
}

nk_epoch *nk_db_pin_epoch(nokv_db *db) {
  pthread_mutex_lock(&db->view_mu);
  nk_epoch *e = db->epoch;
  nk_epoch_ref(e);
  pthread_mutex_unlock(&db->view_mu);
  return e;
}

/* Ends the current epoch with fid to delete when it dies. GC rewrote only the
 * newest version of each key (checked at timestamps up to now); older versions
 * still in the tree may point into fid, so explicit read timestamps below now are
 * no longer served (NOKV_ESTALE, not a missing segment); snapshots pin the epoch
 * instead. */
static int retire(nokv_db *db, uint32_t fid, uint64_t size) {
  nk_edit e;
  nk_edit_init(&e);
  nk_db_raise_horizon(db, nk_oracle_read_ts(&db->oracle));
  int ret = nk_edit_retire_segment(&e, fid);
  if (ret == NOKV_OK) ret = nk_db_log_and_apply(db, &e, "value log GC");
  nk_edit_release(&e);
  NK_RET(ret);
  nk_epoch *fresh = nk_epoch_new(db);
  pthread_mutex_lock(&db->mu);
  nk_epoch *old = db->epoch;
  nk_vlog_segment_info *doomed =
      fresh == NULL ? NULL : realloc(old->doomed, (old->ndoomed + 1) * sizeof *doomed);
  if (doomed == NULL) {
    pthread_mutex_unlock(&db->mu);
    free(fresh);
    /* The manifest says retired: the next open deletes it. */
    return nk_err(NOKV_ENOMEM, "out of memory retiring value log segment %u", fid);
  }
  old->doomed = doomed;
  old->doomed[old->ndoomed++] = (nk_vlog_segment_info){.fid = fid, .size = size};
  nk_epoch_ref(fresh);  /* old's reference; db's is the one it was born with */
  old->next = fresh;
  pthread_mutex_lock(&db->view_mu);
  db->epoch = fresh;
  pthread_mutex_unlock(&db->view_mu);
  ret = nk_db_refresh_view(db);  /* new readers stop pinning old */
  if (ret != NOKV_OK) nk_db_set_bg_error(db, ret, "value log GC");
  pthread_mutex_unlock(&db->mu);
  nk_epoch_unref(old);
  return ret;
}

/* ---- collecting one segment ---- */

#define GC_BATCH_OPS 256

typedef struct gc_ctx {
  nokv_db *db;
  bool throttled;
  uint64_t start_micros;
  uint64_t batch_limit;     /* bytes of values per rewrite batch */
  /* Entries read but not yet checked and written. Their keys and values are
   * copied into pending_bytes (the scan's buffer moves), at key_off[i]. */
  nk_vlog_entry pending[GC_BATCH_OPS];
  size_t key_off[GC_BATCH_OPS];
  nk_buf pending_bytes;
  size_t npending;
  uint64_t rewritten;       /* bytes of entries written again */
} gc_ctx;

/* Is the newest version of e's key at read_ts exactly e? If so, *expires_ms
 * (may be NULL) is its expiry (0: none), which its rewrite keeps. An expiring version is live
 * until compaction turns it into a tombstone: GC does not judge expiry itself,
 * so no reader can be left with a pointer to a collected value. */
static int is_live(nokv_db *db, nk_view *view, uint64_t read_ts, const nk_vlog_entry *e,
                   bool *live, uint64_t *expires_ms) {
  nk_lookup r;
  *live = false;
  NK_RET(nk_db_lookup(db, view, e->key, e->klen, nk_hash64(e->key, e->klen), read_ts, &r));
  nk_vptr p;
  nk_value v;
  *live = r.found && r.ts == e->ts && nk_value_open(r.kind, r.val, r.vlen, &v) &&
          v.kind == NK_KIND_VPTR && nk_vptr_decode(v.val, v.vlen, &p) && p.fid == e->fid &&
          p.off == e->off;
  if (expires_ms != NULL) *expires_ms = *live ? v.expires_ms : 0;
  nk_lookup_release(&r);
  return NOKV_OK;
}

/* Adds e's rewrite to b at its own timestamp, with its expiry if it has one. */
static int add_rewrite(nokv_batch *b, const nk_vlog_entry *e, uint64_t expires_ms) {
  if (expires_ms == 0) return nk_batch_put_at(b, e->key, e->klen, e->val, e->vlen, e->ts);
  return nk_batch_put_expiring(b, e->key, e->klen, e->val, e->vlen, expires_ms, e->ts);
}

/* Waits on gc_cv for at most micros; true if the time ran out. REQUIRES: mu held. */
static bool wait_gc_cv(nokv_db *db, uint64_t micros) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)(micros / 1000000u);
  until.tv_nsec += (long)(micros % 1000000u) * 1000;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  return pthread_cond_timedwait(&db->gc_cv, &db->mu, &until) == ETIMEDOUT;
}

/* Waits until the rewrite rate is back under the limit, or the database closes. */
static void throttle(gc_ctx *c) {
  uint64_t rate = c->db->opts.value_log_gc_bytes_per_sec;
  if (!c->throttled || rate == 0) return;
  uint64_t due = c->start_micros + c->rewritten * 1000000u / rate;
  nokv_db *db = c->db;
  pthread_mutex_lock(&db->mu);
  while (!db->stop_bg && db->gc_urgent == 0 && nk_now_micros() < due) {
    wait_gc_cv(db, due - nk_now_micros());
  }
  pthread_mutex_unlock(&db->mu);
}

/* Checks the pending entries against a fresh snapshot and writes the live ones
 * again. The leader may refuse (NOKV_ECONFLICT) if a flush raced the check; then
 * the check is repeated. */
static int flush_pending(gc_ctx *c) {
  nokv_db *db = c->db;
  int ret = NOKV_OK;
  for (int attempt = 0; c->npending > 0; attempt++) {
    /* The timestamp first, then the view: every write at or below read_ts was
     * in a memtable before read_ts was published, so this view holds it (in a
     * memtable or a table). The other order could miss a write that landed in a
     * memtable sealed after the view was taken, and if that memtable were then
     * flushed before the leader's check, an old value would come back. */
    uint64_t read_ts = nk_oracle_read_ts(&db->oracle);
    nk_view *view = nk_db_acquire_view(db);
    nokv_batch *b = NULL;
    uint64_t bytes = 0;
    ret = nokv_batch_new(&b);
    for (size_t i = 0; ret == NOKV_OK && i < c->npending; i++) {
      const nk_vlog_entry *e = &c->pending[i];
      bool live = false;
      uint64_t expires_ms = 0;
      ret = is_live(db, view, read_ts, e, &live, &expires_ms);
      if (ret == NOKV_OK && live) {
        ret = add_rewrite(b, e, expires_ms);
        bytes += e->len;
      }
    }
    nk_view_unref(view);
    if (ret == NOKV_OK && nokv_batch_count(b) > 0) ret = nk_db_write_gc(db, b, read_ts);
    nokv_batch_free(b);
    if (ret == NOKV_ECONFLICT && attempt < 8) continue;
    if (ret == NOKV_OK) {
      c->rewritten += bytes;
      nk_count(&db->stats.gc_rewritten, bytes);
    }
    break;
  }
  c->npending = 0;
  c->pending_bytes.len = 0;
  if (ret == NOKV_OK) throttle(c);
  return ret;
}

/* Points the pending entries at their copies, then checks and writes them. */
static int check_and_write(gc_ctx *c) {
  for (size_t i = 0; i < c->npending; i++) {
    c->pending[i].key = c->pending_bytes.data + c->key_off[i];
    c->pending[i].val = c->pending[i].key + c->pending[i].klen;
  }
  return flush_pending(c);
}

static int gc_entry(void *arg, const nk_vlog_entry *e) {
  gc_ctx *c = arg;
  if (__atomic_load_n(&c->db->stop_bg, __ATOMIC_RELAXED)) {
    return nk_err(NOKV_ECLOSED, "database is closing");
  }
  c->key_off[c->npending] = c->pending_bytes.len;
  if (!nk_buf_append(&c->pending_bytes, e->key, e->klen) ||
      !nk_buf_append(&c->pending_bytes, e->val, e->vlen)) {
    return nk_err(NOKV_ENOMEM, "out of memory in value log GC");
  }
  c->pending[c->npending++] = *e;  /* key and val are pointed at the copy later */
  if (c->npending == GC_BATCH_OPS || c->pending_bytes.len >= c->batch_limit) {
    return check_and_write(c);
  }
  return NOKV_OK;
}

/* Collects segment fid of the given size: rewrites its live entries, then
 * retires it. */
static int collect(nokv_db *db, uint32_t fid, uint64_t size, bool throttled) {
  gc_ctx *c = calloc(1, sizeof *c);
  char *path = nk_vlog_segment_path(db->vlog, fid);
  int ret = NOKV_OK;
  if (c == NULL || path == NULL) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory in value log GC"));
  c->db = db;
  c->throttled = throttled;
  c->start_micros = nk_now_micros();
  c->batch_limit = db->opts.memtable_max_bytes / 4 < (1u << 20) ? db->opts.memtable_max_bytes / 4
                                                                 : (1u << 20);
  nk_count(&db->stats.gc_runs, 1);
  nk_vlog_scan_result res;
  ret = nk_vlog_scan_file(db->env, path, fid, 0, gc_entry, c, &res);
  if (ret == NOKV_OK && c->npending > 0) {
    ret = check_and_write(c);
  }
  if (ret == NOKV_OK && res.torn) {
    ret = nk_err(NOKV_ECORRUPT, "value log segment %s is damaged at %s; not collecting it", path,
                 res.why);
  }
  /* An entry counted dead may be dead only because of a newer version not yet
   * synced: after a power cut that version is gone and the entry is the newest
   * again. Whatever made the segment's entries dead must be durable before the
   * segment may go. */
  if (ret == NOKV_OK) ret = nk_db_sync_logs(db);
  if (ret == NOKV_OK) ret = retire(db, fid, size);
  if (ret == NOKV_OK) nk_count(&db->stats.gc_collected, 1);
err:
  if (c != NULL) nk_buf_release(&c->pending_bytes);
  free(c);
  free(path);
  return ret;
}

/* May GC take segment g: sealed, holding entries, before the durable head
 * (every entry in it is in a table), not retired already? */
static bool collectable(const nk_vlog_segment_info *g, const nk_vset_vlog *st) {
  if (g->active || g->fid >= st->head_fid || g->size <= NK_VLOG_HEADER) return false;
  for (size_t j = 0; j < st->nretired; j++) {
    if (st->retired[j] == g->fid) return false;
  }
  return true;
}

/* ---- measuring a segment's dead share (idle checks) ---- */

typedef struct measure_ctx {
  nokv_db *db;
  nk_view *view;
  uint64_t read_ts;
  uint64_t live, total;  /* entry bytes */
} measure_ctx;

static int measure_entry(void *arg, const nk_vlog_entry *e) {
  measure_ctx *m = arg;
  if (__atomic_load_n(&m->db->stop_bg, __ATOMIC_RELAXED)) {
    return nk_err(NOKV_ECLOSED, "database is closing");
  }
  bool live = false;
  NK_RET(is_live(m->db, m->view, m->read_ts, e, &live, NULL));
  m->total += e->len;
  if (live) m->live += e->len;
  return NOKV_OK;
}

/* The share of segment fid's entry bytes that no current read can reach. */
static int measure_dead_share(nokv_db *db, uint32_t fid, double *share) {
  char *path = nk_vlog_segment_path(db->vlog, fid);
  if (path == NULL) return nk_err(NOKV_ENOMEM, "out of memory in value log GC");
  /* The timestamp before the view, as flush_pending does. */
  measure_ctx m = {.db = db, .read_ts = nk_oracle_read_ts(&db->oracle)};
  m.view = nk_db_acquire_view(db);
  nk_vlog_scan_result res;
  int ret = nk_vlog_scan_file(db->env, path, fid, 0, measure_entry, &m, &res);
  nk_view_unref(m.view);
  free(path);
  NK_RET(ret);
  nk_count(&db->stats.gc_measured, 1);
  *share = m.total == 0 ? 0 : (double)(m.total - m.live) / (double)m.total;
  return NOKV_OK;
}

/* ---- choosing segments ---- */

/* The segment with the largest dead share >= ratio that may be collected:
 * before the durable head, not retired, not in skip. false if none. */
static bool pick(nokv_db *db, double ratio, const uint32_t *skip, size_t nskip, uint32_t *fid,
                 uint64_t *size) {
  nk_vset_vlog st;
  nk_vlog_segment_info *segs = NULL;
  size_t n = 0;
  if (nk_vset_vlog_state(db->vset, &st) != NOKV_OK) return false;
  bool found = false;
  double best = 0;
  if (nk_vlog_segments(db->vlog, &segs, &n) == NOKV_OK) {
    for (size_t i = 0; i < n; i++) {
      const nk_vlog_segment_info *g = &segs[i];
      bool excluded = !collectable(g, &st);
      for (size_t j = 0; j < nskip && !excluded; j++) excluded = skip[j] == g->fid;
      if (excluded) continue;
      uint64_t dead = 0;
      for (size_t j = 0; j < st.ndiscard; j++) {
        if (st.discard[j].fid == g->fid) dead = st.discard[j].bytes;
      }
      double share = (double)dead / (double)(g->size - NK_VLOG_HEADER);
      if (share >= ratio && share > best) {
        best = share;
        *fid = g->fid;
        *size = g->size;
        found = true;
      }
    }
  }
  free(segs);
  nk_vset_vlog_release(&st);
  return found;
}

/* The idle check (see the top of the file). Errors are not fatal to the
 * database: the segments stay, and the next idle period tries again. */
int nk_db_idle_check(nokv_db *db) {
  int ret = nokv_flush(db);
  if (ret != NOKV_OK) return ret;
  nk_count(&db->stats.gc_idle_checks, 1);
  double ratio = db->opts.value_log_gc_ratio;
  nk_vset_vlog st;
  nk_vlog_segment_info *segs = NULL;
  size_t n = 0;
  pthread_mutex_lock(&db->gc_mu);
  ret = nk_vset_vlog_state(db->vset, &st);
  if (ret != NOKV_OK) {
    pthread_mutex_unlock(&db->gc_mu);
    return ret;
  }
  ret = nk_vlog_segments(db->vlog, &segs, &n);
  for (size_t i = 0; i < n && !__atomic_load_n(&db->stop_bg, __ATOMIC_RELAXED); i++) {
    const nk_vlog_segment_info *g = &segs[i];
    if (!collectable(g, &st)) continue;
    double share = 0;
    if (measure_dead_share(db, g->fid, &share) != NOKV_OK) continue;
    int rc = share >= ratio ? collect(db, g->fid, g->size, true) : NOKV_OK;
    if (ret == NOKV_OK) ret = rc;
  }
  free(segs);
  nk_vset_vlog_release(&st);
  pthread_mutex_unlock(&db->gc_mu);
  return ret;
}

int nokv_vlog_gc(nokv_db *db, double ratio, uint32_t *collected) {
  nk_err_clear();
  if (ratio <= 0) ratio = db->opts.value_log_gc_ratio;
  uint32_t done = 0, *skip = NULL;
  size_t nskip = 0;
  if (collected != NULL) *collected = 0;
  /* A stopped database collects nothing (its manifest may not take edits). */
  int ret = nk_db_bg_error(db);
  NK_RET(ret);
  /* A throttled background collection in progress finishes at full speed. */
  pthread_mutex_lock(&db->mu);
  db->gc_urgent++;
  pthread_cond_broadcast(&db->gc_cv);
  pthread_mutex_unlock(&db->mu);
  pthread_mutex_lock(&db->gc_mu);
  uint32_t fid;
  uint64_t size;
  char damage[256] = "";  /* the first damaged segment's message */
  while (pick(db, ratio, skip, nskip, &fid, &size)) {
    ret = collect(db, fid, size, false);
    if (ret == NOKV_ECORRUPT) {
      /* Leave a damaged segment alone; go on with the others. */
      if (damage[0] == '\0') snprintf(damage, sizeof damage, "%s", nokv_errmsg());
      uint32_t *p = realloc(skip, (nskip + 1) * sizeof *p);
      if (p == NULL) break;
      skip = p;
      skip[nskip++] = fid;
      ret = NOKV_OK;
      continue;
    }
    if (ret != NOKV_OK) break;
    done++;
  }
  if (ret == NOKV_OK && damage[0] != '\0') ret = nk_err(NOKV_ECORRUPT, "%s", damage);
  pthread_mutex_unlock(&db->gc_mu);
  pthread_mutex_lock(&db->mu);
  db->gc_urgent--;
  pthread_mutex_unlock(&db->mu);
  free(skip);
  if (collected != NULL) *collected = done;
  /* The caller asked for the space: the collected segments no read holds are
   * gone when this returns. */
  nk_reaper_drain(db->reaper);
  return ret;
}

void nk_db_gc_wanted(nokv_db *db) {
  pthread_mutex_lock(&db->mu);
  db->gc_wanted = true;
  pthread_cond_broadcast(&db->gc_cv);
  pthread_mutex_unlock(&db->mu);
}

void *nk_db_gc_main(void *arg) {
  nokv_db *db = arg;
  uint32_t idle_ms = db->opts.disable_auto_gc ? 0 : db->opts.value_log_gc_idle_ms;
  /* The last commit timestamp seen at the previous tick, and the one the last
   * idle check ended at: a check runs once per idle period. */
  uint64_t seen_ts = 0, checked_ts = nk_oracle_read_ts(&db->oracle);
  pthread_mutex_lock(&db->mu);
  for (;;) {
    bool idle = false;
    while (!db->stop_bg && (!db->gc_wanted || db->bg_error != NOKV_OK)) {
      if (idle_ms == 0) {
        pthread_cond_wait(&db->gc_cv, &db->mu);
        continue;
      }
      if (!wait_gc_cv(db, (uint64_t)idle_ms * 1000)) continue;
      uint64_t ts = nk_oracle_read_ts(&db->oracle);
      if (ts == seen_ts && ts != checked_ts && db->bg_error == NOKV_OK) {
        idle = true;
        break;
      }
      seen_ts = ts;
    }
    if (db->stop_bg) break;
    if (idle) {
      pthread_mutex_unlock(&db->mu);
      (void)nk_db_idle_check(db);
      /* Its own rewrites do not start another period. */
      checked_ts = seen_ts = nk_oracle_read_ts(&db->oracle);
      pthread_mutex_lock(&db->mu);
      continue;
    }
    db->gc_wanted = false;
    pthread_mutex_unlock(&db->mu);
    uint32_t fid;
    uint64_t size;
    pthread_mutex_lock(&db->gc_mu);
    bool more = pick(db, db->opts.value_log_gc_ratio, NULL, 0, &fid, &size);
    /* One segment per round: another may be due once it is done. A failure is
     * not fatal (the segment stays); the next compaction report retries. */
    bool ok = more && collect(db, fid, size, true) == NOKV_OK;
    pthread_mutex_unlock(&db->gc_mu);
    pthread_mutex_lock(&db->mu);
    if (ok) db->gc_wanted = true;
  }
  pthread_mutex_unlock(&db->mu);
  return NULL;
}
