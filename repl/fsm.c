/* fsm.c — applying log entries to the engine (fsm.h). */
#include "repl/fsm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
  return p + 8;
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* Every entry is framed as [u8 kind] [u8 padding] [6 zero bytes] body, then
 * `padding` zero bytes up to a multiple of 8: libraft's on-disk log reads
 * back only entries whose length is a multiple of 8. */
#define FRAME 8

/* A raft_malloc'd entry of the given kind with room for len body bytes; the
 * body's address, or NULL. */
static unsigned char *frame_new(int kind, size_t len, struct raft_buffer *out) {
  size_t total = (FRAME + len + 7) & ~(size_t)7;
  unsigned char *p = raft_malloc(total);
  if (p == NULL) return NULL;
  memset(p, 0, FRAME);
  memset(p + total - 8, 0, 8);  /* the padding */
  p[0] = (unsigned char)kind;
  p[1] = (unsigned char)(total - FRAME - len);
  out->base = p;
  out->len = total;
  return p + FRAME;
}

/* The kind of a well-framed entry (0 if not), its body and the body's length. */
static int frame_open(const struct raft_buffer *buf, const unsigned char **body, size_t *len) {
  const unsigned char *p = buf->base;
  if (buf->len < FRAME || buf->len % 8 != 0 || p[1] > 7 || buf->len - FRAME < p[1]) return 0;
  if (p[0] < NOKV_REPL_ENTRY_V1 || p[0] > NOKV_REPL_ENTRY_MULTI) return 0;
  *body = p + FRAME;
  *len = buf->len - FRAME - p[1];
  return p[0];
}

/* Conditions decoded from an entry; their keys and values point into it. */
typedef struct conds {
  nokv_condition *c;
  size_t n;
} conds;

/* A u64 length and that many bytes at *q, moved past; false if they overrun
 * end. */
static bool take_bytes(const unsigned char **q, const unsigned char *end, const void **out,
                       size_t *len) {
  if (end - *q < 8) return false;
  uint64_t n = get_u64(*q);
  *q += 8;
  if ((uint64_t)(end - *q) < n) return false;
  *out = *q;
  *len = (size_t)n;
  *q += n;
  return true;
}

/* [u64 n] n x ([u8 op] [u64 klen] key [u64 vlen] value [u64 commit_ts]), then
 * the batch; false if malformed. */
static bool decode_conds(const unsigned char *p, size_t len, conds *out, size_t *used) {
  const unsigned char *q = p, *end = p + len;
  if (end - q < 8) return false;
  uint64_t n = get_u64(q);
  q += 8;
  if (n > len || n > NOKV_REPL_MAX_CONDS) return false;
  out->c = calloc(n ? n : 1, sizeof *out->c);
  out->n = n;
  if (out->c == NULL) return false;
  for (uint64_t i = 0; i < n; i++) {
    nokv_condition *c = &out->c[i];
    if (end - q < 1) return false;
    c->op = (nokv_cond_op)*q++;
    if (!take_bytes(&q, end, &c->key, &c->klen) || !take_bytes(&q, end, &c->value, &c->vlen) ||
        end - q < 8) {
      return false;
    }
    c->commit_ts = get_u64(q);
    q += 8;
    if (c->klen == 0) c->key = NULL;  /* NOKV_COND_UNWRITTEN_SINCE: on every key */
  }
  *used = (size_t)(q - p);
  return true;
}

/* [u64 id] address: the leader of a new term, for followers to redirect
 * clients to. It writes nothing to the engine; its timestamp stays unused. */
static int announced(nokv_repl_fsm *f, const unsigned char *p, size_t len, void **result) {
  f->last_rc = NOKV_OK;
  *result = nokv_repl_result(NOKV_OK, 0, f->commands);
  if (len < 8) return 0;
  size_t alen = len - 8 < NOKV_REPL_ADDR_MAX - 1 ? len - 8 : NOKV_REPL_ADDR_MAX - 1;
  pthread_mutex_lock(f->mu);
  f->leader_id = get_u64(p);
  memcpy(f->leader_client, p + 8, alen);
  f->leader_client[alen] = '\0';
  pthread_mutex_unlock(f->mu);
  return 0;
}

/* Whether a NOKV_COND_UNWRITTEN_SINCE condition of the n-th command reaches
 * further back than f->txn_window commands (fsm.h); *failed names the first. */
static bool too_old(const nokv_repl_fsm *f, const conds *cs, uint64_t n, size_t *failed) {
  uint64_t oldest = n > f->txn_window ? nokv_repl_ts(n - f->txn_window) : 0;
  for (size_t i = 0; i < cs->n; i++) {
    if (cs->c[i].op == NOKV_COND_UNWRITTEN_SINCE && cs->c[i].commit_ts < oldest) {
      *failed = i;
      return true;
    }
  }
  return false;
}

/* Whether rc is the engine refusing an entry alike on every replica
 * (malformed, or a condition that does not hold), as opposed to a local
 * failure (disk, memory) that must stop this replica: libraft treats a
 * non-zero return from apply as fatal for the FSM. */
static bool refused_alike(int rc) {
  return rc == NOKV_ECORRUPT || rc == NOKV_EINVAL || rc == NOKV_ECONDITION;
}

/* Applies a batch or conditional write (kind, body p) as the n-th command;
 * its rc, and for NOKV_ECONDITION the failed condition in *failed. */
static int apply_command(nokv_repl_fsm *f, int kind, const unsigned char *p, size_t len, uint64_t n,
                         size_t *failed) {
  uint64_t ts = nokv_repl_ts(n);
  *failed = 0;
  if (ts <= nokv_last_commit_ts(f->db)) {  /* applied before a restart */
    f->written_ts = ts;
    return NOKV_OK;
  }
  conds cs = {NULL, 0};
  size_t skip = 0;
  int rc = NOKV_OK;
  if (kind == NOKV_REPL_ENTRY_COND) {
    size_t used;
    if (!decode_conds(p, len, &cs, &used)) rc = NOKV_ECORRUPT;
    skip += rc == NOKV_OK ? used : 0;
  }
  nokv_batch *b = NULL;
  if (rc == NOKV_OK) rc = nokv_batch_from_data(p + skip, len - skip, &b);
  if (rc == NOKV_OK) {
    /* The log is durable: the engine's WAL need not be synced for it. */
    nokv_write_options wo = {.commit_ts = ts};
    if (kind == NOKV_REPL_ENTRY_COND && too_old(f, &cs, n, failed)) {
      rc = NOKV_ECONDITION;
    } else if (kind == NOKV_REPL_ENTRY_COND) {
      /* This thread alone writes: the conditions are judged against the state
       * after every earlier entry, as on every replica. */
      nokv_cond_result r;
      rc = nokv_write_if(f->db, &wo, cs.c, cs.n, b, NULL, &r);
      *failed = rc == NOKV_ECONDITION ? r.failed : 0;
    } else {
      rc = nokv_write(f->db, &wo, b, NULL);
    }
  }
  nokv_batch_free(b);
  free(cs.c);
  if (rc == NOKV_OK) f->written_ts = ts;
  return rc;
}

/* A MULTI body: [u64 count] count x ([u64 len] a framed batch or conditional
 * write); each command's frame and body, or false if any is malformed. */
static bool multi_next(const unsigned char **q, const unsigned char *end, int *kind,
                       const unsigned char **body, size_t *len) {
  const void *sub;
  size_t n;
  if (!take_bytes(q, end, &sub, &n)) return false;
  struct raft_buffer b = {.base = (void *)sub, .len = n};
  *kind = frame_open(&b, body, len);
  return *kind == NOKV_REPL_ENTRY_V1 || *kind == NOKV_REPL_ENTRY_COND;
}

static bool multi_valid(const unsigned char *p, size_t len, uint64_t *count) {
  const unsigned char *q = p + 8, *end = p + len;
  if (len < 8) return false;
  *count = get_u64(p);
  if (*count == 0 || *count > NOKV_REPL_MULTI_MAX) return false;
  for (uint64_t i = 0; i < *count; i++) {
    int kind;
    const unsigned char *body;
    size_t blen;
    if (!multi_next(&q, end, &kind, &body, &blen)) return false;
  }
  return q == end;
}

/* Commands proposed together: each applied as a command of its own, at a
 * timestamp of its own; their outcomes go to f->multi for the proposer. */
static int apply_multi(nokv_repl_fsm *f, const unsigned char *p, size_t len, uint64_t n,
                       void **result) {
  uint64_t count;
  f->multi.count = 0;
  if (!multi_valid(p, len, &count)) {  /* refused alike: one command's worth */
    f->last_rc = NOKV_ECORRUPT;
    *result = nokv_repl_result(NOKV_ECORRUPT, 0, n);
    return 0;
  }
  f->multi.first = n;
  const unsigned char *q = p + 8, *end = p + len;
  int rc = NOKV_OK;
  for (uint64_t i = 0; i < count; i++) {
    int kind = 0;
    const unsigned char *body = NULL;
    size_t blen = 0;
    multi_next(&q, end, &kind, &body, &blen);  /* valid: checked whole above */
    if (i > 0) n = ++f->commands;
    rc = apply_command(f, kind, body, blen, n, &f->multi.failed[i]);
    f->multi.rc[i] = rc;
    f->multi.count = i + 1;
    if (!refused_alike(rc) && rc != NOKV_OK) return RAFT_IOERR;
  }
  f->last_rc = rc;
  *result = nokv_repl_result(NOKV_OK, (size_t)count, f->multi.first);
  return 0;
}

static int apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result) {
  nokv_repl_fsm *f = (nokv_repl_fsm *)fsm;
  *result = NULL;
  const unsigned char *p;
  size_t len;
  int kind = frame_open(buf, &p, &len);
  uint64_t n = ++f->commands;
  if (kind == 0) {  /* refused alike everywhere: nothing written */
    f->last_rc = NOKV_ECORRUPT;
    *result = nokv_repl_result(NOKV_ECORRUPT, 0, n);
    return 0;
  }
  if (kind == NOKV_REPL_ENTRY_ANNOUNCE) return announced(f, p, len, result);
  if (kind == NOKV_REPL_ENTRY_MULTI) return apply_multi(f, p, len, n, result);
  size_t failed;
  int rc = apply_command(f, kind, p, len, n, &failed);
  f->last_rc = rc;
  *result = nokv_repl_result(rc, failed, n);
  return rc == NOKV_OK || refused_alike(rc) ? 0 : RAFT_IOERR;
}

/* ---- snapshots ---- */

#define SNAP_MAGIC "NKSNAP01"

/* "NKSNAP01" [u64 commands] [u64 written_ts] [u64 origin id] [u64 len] origin
 * client address, [u64 leader id] [u64 len] leader client address. */
static int snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs) {
  nokv_repl_fsm *f = (nokv_repl_fsm *)fsm;
  /* The log before this point may go once the snapshot is stored: everything
   * applied from it must survive a crash in the engine first. */
  if (nokv_sync(f->db) != NOKV_OK) return RAFT_IOERR;
  char leader[NOKV_REPL_ADDR_MAX];
  uint64_t leader_id = nokv_repl_fsm_announced(f, leader, sizeof leader);
  size_t clen = strlen(f->client), llen = strlen(leader);
  size_t len = 8 + 8 * 4 + clen + 8 + 8 + llen;
  struct raft_buffer *b = raft_malloc(sizeof *b);
  unsigned char *p = raft_malloc(len);
  if (b == NULL || p == NULL) {
    raft_free(b);
    raft_free(p);
    return RAFT_NOMEM;
  }
  b->base = p;
  b->len = len;
  memcpy(p, SNAP_MAGIC, 8);
  p = put_u64(p + 8, f->commands);
  p = put_u64(p, f->written_ts);
  p = put_u64(p, f->id);
  p = put_u64(p, clen);
  memcpy(p, f->client, clen);
  p = put_u64(p + clen, leader_id);
  p = put_u64(p, llen);
  memcpy(p, leader, llen);
  *bufs = b;
  *n_bufs = 1;
  return 0;
}

bool nokv_repl_snapshot_decode(const void *data, size_t len, nokv_repl_snapshot_info *out) {
  const unsigned char *q = data, *end = q + len;
  memset(out, 0, sizeof *out);
  if (len < 8 + 8 * 3 || memcmp(q, SNAP_MAGIC, 8) != 0) return false;
  q += 8;
  out->commands = get_u64(q);
  out->written_ts = get_u64(q + 8);
  out->origin_id = get_u64(q + 16);
  q += 24;
  const void *client;
  size_t clen;
  if (!take_bytes(&q, end, &client, &clen) || clen >= NOKV_REPL_ADDR_MAX) return false;
  memcpy(out->origin_client, client, clen);
  return true;
}

/* The leader a snapshot names, as announced when it was taken. */
static void restore_leader(nokv_repl_fsm *f, const unsigned char *data, size_t len) {
  const unsigned char *q = data + 8 + 24, *end = data + len;
  const void *s;
  size_t n;
  if (!take_bytes(&q, end, &s, &n) || end - q < 8) return;
  uint64_t id = get_u64(q);
  q += 8;
  if (!take_bytes(&q, end, &s, &n) || n >= NOKV_REPL_ADDR_MAX) return;
  pthread_mutex_lock(f->mu);
  f->leader_id = id;
  memcpy(f->leader_client, s, n);
  f->leader_client[n] = '\0';
  pthread_mutex_unlock(f->mu);
}

static int restore(struct raft_fsm *fsm, struct raft_buffer *buf) {
  nokv_repl_fsm *f = (nokv_repl_fsm *)fsm;
  nokv_repl_snapshot_info info;
  if (!nokv_repl_snapshot_decode(buf->base, buf->len, &info)) return RAFT_MALFORMED;
  /* GC rewrites raise the engine's timestamp only between two entries' own:
   * holding written_ts means holding every entry up to the snapshot. */
  if (nokv_last_commit_ts(f->db) < info.written_ts && f->fetch != NULL) {
    f->fetch(f->fetch_ctx, &info);  /* which may install it at once */
  }
  if (nokv_last_commit_ts(f->db) < info.written_ts) return RAFT_BUSY;
  f->commands = info.commands;
  f->written_ts = info.written_ts;
  restore_leader(f, buf->base, buf->len);
  raft_free(buf->base);  /* ours once restored */
  return 0;
}

int nokv_repl_fsm_init(nokv_repl_fsm *f, nokv_db *db) {
  memset(f, 0, sizeof *f);
  f->fsm.version = 1;
  f->fsm.data = f;
  f->fsm.apply = apply;
  f->fsm.snapshot = snapshot;
  f->fsm.restore = restore;
  f->db = db;
  f->txn_window = NOKV_REPL_TXN_WINDOW;
  f->mu = malloc(sizeof(pthread_mutex_t));
  if (f->mu == NULL) return NOKV_ENOMEM;
  pthread_mutex_init(f->mu, NULL);
  return NOKV_OK;
}

void nokv_repl_fsm_destroy(nokv_repl_fsm *f) {
  if (f->mu == NULL) return;
  pthread_mutex_destroy(f->mu);
  free(f->mu);
  f->mu = NULL;
}

uint64_t nokv_repl_fsm_announced(nokv_repl_fsm *f, char *buf, size_t n) {
  pthread_mutex_lock(f->mu);
  uint64_t id = f->leader_id;
  if (n > 0) {
    size_t len = strlen(f->leader_client);
    if (len >= n) len = n - 1;
    memcpy(buf, f->leader_client, len);
    buf[len] = '\0';
  }
  pthread_mutex_unlock(f->mu);
  return id;
}

int nokv_repl_announce_entry(uint64_t id, const char *client_address, struct raft_buffer *out) {
  size_t alen = strlen(client_address);
  if (alen >= NOKV_REPL_ADDR_MAX) return NOKV_EINVAL;
  unsigned char *p = frame_new(NOKV_REPL_ENTRY_ANNOUNCE, 8 + alen, out);
  if (p == NULL) return NOKV_ENOMEM;
  put_u64(p, id);
  memcpy(p + 8, client_address, alen);
  return NOKV_OK;
}

int nokv_repl_entry(const nokv_batch *b, struct raft_buffer *out) {
  size_t n;
  const void *data = nokv_batch_data(b, &n);
  unsigned char *p = frame_new(NOKV_REPL_ENTRY_V1, n, out);
  if (p == NULL) return NOKV_ENOMEM;
  memcpy(p, data, n);
  return NOKV_OK;
}

int nokv_repl_cond_entry(const nokv_condition *conds, size_t n, const nokv_batch *b,
                         struct raft_buffer *out) {
  if (n > NOKV_REPL_MAX_CONDS) return NOKV_EINVAL;
  size_t blen;
  const void *data = nokv_batch_data(b, &blen);
  size_t len = 8 + blen;
  for (size_t i = 0; i < n; i++) {
    size_t vlen = conds[i].op == NOKV_COND_VALUE_EQUALS ? conds[i].vlen : 0;
    len += 1 + 8 + conds[i].klen + 8 + vlen + 8;
  }
  unsigned char *p = frame_new(NOKV_REPL_ENTRY_COND, len, out);
  if (p == NULL) return NOKV_ENOMEM;
  p = put_u64(p, n);
  for (size_t i = 0; i < n; i++) {
    const nokv_condition *c = &conds[i];
    *p++ = (unsigned char)c->op;
    p = put_u64(p, c->klen);
    if (c->klen > 0) memcpy(p, c->key, c->klen);
    p += c->klen;
    p = put_u64(p, c->op == NOKV_COND_VALUE_EQUALS ? c->vlen : 0);
    if (c->op == NOKV_COND_VALUE_EQUALS && c->vlen > 0) memcpy(p, c->value, c->vlen);
    p += c->op == NOKV_COND_VALUE_EQUALS ? c->vlen : 0;
    p = put_u64(p, c->commit_ts);
  }
  memcpy(p, data, blen);
  return NOKV_OK;
}

int nokv_repl_multi_entry(const struct raft_buffer *entries, size_t n, struct raft_buffer *out) {
  if (n == 0 || n > NOKV_REPL_MULTI_MAX) return NOKV_EINVAL;
  size_t len = 8;
  for (size_t i = 0; i < n; i++) len += 8 + entries[i].len;
  unsigned char *p = frame_new(NOKV_REPL_ENTRY_MULTI, len, out);
  if (p == NULL) return NOKV_ENOMEM;
  p = put_u64(p, n);
  for (size_t i = 0; i < n; i++) {
    p = put_u64(p, entries[i].len);
    memcpy(p, entries[i].base, entries[i].len);
    p += entries[i].len;
  }
  return NOKV_OK;
}
