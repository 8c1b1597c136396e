/*
 * watch.c — the change ring and watches (nokv/watch.h).
 *
 * The ring holds the newest user commits, each as an encoded batch with its
 * values inline (batch_internal.h), in commit order. It starts at the first
 * nokv_watch_open: from then on the write leader appends every commit it
 * publishes, in timestamp order, and every commit after ring->base is in it.
 * Past watch_ring_bytes the oldest records go, and base moves up to them. A
 * write never waits for a watcher.
 *
 * A watch reads the records from its cursor on. What is older than the ring
 * is replayed from the LSM: a scan of the watch's range in a pinned view
 * collects the versions with timestamps in [cursor, base], which are all
 * still there if cursor is above history_horizon (no flush or compaction in
 * that view dropped a version above it), plus the range tombstones of that
 * interval; sorted by timestamp they are the same groups the ring would have
 * given. Below the horizon the history is gone: NOKV_ESTALE.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/batch_internal.h"
#include "db/db_impl.h"
#include "nokv/watch.h"
#include "util/error.h"
#include "util/grow.h"

/* ---- the ring ---- */

typedef struct nk_change {
  uint32_t refs;  /* atomic */
  uint64_t ts;
  size_t len;     /* of rep */
  char rep[];
} nk_change;

struct nk_watch_ring {
  pthread_mutex_t mu;
  pthread_cond_t cv;  /* a record was appended, or a watch was interrupted */
  atomic_bool active;
  nk_change **recs;   /* circular: recs[(head + i) % cap] for i < n, oldest first */
  size_t cap, head, n, bytes, max_bytes;
  uint64_t base;      /* every user commit after it is in the ring */
  uint64_t newest;    /* the newest commit recorded (or skipped: base) */
};

static void change_unref(nk_change *c) {
  if (c != NULL && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) free(c);
}

nk_watch_ring *nk_watch_ring_new(size_t max_bytes) {
  nk_watch_ring *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  atomic_init(&r->active, false);
  r->max_bytes = max_bytes;
  return r;
}

void nk_watch_ring_free(nk_watch_ring *r) {
  if (r == NULL) return;
  for (size_t i = 0; i < r->n; i++) change_unref(r->recs[(r->head + i) % r->cap]);
  free(r->recs);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
}

bool nk_watch_ring_active(nk_watch_ring *r) { return atomic_load(&r->active); }

/* Drops the oldest record. REQUIRES: mu, n > 0. */
static void evict_oldest(nk_watch_ring *r) {
  nk_change *c = r->recs[r->head];
  r->head = (r->head + 1) % r->cap;
  r->n--;
  r->bytes -= c->len;
  r->base = c->ts;
  change_unref(c);
}

/* Doubles the ring's slots, keeping the records in order. REQUIRES: mu. */
static bool grow_ring(nk_watch_ring *r) {
  size_t cap = r->cap ? 2 * r->cap : 256;
  nk_change **recs = malloc(cap * sizeof *recs);
  if (recs == NULL) return false;
  for (size_t i = 0; i < r->n; i++) recs[i] = r->recs[(r->head + i) % r->cap];
  free(r->recs);
  r->recs = recs;
  r->cap = cap;
  r->head = 0;
  return true;
}

/* b as committed at ts, values inline: VALUE_REF ops become VALUE. NULL on ENOMEM. */
static nk_change *encode_change(uint64_t ts, const nokv_batch *b) {
  nk_batch_reader r;
  nk_batch_op op;
  uint64_t unused;
  uint32_t count;
  size_t need = NK_BATCH_HEADER;
  if (nk_batch_reader_init(&r, b->rep, b->len, &unused, &count) != NOKV_OK) return NULL;
  while (nk_batch_reader_next(&r, &op) == 1) {
    if (op.kind == NK_KIND_VALUE_REF) nk_batch_op_deref(&op);
    need += nk_batch_op_max_len(op.klen, op.vlen);
  }
  nk_change *c = malloc(sizeof *c + need);
  if (c == NULL) return NULL;
  c->refs = 1;
  c->ts = ts;
  nk_put_u64(c->rep, ts);
  nk_put_u32(c->rep + 8, count);
  char *p = c->rep + NK_BATCH_HEADER;
  nk_batch_reader_init(&r, b->rep, b->len, &unused, &count);
  while (nk_batch_reader_next(&r, &op) == 1) {
    if (op.kind == NK_KIND_VALUE_REF) {
      nk_batch_op_deref(&op);
      op.kind = NK_KIND_VALUE;
    }
    op.ts = 0;
    p = nk_batch_encode_op(p, &op);
  }
  c->len = (size_t)(p - c->rep);
  return c;
}

void nk_watch_record(nk_watch_ring *r, uint64_t ts, const nokv_batch *b) {
  nk_change *c = b->count > 0 ? encode_change(ts, b) : NULL;
  pthread_mutex_lock(&r->mu);
  if (ts <= r->base) {  /* published before the ring started: replayed instead */
    pthread_mutex_unlock(&r->mu);
    change_unref(c);
    return;
  }
  if (c != NULL) {
    while (r->n > 0 && r->bytes + c->len > r->max_bytes) evict_oldest(r);
    if (c->len > r->max_bytes ||
        (r->n == r->cap && !grow_ring(r))) {
      change_unref(c);
      c = NULL;
    }
  }
  r->newest = ts;
  if (c == NULL) {
    /* Out of memory, or too big to keep: the ring starts over after ts, and
     * watches replay the commits up to it from the LSM. */
    while (r->n > 0) evict_oldest(r);
    if (b->count > 0) r->base = ts;
  } else {
    r->recs[(r->head + r->n) % r->cap] = c;
    r->n++;
    r->bytes += c->len;
  }
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* ---- watches ---- */

/* One event being put together: byte fields are offsets into the watch's
 * bytes until the group is handed out. */
typedef struct wentry {
  uint64_t ts;
  nokv_event_type type;
  uint32_t seq;  /* its place in its batch (the last op on a key wins) */
  size_t key, klen, val, vlen, end, elen;
  bool has_val;
  uint64_t expires;
  const char *kp, *ep;  /* the key's (and a range's end's) bytes, set just before sorting */
  size_t prev, prevlen;
  bool has_prev, prev_lost;
} wentry;

struct nokv_watch {
  nokv_db *db;
  char *start, *end;  /* owned; end NULL: unbounded */
  size_t start_len, end_len;
  bool keys_only, prev_values;
  uint64_t cursor;    /* the next commit timestamp to deliver */
  atomic_bool interrupted;
  /* Replayed from the LSM and not yet delivered: entries[pos..n), sorted. */
  wentry *replayed;
  size_t nreplayed, replayed_pos, replayed_cap;
  nk_buf replay_bytes;
  /* The group handed out last. */
  wentry *group;
  size_t ngroup, group_cap;
  nk_buf bytes;
  nokv_event *events;
  size_t events_cap;
};

void nokv_watch_options_init(nokv_watch_options *o) { memset(o, 0, sizeof *o); }

uint64_t nokv_watch_oldest_ts(nokv_db *db) { return atomic_load(&db->history_horizon) + 1; }

static int stale(nokv_db *db, uint64_t ts) {
  return nk_err(NOKV_ESTALE,
                "commit %llu is older than the history kept; the oldest a watch can start "
                "from is %llu (history_retention_commits keeps more)",
                (unsigned long long)ts, (unsigned long long)nokv_watch_oldest_ts(db));
}

static bool in_range(const nokv_watch *w, const char *k, size_t n) {
  return nk_user_key_cmp(k, n, w->start, w->start_len) >= 0 &&
         (w->end == NULL || nk_user_key_cmp(k, n, w->end, w->end_len) < 0);
}

/* Appends n bytes to buf; their offset in *off. */
static bool put_bytes(nk_buf *buf, const void *p, size_t n, size_t *off) {
  *off = buf->len;
  return n == 0 || nk_buf_append(buf, p, n);
}

/* The part of [a, b) inside the watch's range, appended as a DELETE_RANGE
 * entry; false on ENOMEM. */
static bool add_range(nokv_watch *w, nk_buf *buf, wentry *e, const char *a, size_t al,
                      const char *b, size_t bl) {
  if (nk_user_key_cmp(a, al, w->start, w->start_len) < 0) {
    a = w->start;
    al = w->start_len;
  }
  if (w->end != NULL && nk_user_key_cmp(b, bl, w->end, w->end_len) > 0) {
    b = w->end;
    bl = w->end_len;
  }
  e->type = NOKV_EVENT_DELETE_RANGE;
  e->klen = 0;
  if (nk_user_key_cmp(a, al, b, bl) >= 0) return true;  /* outside */
  e->klen = al;
  e->elen = bl;
  return put_bytes(buf, a, al, &e->key) && put_bytes(buf, b, bl, &e->end);
}

static int cmp_entries(const void *x, const void *y) {
  const wentry *a = x, *b = y;
  if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
  bool ra = a->type == NOKV_EVENT_DELETE_RANGE, rb = b->type == NOKV_EVENT_DELETE_RANGE;
  if (ra != rb) return ra ? -1 : 1;
  return a->seq < b->seq ? -1 : (a->seq > b->seq);
}

/* Orders a group's entries: range deletions, then keys in key order, each
 * key's ops in batch order. */
static int cmp_group(const void *x, const void *y) {
  const wentry *a = x, *b = y;
  bool ra = a->type == NOKV_EVENT_DELETE_RANGE, rb = b->type == NOKV_EVENT_DELETE_RANGE;
  if (ra != rb) return ra ? -1 : 1;
  int c = nk_user_key_cmp(a->kp, a->klen, b->kp, b->klen);
  if (c == 0 && ra) c = nk_user_key_cmp(a->ep, a->elen, b->ep, b->elen);
  if (c != 0) return c;
  return a->seq < b->seq ? -1 : (a->seq > b->seq);
}

/* Replayed groups hold at most about this many bytes at once; a replay that
 * finds more delivers the older part and scans again for the rest. */
#define REPLAY_BYTES (32u << 20)

static bool push_entry(wentry **v, size_t *n, size_t *cap, const wentry *e) {
  if (!nk_grow((void **)v, cap, *n, sizeof **v)) return false;
  (*v)[(*n)++] = *e;
  return true;
}

/* Sorts, dedupes, adds previous values and hands out w->group (of commit ts). */
static int finish_group(nokv_watch *w, uint64_t ts) {
  for (size_t i = 0; i < w->ngroup; i++) {
    w->group[i].kp = w->bytes.data + w->group[i].key;
    w->group[i].ep = w->bytes.data + w->group[i].end;
  }
  qsort(w->group, w->ngroup, sizeof *w->group, cmp_group);
  size_t k = 0;
  for (size_t i = 0; i < w->ngroup; i++) {
    wentry *e = &w->group[i], *next = i + 1 < w->ngroup ? &w->group[i + 1] : NULL;
    if (e->type != NOKV_EVENT_DELETE_RANGE && next != NULL &&
        next->type != NOKV_EVENT_DELETE_RANGE &&
        nk_user_key_cmp(e->kp, e->klen, next->kp, next->klen) == 0) {
      continue;  /* a later op of the batch on the same key wins */
    }
    w->group[k++] = *e;
  }
  w->ngroup = k;
  for (size_t i = 0; w->prev_values && ts > 1 && i < w->ngroup; i++) {
    wentry *e = &w->group[i];
    if (e->type == NOKV_EVENT_DELETE_RANGE) continue;
    nokv_read_options ro;
    nokv_read_options_init(&ro);
    ro.read_ts = ts - 1;
    void *v = NULL;
    size_t vn = 0;
    const char *key = w->bytes.data + e->key;
    int rc = nk_db_get(w->db, &ro, key, e->klen, nk_hash64(key, e->klen), false, &v, &vn, NULL);
    if (rc == NOKV_ESTALE) {
      e->prev_lost = true;
    } else if (rc == NOKV_OK) {
      bool ok = put_bytes(&w->bytes, v, vn, &e->prev);
      free(v);
      if (!ok) return nk_err(NOKV_ENOMEM, "out of memory in a watch");
      e->has_prev = true;
      e->prevlen = vn;
    } else if (rc != NOKV_ENOTFOUND) {
      return rc;
    }
  }
  if (w->ngroup > w->events_cap) {
    nokv_event *ev = realloc(w->events, w->ngroup * sizeof *ev);
    if (ev == NULL) return nk_err(NOKV_ENOMEM, "out of memory in a watch");
    w->events = ev;
    w->events_cap = w->ngroup;
  }
  const char *b = w->bytes.data;
  for (size_t i = 0; i < w->ngroup; i++) {
    const wentry *e = &w->group[i];
    w->events[i] = (nokv_event){
        .type = e->type,
        .key = b + e->key,
        .klen = e->klen,
        .value = e->has_val ? b + e->val : NULL,
        .vlen = e->has_val ? e->vlen : 0,
        .end = e->type == NOKV_EVENT_DELETE_RANGE ? b + e->end : NULL,
        .end_len = e->type == NOKV_EVENT_DELETE_RANGE ? e->elen : 0,
        .expires_at_ms = e->expires,
        .has_prev = e->has_prev,
        .prev_lost = e->prev_lost,
        .prev_value = e->has_prev ? b + e->prev : NULL,
        .prev_vlen = e->has_prev ? e->prevlen : 0,
    };
  }
  return NOKV_OK;
}

/* The ops of a ring record inside the watch's range, as w->group. */
static int decode_change(nokv_watch *w, const nk_change *c) {
  w->ngroup = 0;
  w->bytes.len = 0;
  nk_batch_reader r;
  nk_batch_op op;
  uint64_t unused;
  uint32_t count, seq = 0;
  int rc = nk_batch_reader_init(&r, c->rep, c->len, &unused, &count);
  while (rc == NOKV_OK && (rc = nk_batch_reader_next(&r, &op)) == 1) {
    rc = NOKV_OK;
    wentry e = {.ts = c->ts, .seq = seq++};
    bool ok = true;
    if (op.kind == NK_KIND_RANGE_DEL) {
      ok = add_range(w, &w->bytes, &e, op.key, op.klen, op.val, op.vlen);
      if (e.klen == 0 && ok) continue;
    } else {
      if (!in_range(w, op.key, op.klen)) continue;
      e.klen = op.klen;
      ok = put_bytes(&w->bytes, op.key, op.klen, &e.key);
      if (op.kind == NK_KIND_DELETE) {
        e.type = NOKV_EVENT_DELETE;
      } else {
        nk_value v;
        if (!nk_value_open(op.kind, op.val, op.vlen, &v)) {
          return nk_err(NOKV_ECORRUPT, "an expiring value too short for its expiry");
        }
        e.type = NOKV_EVENT_PUT;
        e.expires = v.expires_ms;
        if (!w->keys_only && ok) {
          e.has_val = true;
          e.vlen = v.vlen;
          ok = put_bytes(&w->bytes, v.val, v.vlen, &e.val);
        }
      }
    }
    if (!ok || !push_entry(&w->group, &w->ngroup, &w->group_cap, &e)) {
      return nk_err(NOKV_ENOMEM, "out of memory in a watch");
    }
  }
  return rc < 0 ? rc : NOKV_OK;
}

/* Keeps the replayed entries of timestamps up to the median one (at least
 * the oldest group), compacting their bytes; returns the new last timestamp. */
static uint64_t cut_replay(nokv_watch *w) {
  qsort(w->replayed, w->nreplayed, sizeof *w->replayed, cmp_entries);
  uint64_t m = w->replayed[w->nreplayed / 2].ts;
  nk_buf kept = {0};
  size_t k = 0;
  for (size_t i = 0; i < w->nreplayed; i++) {
    wentry e = w->replayed[i];
    if (e.ts > m) break;
    const char *b = w->replay_bytes.data;
    size_t key;
    bool ok = put_bytes(&kept, b + e.key, e.klen, &key);
    if (ok && e.has_val) ok = put_bytes(&kept, b + e.val, e.vlen, &e.val);
    if (!ok) {  /* keep what there is: the cap is a target, not a limit */
      nk_buf_release(&kept);
      return w->replayed[w->nreplayed - 1].ts;
    }
    e.key = key;
    w->replayed[k++] = e;
  }
  w->nreplayed = k;
  nk_buf_release(&w->replay_bytes);
  w->replay_bytes = kept;
  return m;
}

/* Replays the commits from the cursor through min(base, visible) from the
 * LSM into w->replayed, and moves the cursor past them. */
static int replay(nokv_watch *w, uint64_t base) {
  nokv_db *db = w->db;
  nk_view *view = nk_db_acquire_view(db);
  w->nreplayed = w->replayed_pos = 0;
  w->replay_bytes.len = 0;
  /* Pinned first: every flush and compaction in the view used a watermark at
   * or below the horizon read after it. */
  if (w->cursor <= atomic_load(&db->history_horizon)) {
    nk_view_unref(view);
    return stale(db, w->cursor);
  }
  uint64_t upto = nk_oracle_read_ts(&db->oracle);
  if (base < upto) upto = base;
  if (w->cursor > upto) {
    nk_view_unref(view);
    return NOKV_OK;
  }
  int rc = NOKV_OK;
  nk_iter *m = nk_db_merge_iter(db, view);
  char *target = malloc(w->start_len + NK_IKEY_TRAILER);
  nk_buf last = {0};
  if (m == NULL || target == NULL) {
    rc = nk_err(NOKV_ENOMEM, "out of memory in a watch");
    goto out;
  }
  nk_ikey_encode(target, w->start, w->start_len, NK_MAX_TS, NK_KIND_SEEK);
  uint64_t last_ts = 0;
  for (nk_iter_seek(m, target, w->start_len + NK_IKEY_TRAILER); nk_iter_valid(m);
       nk_iter_next(m)) {
    size_t kn, vn;
    const char *k = nk_iter_key(m, &kn);
    size_t ulen = nk_ikey_user_len(kn);
    if (w->end != NULL && nk_user_key_cmp(k, ulen, w->end, w->end_len) >= 0) break;
    uint64_t trailer = nk_ikey_trailer(k, kn), ts = nk_trailer_ts(trailer);
    if (ts < w->cursor || ts > upto) continue;
    if (ts == last_ts && nk_user_key_cmp(k, ulen, last.data, last.len) == 0) {
      continue;  /* the same version again: value-log GC's copy */
    }
    last_ts = ts;
    last.len = 0;
    wentry e = {.ts = ts, .klen = ulen};
    bool ok = nk_buf_append(&last, k, ulen) && put_bytes(&w->replay_bytes, k, ulen, &e.key);
    nk_kind kind = nk_trailer_kind(trailer);
    if (kind == NK_KIND_DELETE) {
      e.type = NOKV_EVENT_DELETE;
    } else {
      nk_value v;
      const char *raw = nk_iter_value(m, &vn);  /* sets vn: not in the call below */
      if (!nk_value_open(kind, raw, vn, &v)) {
        rc = nk_err(NOKV_ECORRUPT, "an expiring version too short for its expiry");
        goto out;
      }
      e.type = NOKV_EVENT_PUT;
      e.expires = v.expires_ms;
      if (!w->keys_only && ok && v.kind == NK_KIND_VPTR) {
        void *val;
        size_t n;
        rc = nk_db_read_vptr(db, k, ulen, v.val, v.vlen, &val, &n);
        if (rc != NOKV_OK) goto out;
        ok = put_bytes(&w->replay_bytes, val, n, &e.val);
        free(val);
        e.has_val = true;
        e.vlen = n;
      } else if (!w->keys_only && ok) {
        ok = put_bytes(&w->replay_bytes, v.val, v.vlen, &e.val);
        e.has_val = true;
        e.vlen = v.vlen;
      }
    }
    if (!ok || !push_entry(&w->replayed, &w->nreplayed, &w->replayed_cap, &e)) {
      rc = nk_err(NOKV_ENOMEM, "out of memory in a watch");
      goto out;
    }
    if (w->replay_bytes.len > REPLAY_BYTES) upto = cut_replay(w);
  }
  if ((rc = nk_iter_status(m)) != NOKV_OK) goto out;
  /* Range deletions of the interval, from every source of the view. */
  nk_rdel_set *rdels = nk_view_rdels(view, upto, &rc);
  if (rc != NOKV_OK) goto out;
  for (size_t i = 0; rdels != NULL && i < rdels->n; i++) {
    const nk_rdel *x = &rdels->dels[i];
    if (x->ts < w->cursor) continue;
    wentry e = {.ts = x->ts};
    if (!add_range(w, &w->replay_bytes, &e, x->start, x->slen, x->end, x->elen) ||
        (e.klen > 0 && !push_entry(&w->replayed, &w->nreplayed, &w->replayed_cap, &e))) {
      rc = nk_err(NOKV_ENOMEM, "out of memory in a watch");
      break;
    }
  }
  nk_rdel_set_unref(rdels);
  if (rc != NOKV_OK) goto out;
  qsort(w->replayed, w->nreplayed, sizeof *w->replayed, cmp_entries);
  w->cursor = upto + 1;
out:
  if (rc != NOKV_OK) w->nreplayed = 0;
  nk_iter_destroy(m);
  free(target);
  nk_buf_release(&last);
  nk_view_unref(view);
  return rc;
}

/* Moves the next replayed group into w->group. */
static int take_replayed(nokv_watch *w, uint64_t *ts) {
  w->ngroup = 0;
  w->bytes.len = 0;
  *ts = w->replayed[w->replayed_pos].ts;
  const char *b = w->replay_bytes.data;
  for (; w->replayed_pos < w->nreplayed && w->replayed[w->replayed_pos].ts == *ts;
       w->replayed_pos++) {
    wentry e = w->replayed[w->replayed_pos];
    bool ok = put_bytes(&w->bytes, b + e.key, e.klen, &e.key) &&
              (!e.has_val || put_bytes(&w->bytes, b + e.val, e.vlen, &e.val)) &&
              (e.type != NOKV_EVENT_DELETE_RANGE ||
               put_bytes(&w->bytes, b + e.end, e.elen, &e.end));
    if (!ok || !push_entry(&w->group, &w->ngroup, &w->group_cap, &e)) {
      return nk_err(NOKV_ENOMEM, "out of memory in a watch");
    }
  }
  return finish_group(w, *ts);
}

/* The oldest ring record at or after ts, referenced (NULL: none). REQUIRES: mu. */
static nk_change *find_record(nk_watch_ring *r, uint64_t ts) {
  size_t lo = 0, hi = r->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (r->recs[(r->head + mid) % r->cap]->ts < ts) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == r->n) return NULL;
  nk_change *c = r->recs[(r->head + lo) % r->cap];
  __atomic_fetch_add(&c->refs, 1, __ATOMIC_RELAXED);
  return c;
}

int nokv_watch_open(nokv_db *db, const nokv_watch_options *o, nokv_watch **out) {
  nk_err_clear();
  if (o->end_len > 0 && nk_user_key_cmp(o->start, o->start_len, o->end, o->end_len) >= 0) {
    return nk_err(NOKV_EINVAL, "empty range: start must sort before end");
  }
  nokv_watch *w = calloc(1, sizeof *w);
  if (w == NULL || (w->start = malloc(o->start_len + 1)) == NULL ||
      (o->end_len > 0 && (w->end = malloc(o->end_len)) == NULL)) {
    if (w != NULL) free(w->start);
    free(w);
    return nk_err(NOKV_ENOMEM, "out of memory opening a watch");
  }
  if (o->start_len > 0) memcpy(w->start, o->start, o->start_len);
  if (o->end_len > 0) memcpy(w->end, o->end, o->end_len);
  w->start_len = o->start_len;
  w->end_len = o->end_len;
  w->db = db;
  w->keys_only = o->keys_only;
  w->prev_values = o->prev_values;
  atomic_init(&w->interrupted, false);
  nk_watch_ring *r = db->watch;
  pthread_mutex_lock(&r->mu);
  if (!atomic_load(&r->active)) {
    /* From here on the leader records every commit it publishes after base
     * (both sequentially consistent: a leader that publishes after this read
     * sees the ring active). */
    r->base = r->newest = nk_oracle_read_ts(&db->oracle);
    atomic_store(&r->active, true);
  }
  pthread_mutex_unlock(&r->mu);
  w->cursor = o->start_ts != 0 ? o->start_ts : nk_oracle_read_ts(&db->oracle) + 1;
  if (o->start_ts != 0 && o->start_ts <= atomic_load(&db->history_horizon)) {
    int rc = stale(db, o->start_ts);
    free(w->start);
    free(w->end);
    free(w);
    return rc;
  }
  atomic_fetch_add(&db->live_handles, 1);
  *out = w;
  return NOKV_OK;
}

/* pthread_cond_timedwait's deadline timeout_ms from now. */
static struct timespec deadline_in(int timeout_ms) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += timeout_ms / 1000;
  t.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

int nokv_watch_next(nokv_watch *w, int timeout_ms, uint64_t *commit_ts,
                    const nokv_event **events, size_t *n) {
  nk_err_clear();
  nk_watch_ring *r = w->db->watch;
  struct timespec until = deadline_in(timeout_ms > 0 ? timeout_ms : 0);
  for (;;) {
    if (atomic_exchange(&w->interrupted, false)) {
      return nk_err(NOKV_ECANCELED, "the watch was interrupted");
    }
    if (w->replayed_pos < w->nreplayed) {
      NK_RET(take_replayed(w, commit_ts));
      if (w->ngroup == 0) continue;
      *events = w->events;
      *n = w->ngroup;
      return NOKV_OK;
    }
    pthread_mutex_lock(&r->mu);
    if (w->cursor <= r->base) {
      uint64_t base = r->base;
      pthread_mutex_unlock(&r->mu);
      NK_RET(replay(w, base));
      continue;
    }
    nk_change *c = find_record(r, w->cursor);
    if (c == NULL) {
      int wrc = 0;
      if (timeout_ms == 0 || atomic_load(&w->interrupted)) {
        wrc = ETIMEDOUT;
      } else if (timeout_ms < 0) {
        pthread_cond_wait(&r->cv, &r->mu);
      } else {
        wrc = pthread_cond_timedwait(&r->cv, &r->mu, &until);
      }
      pthread_mutex_unlock(&r->mu);
      if (wrc == ETIMEDOUT && !atomic_load(&w->interrupted)) {
        return nk_err(NOKV_ETIMEDOUT, "no commit in the watched range yet");
      }
      continue;
    }
    pthread_mutex_unlock(&r->mu);
    w->cursor = c->ts + 1;
    int rc = decode_change(w, c);
    if (rc == NOKV_OK && w->ngroup > 0) rc = finish_group(w, c->ts);
    *commit_ts = c->ts;
    change_unref(c);
    NK_RET(rc);
    if (w->ngroup == 0) continue;
    *events = w->events;
    *n = w->ngroup;
    return NOKV_OK;
  }
}

int nokv_watch_wait(nokv_db *db, uint64_t after_ts, int timeout_ms, uint64_t *newest_ts) {
  nk_err_clear();
  nk_watch_ring *r = db->watch;
  struct timespec until = deadline_in(timeout_ms > 0 ? timeout_ms : 0);
  int wrc = 0;
  pthread_mutex_lock(&r->mu);
  while (r->newest <= after_ts && wrc != ETIMEDOUT) {
    if (timeout_ms == 0) {
      wrc = ETIMEDOUT;
    } else if (timeout_ms < 0) {
      pthread_cond_wait(&r->cv, &r->mu);
    } else {
      wrc = pthread_cond_timedwait(&r->cv, &r->mu, &until);
    }
  }
  *newest_ts = r->newest;
  bool newer = r->newest > after_ts;
  pthread_mutex_unlock(&r->mu);
  return newer ? NOKV_OK : nk_err(NOKV_ETIMEDOUT, "no newer commit yet");
}

void nokv_watch_interrupt(nokv_watch *w) {
  nk_watch_ring *r = w->db->watch;
  atomic_store(&w->interrupted, true);
  pthread_mutex_lock(&r->mu);
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

void nokv_watch_close(nokv_watch *w) {
  if (w == NULL) return;
  atomic_fetch_sub(&w->db->live_handles, 1);
  free(w->start);
  free(w->end);
  free(w->replayed);
  nk_buf_release(&w->replay_bytes);
  free(w->group);
  nk_buf_release(&w->bytes);
  free(w->events);
  free(w);
}
