/*
 * fsm.h — NoKV-C as the state machine of a Raft group (Debian's libraft).
 *
 * A log entry is one write batch (nokv_batch_data), tagged with a format
 * version. Every replica applies the same entries in log order, and each at
 * the same commit timestamp: the entry's rank among the group's commands,
 * shifted left by NOKV_REPL_TS_SHIFT (nokv_write_at). Timestamps, and so
 * versions and snapshot reads, are then identical on every replica; the
 * 2^16 - 1 timestamps between two entries are the engine's own (value-log GC
 * rewrites), which change no visible state. An entry whose timestamp the
 * engine already holds (replayed after a restart) is skipped.
 */
#ifndef NOKV_REPL_FSM_H
#define NOKV_REPL_FSM_H

#include <stdint.h>

#include "nokv/nokv.h"

#ifdef __cplusplus
extern "C" {
#endif

#include <raft.h> /* declares nothing extern "C" itself */

#define NOKV_REPL_TS_SHIFT 16
#define NOKV_REPL_ENTRY_V1 1       /* a batch */
#define NOKV_REPL_ENTRY_COND 2     /* conditions, then a batch (nokv_write_if) */

typedef struct nokv_repl_fsm {
  struct raft_fsm fsm;  /* first: libraft calls back with its address */
  nokv_db *db;
  uint64_t commands;    /* command entries applied (or skipped as applied) */
  int last_rc;          /* the engine's answer to the last entry */
} nokv_repl_fsm;

/* Binds f to db; commands restart from 0 (no snapshot yet). */
void nokv_repl_fsm_init(nokv_repl_fsm *f, nokv_db *db);

/* The log entry for b: a buffer from raft_malloc, for raft_apply. */
int nokv_repl_entry(const nokv_batch *b, struct raft_buffer *out);

/* The log entry for a conditional write: b applied only if every condition
 * holds when the entry is applied. Every replica judges it against the same
 * state (everything the log held before it), so all reach the same verdict. */
int nokv_repl_cond_entry(const nokv_condition *conds, size_t n, const nokv_batch *b,
                         struct raft_buffer *out);

/* What an entry's application told the proposer (the result libraft hands to
 * raft_apply's callback on the leader): the engine's rc (NOKV_ECONDITION: a
 * condition failed, nothing written) and for that case the failed condition. */
static inline int nokv_repl_result_rc(void *result) {
  return (int)(int32_t)(uint32_t)((uintptr_t)result & 0xffffffffu);
}
static inline size_t nokv_repl_result_failed(void *result) {
  return (size_t)((uintptr_t)result >> 32);
}

/* The commit timestamp of the n-th command entry. */
static inline uint64_t nokv_repl_ts(uint64_t n) { return n << NOKV_REPL_TS_SHIFT; }

#ifdef __cplusplus
}
#endif

#endif /* NOKV_REPL_FSM_H */
