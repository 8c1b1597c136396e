/*
 * txn.h — snapshot-isolation transactions with optimistic conflict detection.
 *
 * A transaction reads at the snapshot taken when it began (its read_ts) and sees
 * its own writes, which it buffers until commit. Commit fails with
 * NOKV_ECONFLICT if another transaction committed a write to a key this one read
 * after its read_ts (first committer wins); the caller retries with a new
 * transaction. Otherwise all its writes become visible atomically at one commit
 * timestamp, through the same group-commit log as plain writes (all or nothing
 * after a crash).
 *
 * Snapshot isolation prevents dirty reads, non-repeatable reads, lost updates and
 * read skew. It allows write skew: two transactions that read overlapping data
 * and write disjoint keys both commit. A read-only transaction never conflicts.
 *
 * A transaction belongs to one thread at a time. It holds a snapshot (the
 * database refuses to close while it is open): end it with nokv_txn_commit or
 * nokv_txn_discard, which free it.
 */
#ifndef NOKV_TXN_H
#define NOKV_TXN_H

#include <stddef.h>
#include <stdint.h>

#include "nokv/db.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nokv_txn nokv_txn;

#define NOKV_TXN_READ_ONLY 1u
/* Keeps the keys it reads, not only their fingerprints, for nokv_txn_export. */
#define NOKV_TXN_EXPORTABLE 2u

/* Begins a transaction (flags: NOKV_TXN_READ_ONLY, NOKV_TXN_EXPORTABLE). */
int nokv_txn_begin(nokv_db *db, unsigned flags, nokv_txn **out);
/* The snapshot timestamp it reads at. */
uint64_t nokv_txn_read_ts(const nokv_txn *txn);

/* Reads key: the transaction's own write if it made one, else the newest
 * version at read_ts. The read is remembered for conflict detection. */
int nokv_txn_get(nokv_txn *txn, const void *key, size_t klen, void **val, size_t *vlen);
/* Buffer a write. NOKV_EINVAL for a read-only transaction, an invalid key or
 * value, or a transaction past max_txn_ops / max_txn_bytes. */
int nokv_txn_put(nokv_txn *txn, const void *key, size_t klen, const void *val, size_t vlen);
int nokv_txn_delete(nokv_txn *txn, const void *key, size_t klen);
/* A put that expires ttl_ms milliseconds from now (nokv_batch_put_ttl). */
int nokv_txn_put_ttl(nokv_txn *txn, const void *key, size_t klen, const void *val, size_t vlen,
                     uint64_t ttl_ms);

/* Commits and frees txn. NOKV_ECONFLICT: nothing was written; retry.
 * NOKV_EHOTKEY: one of its keys is past hot_write_limit, nothing was written;
 * retry later. On success
 * *commit_ts (may be NULL) is the timestamp its writes carry (its read_ts if it
 * wrote nothing). wo may be NULL. */
int nokv_txn_commit(nokv_txn *txn, const nokv_write_options *wo, uint64_t *commit_ts);
/* The transaction as a conditional write, for a commit decided elsewhere (a
 * replicated log applies it with nokv_write_if on every replica): *writes, a
 * new batch of its writes, and *conds, one NOKV_COND_UNWRITTEN_SINCE condition
 * at its read_ts per distinct key it read, sorted. nokv_write_if(conds,
 * writes) commits it by the rule nokv_txn_commit applies, judged key by key
 * (no fingerprint collisions, range deletions checked per key). Past max_conds
 * keys read, or past max_txn_reads, *conds is the one condition that nothing
 * at all was written since read_ts. Needs NOKV_TXN_EXPORTABLE; the transaction
 * stays open, and the conditions' keys point into it: use them before it
 * ends. Free *writes with nokv_batch_free and *conds with nokv_free. */
int nokv_txn_export(nokv_txn *txn, size_t max_conds, nokv_batch **writes, nokv_condition **conds,
                    size_t *n);

/* Abandons and frees txn (NULL is fine). */
void nokv_txn_discard(nokv_txn *txn);

/* An iterator over [start, end) (end_len 0: unbounded) at the transaction's
 * snapshot, merged with its own pending writes. Keys it returns count as reads.
 * Close it (nokv_iter_close) before the transaction ends. */
int nokv_txn_iter_new(nokv_txn *txn, const void *start, size_t start_len, const void *end,
                      size_t end_len, nokv_iter **out);
/* The same over the keys that start with prefix (all keys if len is 0). */
int nokv_txn_iter_new_prefix(nokv_txn *txn, const void *prefix, size_t len, nokv_iter **out);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_TXN_H */
