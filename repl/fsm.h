/*
 * fsm.h — NoKV-C as the state machine of a Raft group (Debian's libraft).
 *
 * A log entry is one write batch (nokv_batch_data), a conditional write (its
 * conditions, then its batch), several of those proposed together, or a new
 * leader's announcement, in an 8-byte
 * frame naming its kind and padded to a multiple of 8 bytes (what libraft's
 * on-disk segments can read back). Every replica applies the same entries in log order, and each at
 * the same commit timestamp: the entry's rank among the group's commands,
 * shifted left by NOKV_REPL_TS_SHIFT (nokv_write_at). Timestamps, and so
 * versions and snapshot reads, are then identical on every replica; the
 * 2^16 - 1 timestamps between two entries are the engine's own (value-log GC
 * rewrites), which change no visible state. An entry whose timestamp the
 * engine already holds (replayed after a restart) is skipped.
 */
#ifndef NOKV_REPL_FSM_H
#define NOKV_REPL_FSM_H

#include <stdbool.h>
#include <stdint.h>

#include "nokv/nokv.h"

#ifdef __cplusplus
extern "C" {
#endif

#include <raft.h> /* declares nothing extern "C" itself */

#define NOKV_REPL_TS_SHIFT 16
#define NOKV_REPL_ENTRY_V1 1       /* a batch */
#define NOKV_REPL_ENTRY_COND 2     /* conditions, then a batch (nokv_write_if) */
#define NOKV_REPL_ENTRY_ANNOUNCE 3 /* a new leader's id and client address */
#define NOKV_REPL_ENTRY_MULTI 4    /* commands proposed together (nokv_repl_multi_entry) */
#define NOKV_REPL_MULTI_MAX 256    /* commands a MULTI entry may carry */
#define NOKV_REPL_MAX_CONDS 65535  /* conditions an entry may carry */
#define NOKV_REPL_ADDR_MAX 256     /* bytes of an address, with its NUL */
/* A transaction travels as a conditional write (nokv_txn_export): one
 * NOKV_COND_UNWRITTEN_SINCE per key it read, at its read timestamp. Whether
 * the engine still holds the history to judge one depends on each replica's
 * compactions, so the verdict is made independent of them: a condition older
 * than this many commands before its entry fails on every replica, and every
 * replica's engine keeps at least that much history
 * (history_retention_commits >= nokv_repl_ts(NOKV_REPL_TXN_WINDOW)), so any
 * younger one is judged exactly, alike everywhere. */
#define NOKV_REPL_TXN_WINDOW 65536

/* What a snapshot records (its only content: the data stays in the engine,
 * which is synced when the snapshot is taken). */
typedef struct nokv_repl_snapshot_info {
  uint64_t commands;   /* command entries applied */
  uint64_t written_ts; /* the timestamp of the last one that wrote (0: none) */
  uint64_t origin_id;  /* the node that took it */
  char origin_client[NOKV_REPL_ADDR_MAX]; /* where to fetch its engine's state */
} nokv_repl_snapshot_info;

/* Called (on the node's thread) when a snapshot to install is ahead of the
 * engine: the engine's state must be fetched from info->origin_client and
 * installed. It must not block; the installation is retried by the leader.
 * One that can install the state at once (pointing the fsm's db at it) may:
 * the snapshot then restores now. */
typedef void (*nokv_repl_fetch_fn)(void *ctx, const nokv_repl_snapshot_info *info);

typedef struct nokv_repl_fsm {
  struct raft_fsm fsm;  /* first: libraft calls back with its address */
  nokv_db *db;
  uint64_t commands;    /* command entries applied (or skipped as applied) */
  uint64_t written_ts;  /* the timestamp of the last of them that wrote */
  uint64_t txn_window;  /* NOKV_REPL_TXN_WINDOW (tests lower it): alike everywhere */
  int last_rc;          /* the engine's answer to the last entry */
  uint64_t id;          /* this node, and the address clients dial for it */
  char client[NOKV_REPL_ADDR_MAX];
  nokv_repl_fetch_fn fetch; /* NULL: a snapshot ahead of the engine is refused */
  void *fetch_ctx;
  /* The last leader announced in the log, for redirecting clients. Written by
   * the applying thread, read by any under mu (fsm.c). */
  uint64_t leader_id;
  char leader_client[NOKV_REPL_ADDR_MAX];
  void *mu;
  /* The outcomes of the last MULTI entry applied, for its proposer, whose
   * callback libraft runs right after applying it (on this thread): the rank
   * of its first command, then each command's rc and failed condition. */
  struct {
    uint64_t first;
    size_t count;
    int rc[NOKV_REPL_MULTI_MAX];
    size_t failed[NOKV_REPL_MULTI_MAX];
  } multi;
} nokv_repl_fsm;

/* Binds f to db; commands restart from 0, until libraft restores the latest
 * snapshot. Snapshots record the state applied, after syncing the engine so
 * the Raft log may drop what it applied; restoring one the engine already
 * holds (a restart) only sets the counts; one ahead of the engine (a replica
 * that fell behind the log the leader kept) goes to f->fetch and fails until
 * the engine holds it. */
int nokv_repl_fsm_init(nokv_repl_fsm *f, nokv_db *db);

/* A snapshot's record, decoded; false if it is not one. */
bool nokv_repl_snapshot_decode(const void *data, size_t len, nokv_repl_snapshot_info *out);
void nokv_repl_fsm_destroy(nokv_repl_fsm *f);

/* The entry a new leader appends first: its id and the address clients dial. */
int nokv_repl_announce_entry(uint64_t id, const char *client_address, struct raft_buffer *out);

/* The last announced leader's id (0: none yet) and client address, copied
 * into buf (NUL-terminated, cut to n bytes). */
uint64_t nokv_repl_fsm_announced(nokv_repl_fsm *f, char *buf, size_t n);

/* The log entry for b: a buffer from raft_malloc, for raft_apply. */
int nokv_repl_entry(const nokv_batch *b, struct raft_buffer *out);

/* One entry for n commands proposed together (entries from nokv_repl_entry
 * and nokv_repl_cond_entry, copied; 1 <= n <= NOKV_REPL_MULTI_MAX), so the
 * log, the network and the disk handle one entry for them: each is still
 * applied as a command of its own, at the next rank and timestamp, with an
 * outcome of its own (fsm->multi). Its result (below) carries the first's
 * rank, and the count in place of the failed condition. */
int nokv_repl_multi_entry(const struct raft_buffer *entries, size_t n, struct raft_buffer *out);

/* The log entry for a conditional write: b applied only if every condition
 * holds when the entry is applied. Every replica judges it against the same
 * state (everything the log held before it), so all reach the same verdict. */
int nokv_repl_cond_entry(const nokv_condition *conds, size_t n, const nokv_batch *b,
                         struct raft_buffer *out);

/* What an entry's application told the proposer (the result libraft hands to
 * raft_apply's callback on the leader), packed in the pointer itself so that
 * a follower, which has no callback, has nothing to free: the engine's rc
 * (NOKV_ECONDITION: a condition failed, nothing written; low 8 bits, negated),
 * for that case the failed condition (16 bits), and the entry's rank among
 * the commands (the upper 40), which names its commit timestamp. */
#ifdef __cplusplus
static_assert(sizeof(void *) == 8, "results are packed in 64-bit pointers");
#else
_Static_assert(sizeof(void *) == 8, "results are packed in 64-bit pointers");
#endif
static inline void *nokv_repl_result(int rc, size_t failed, uint64_t n) {
  return (void *)(uintptr_t)((n << 24) | ((uint64_t)(failed & 0xffff) << 8) |
                             (uint64_t)(uint8_t)-rc);
}
static inline int nokv_repl_result_rc(void *result) {
  return -(int)((uintptr_t)result & 0xff);
}
static inline size_t nokv_repl_result_failed(void *result) {
  return (size_t)(((uintptr_t)result >> 8) & 0xffff);
}
static inline uint64_t nokv_repl_result_n(void *result) { return (uintptr_t)result >> 24; }

/* The commit timestamp of the n-th command entry. */
static inline uint64_t nokv_repl_ts(uint64_t n) { return n << NOKV_REPL_TS_SHIFT; }

#ifdef __cplusplus
}
#endif

#endif /* NOKV_REPL_FSM_H */
