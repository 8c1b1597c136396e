/*
 * version_set.h — the current version, the manifest that makes it durable, and
 * the database's file number counter.
 *
 * The manifest (MANIFEST-NNNNNNNN) is a log of version edits framed like WAL
 * records (type NK_WAL_EDIT). Its first record is a snapshot of the whole
 * version; each later record is one edit. CURRENT names the live manifest and is
 * replaced atomically (temp file, fsync, rename, fsync of the directory). Each
 * open starts a fresh manifest, and a manifest that grows past manifest_max_bytes
 * is replaced by a new snapshot the same way.
 */
#ifndef NOKV_VERSION_VERSION_SET_H
#define NOKV_VERSION_VERSION_SET_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sst/table_cache.h"
#include "util/env.h"
#include "version/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_vset {
  const struct nokv_env *env;
  char *dir;
  nk_table_cache *tc;
  size_t manifest_max;

  pthread_mutex_t mu;     /* guards current */
  nk_version *current;

  uint64_t next_file;     /* file number counter (atomic) */
  uint64_t log_number;    /* WAL segments below it are flushed */
  uint64_t last_ts;       /* newest commit timestamp in a table */
  /* The newest watermark a table was built with (0 and !has_horizon: not
   * recorded, as in manifests from before it was). */
  bool has_horizon;
  uint64_t horizon;

  /* One installer at a time (flush or compaction); it owns the manifest. */
  pthread_mutex_t install_mu;
  nk_file *manifest;
  uint64_t manifest_number, manifest_size;
  bool keep_files;        /* replaying or closing: a released version deletes nothing */
  /* Deletes obsolete tables in the background (NULL: at once, on the thread
   * that released them). Set once, before any version is released. */
  struct nk_reaper *reaper;

  /* Value log (version.h's nk_edit): the durable head, dead bytes per segment
   * (sorted by fid) and segments retired by GC whose files may still exist.
   * Changed under install_mu and mu; read under mu. */
  uint32_t vlog_head_fid;
  uint64_t vlog_head_off;
  /* The head as of the last edit known durable: what others may act on (GC
   * collects only segments below it). The head above runs ahead of it while an
   * edit is being logged, and falls back if logging fails. */
  uint32_t durable_head_fid;
  uint64_t durable_head_off;
  nk_vlog_discard *discard;
  size_t ndiscard, discard_cap;
  uint32_t *retired;
  size_t nretired, retired_cap;

  uint64_t tables_deleted;     /* atomic */
  uint64_t manifest_rewrites;  /* atomic */
  uint64_t orphans_deleted;    /* tables no version names, removed at open */
  uint64_t tables_checked;     /* live tables found on disk at open */
  uint64_t edits_replayed;     /* manifest records read at open */
} nk_vset;

/* Recovers the version from CURRENT and its manifest; *fresh is true if the
 * directory had no CURRENT and holds nothing a database needs (a new database).
 * Only a CURRENT that does not exist (ENOENT) counts as missing: any other failure
 * to read it fails. A directory without CURRENT that holds tables, WAL records,
 * value log entries or a manifest naming tables fails with NOKV_ECORRUPT naming
 * one of them. Writes nothing. */
int nk_vset_open(const struct nokv_env *env, const char *dir, nk_table_cache *tc,
                 size_t manifest_max, nk_vset **out, bool *fresh);
void nk_vset_close(nk_vset *vs);
/* An empty version set over dir, reading nothing (repair builds one). */
int nk_vset_new_empty(const struct nokv_env *env, const char *dir, nk_table_cache *tc,
                      size_t manifest_max, nk_vset **out);
/* Makes a fresh database durable before anything else is written: an empty
 * manifest and a CURRENT naming it. */
int nk_vset_create(nk_vset *vs);

static inline uint64_t nk_vset_new_file_number(nk_vset *vs) {
  return __atomic_fetch_add(&vs->next_file, 1, __ATOMIC_RELAXED);
}
/* Raises the counter above number (used at recovery for files found on disk). */
void nk_vset_mark_file_used(nk_vset *vs, uint64_t number);

/* The current version, referenced (release with nk_version_unref). */
nk_version *nk_vset_current(nk_vset *vs);

/* Applies e to the current version, logs it durably to the manifest (starting a
 * new manifest if there is none yet or it is too big) and installs the result.
 * On failure nothing is installed. */
int nk_vset_log_and_apply(nk_vset *vs, nk_edit *e);

/* Checks that every table of the current version exists (NOKV_ECORRUPT naming
 * the first missing one). Writes nothing: run before recovery writes anything,
 * so a refused open leaves the directory as it was. */
int nk_vset_check_tables(nk_vset *vs);
/* Deletes files the engine provably wrote and abandoned: tables the current
 * version does not name, manifests CURRENT does not name, WAL segments below the
 * log number, CURRENT.tmp. REQUIRES: no flush or compaction is running. */
int nk_vset_remove_orphans(nk_vset *vs);

/* A copy of the value log state (its head: the durable one). */
typedef struct nk_vset_vlog {
  uint32_t head_fid;
  uint64_t head_off;
  nk_vlog_discard *discard;
  size_t ndiscard;
  uint32_t *retired;
  size_t nretired;
} nk_vset_vlog;

int nk_vset_vlog_state(nk_vset *vs, nk_vset_vlog *out);
void nk_vset_vlog_release(nk_vset_vlog *s);
/* Drops a deleted segment's discard total and retired mark (in memory: the next
 * manifest snapshot leaves them out). */
void nk_vset_forget_segment(nk_vset *vs, uint32_t fid);

/* Writes into directory dst a manifest holding a snapshot of v with the value
 * log state vl (its retired segments left out: the copy does not hold them) and
 * commit timestamp last_ts, and a CURRENT naming it: with the files v and vl
 * name, dst is a database (checkpoints). */
int nk_vset_export(nk_vset *vs, const nk_version *v, const nk_vset_vlog *vl, uint64_t last_ts,
                   const char *dst);

/* "MANIFEST-%08llu"; buf of 32 bytes. */
void nk_manifest_file_name(uint64_t number, char *buf);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_VERSION_VERSION_SET_H */
