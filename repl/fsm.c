/* fsm.c — applying log entries to the engine (fsm.h). */
#include "repl/fsm.h"

#include <stdlib.h>
#include <string.h>

/* The result for the proposer, in the pointer itself: no allocation that a
 * follower (which has no callback) would leak. */
static void *result_of(int rc, size_t failed) {
  return (void *)(((uintptr_t)failed << 32) | (uint32_t)rc);
}

static unsigned char *put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
  return p + 8;
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
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
  if (n > len) return false;
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
  }
  *used = (size_t)(q - p);
  return true;
}

static int apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result) {
  nokv_repl_fsm *f = (nokv_repl_fsm *)fsm;
  *result = NULL;
  const unsigned char *p = buf->base;
  if (buf->len < 1 || (p[0] != NOKV_REPL_ENTRY_V1 && p[0] != NOKV_REPL_ENTRY_COND)) {
    f->last_rc = NOKV_ECORRUPT;
    return RAFT_MALFORMED;
  }
  uint64_t ts = nokv_repl_ts(++f->commands);
  if (ts <= nokv_last_commit_ts(f->db)) {  /* applied before a restart */
    f->last_rc = NOKV_OK;
    return 0;
  }
  conds cs = {NULL, 0};
  size_t skip = 1, failed = 0;
  int rc = NOKV_OK;
  if (p[0] == NOKV_REPL_ENTRY_COND) {
    size_t used;
    if (!decode_conds(p + 1, buf->len - 1, &cs, &used)) rc = NOKV_ECORRUPT;
    skip += rc == NOKV_OK ? used : 0;
  }
  nokv_batch *b = NULL;
  if (rc == NOKV_OK) rc = nokv_batch_from_data(p + skip, buf->len - skip, &b);
  if (rc == NOKV_OK) {
    /* The log is durable: the engine's WAL need not be synced for it. */
    nokv_write_options wo = {.commit_ts = ts};
    if (p[0] == NOKV_REPL_ENTRY_COND) {
      /* This thread alone writes: the conditions are judged against the state
       * after every earlier entry, as on every replica. */
      nokv_cond_result r;
      rc = nokv_write_if(f->db, &wo, cs.c, cs.n, b, NULL, &r);
      failed = rc == NOKV_ECONDITION ? r.failed : 0;
    } else {
      rc = nokv_write(f->db, &wo, b, NULL);
    }
  }
  nokv_batch_free(b);
  free(cs.c);
  f->last_rc = rc;
  *result = result_of(rc, failed);
  /* An entry the engine refuses (malformed, or a condition that does not
   * hold) fails on every replica alike; one
   * it cannot apply for a local reason (disk, memory) must stop this replica:
   * libraft treats a non-zero return as fatal for the FSM. */
  if (rc == NOKV_ECORRUPT || rc == NOKV_EINVAL || rc == NOKV_ECONDITION) return 0;
  return rc == NOKV_OK ? 0 : RAFT_IOERR;
}

void nokv_repl_fsm_init(nokv_repl_fsm *f, nokv_db *db) {
  memset(f, 0, sizeof *f);
  f->fsm.version = 1;
  f->fsm.data = f;
  f->fsm.apply = apply;
  f->db = db;
}

int nokv_repl_entry(const nokv_batch *b, struct raft_buffer *out) {
  size_t n;
  const void *data = nokv_batch_data(b, &n);
  out->base = raft_malloc(n + 1);
  if (out->base == NULL) return NOKV_ENOMEM;
  out->len = n + 1;
  ((unsigned char *)out->base)[0] = NOKV_REPL_ENTRY_V1;
  memcpy((unsigned char *)out->base + 1, data, n);
  return NOKV_OK;
}

int nokv_repl_cond_entry(const nokv_condition *conds, size_t n, const nokv_batch *b,
                         struct raft_buffer *out) {
  size_t blen;
  const void *data = nokv_batch_data(b, &blen);
  size_t len = 1 + 8 + blen;
  for (size_t i = 0; i < n; i++) len += 1 + 8 + conds[i].klen + 8 + conds[i].vlen + 8;
  unsigned char *p = raft_malloc(len);
  if (p == NULL) return NOKV_ENOMEM;
  out->base = p;
  out->len = len;
  *p++ = NOKV_REPL_ENTRY_COND;
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
  out->len = (size_t)(p + blen - (unsigned char *)out->base);
  return NOKV_OK;
}
