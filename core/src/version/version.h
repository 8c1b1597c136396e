/*
 * version.h — the set of tables that make up the LSM at one moment.
 *
 * A version lists, per level, the tables (file metas) it contains: L0 newest
 * first by file number, i.e. flush order (tables may overlap), L1 and deeper
 * sorted by key (disjoint ranges). For
 * any user key, a newer source always holds newer versions of it: memtable,
 * immutables, L0 newest to oldest, then L1, L2, ... So a point read stops at the
 * first source that has a version at or below its read timestamp.
 *
 * Versions are immutable and refcounted: reads and iterators pin the version
 * they started on while flushes and compactions install new ones. A table's file
 * is deleted when the last version holding it is released.
 *
 * An edit (nk_edit) is the difference between two versions: tables added and
 * removed, plus the WAL log number, file number counter and last flushed commit
 * timestamp. Edits are what the manifest logs.
 */
#ifndef NOKV_VERSION_VERSION_H
#define NOKV_VERSION_VERSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sst/block_builder.h"
#include "sst/format.h"
#include "sst/table.h"
#include "sst/table_cache.h"
#include "util/iterator.h"
#include "version/range_del.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_NUM_LEVELS 7

typedef struct nk_file_meta {
  uint64_t number, size;
  char *smallest, *largest;  /* internal keys */
  size_t smallest_len, largest_len;
  uint64_t min_ts, max_ts, entries, tombstones;
  /* Every range tombstone at or below it was applied when the table was
   * written: it holds nothing one of them hides (0 for tables from before). */
  uint64_t range_clean_ts;
  uint32_t refs;             /* edits and versions holding it (atomic) */
  bool being_compacted;      /* REQUIRES: the database mutex */
} nk_file_meta;

/* A meta with refs = 1, keys copied. NULL on ENOMEM. */
nk_file_meta *nk_file_meta_new(uint64_t number, uint64_t size, const char *smallest,
                               size_t smallest_len, const char *largest, size_t largest_len);
void nk_file_meta_ref(nk_file_meta *f);
/* Drops a reference; returns true (and frees f) when it was the last. */
bool nk_file_meta_unref(nk_file_meta *f);

typedef struct nk_edit_add {
  int level;
  nk_file_meta *f;  /* the edit holds a reference */
} nk_edit_add;

typedef struct nk_edit_remove {
  int level;
  uint64_t number;
} nk_edit_remove;

typedef struct nk_vlog_discard {
  uint32_t fid;
  uint64_t bytes;
} nk_vlog_discard;

typedef struct nk_edit {
  nk_edit_add *adds;
  size_t nadds, adds_cap;
  nk_edit_remove *removes;
  size_t nremoves, removes_cap;
  bool has_log_number, has_next_file, has_last_ts;
  uint64_t log_number, next_file, last_ts;
  /* Value log: the head a flush made durable, dead bytes found per segment
   * (added to the totals), segments GC retired. */
  bool has_vlog_head;
  uint32_t vlog_head_fid;
  uint64_t vlog_head_off;
  nk_vlog_discard *discards;
  size_t ndiscards, discards_cap;
  uint32_t *retired;
  size_t nretired, retired_cap;
  /* Range tombstones a flush hands to the version (owned copies). */
  nk_rdel *rdels;
  size_t nrdels, rdels_cap;
  /* The watermark the flush or compaction used (version_set.h's horizon). */
  bool has_horizon;
  uint64_t horizon;
} nk_edit;

void nk_edit_init(nk_edit *e);
void nk_edit_release(nk_edit *e);
/* Takes a new reference to f. */
int nk_edit_add_file(nk_edit *e, int level, nk_file_meta *f);
int nk_edit_remove_file(nk_edit *e, int level, uint64_t number);
/* Adds bytes to fid's discard entry (one entry per segment). */
int nk_edit_add_discard(nk_edit *e, uint32_t fid, uint64_t bytes);
int nk_edit_retire_segment(nk_edit *e, uint32_t fid);
/* Copies d into e. */
int nk_edit_add_rdel(nk_edit *e, const nk_rdel *d);

/* protobuf-c encoding (core/proto/manifest.proto). */
int nk_edit_encode(const nk_edit *e, bool snapshot, nk_buf *out);
int nk_edit_decode(const char *data, size_t len, nk_edit *out);

typedef struct nk_version {
  uint32_t refs;  /* atomic */
  nk_file_meta **files[NK_NUM_LEVELS];
  size_t nfiles[NK_NUM_LEVELS];
  uint64_t level_bytes[NK_NUM_LEVELS];
  /* Range tombstones flushed and not yet retired (NULL: none). One is retired
   * by the edit after which no table overlapping its range has a
   * range_clean_ts below its timestamp: no version it hides is left. */
  nk_rdel_set *rdels;
  /* The newest commit timestamp flushed: every range tombstone at or below
   * it is in rdels or retired. */
  uint64_t last_ts;
  /* Called for each file whose last version is released (may be NULL). */
  void (*obsolete)(void *arg, nk_file_meta *f);
  void *obsolete_arg;
} nk_version;

/* An empty version with refs = 1. */
nk_version *nk_version_new_empty(void (*obsolete)(void *, nk_file_meta *), void *arg);
/* base + e, with refs = 1. Fails with NOKV_ECORRUPT if e removes a table base
 * lacks or adds one twice. */
int nk_version_apply(const nk_version *base, const nk_edit *e, nk_version **out);
void nk_version_ref(nk_version *v);
void nk_version_unref(nk_version *v);

/* Point read through the version's tables (see nk_table_get). *probed counts
 * the tables consulted. Tables whose newest version is below min_ts are
 * skipped (a range tombstone at min_ts hides anything they could give). */
int nk_version_get(const nk_version *v, nk_table_cache *tc, const char *target, size_t n,
                   uint64_t key_hash, uint64_t min_ts, nk_get_result *r, uint64_t *probed);

/* An iterator over a level >= 1 (disjoint tables, opened lazily). The version
 * must outlive it. NULL on ENOMEM. */
nk_iter *nk_level_iter_new(const nk_version *v, int level, nk_table_cache *tc);
/* The same over an explicit sorted, disjoint list of files (borrowed). */
nk_iter *nk_files_iter_new(nk_file_meta *const *files, size_t n, nk_table_cache *tc);

/* May f hold a version range tombstone d hides (d's range meets f's and f was
 * written before d was applied)? */
bool nk_rdel_may_hide(const nk_rdel *d, const nk_file_meta *f);

/* Does f's user-key range intersect [lo, hi] (user keys; NULL = unbounded)? */
bool nk_file_overlaps(const nk_file_meta *f, const char *lo, size_t lo_len, const char *hi,
                      size_t hi_len);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_VERSION_VERSION_H */
