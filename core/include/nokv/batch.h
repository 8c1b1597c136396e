/*
 * batch.h — a write batch: puts and deletes applied atomically by nokv_write().
 *
 * All operations of a batch share one commit timestamp: a reader sees all of them
 * or none, and after a crash the batch is either wholly present or wholly absent.
 * When a batch touches one key several times, the last operation wins.
 */
#ifndef NOKV_BATCH_H
#define NOKV_BATCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nokv_batch nokv_batch;

/* Allocates an empty batch into *out; free it with nokv_batch_free(). */
int nokv_batch_new(nokv_batch **out);
void nokv_batch_free(nokv_batch *b);  /* NULL is allowed */

/* Append an operation; key and value are copied. Limits are checked by nokv_write. */
int nokv_batch_put(nokv_batch *b, const void *key, size_t klen, const void *val, size_t vlen);
int nokv_batch_delete(nokv_batch *b, const void *key, size_t klen);
/* A put that expires ttl_ms milliseconds from now (the wall clock, read here):
 * from then on every read that judges expiry at a later time finds the key
 * absent, as if deleted (nokv_read_options says which time a read judges by),
 * and compaction drops it. 0: it never expires (nokv_batch_put). */
int nokv_batch_put_ttl(nokv_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
                       uint64_t ttl_ms);

/* Deletes every key k with start <= k < end (bytewise order), whatever the
 * range holds, at the cost of one operation: a range tombstone, which hides
 * the versions written before it from every read at or after its commit (an
 * older snapshot still sees them), until compaction drops them
 * (docs/range_delete.md). Both bounds are keys (max_key_size applies); an
 * empty start deletes from the first key. NOKV_EINVAL unless start sorts
 * before end. In one batch, the range deletion hides none of the batch's own
 * puts (they share its timestamp), whatever their order. */
int nokv_batch_delete_range(nokv_batch *b, const void *start, size_t start_len, const void *end,
                            size_t end_len);

/* The batch's encoding (its bytes stay b's): to ship it elsewhere, e.g. as a
 * replicated log entry, and rebuild it with nokv_batch_from_data. */
const void *nokv_batch_data(const nokv_batch *b, size_t *len);
/* A new batch from an encoding nokv_batch_data gave; NOKV_ECORRUPT if the bytes
 * are not one. */
int nokv_batch_from_data(const void *data, size_t len, nokv_batch **out);

void nokv_batch_clear(nokv_batch *b);
uint32_t nokv_batch_count(const nokv_batch *b);
size_t nokv_batch_size(const nokv_batch *b);  /* encoded bytes */

#ifdef __cplusplus
}
#endif

#endif /* NOKV_BATCH_H */
