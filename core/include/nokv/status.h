/*
 * status.h — return codes of the NoKV-C C API.
 *
 * Every function of the API returns an int: NOKV_OK (0) on success or one of the
 * negative codes below. nokv_strerror() names a code; nokv_errmsg() gives the
 * detailed message of the last failure on the calling thread (which file, which
 * offset, which limit), in the style of sqlite3_errmsg().
 */
#ifndef NOKV_STATUS_H
#define NOKV_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
  NOKV_OK = 0,
  NOKV_ENOTFOUND = -1,  /* the key has no visible version */
  NOKV_EINVAL = -2,     /* bad argument: empty or oversized key, value too large, ... */
  NOKV_ECORRUPT = -3,   /* a checksum or format check failed on disk data */
  NOKV_EIO = -4,        /* the operating system reported an I/O error */
  NOKV_ENOMEM = -5,     /* an allocation failed */
  NOKV_EFULL = -6,      /* a configured capacity (e.g. the memtable) is exhausted */
  NOKV_EBUSY = -7,      /* the data directory is locked by another process, or
                           handles are still open at close */
  NOKV_ECLOSED = -8,    /* the database is closing or stopped after a fatal error */
  NOKV_ECONFLICT = -9,  /* a transaction conflicted with a concurrent commit */
  NOKV_ESTALE = -10,    /* an explicit read timestamp is older than the history
                           kept (versions it needs may have been compacted) */
  NOKV_EHOTKEY = -11,   /* a key of the write was written hot_write_limit times
                           in the last second: nothing written, retry later */
  NOKV_ECONDITION = -12, /* a condition of nokv_write_if did not hold: nothing
                            written */
  NOKV_ETIMEDOUT = -13, /* nothing came within the time asked (nokv_watch_next) */
  NOKV_ECANCELED = -14, /* interrupted (nokv_watch_interrupt) */
};

/* A short static description of rc ("not found", "corruption", ...). Never NULL. */
const char *nokv_strerror(int rc);

/* The detailed message of the most recent failed call made by this thread, or ""
 * if none failed yet. The pointer stays valid until this thread's next API call. */
const char *nokv_errmsg(void);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_STATUS_H */
