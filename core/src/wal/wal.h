/*
 * wal.h — writing and replaying the write-ahead log.
 *
 * Writer: appends framed records to the current segment, syncs on request, and
 * rotates to a new segment once the current one passes its size limit or the
 * memtable is switched. Rotation syncs nothing: the old segment is kept open,
 * and the next sync (which a write asked for) syncs it, and the directory,
 * before the current segment. The writer is not thread-safe: the database calls
 * it only from the leader of a write group, except nk_wal_release and
 * nk_wal_sync_to, which any thread may call while the leader appends. Syncs
 * are serialized; once one fails, every later one fails too (the kernel may
 * have dropped the unsynced pages and reports that once).
 *
 * Replay: reads every segment in order and hands each record to a callback. A
 * damaged record at the end of the newest segment is a torn write: the segment is
 * truncated to its last good record and the cut is reported. Damage anywhere else
 * (an older segment, or the newest with good records after the damage) fails with
 * NOKV_ECORRUPT naming the file and offset: never silently drop acknowledged data.
 */
#ifndef NOKV_WAL_WAL_H
#define NOKV_WAL_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/env.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_wal nk_wal;

/* Starts a new segment in dir whose link record names prev, the newest segment
 * already there (0: none), which the caller has synced; the link and the
 * directory are synced before this returns. Segment numbers are taken from
 * *next_file, the database's file number counter, which the WAL increments
 * atomically (it is shared with tables and manifests). Every segment begins with
 * a link record (NK_WAL_LINK_RECORD bytes) naming the one before it, its size,
 * and whether it was synced. */
int nk_wal_open(const struct nokv_env *env, const char *dir, uint64_t *next_file,
                size_t segment_bytes, uint64_t prev, nk_wal **out);
/* Appends bytes that hold whole framed records. */
int nk_wal_append(nk_wal *w, const char *data, size_t len);
/* Makes every record appended so far durable: the segments sealed without a
 * sync first, then the directory (new names), then the current segment. */
int nk_wal_sync(nk_wal *w);
/* A point in the log: everything appended before nk_wal_mark. */
typedef struct nk_wal_pos {
  uint64_t number; /* the segment current then */
} nk_wal_pos;
/* Marks what has been appended so far (by the leader of a write group). */
void nk_wal_mark(const nk_wal *w, nk_wal_pos *m);
/* Makes every record appended before mark m durable, as nk_wal_sync would
 * have then. Any thread, while the leader goes on appending: a write group
 * need not wait for this fsync. */
int nk_wal_sync_to(nk_wal *w, const nk_wal_pos *m);
/* After a failed append: cuts the segment back to what was appended before it,
 * so no partial record stays (the next append follows the last whole one). */
int nk_wal_undo(nk_wal *w);
/* Starts the next segment if the current one reached its limit. */
int nk_wal_maybe_rotate(nk_wal *w);
/* Seals the current segment (kept open, unsynced) and starts the next one. */
int nk_wal_switch(nk_wal *w);
/* Closes, unsynced, the sealed segments numbered below `below`: their records
 * are in tables the manifest made durable. Any thread. */
void nk_wal_release(nk_wal *w, uint64_t below);
/* The current segment's number. */
uint64_t nk_wal_number(const nk_wal *w);
/* Bytes appended by this process, link records included. Any thread. */
uint64_t nk_wal_bytes_written(const nk_wal *w);
/* Syncs every segment still open (and the directory) and closes. With
 * sync_point, the caller vouches that everything the records depend on (the
 * values they point at) is durable too, and a sync point says so to the next
 * replay; without, the log is closed as a crash would leave it. */
int nk_wal_close(nk_wal *w, bool sync_point);


/* The segment file name of number: "%08llu.wal". buf must hold 32 bytes. */
void nk_wal_segment_name(uint64_t number, char *buf);
/* Parses a segment file name; false if name is not one. */
bool nk_wal_parse_name(const char *name, uint64_t *number);

/* Segment numbers found in dir, ascending, malloc'ed (free()). */
int nk_wal_list(const struct nokv_env *env, const char *dir, uint64_t **numbers, size_t *n);

typedef struct nk_wal_replay_stats {
  uint64_t records;
  uint64_t bytes;
  uint64_t torn_tails;
  uint64_t torn_bytes;
} nk_wal_replay_stats;

/* Called per record, sync points (NK_WAL_SYNC_POINT, empty) included; a
 * non-OK return stops the replay with that status. */
typedef int (*nk_wal_record_fn)(void *arg, uint8_t type, const char *payload, size_t len);

/* Is there a well-framed record of type at off in data[0, size): its length
 * within the data, its checksum matching? */
bool nk_wal_record_intact(const char *data, size_t off, size_t size, uint8_t type);

/* Replays segment numbers[i] of the n segments numbers[] (ascending) in dir.
 * Damage where unsynced bytes may be (the newest segment, or one sealed without
 * a sync) and with no synced record after it, here or in a later segment, is a
 * torn tail: the log ends there. The segment is cut at the damage, every later
 * one back to its link record, and *ended is set (replay nothing after it).
 * Any other damage fails with NOKV_ECORRUPT and changes nothing. The newest
 * segment is synced after its replay. */
int nk_wal_replay_segment(const struct nokv_env *env, const char *dir, const uint64_t *numbers,
                          size_t n, size_t i, nk_wal_record_fn fn, void *arg,
                          nk_wal_replay_stats *st, bool *ended);

/* The same, for any log of records of one type (the manifest uses NK_WAL_EDIT:
 * a manifest is only read, its torn tail skipped, never cut). */
int nk_log_replay(const struct nokv_env *env, const char *path, uint8_t expected_type,
                  bool is_newest, nk_wal_record_fn fn, void *arg, nk_wal_replay_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_WAL_WAL_H */
