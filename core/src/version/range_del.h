/*
 * range_del.h — range tombstones (nokv_batch_delete_range) and the fragmented
 * sets reads and table builds look them up in.
 *
 * A range tombstone [start, end) written at ts hides every version of every key
 * k with start <= k < end whose commit_ts is below ts, from readers at ts or
 * later: RocksDB's DeleteRange semantics, at one write's cost whatever the
 * range holds. Tombstones live in the memtable they were written to (a list
 * beside its skiplist, memtable.h) and, once it is flushed, in the version
 * (version.h), which logs them in the manifest until compaction has dropped
 * every version they cover (docs/range_delete.md).
 *
 * An nk_rdel_set is an immutable list of tombstones cut into fragments:
 * disjoint, sorted key intervals, each with the timestamps of the tombstones
 * covering all of it, newest first. "Which tombstone hides key k at read_ts"
 * is then a binary search and a short scan.
 */
#ifndef NOKV_VERSION_RANGE_DEL_H
#define NOKV_VERSION_RANGE_DEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_rdel {
  const char *start, *end;
  size_t slen, elen;
  uint64_t ts;
} nk_rdel;

typedef struct nk_rdel_frag {
  const char *lo, *hi;  /* [lo, hi) */
  size_t lo_len, hi_len;
  const uint64_t *ts;   /* newest first */
  size_t nts;
} nk_rdel_frag;

typedef struct nk_rdel_set {
  uint32_t refs;        /* atomic */
  nk_rdel *dels;        /* owned copies, sorted by start */
  size_t n;
  nk_rdel_frag *frags;
  size_t nfrags;
  uint64_t *ts_pool;    /* the fragments' timestamps */
  char *bytes;          /* the copies' keys */
} nk_rdel_set;

/* A set of copies of the n tombstones dels[i] whose ts is at most max_ts, with
 * refs = 1; NULL if none qualifies or out of memory (*oom tells which). */
nk_rdel_set *nk_rdel_set_build(const nk_rdel *const *dels, size_t n, uint64_t max_ts, bool *oom);
void nk_rdel_set_ref(nk_rdel_set *s);
void nk_rdel_set_unref(nk_rdel_set *s);

/* The timestamp of the newest tombstone in s at or below read_ts covering key
 * (0: none). s may be NULL. */
uint64_t nk_rdel_set_cover(const nk_rdel_set *s, const char *key, size_t klen, uint64_t read_ts);

/* The same for keys visited in ascending order: *hint is the fragment the last
 * call ended at (start it at 0); a key before it is searched for afresh. */
uint64_t nk_rdel_set_cover_seq(const nk_rdel_set *s, size_t *hint, const char *key, size_t klen,
                               uint64_t read_ts);

/* Does the user-key range [start, end) intersect [lo, hi] (inclusive)? */
bool nk_rdel_overlaps(const nk_rdel *d, const char *lo, size_t lo_len, const char *hi,
                      size_t hi_len);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_VERSION_RANGE_DEL_H */
