/* fsm.c — applying log entries to the engine (fsm.h). */
#include "repl/fsm.h"

#include <string.h>

static int apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result) {
  nokv_repl_fsm *f = (nokv_repl_fsm *)fsm;
  *result = NULL;
  const unsigned char *p = buf->base;
  if (buf->len < 1 || p[0] != NOKV_REPL_ENTRY_V1) {
    f->last_rc = NOKV_ECORRUPT;
    return RAFT_MALFORMED;
  }
  uint64_t ts = nokv_repl_ts(++f->commands);
  if (ts <= nokv_last_commit_ts(f->db)) {  /* applied before a restart */
    f->last_rc = NOKV_OK;
    return 0;
  }
  nokv_batch *b;
  int rc = nokv_batch_from_data(p + 1, buf->len - 1, &b);
  if (rc == NOKV_OK) {
    /* The log is durable: the engine's WAL need not be synced for it. */
    rc = nokv_write_at(f->db, NULL, b, ts);
    nokv_batch_free(b);
  }
  f->last_rc = rc;
  /* An entry the engine refuses (malformed) fails on every replica alike; one
   * it cannot apply for a local reason (disk, memory) must stop this replica:
   * libraft treats a non-zero return as fatal for the FSM. */
  if (rc == NOKV_ECORRUPT || rc == NOKV_EINVAL) return 0;
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
