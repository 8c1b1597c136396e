/*
 * vlog.h — the value log: large values kept out of the LSM (WiscKey, as in
 * Badger). The LSM stores a 16-byte pointer where the value would be; the value
 * itself is appended once to a segment file and never rewritten by compaction.
 *
 * Segment file NNNNNNNN.vlog (docs/vlog_format.md):
 *   header:  fixed32 magic | fixed32 version | fixed32 segment id | fixed32 checksum
 *   entries: fixed32 checksum | fixed32 key_len | fixed32 value_len | fixed64 commit_ts
 *            | key | value
 * The entry checksum (XXH3, low 32 bits) covers everything after it. A pointer
 * names (segment, offset, length, checksum) of a whole entry, so a read checks
 * the entry against its own checksum, the pointer's and the key it was read for.
 *
 * Durability: the write leader appends a group's values and writes them (one
 * write(2)) before the WAL record that carries their pointers, and syncs them
 * before the WAL when any writer of the group asked for sync, whether or not the
 * group itself wrote values: a synced WAL makes every earlier record durable, so
 * the values those records point at must be too. A full segment is sealed
 * without a sync (a writer never waits for an fsync it did not ask for): every
 * sync works through the sealed segments not yet synced, oldest first, then the
 * directory, then the active segment. Segments are synced at close too, and
 * (from the head on) at open. Each flush syncs up to the head it records in the
 * manifest; at open, entries past that head are validated, and the first tear
 * in any segment past it ends the value log (segments after it hold only
 * entries no promised WAL record may need: the replay checks).
 *
 * Threads: one writer at a time (the write leader) calls add/write; any thread
 * reads; segments are refcounted so a removed one stays readable by reads that
 * already found it.
 */
#ifndef NOKV_VLOG_VLOG_H
#define NOKV_VLOG_VLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sst/block_builder.h"
#include "util/env.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_VLOG_MAGIC 0x4c564b4eu /* "NKVL" little-endian */
#define NK_VLOG_VERSION 1u
#define NK_VLOG_HEADER 16u
#define NK_VLOG_ENTRY_HEADER 20u
#define NK_VPTR_SIZE 16u

typedef struct nk_vptr {
  uint32_t fid;
  uint32_t off;
  uint32_t len;  /* of the whole entry */
  uint32_t crc;  /* the entry's checksum */
} nk_vptr;

void nk_vptr_encode(const nk_vptr *p, char *dst);
/* false if n != NK_VPTR_SIZE or the pointer is malformed. */
bool nk_vptr_decode(const char *src, size_t n, nk_vptr *p);

/* "%08u.vlog"; buf of 32 bytes. */
void nk_vlog_file_name(uint32_t fid, char *buf);
bool nk_vlog_parse_name(const char *name, uint32_t *fid);

/* One entry read from a segment (borrowed bytes). */
typedef struct nk_vlog_entry {
  uint32_t fid;
  uint32_t off, len, crc;
  uint64_t ts;
  const char *key, *val;
  size_t klen, vlen;
} nk_vlog_entry;

/* Is the NK_VLOG_HEADER bytes at h the header of segment fid, in this format? */
bool nk_vlog_header_valid(const char *h, uint32_t fid);

/* Are the n bytes at data exactly the entry p names (its length, checksum and,
 * if key != NULL, key)? */
bool nk_vlog_entry_matches(const char *data, size_t n, const nk_vptr *p, const char *key,
                           size_t klen);

/* Called per valid entry; a non-OK return stops the scan with that status. */
typedef int (*nk_vlog_entry_fn)(void *arg, const nk_vlog_entry *e);

typedef struct nk_vlog_scan_result {
  uint64_t valid_end;  /* offset just past the last valid entry */
  uint64_t file_size;
  uint64_t entries;
  bool torn;           /* something other than a valid entry follows valid_end */
  char why[160];       /* what was wrong there */
} nk_vlog_scan_result;

/* Reads the segment at path from offset `from` (0: after the header, which is
 * then checked) and calls fn for each valid entry until the first invalid one
 * or the end. A bad header fails with NOKV_ECORRUPT. */
int nk_vlog_scan_file(const struct nokv_env *env, const char *path, uint32_t fid, uint64_t from,
                      nk_vlog_entry_fn fn, void *arg, nk_vlog_scan_result *res);

typedef struct nk_vlog nk_vlog;

typedef struct nk_vlog_recovery {
  uint64_t validated_bytes;  /* read past the head and checked */
  uint64_t torn_bytes;       /* cut from segments' tails (or headerless ones) */
  uint64_t obsolete_removed; /* segments the manifest had retired, still on disk */
  /* Where the first damage begins (torn_bytes > 0), and what it is. */
  uint32_t torn_fid;
  uint64_t torn_off;
  char torn_why[160];
} nk_vlog_recovery;

/* Opens the value log in dir for reading. Entries before the head (head_fid,
 * head_off) are known durable; the rest are validated and synced. Damage past
 * the head (in any segment: they are sealed unsynced) is recorded in *rec
 * (which must outlive the open; the first damage is named) and the segment is
 * read as ending there: whether it is a torn tail or corruption is for the WAL
 * replay to decide (a record promised durable, or a clean close's sync point,
 * after a record whose value is gone is corruption). Segments listed in
 * obsolete are left for nk_vlog_start to delete, so that an open refused later
 * changes nothing. */
int nk_vlog_open(const struct nokv_env *env, const char *dir, uint64_t segment_bytes,
                 uint32_t head_fid, uint64_t head_off, const uint32_t *obsolete,
                 size_t nobsolete, nk_vlog **out, nk_vlog_recovery *rec);
/* Ends recovery: deletes the segments GC retired, cuts torn tails (synced),
 * removes segments cut before their header and readies appends at the newest
 * segment's end (a new segment is started if it is full or missing). Before
 * any add. */
int nk_vlog_start(nk_vlog *vl);
void nk_vlog_close(nk_vlog *vl);

/* Is the whole entry p names inside what was recovered or written? */
bool nk_vlog_contains(nk_vlog *vl, const nk_vptr *p);

/* ---- writing (one writer) ---- */

/* Buffers an entry and returns its pointer. Starts a new segment first if the
 * entry does not fit the current one (writing what was buffered; the sealed
 * segment is synced by the next sync). */
int nk_vlog_add(nk_vlog *vl, const char *key, size_t klen, uint64_t ts, const char *val,
                size_t vlen, nk_vptr *out);
/* Writes the buffered entries; if sync, also makes every entry written so far
 * durable (a no-op when nothing is unsynced). */
int nk_vlog_write(nk_vlog *vl, bool sync);
/* After a failed write: drops the buffered entries and cuts the segment back to
 * what was written before (their pointers must not be used). */
int nk_vlog_undo(nk_vlog *vl);
/* Where the next entry will go: every entry before it has been written. */
void nk_vlog_head(nk_vlog *vl, uint32_t *fid, uint64_t *off);
/* Makes every entry of segments up to fid durable (and their names). Any
 * thread. */
int nk_vlog_sync_to(nk_vlog *vl, uint32_t fid);
/* Total bytes appended to segments by this process. */
uint64_t nk_vlog_bytes_written(const nk_vlog *vl);

/* ---- reading ---- */

/* Reads the entry p names and checks it: checksum, the pointer's checksum and
 * (if key != NULL) the key. *val points into the segment's mapping, or into
 * buf (grown as needed) where the segment is not mapped; either stays valid
 * while the caller's view or snapshot pins the segment's epoch (db/gc.c).
 * NOKV_ECORRUPT on any mismatch, naming the segment and offset. */
int nk_vlog_read(nk_vlog *vl, const nk_vptr *p, const char *key, size_t klen, nk_buf *buf,
                 const char **val, size_t *vlen);

/* Hints that the entry p names will be read soon (no-op where segments are
 * not mapped or the file layer has no prefetch). With extra > 0, the hint
 * covers that many bytes past the entry as well (up to the segment's end). */
void nk_vlog_prefetch(nk_vlog *vl, const nk_vptr *p, uint32_t extra);
/* Prefetch hints given so far. */
uint64_t nk_vlog_prefetches(const nk_vlog *vl);

/* ---- segments ---- */

typedef struct nk_vlog_segment_info {
  uint32_t fid;
  uint64_t size;
  bool active;  /* the one being appended to */
} nk_vlog_segment_info;

/* The live segments in fid order (malloc'ed; free()). */
int nk_vlog_segments(nk_vlog *vl, nk_vlog_segment_info **out, size_t *n);
/* Path of segment fid (malloc'ed), or NULL on ENOMEM. */
char *nk_vlog_segment_path(const nk_vlog *vl, uint32_t fid);
/* Forgets segment fid and deletes its file once no read holds it (on the
 * reaper's thread, if one is set). Not the active segment. */
int nk_vlog_remove_segment(nk_vlog *vl, uint32_t fid);
/* From now on removed segments are unmapped and deleted by r. */
struct nk_reaper;
void nk_vlog_set_reaper(nk_vlog *vl, struct nk_reaper *r);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_VLOG_VLOG_H */
