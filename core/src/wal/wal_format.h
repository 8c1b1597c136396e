/*
 * wal_format.h — the write-ahead log's on-disk format (docs/wal_format.md).
 *
 * The log is a sequence of segment files NNNNNNNN.wal (decimal file number, 8+
 * digits) in the data directory, replayed in number order. A segment is a
 * sequence of records:
 *
 *   fixed32 checksum | fixed32 length | u8 type | payload[length]
 *
 * checksum = low 32 bits of XXH3-64(payload, seed = length << 8 | type), so the
 * length and type are covered too. Types 1 and 3 carry one write batch
 * (db/batch_internal.h); 3 says the batch was fsync'ed before it was acknowledged.
 * Type 5 opens each segment: it names the segment before it, that segment's
 * final size, and whether it was fsync'ed before this one started (type 4, the
 * link of older versions, names only the number: its predecessor was synced).
 * A segment left by a memtable switch or rotation is not fsync'ed then (that
 * would stall every writer); the first sync in a later segment syncs it first.
 * So the unsynced tail of the log may span the end of several segments, and the
 * replay tells a torn tail from corruption across all of them
 * (docs/wal_format.md, "Recovery rules").
 */
#ifndef NOKV_WAL_FORMAT_H
#define NOKV_WAL_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "util/checksum.h"
#include "util/coding.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_WAL_HEADER 9
#define NK_WAL_MAX_RECORD (1u << 30)
#define NK_WAL_SUFFIX ".wal"

typedef enum nk_wal_type {
  NK_WAL_BATCH = 1,         /* a write batch not fsync'ed before it was acknowledged */
  NK_WAL_EDIT = 2,          /* a manifest's version edit (the manifest shares this framing) */
  NK_WAL_BATCH_SYNCED = 3,  /* a write batch whose group fsync'ed both logs before any
                             * acknowledgement: it and everything before it were durable */
  NK_WAL_LINK_V1 = 4,       /* first in a segment (older versions): fixed64 number of the
                             * segment before it (0: none); that one was synced */
  NK_WAL_LINK = 5,          /* first in a segment: fixed64 number of the segment before it
                             * (0: none) | fixed64 its final size | u8 flags, so a missing
                             * or shortened segment is found at replay */
  NK_WAL_SYNC_POINT = 6,    /* empty; written by a clean close after syncing every segment:
                             * everything before it was durable */
} nk_wal_type;

#define NK_WAL_LINK_V1_PAYLOAD 8
#define NK_WAL_LINK_PAYLOAD 17
#define NK_WAL_LINK_RECORD (NK_WAL_HEADER + NK_WAL_LINK_PAYLOAD)
/* Link flag: the segment before was sealed without an fsync (its tail may tear). */
#define NK_WAL_LINK_PREV_UNSYNCED 1u

/* Does a record of this type promise that every record before it was durable? */
static inline int nk_wal_is_promise(uint8_t type) {
  return type == NK_WAL_BATCH_SYNCED || type == NK_WAL_SYNC_POINT;
}

static inline int nk_wal_is_link(uint8_t type) {
  return type == NK_WAL_LINK || type == NK_WAL_LINK_V1;
}

/* Is type a write batch's? */
static inline int nk_wal_is_batch(uint8_t type) {
  return type == NK_WAL_BATCH || type == NK_WAL_BATCH_SYNCED;
}

static inline uint32_t nk_wal_checksum(uint8_t type, const char *payload, size_t len) {
  return nk_checksum32(payload, len, (uint64_t)len << 8 | type);
}

/* Writes the 9-byte header of a record of len bytes at dst. */
static inline void nk_wal_encode_header(char *dst, uint8_t type, const char *payload,
                                        size_t len) {
  nk_put_u32(dst, nk_wal_checksum(type, payload, len));
  nk_put_u32(dst + 4, (uint32_t)len);
  dst[8] = (char)type;
}

#ifdef __cplusplus
}
#endif

#endif /* NOKV_WAL_FORMAT_H */
