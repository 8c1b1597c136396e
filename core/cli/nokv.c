/*
 * nokv — inspects a data directory offline, without opening the database: it
 * reads the manifest and the value log and writes nothing (it is safe to run
 * against a directory a server is using; what it prints is then a moment's view).
 *
 *   nokv stats DIR [--json]  levels (files, bytes), WAL left to replay, value log
 *                            (segments, live/garbage, head), manifest, last commit
 *   nokv stats --addr HOST:PORT [--json] [--watch SECONDS] [--hot N]
 *                            a running server's Stats (runs nokv-remote)
 *   nokv cluster status|add|remove|transfer --addr HOST:PORT ...
 *                            a cluster's members, or a membership change (runs
 *                            nokv-remote)
 *   nokv manifest DIR        the tables of each level, WAL log number, value log head
 *   nokv vlog DIR [--verify] value log segments: size, live/garbage estimate, head;
 *                            --verify reads every entry and checks its checksum
 *   nokv checkpoint DIR DEST a consistent copy of the database at one timestamp
 *                            (this one opens the database, so not next to a server)
 *   nokv repair DIR          salvages a database that refuses to open (nokv_repair);
 *                            originals go to DIR/lost/
 *
 * Exit status: 0 ok, 1 damage found (or the directory could not be read), 2 usage.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nokv/nokv.h"
#include "nokv/status.h"
#include "sst/table_cache.h"
#include "util/env.h"
#include "version/version_set.h"
#include "vlog/vlog.h"
#include "wal/wal.h"

/* ---- a file layer that never writes ---- */

/* Replaying a manifest syncs it as if sealing it: a read-only handle can do
 * that (fsync works on it) and cannot append. */
static int readonly_open_append(const struct nokv_env *env, const char *path, bool truncate,
                                nk_file **out) {
  if (!truncate) return nk_env_posix()->open_read(env, path, out);
  fprintf(stderr, "nokv: refusing to write %s (read-only)\n", path);
  return NOKV_EINVAL;
}
static int ignore_truncate(const struct nokv_env *env, const char *path, uint64_t size) {
  (void)env, (void)path, (void)size;
  return NOKV_OK;  /* a torn tail is simply not read */
}
static int refuse_path(const struct nokv_env *env, const char *path) {
  (void)env;
  fprintf(stderr, "nokv: refusing to modify %s (read-only)\n", path);
  return NOKV_EINVAL;
}
static int refuse_rename(const struct nokv_env *env, const char *from, const char *to) {
  (void)env, (void)to;
  return refuse_path(env, from);
}

static struct nokv_env readonly_env(void) {
  struct nokv_env e = *nk_env_posix();
  e.open_append = readonly_open_append;
  e.truncate = ignore_truncate;
  e.remove = refuse_path;
  e.rename = refuse_rename;
  e.mkdir = refuse_path;
  e.sync_dir = refuse_path;
  return e;
}

/* ---- the manifest ---- */

typedef struct state {
  struct nokv_env env;
  nk_sst_stats sst_stats;
  nk_table_cache *tc;
  nk_vset *vs;
} state;

static int load(const char *dir, state *st) {
  memset(st, 0, sizeof *st);
  st->env = readonly_env();
  st->tc = nk_table_cache_new(&st->env, dir, 16, NULL, &st->sst_stats);
  if (st->tc == NULL) {
    fprintf(stderr, "nokv: out of memory\n");
    return 1;
  }
  bool fresh = false;
  if (nk_vset_open(&st->env, dir, st->tc, UINT64_MAX, &st->vs, &fresh) != NOKV_OK) {
    fprintf(stderr, "nokv: cannot read the manifest of %s: %s\n", dir, nokv_errmsg());
    nk_table_cache_free(st->tc);
    return 1;
  }
  if (fresh) {
    fprintf(stderr, "nokv: %s holds no database (no CURRENT file)\n", dir);
    nk_vset_close(st->vs);
    nk_table_cache_free(st->tc);
    return 1;
  }
  return 0;
}

static void unload(state *st) {
  nk_vset_close(st->vs);
  nk_table_cache_free(st->tc);
}

static void print_user_key(const char *ikey, size_t ulen) {
  for (size_t i = 0; i < ulen && i < 24; i++) {
    unsigned char c = (unsigned char)ikey[i];
    if (c >= 0x20 && c < 0x7f) {
      putchar(c);
    } else {
      printf("\\x%02x", c);
    }
  }
  if (ulen > 24) printf("...");
}

static void print_key(const char *ikey, size_t n) { print_user_key(ikey, n >= 8 ? n - 8 : n); }

static int cmd_manifest(const char *dir) {
  state st;
  if (load(dir, &st) != 0) return 1;
  nk_version *v = nk_vset_current(st.vs);
  nk_vset_vlog vl;
  if (nk_vset_vlog_state(st.vs, &vl) != NOKV_OK) {
    fprintf(stderr, "nokv: %s\n", nokv_errmsg());
    nk_version_unref(v);
    unload(&st);
    return 1;
  }
  printf("manifest        MANIFEST-%08llu\n", (unsigned long long)st.vs->manifest_number);
  printf("log number      %llu\n", (unsigned long long)st.vs->log_number);
  printf("next file       %llu\n", (unsigned long long)st.vs->next_file);
  printf("last commit ts  %llu\n", (unsigned long long)st.vs->last_ts);
  printf("value log head  segment %u offset %llu\n", vl.head_fid,
         (unsigned long long)vl.head_off);
  for (int l = 0; l < NK_NUM_LEVELS; l++) {
    if (v->nfiles[l] == 0) continue;
    printf("L%d: %zu tables, %llu bytes\n", l, v->nfiles[l],
           (unsigned long long)v->level_bytes[l]);
    for (size_t i = 0; i < v->nfiles[l]; i++) {
      const nk_file_meta *f = v->files[l][i];
      printf("  %08llu.sst %10llu bytes %8llu entries  ts %llu..%llu  [",
             (unsigned long long)f->number, (unsigned long long)f->size,
             (unsigned long long)f->entries, (unsigned long long)f->min_ts,
             (unsigned long long)f->max_ts);
      print_key(f->smallest, f->smallest_len);
      printf(" .. ");
      print_key(f->largest, f->largest_len);
      printf("]");
      if (f->range_clean_ts != 0) {
        printf("  range-clean %llu", (unsigned long long)f->range_clean_ts);
      }
      printf("\n");
    }
  }
  size_t nr = v->rdels != NULL ? v->rdels->n : 0;
  if (nr > 0) printf("range tombstones: %zu\n", nr);
  for (size_t i = 0; i < nr; i++) {
    const nk_rdel *d = &v->rdels->dels[i];
    printf("  ts %llu  [", (unsigned long long)d->ts);
    print_user_key(d->start, d->slen);
    printf(" .. ");
    print_user_key(d->end, d->elen);
    printf(")\n");
  }
  nk_vset_vlog_release(&vl);
  nk_version_unref(v);
  unload(&st);
  return 0;
}

/* ---- the value log ---- */

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* One segment file of the value log, as the manifest and the directory say. */
typedef struct seg_info {
  uint32_t fid;
  uint64_t size;     /* bytes on disk */
  uint64_t garbage;  /* known dead (discard statistics), at most its entries' bytes */
  const char *state;
  bool readable;
} seg_info;

/* The value log's segment files in fid order, with their size, known garbage
 * and state. 1 (after saying why) if the directory cannot be listed. */
static int list_segments(state *st, const char *dir, const nk_vset_vlog *vl, seg_info **out,
                         size_t *count) {
  char **names = NULL;
  size_t n = 0;
  *out = NULL;
  *count = 0;
  seg_info *segs = NULL;
  if (st->env.list_dir(&st->env, dir, &names, &n) != NOKV_OK ||
      (segs = calloc(n ? n : 1, sizeof *segs)) == NULL) {
    fprintf(stderr, "nokv: cannot list %s: %s\n", dir, nokv_errmsg());
    nk_env_free_names(names, n);
    return 1;
  }
  uint32_t *fids = malloc((n ? n : 1) * sizeof *fids);
  if (fids == NULL) {
    fprintf(stderr, "nokv: out of memory\n");
    nk_env_free_names(names, n);
    free(segs);
    return 1;
  }
  size_t nfids = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t fid;
    if (nk_vlog_parse_name(names[i], &fid)) fids[nfids++] = fid;
  }
  nk_env_free_names(names, n);
  qsort(fids, nfids, sizeof *fids, cmp_u32);
  for (size_t i = 0; i < nfids; i++) {
    seg_info *g = &segs[i];
    g->fid = fids[i];
    char name[32];
    nk_vlog_file_name(fids[i], name);
    char *path = nk_path_join(dir, name);
    nk_file *f = NULL;
    g->readable = path != NULL && st->env.open_read(&st->env, path, &f) == NOKV_OK &&
                  nk_file_size(f, &g->size) == NOKV_OK;
    nk_file_close(f);
    free(path);
    for (size_t j = 0; j < vl->ndiscard; j++) {
      if (vl->discard[j].fid == fids[i]) g->garbage = vl->discard[j].bytes;
    }
    uint64_t body = g->size > NK_VLOG_HEADER ? g->size - NK_VLOG_HEADER : 0;
    if (g->garbage > body) g->garbage = body;
    bool retired = false;
    for (size_t j = 0; j < vl->nretired; j++) retired |= vl->retired[j] == fids[i];
    g->state = retired                    ? "retired (GC'd, awaiting delete)"
               : fids[i] < vl->head_fid  ? "sealed"
               : fids[i] == vl->head_fid ? "head"
                                         : "past head (unflushed)";
  }
  free(fids);
  *out = segs;
  *count = nfids;
  return 0;
}

static int cmd_vlog(const char *dir, bool verify) {
  state st;
  if (load(dir, &st) != 0) return 1;
  nk_vset_vlog vl;
  seg_info *segs = NULL;
  size_t nsegs = 0;
  if (nk_vset_vlog_state(st.vs, &vl) != NOKV_OK) {
    fprintf(stderr, "nokv: %s\n", nokv_errmsg());
    unload(&st);
    return 1;
  }
  if (list_segments(&st, dir, &vl, &segs, &nsegs) != 0) {
    nk_vset_vlog_release(&vl);
    unload(&st);
    return 1;
  }
  int status = 0;
  printf("head: segment %u offset %llu\n", vl.head_fid, (unsigned long long)vl.head_off);
  printf("%-14s %12s %12s %12s %7s  %s\n", "segment", "bytes", "live~", "garbage", "ratio",
         verify ? "state / verify" : "state");
  uint64_t total = 0, garbage_total = 0, entries_total = 0;
  for (size_t i = 0; i < nsegs; i++) {
    const seg_info *g = &segs[i];
    char name[32];
    nk_vlog_file_name(g->fid, name);
    if (!g->readable) {
      printf("%-14s cannot read: %s\n", name, nokv_errmsg());
      status = 1;
      continue;
    }
    uint64_t body = g->size > NK_VLOG_HEADER ? g->size - NK_VLOG_HEADER : 0;
    printf("%-14s %12llu %12llu %12llu %6.1f%%  %s", name, (unsigned long long)g->size,
           (unsigned long long)(body - g->garbage), (unsigned long long)g->garbage,
           body ? 100.0 * (double)g->garbage / (double)body : 0.0, g->state);
    total += g->size;
    garbage_total += g->garbage;
    if (verify) {
      char *path = nk_path_join(dir, name);
      nk_vlog_scan_result r;
      int rc = path == NULL ? NOKV_ENOMEM
                            : nk_vlog_scan_file(&st.env, path, g->fid, 0, NULL, NULL, &r);
      free(path);
      if (rc != NOKV_OK) {
        printf("  DAMAGED: %s", nokv_errmsg());
        status = 1;
      } else if (r.torn) {
        printf("  DAMAGED after %llu entries at %s", (unsigned long long)r.entries, r.why);
        status = 1;
      } else {
        printf("  %llu entries ok", (unsigned long long)r.entries);
      }
      if (rc == NOKV_OK) entries_total += r.entries;
    }
    printf("\n");
  }
  printf("%zu segments, %llu bytes, %llu garbage (%.1f%%)", nsegs, (unsigned long long)total,
         (unsigned long long)garbage_total,
         total ? 100.0 * (double)garbage_total / (double)total : 0.0);
  if (verify) {
    printf(", %llu entries checked: %s", (unsigned long long)entries_total,
           status == 0 ? "all checksums match" : "DAMAGE FOUND");
  }
  printf("\n");
  free(segs);
  nk_vset_vlog_release(&vl);
  unload(&st);
  return status;
}

/* ---- stats (offline) ---- */

/* The size of dir/name, or 0 if it cannot be read (*ok false). */
static uint64_t file_size(state *st, const char *dir, const char *name, bool *ok) {
  char *path = nk_path_join(dir, name);
  nk_file *f = NULL;
  uint64_t size = 0;
  bool good = path != NULL && st->env.open_read(&st->env, path, &f) == NOKV_OK &&
              nk_file_size(f, &size) == NOKV_OK;
  nk_file_close(f);
  free(path);
  if (!good) *ok = false;
  return size;
}

typedef struct dir_stats {
  char manifest[32];
  uint64_t manifest_bytes, log_number, next_file, last_ts;
  uint64_t level_files[NK_NUM_LEVELS], level_bytes[NK_NUM_LEVELS], tables, table_bytes;
  uint64_t wal_segments, wal_bytes;  /* from the log number on: replayed at the next open */
  uint64_t vlog_segments, vlog_bytes, vlog_garbage, vlog_live, vlog_past_head, vlog_retired;
  uint32_t head_fid;
  uint64_t head_off;
} dir_stats;

static int gather_stats(state *st, const char *dir, dir_stats *d) {
  memset(d, 0, sizeof *d);
  bool ok = true;
  snprintf(d->manifest, sizeof d->manifest, "MANIFEST-%08llu",
           (unsigned long long)st->vs->manifest_number);
  d->manifest_bytes = file_size(st, dir, d->manifest, &ok);
  d->log_number = st->vs->log_number;
  d->next_file = st->vs->next_file;
  d->last_ts = st->vs->last_ts;
  nk_version *v = nk_vset_current(st->vs);
  for (int l = 0; l < NK_NUM_LEVELS; l++) {
    d->level_files[l] = v->nfiles[l];
    d->level_bytes[l] = v->level_bytes[l];
    d->tables += v->nfiles[l];
    d->table_bytes += v->level_bytes[l];
  }
  nk_version_unref(v);
  uint64_t *numbers = NULL;
  size_t n = 0;
  if (nk_wal_list(&st->env, dir, &numbers, &n) != NOKV_OK) {
    fprintf(stderr, "nokv: cannot list the WAL of %s: %s\n", dir, nokv_errmsg());
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (numbers[i] < d->log_number) continue;  /* in tables already: deleted soon */
    char name[32];
    nk_wal_segment_name(numbers[i], name);
    d->wal_segments++;
    d->wal_bytes += file_size(st, dir, name, &ok);
  }
  free(numbers);
  nk_vset_vlog vl;
  if (nk_vset_vlog_state(st->vs, &vl) != NOKV_OK) {
    fprintf(stderr, "nokv: %s\n", nokv_errmsg());
    return 1;
  }
  seg_info *segs = NULL;
  size_t nsegs = 0;
  if (list_segments(st, dir, &vl, &segs, &nsegs) != 0) {
    nk_vset_vlog_release(&vl);
    return 1;
  }
  d->head_fid = vl.head_fid;
  d->head_off = vl.head_off;
  for (size_t i = 0; i < nsegs; i++) {
    const seg_info *g = &segs[i];
    ok &= g->readable;
    d->vlog_segments++;
    d->vlog_bytes += g->size;
    d->vlog_garbage += g->garbage;
    d->vlog_live += g->size > NK_VLOG_HEADER ? g->size - NK_VLOG_HEADER - g->garbage : 0;
    if (g->fid > vl.head_fid) d->vlog_past_head += g->size;
    if (g->fid == vl.head_fid && g->size > vl.head_off) d->vlog_past_head += g->size - vl.head_off;
    for (size_t j = 0; j < vl.nretired; j++) d->vlog_retired += vl.retired[j] == g->fid;
  }
  free(segs);
  nk_vset_vlog_release(&vl);
  if (!ok) fprintf(stderr, "nokv: some files of %s could not be read; sizes are partial\n", dir);
  return ok ? 0 : 1;
}

static void print_stats_text(const char *dir, const dir_stats *d) {
  printf("data directory    %s\n", dir);
  printf("manifest          %s, %llu bytes\n", d->manifest, (unsigned long long)d->manifest_bytes);
  printf("last commit ts    %llu in tables (the WAL to replay holds any later one)\n",
         (unsigned long long)d->last_ts);
  printf("\ntables            %12s %14s\n", "files", "bytes");
  for (int l = 0; l < NK_NUM_LEVELS; l++) {
    if (d->level_files[l] == 0) continue;
    printf("  L%d              %12llu %14llu\n", l, (unsigned long long)d->level_files[l],
           (unsigned long long)d->level_bytes[l]);
  }
  printf("  total           %12llu %14llu\n", (unsigned long long)d->tables,
         (unsigned long long)d->table_bytes);
  printf("\nWAL to replay     %llu segments, %llu bytes (from log number %llu)\n",
         (unsigned long long)d->wal_segments, (unsigned long long)d->wal_bytes,
         (unsigned long long)d->log_number);
  printf("\nvalue log         %llu segments, %llu bytes\n", (unsigned long long)d->vlog_segments,
         (unsigned long long)d->vlog_bytes);
  printf("  live (about)    %llu bytes\n", (unsigned long long)d->vlog_live);
  printf("  garbage (known) %llu bytes (%.1f%%)\n", (unsigned long long)d->vlog_garbage,
         d->vlog_bytes ? 100.0 * (double)d->vlog_garbage / (double)d->vlog_bytes : 0.0);
  printf("  head            segment %u offset %llu; %llu bytes after it, not yet in tables\n",
         d->head_fid, (unsigned long long)d->head_off, (unsigned long long)d->vlog_past_head);
  if (d->vlog_retired > 0) {
    printf("  retired         %llu segments awaiting deletion\n",
           (unsigned long long)d->vlog_retired);
  }
}

/* The directory as JSON. The fields are stable (docs/cli.md); the path is
 * escaped for JSON. */
static void print_stats_json(const char *dir, const dir_stats *d) {
  printf("{\"data_dir\": \"");
  for (const unsigned char *p = (const unsigned char *)dir; *p != 0; p++) {
    if (*p == '"' || *p == '\\') {
      printf("\\%c", *p);
    } else if (*p < 0x20) {
      printf("\\u%04x", *p);
    } else {
      putchar(*p);
    }
  }
  printf("\",\n \"manifest\": {\"file\": \"%s\", \"bytes\": %llu, \"log_number\": %llu, "
         "\"next_file\": %llu},\n",
         d->manifest, (unsigned long long)d->manifest_bytes, (unsigned long long)d->log_number,
         (unsigned long long)d->next_file);
  printf(" \"last_commit_ts_in_tables\": %llu,\n \"levels\": [", (unsigned long long)d->last_ts);
  for (int l = 0; l < NK_NUM_LEVELS; l++) {
    printf("%s{\"level\": %d, \"files\": %llu, \"bytes\": %llu}", l ? ", " : "", l,
           (unsigned long long)d->level_files[l], (unsigned long long)d->level_bytes[l]);
  }
  printf("],\n \"tables\": {\"files\": %llu, \"bytes\": %llu},\n", (unsigned long long)d->tables,
         (unsigned long long)d->table_bytes);
  printf(" \"wal\": {\"segments_to_replay\": %llu, \"bytes_to_replay\": %llu},\n",
         (unsigned long long)d->wal_segments, (unsigned long long)d->wal_bytes);
  printf(" \"value_log\": {\"segments\": %llu, \"bytes\": %llu, \"live_bytes\": %llu, "
         "\"garbage_bytes\": %llu, \"head_segment\": %u, \"head_offset\": %llu, "
         "\"bytes_past_head\": %llu, \"retired_segments\": %llu}}\n",
         (unsigned long long)d->vlog_segments, (unsigned long long)d->vlog_bytes,
         (unsigned long long)d->vlog_live, (unsigned long long)d->vlog_garbage, d->head_fid,
         (unsigned long long)d->head_off, (unsigned long long)d->vlog_past_head,
         (unsigned long long)d->vlog_retired);
}

static int cmd_stats(const char *dir, bool json) {
  state st;
  if (load(dir, &st) != 0) return 1;
  dir_stats d;
  int status = gather_stats(&st, dir, &d);
  if (json) {
    print_stats_json(dir, &d);
  } else {
    print_stats_text(dir, &d);
  }
  unload(&st);
  return status;
}

/* ---- checkpoint (opens the database: not next to a running server) ---- */

/* Opens the database in dir, which must exist; NULL (after saying why) if it
 * cannot. */
static nokv_db *open_existing(const char *dir) {
  nokv_options o;
  nokv_options_init(&o);
  o.create_if_missing = false;
  nokv_db *db;
  if (nokv_open(dir, &o, &db) != NOKV_OK) {
    fprintf(stderr, "nokv: cannot open %s: %s\n", dir, nokv_errmsg());
    return NULL;
  }
  return db;
}

static int cmd_checkpoint(const char *dir, const char *dst) {
  nokv_db *db = open_existing(dir);
  if (db == NULL) return 1;
  uint64_t ts = 0;
  int rc = nokv_checkpoint(db, dst, &ts);
  if (rc != NOKV_OK) fprintf(stderr, "nokv: %s\n", nokv_errmsg());
  int crc = nokv_close(db);
  if (rc != NOKV_OK || crc != NOKV_OK) return 1;
  printf("checkpoint %s at commit timestamp %llu\n", dst, (unsigned long long)ts);
  return 0;
}

/* ---- compact (the database must be closed) ---- */

static int cmd_compact(const char *dir) {
  nokv_db *db = open_existing(dir);
  if (db == NULL) return 1;
  nokv_statistics before, after;
  int rc = nokv_stats(db, &before);
  if (rc == NOKV_OK) rc = nokv_compact(db);
  if (rc == NOKV_OK) rc = nokv_vlog_gc(db, 0, NULL);
  if (rc == NOKV_OK) rc = nokv_stats(db, &after);
  if (rc != NOKV_OK) fprintf(stderr, "nokv: %s\n", nokv_errmsg());
  int crc = nokv_close(db);  /* collected segments are deleted by now */
  if (rc != NOKV_OK || crc != NOKV_OK) return 1;
  printf("compacted %s\n", dir);
  printf("  tables     %llu -> %llu bytes\n", (unsigned long long)before.table_bytes,
         (unsigned long long)after.table_bytes);
  /* Background GC may collect some first: every collection counts. */
  printf("  value log  %llu -> %llu bytes (%llu segments collected)\n",
         (unsigned long long)before.vlog_bytes, (unsigned long long)after.vlog_bytes,
         (unsigned long long)(after.gc_segments_collected - before.gc_segments_collected));
  return 0;
}

/* ---- repair (the database must be closed) ---- */

static int cmd_repair(const char *dir) {
  nokv_repair_report r;
  int rc = nokv_repair(dir, NULL, &r);
  if (rc != NOKV_OK) {
    fprintf(stderr, "nokv: repair %s: %s\n", dir, nokv_errmsg());
    return 1;
  }
  printf("repaired %s\n", dir);
  printf("  tables        %llu verified, %llu damaged (%llu entries salvaged, %llu lost)\n",
         (unsigned long long)r.tables_verified, (unsigned long long)r.tables_damaged,
         (unsigned long long)r.table_entries_salvaged, (unsigned long long)r.table_entries_lost);
  printf("  wal           %llu segments, %llu records salvaged, %llu damaged bytes skipped\n",
         (unsigned long long)r.wal_segments, (unsigned long long)r.wal_records,
         (unsigned long long)r.wal_bytes_skipped);
  printf("  value log     %llu values lost (kept as deletions), %llu segments unusable\n",
         (unsigned long long)r.values_lost, (unsigned long long)r.vlog_segments_moved);
  printf("  written       %llu versions, %llu bytes, up to commit timestamp %llu\n",
         (unsigned long long)r.entries_written, (unsigned long long)r.bytes_written,
         (unsigned long long)r.last_commit_ts);
  printf("  moved         %llu originals to %s/lost/ (nothing deleted)\n",
         (unsigned long long)r.files_moved, dir);
  return 0;
}

/* ---- talking to a running server: nokv-remote ---- */

/* `nokv stats --addr ...` asks a running server over gRPC; that client is
 * nokv-remote (C++, service/nokv_remote.cc), installed next to this program,
 * which hands the call over as git does to its subcommands. Looked for: in
 * $NOKV_REMOTE, next to this program, in its Bazel runfiles (its own, or a
 * test's: $RUNFILES_DIR, $TEST_SRCDIR), then on PATH. */
static int exec_remote(char **argv) {
  const char *env = getenv("NOKV_REMOTE");
  if (env != NULL && *env != '\0') {
    execv(env, argv);
    fprintf(stderr, "nokv: cannot run %s: %s\n", env, strerror(errno));
    return 1;
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    char path[4200];
    char *slash = strrchr(self, '/');
    if (slash != NULL) {
      snprintf(path, sizeof path, "%.*s/nokv-remote", (int)(slash - self), self);
      execv(path, argv);
    }
    snprintf(path, sizeof path, "%s.runfiles/nokv/service/nokv-remote", self);
    execv(path, argv);
  }
  /* Under `bazel test`, the runfiles tree is the test's. */
  for (const char *const *var = (const char *const[]){"RUNFILES_DIR", "TEST_SRCDIR", NULL};
       *var != NULL; var++) {
    const char *dir = getenv(*var);
    if (dir == NULL || *dir == '\0') continue;
    char path[4200];
    snprintf(path, sizeof path, "%s/nokv/service/nokv-remote", dir);
    execv(path, argv);
  }
  execvp("nokv-remote", argv);
  fprintf(stderr, "nokv: stats --addr and cluster need nokv-remote (next to nokv or on PATH): %s\n",
          strerror(errno));
  return 1;
}

static int usage(void) {
  fprintf(stderr,
          "usage: nokv stats DIR [--json]  levels, WAL to replay, value log (offline)\n"
          "       nokv stats --addr HOST:PORT [--json] [--watch SECONDS] [--hot N]\n"
          "                                  a running server's counters and hot keys\n"
          "       nokv cluster status|add|remove|transfer --addr HOST:PORT [--id N]\n"
          "                    [--raft_address HOST:PORT]  a cluster's members, or a change\n"
          "       nokv manifest DIR\n"
          "       nokv vlog DIR [--verify]\n"
          "       nokv checkpoint DIR DEST   (opens DIR: not while a server uses it; use\n"
          "                                   the Checkpoint RPC there)\n"
          "       nokv repair DIR            salvage a database that refuses to open\n"
          "       nokv compact DIR           compact every level and collect the value log\n"
          "                                  (not while a server uses it; use the Compact RPC)\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 3) return usage();
  if (strcmp(argv[1], "cluster") == 0) return exec_remote(argv);
  for (int i = 2; strcmp(argv[1], "stats") == 0 && i < argc; i++) {
    if (strcmp(argv[i], "--addr") == 0) return exec_remote(argv);
  }
  if (strcmp(argv[1], "stats") == 0 && argc == 3) return cmd_stats(argv[2], false);
  if (strcmp(argv[1], "stats") == 0 && argc == 4 && strcmp(argv[3], "--json") == 0) {
    return cmd_stats(argv[2], true);
  }
  if (strcmp(argv[1], "manifest") == 0 && argc == 3) return cmd_manifest(argv[2]);
  if (strcmp(argv[1], "checkpoint") == 0 && argc == 4) return cmd_checkpoint(argv[2], argv[3]);
  if (strcmp(argv[1], "repair") == 0 && argc == 3) return cmd_repair(argv[2]);
  if (strcmp(argv[1], "compact") == 0 && argc == 3) return cmd_compact(argv[2]);
  if (strcmp(argv[1], "vlog") == 0 && argc == 3) return cmd_vlog(argv[2], false);
  if (strcmp(argv[1], "vlog") == 0 && argc == 4 && strcmp(argv[3], "--verify") == 0) {
    return cmd_vlog(argv[2], true);
  }
  return usage();
}
