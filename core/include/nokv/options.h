/*
 * options.h — how a database is opened, written and read.
 *
 * Plain structs filled with defaults by nokv_options_init() and friends; set the
 * fields you care about and pass a pointer. The library copies what it needs, so
 * an options struct may live on the caller's stack.
 */
#ifndef NOKV_OPTIONS_H
#define NOKV_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nokv_env;      /* file layer; NULL means the POSIX one (see core/src/util/env.h) */
typedef struct nokv_snapshot nokv_snapshot;

#define NOKV_MAX_KEY_SIZE_LIMIT 65536u /* hard ceiling of max_key_size */

typedef struct nokv_options {
  bool create_if_missing;      /* default true */
  bool error_if_exists;        /* default false */
  size_t max_key_size;         /* default and ceiling 64 KiB */
  size_t max_value_size;       /* default 64 MiB */
  /* Memory budget of the memtable. Until tables are flushed to disk this is a hard
   * cap: a write that would exceed it fails with NOKV_EFULL. Default 256 MiB. */
  size_t memtable_max_bytes;
  size_t wal_segment_bytes;    /* a WAL segment is rotated past this size; default 64 MiB */
  size_t max_group_commit_bytes; /* bytes of batches one WAL write may join; default 1 MiB */
  const struct nokv_env *env;  /* NULL: POSIX file layer */
} nokv_options;

typedef struct nokv_write_options {
  /* true: the WAL is fsync'ed before the write is acknowledged, so it survives
   * power loss. false: it survives a process crash once acknowledged. */
  bool sync;
} nokv_write_options;

typedef struct nokv_read_options {
  /* Read at this snapshot if non-NULL; else at read_ts if non-zero; else at the
   * latest committed timestamp. A read never sees a version newer than the latest
   * committed timestamp, whatever read_ts says. */
  const nokv_snapshot *snapshot;
  uint64_t read_ts;
} nokv_read_options;

void nokv_options_init(nokv_options *opts);
void nokv_write_options_init(nokv_write_options *wo);
void nokv_read_options_init(nokv_read_options *ro);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_OPTIONS_H */
