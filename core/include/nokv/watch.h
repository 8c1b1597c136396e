/*
 * watch.h — following the commits that touch a key range, in commit order.
 *
 * A watch delivers, for every commit at or after its start timestamp that
 * wrote a key in [start, end), one group of events: the commit's timestamp and
 * its puts, deletes and range deletions inside the range. A batch or a
 * transaction is one group (its operations share the timestamp). Within a
 * group, range deletions come first (ordered by start, then end), then one event per key
 * in key order (the batch's last operation on a key wins). Expiry (TTL) is no
 * event: a key that expires is simply absent to reads from then on.
 *
 * Recent commits come from an in-memory change ring (watch_ring_bytes, filled
 * from the first watch on); older ones are replayed from the versions the LSM
 * still keeps, which history_retention_commits extends (options.h). A watch
 * whose next commit is older than that history fails with NOKV_ESTALE, and
 * nokv_watch_oldest_ts says where one may start instead (etcd's "compacted"):
 * the same holds for a watch that falls so far behind that the ring drops
 * what it has not read and the LSM no longer holds it. Writers never wait for
 * watchers.
 *
 * To resume after a disconnect, open a new watch with start_ts one past the
 * last commit_ts received. A watch belongs to one thread at a time, except
 * nokv_watch_interrupt. The database refuses to close while one is open.
 */
#ifndef NOKV_WATCH_H
#define NOKV_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nokv_db nokv_db;
typedef struct nokv_watch nokv_watch;

typedef enum nokv_event_type {
  NOKV_EVENT_PUT = 1,
  NOKV_EVENT_DELETE = 2,
  NOKV_EVENT_DELETE_RANGE = 3, /* key and end: the part of the range inside the watch's */
} nokv_event_type;

typedef struct nokv_event {
  nokv_event_type type;
  const void *key;
  size_t klen;
  const void *value;       /* PUT, unless keys_only */
  size_t vlen;
  const void *end;         /* DELETE_RANGE: the range's end (exclusive) */
  size_t end_len;
  uint64_t expires_at_ms;  /* PUT of a version with a TTL; 0: none */
  /* With prev_values: the key's value just before this commit. has_prev is
   * false if it had none (or, for prev_lost, if that version is older than
   * the history kept). */
  bool has_prev, prev_lost;
  const void *prev_value;
  size_t prev_vlen;
} nokv_event;

typedef struct nokv_watch_options {
  const void *start;       /* the keys [start, end); start_len 0: from the first key */
  size_t start_len;
  const void *end;
  size_t end_len;          /* 0: to the last key */
  uint64_t start_ts;       /* the first commit to deliver; 0: the next commit */
  bool keys_only;          /* leave values out */
  bool prev_values;        /* give each event the key's previous value */
} nokv_watch_options;

void nokv_watch_options_init(nokv_watch_options *o);

/* Starts a watch. NOKV_ESTALE if start_ts is older than the history kept
 * (nokv_watch_oldest_ts). */
int nokv_watch_open(nokv_db *db, const nokv_watch_options *o, nokv_watch **out);

/* Waits up to timeout_ms (negative: without limit) for the next group: its
 * commit timestamp and n events, valid until the next call on w. NOKV_OK;
 * NOKV_ETIMEDOUT if none came; NOKV_ECANCELED after nokv_watch_interrupt;
 * NOKV_ESTALE if the next commit is older than the history kept (the watch
 * is over); NOKV_ECLOSED if the database is closing. */
int nokv_watch_next(nokv_watch *w, int timeout_ms, uint64_t *commit_ts,
                    const nokv_event **events, size_t *n);

/* Waits up to timeout_ms (negative: without limit) until a commit newer than
 * after_ts has reached the change ring, and sets *newest_ts to the newest one
 * there: for a server that serves many watches from one thread, which then
 * asks each with nokv_watch_next(timeout 0). NOKV_OK or NOKV_ETIMEDOUT. Only
 * commits after the first nokv_watch_open reach the ring. */
int nokv_watch_wait(nokv_db *db, uint64_t after_ts, int timeout_ms, uint64_t *newest_ts);

/* The oldest start_ts a watch may start from now. */
uint64_t nokv_watch_oldest_ts(nokv_db *db);

/* Makes a nokv_watch_next waiting on w (on any thread) return NOKV_ECANCELED,
 * once; a later call waits again. */
void nokv_watch_interrupt(nokv_watch *w);
void nokv_watch_close(nokv_watch *w);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_WATCH_H */
