/* vlog.c — value log segments: appending, reading, recovery (format in vlog.h). */
#include "vlog/vlog.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nokv/status.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/error.h"
#include "util/grow.h"
#include "util/reaper.h"

#define SCAN_CHUNK (4u << 20)

/* ---- pointers and names ---- */

void nk_vptr_encode(const nk_vptr *p, char *dst) {
  nk_put_u32(dst, p->fid);
  nk_put_u32(dst + 4, p->off);
  nk_put_u32(dst + 8, p->len);
  nk_put_u32(dst + 12, p->crc);
}

bool nk_vptr_decode(const char *src, size_t n, nk_vptr *p) {
  if (n != NK_VPTR_SIZE) return false;
  p->fid = nk_get_u32(src);
  p->off = nk_get_u32(src + 4);
  p->len = nk_get_u32(src + 8);
  p->crc = nk_get_u32(src + 12);
  return p->fid != 0 && p->off >= NK_VLOG_HEADER && p->len >= NK_VLOG_ENTRY_HEADER;
}

void nk_vlog_file_name(uint32_t fid, char *buf) { snprintf(buf, 32, "%08u.vlog", fid); }

bool nk_vlog_parse_name(const char *name, uint32_t *fid) {
  size_t n = strlen(name);
  if (n < 6 || n > 15 || strcmp(name + n - 5, ".vlog") != 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n - 5; i++) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + (uint64_t)(name[i] - '0');
  }
  if (v == 0 || v > UINT32_MAX) return false;
  *fid = (uint32_t)v;
  return true;
}

static void encode_header(uint32_t fid, char *h) {
  nk_put_u32(h, NK_VLOG_MAGIC);
  nk_put_u32(h + 4, NK_VLOG_VERSION);
  nk_put_u32(h + 8, fid);
  nk_put_u32(h + 12, nk_checksum32(h, 12, 0));
}

/* Magic, checksum and segment id; the version is checked apart. */
static bool header_intact(const char *h, uint32_t fid) {
  return nk_get_u32(h) == NK_VLOG_MAGIC && nk_get_u32(h + 12) == nk_checksum32(h, 12, 0) &&
         nk_get_u32(h + 8) == fid;
}

bool nk_vlog_header_valid(const char *h, uint32_t fid) {
  return header_intact(h, fid) && nk_get_u32(h + 4) == NK_VLOG_VERSION;
}

static size_t entry_len(size_t klen, size_t vlen) { return NK_VLOG_ENTRY_HEADER + klen + vlen; }

/* Checks the entry at p (avail bytes) and decodes it. Returns false (why set)
 * if it is incomplete or damaged. */
static bool parse_entry(const char *p, size_t avail, nk_vlog_entry *e, char *why, size_t whylen) {
  if (avail < NK_VLOG_ENTRY_HEADER) {
    snprintf(why, whylen, "%zu bytes, shorter than an entry header", avail);
    return false;
  }
  uint32_t crc = nk_get_u32(p), klen = nk_get_u32(p + 4), vlen = nk_get_u32(p + 8);
  uint64_t total = (uint64_t)NK_VLOG_ENTRY_HEADER + klen + vlen;
  if (total > avail) {
    snprintf(why, whylen, "entry of %llu bytes overruns the %zu left",
             (unsigned long long)total, avail);
    return false;
  }
  if (nk_checksum32(p + 4, (size_t)total - 4, 0) != crc) {
    snprintf(why, whylen, "entry checksum mismatch");
    return false;
  }
  e->crc = crc;
  e->len = (uint32_t)total;
  e->ts = nk_get_u64(p + 12);
  e->key = p + NK_VLOG_ENTRY_HEADER;
  e->klen = klen;
  e->val = e->key + klen;
  e->vlen = vlen;
  return true;
}

bool nk_vlog_entry_matches(const char *data, size_t n, const nk_vptr *p, const char *key,
                           size_t klen) {
  nk_vlog_entry e;
  char why[96];
  return n == p->len && parse_entry(data, n, &e, why, sizeof why) && e.len == p->len &&
         e.crc == p->crc && (key == NULL || (e.klen == klen && memcmp(e.key, key, klen) == 0));
}

/* ---- scanning a segment file ---- */

int nk_vlog_scan_file(const struct nokv_env *env, const char *path, uint32_t fid, uint64_t from,
                      nk_vlog_entry_fn fn, void *arg, nk_vlog_scan_result *res) {
  memset(res, 0, sizeof *res);
  nk_file *f = NULL;
  nk_buf buf = {0};
  int ret = NOKV_OK;
  NK_ERR(env->open_read(env, path, &f));
  NK_ERR(nk_file_size(f, &res->file_size));
  if (from == 0) {
    char h[NK_VLOG_HEADER];
    size_t got = 0;
    NK_ERR(nk_file_read_at(f, 0, h, sizeof h, &got));
    if (got < sizeof h) {
      res->valid_end = 0;
      res->torn = true;
      snprintf(res->why, sizeof res->why, "header is %zu bytes", got);
      goto err;
    }
    if (!header_intact(h, fid)) {
      NK_ERR(nk_err(NOKV_ECORRUPT, "value log segment %s has a bad header", path));
    }
    if (nk_get_u32(h + 4) != NK_VLOG_VERSION) {
      NK_ERR(nk_err(NOKV_ECORRUPT, "value log segment %s has unknown format version %u", path,
                    nk_get_u32(h + 4)));
    }
    from = NK_VLOG_HEADER;
  }
  res->valid_end = from;
  uint64_t off = from;
  /* buf holds file bytes [buf_off, buf_off + buf.len). */
  uint64_t buf_off = off;
  while (off < res->file_size) {
    size_t have = (size_t)(buf_off + buf.len - off);
    const char *p = have > 0 ? buf.data + (off - buf_off) : NULL;
    nk_vlog_entry e;
    char why[96];
    bool at_eof = buf_off + buf.len >= res->file_size;
    if (have >= NK_VLOG_ENTRY_HEADER || at_eof) {
      size_t need = have >= NK_VLOG_ENTRY_HEADER
                        ? entry_len(nk_get_u32(p + 4), nk_get_u32(p + 8))
                        : NK_VLOG_ENTRY_HEADER;
      if (have >= need || at_eof) {
        if (!parse_entry(p, have, &e, why, sizeof why)) {
          res->torn = true;
          snprintf(res->why, sizeof res->why, "offset %llu: %s", (unsigned long long)off, why);
          break;
        }
        e.fid = fid;
        e.off = (uint32_t)off;
        res->entries++;
        if (fn != NULL) NK_ERR(fn(arg, &e));
        off += e.len;
        res->valid_end = off;
        continue;
      }
    }
    /* Refill: keep the partial entry, read at least one chunk more. */
    size_t want = SCAN_CHUNK;
    if (have >= NK_VLOG_ENTRY_HEADER) {
      uint64_t need = entry_len(nk_get_u32(p + 4), nk_get_u32(p + 8));
      if (need > res->file_size - off) need = res->file_size - off;  /* torn: read to EOF */
      if (need > want) want = (size_t)need;
    }
    if (have > 0) memmove(buf.data, p, have);
    buf.len = have;
    buf_off = off;
    if (!nk_buf_reserve(&buf, want)) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory scanning %s", path));
    size_t got = 0;
    NK_ERR(nk_file_read_at(f, off + have, buf.data + have, want, &got));
    buf.len += got;
    if (got == 0) {
      res->file_size = off + have;  /* shrank under us: treat what is left as the tail */
    }
  }
err:
  nk_file_close(f);
  nk_buf_release(&buf);
  return ret;
}

/* ---- the open value log ---- */

#define MAX_UNSYNCED_SEGMENTS 8

typedef struct segment {
  uint32_t fid;
  uint32_t refs;   /* the table's reference plus reads in flight (atomic) */
  bool removed;    /* unlink the file when the last reference goes */
  struct nk_reaper *reaper;  /* set when removed: who unlinks it */
  uint64_t size;   /* bytes written (or recovered) */
  bool cut;        /* recovery found a torn tail past size: cut at start */
  nk_file *rfile;
  /* Read-only mapping of the first map_len bytes (NULL if the file layer cannot
   * map). An active segment is mapped at its full capacity ahead of the writes. */
  const char *map;
  uint64_t map_len;
  char *path;
  const struct nokv_env *env;
} segment;

struct nk_vlog {
  const struct nokv_env *env;
  char *dir;
  uint64_t segment_bytes;

  pthread_mutex_t mu;  /* guards segs, nsegs and each segment's size */
  segment **segs;      /* fid order */
  size_t nsegs, cap;

  /* Writer state, used by the write leader (one at a time). active changes
   * under mu too (readers list segments); wfile and wfid change under wmu and
   * sync_mu too (nk_vlog_sync_to syncs from the flush thread). wmu is only
   * ever held for a few loads and stores: the leader takes it after every
   * append. sync_mu is held across an fsync of the active segment, so the
   * flush thread's fsync never stalls the leader's appends. */
  pthread_mutex_t wmu;
  pthread_mutex_t sync_mu;
  segment *active;
  nk_file *wfile;
  uint32_t wfid;       /* active's id, for nk_vlog_sync_to */
  uint64_t written;    /* bytes of the active segment on disk */
  uint64_t synced;     /* of those, made durable (under wmu) */
  /* Segments sealed since they were last synced, oldest first, kept open for
   * the next sync that needs them (a segment switch syncs nothing, so a
   * writer never waits for an fsync it did not ask for); and whether a
   * segment was created since the directory was synced. Under sync_mu. */
  struct unsynced_seg {
    nk_file *file;
    uint32_t fid;
  } *unsynced;
  size_t nunsynced, unsynced_cap;
  bool dir_dirty;
  /* Under sync_mu: after a failed fsync every later one fails too (the kernel
   * reports a lost write-back once; a second fsync may succeed without it). */
  int sync_failed;
  char sync_why[256];
  nk_buf pending;      /* buffered entries, to go at offset `written` */
  uint64_t bytes_written;  /* atomic */
  uint64_t prefetches;     /* atomic */

  /* Recovery, between nk_vlog_open and nk_vlog_start. */
  uint32_t head_fid;
  nk_vlog_recovery *rec;
  struct nk_reaper *reaper;  /* deletes removed segments (NULL: at once) */
  segment **headerless;    /* segments cut before their header: removed at start */
  size_t nheaderless, nheaderless_cap;
  uint32_t *retired;       /* segments GC retired, still on disk: removed at start */
  size_t nretired;
};

static void seg_free(void *arg, uint64_t unused_a, uint64_t unused_b) {
  (void)unused_a, (void)unused_b;
  segment *s = arg;
  if (s->map != NULL) s->env->unmap(s->env, s->map, s->map_len);
  nk_file_close(s->rfile);
  if (s->removed) nk_env_remove_quiet(s->env, s->path);
  free(s->path);
  free(s);
}

/* The last reference to a removed segment hands its unmapping and unlink to
 * the reaper: it may be a reader's. */
static void seg_unref(segment *s) {
  if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  if (s->removed) {
    nk_reaper_add(s->reaper, seg_free, s, 0, 0);
  } else {
    seg_free(s, 0, 0);
  }
}

static segment *seg_new(nk_vlog *vl, uint32_t fid) {
  segment *s = calloc(1, sizeof *s);
  char name[32];
  nk_vlog_file_name(fid, name);
  if (s == NULL || (s->path = nk_path_join(vl->dir, name)) == NULL) {
    free(s);
    return NULL;
  }
  s->fid = fid;
  s->refs = 1;
  s->env = vl->env;
  return s;
}

/* Opens s for reading: a mapping of capacity bytes (0: the file's size) where
 * the file layer can map, plus a handle for what lies beyond it. */
static int seg_open_read(nk_vlog *vl, segment *s, uint64_t capacity) {
  NK_RET(vl->env->open_read(vl->env, s->path, &s->rfile));
  if (vl->env->map == NULL) return NOKV_OK;
  uint64_t len = capacity;
  NK_RET(vl->env->map(vl->env, s->path, &s->map, &len));
  s->map_len = len;
  return NOKV_OK;
}

/* A sealed segment that its mapping covers is read only through the mapping
 * (which keeps the file alive): its descriptor is closed, so open value-log
 * files stay a handful however many segments there are. Where the file layer
 * cannot map, every segment keeps one descriptor. */
static void seg_drop_fd(segment *s) {
  if (s->map != NULL && s->map_len >= s->size && s->rfile != NULL) {
    nk_file_close(s->rfile);
    s->rfile = NULL;
  }
}

/* Appends s to the table (fids only grow). REQUIRES: mu held. */
static int seg_insert(nk_vlog *vl, segment *s) {
  if (!nk_grow((void **)&vl->segs, &vl->cap, vl->nsegs, sizeof *vl->segs)) {
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  vl->segs[vl->nsegs++] = s;
  return NOKV_OK;
}

/* Index of fid in segs, or -1. REQUIRES: mu held. */
static long seg_find(const nk_vlog *vl, uint32_t fid) {
  size_t lo = 0, hi = vl->nsegs;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (vl->segs[mid]->fid < fid) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < vl->nsegs && vl->segs[lo]->fid == fid ? (long)lo : -1;
}

/* Segment fid, referenced, and its size now; NULL if there is none. */
static segment *seg_get(nk_vlog *vl, uint32_t fid, uint64_t *size) {
  pthread_mutex_lock(&vl->mu);
  long i = seg_find(vl, fid);
  segment *s = i >= 0 ? vl->segs[i] : NULL;
  if (s != NULL) {
    __atomic_fetch_add(&s->refs, 1, __ATOMIC_RELAXED);
    *size = s->size;
  }
  pthread_mutex_unlock(&vl->mu);
  return s;
}

/* Records a failed sync (REQUIRES: sync_mu held); returns ret. */
static int sync_failed(nk_vlog *vl, int ret) {
  if (ret != NOKV_OK && vl->sync_failed == NOKV_OK) {
    vl->sync_failed = ret;
    snprintf(vl->sync_why, sizeof vl->sync_why, "%s", nokv_errmsg());
  }
  return ret;
}

/* Makes the sealed segments up to fid durable, oldest first, then the
 * directory if a segment was created since it was last synced. A segment
 * whose fsync fails stays listed, and every later sync fails (sync_failed).
 * REQUIRES: sync_mu held. */
static int sync_sealed(nk_vlog *vl, uint32_t fid) {
  if (vl->sync_failed != NOKV_OK) {
    return nk_err(vl->sync_failed, "value log: an earlier sync failed (%s)", vl->sync_why);
  }
  size_t done = 0;
  int ret = NOKV_OK;
  while (done < vl->nunsynced && vl->unsynced[done].fid <= fid) {
    if ((ret = nk_file_sync(vl->unsynced[done].file)) != NOKV_OK) break;
    nk_file_close(vl->unsynced[done].file);
    done++;
  }
  if (done > 0) {
    vl->nunsynced -= done;
    memmove(vl->unsynced, vl->unsynced + done, vl->nunsynced * sizeof *vl->unsynced);
  }
  if (ret == NOKV_OK && vl->dir_dirty) {
    ret = vl->env->sync_dir(vl->env, vl->dir);
    if (ret == NOKV_OK) vl->dir_dirty = false;
  }
  return sync_failed(vl, ret);
}

/* Creates segment fid with its header and makes it the active one. Nothing
 * is synced: the old segment, if it holds unsynced entries, joins the list the
 * next sync works through first, and the new name is made durable by that
 * sync's directory sync. */
static int start_segment(nk_vlog *vl, uint32_t fid) {
  segment *s = seg_new(vl, fid);
  if (s == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  nk_file *w = NULL;
  char h[NK_VLOG_HEADER];
  encode_header(fid, h);
  int ret = NOKV_OK;
  NK_ERR(vl->env->open_append(vl->env, s->path, true, &w));
  NK_ERR(nk_file_append(w, h, sizeof h));
  s->size = NK_VLOG_HEADER;
  NK_ERR(seg_open_read(vl, s, vl->segment_bytes));
  pthread_mutex_lock(&vl->mu);
  ret = seg_insert(vl, s);
  if (ret == NOKV_OK) vl->active = s;
  pthread_mutex_unlock(&vl->mu);
  NK_ERR(ret);
  pthread_mutex_lock(&vl->sync_mu);  /* no fsync of the old file is running */
  vl->dir_dirty = true;
  pthread_mutex_lock(&vl->wmu);
  nk_file *old = vl->wfile;
  bool old_unsynced = old != NULL && vl->synced < vl->written;
  uint32_t old_fid = vl->wfid;
  vl->wfile = w;
  vl->wfid = fid;
  vl->written = NK_VLOG_HEADER;
  vl->synced = 0;  /* its header too waits for the next sync */
  pthread_mutex_unlock(&vl->wmu);
  if (old_unsynced && nk_grow((void **)&vl->unsynced, &vl->unsynced_cap, vl->nunsynced,
                              sizeof *vl->unsynced)) {
    vl->unsynced[vl->nunsynced++] = (struct unsynced_seg){old, old_fid};
    old = NULL;
  } else if (old_unsynced) {
    ret = sync_failed(vl, nk_file_sync(old));  /* no memory to remember it: sync it now */
  }
  /* Each waits with its descriptor open: past a few (segments much smaller
   * than the writes between syncs), the oldest is synced here after all. */
  if (ret == NOKV_OK && vl->nunsynced > MAX_UNSYNCED_SEGMENTS) {
    ret = sync_sealed(vl, vl->unsynced[0].fid);
  }
  pthread_mutex_unlock(&vl->sync_mu);
  nk_file_close(old);
  NK_RET(ret);
  __atomic_fetch_add(&vl->bytes_written, NK_VLOG_HEADER, __ATOMIC_RELAXED);
  return NOKV_OK;
err:
  nk_file_close(w);
  nk_env_remove_quiet(vl->env, s->path);
  seg_unref(s);
  return ret;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static bool listed(const uint32_t *v, size_t n, uint32_t x) {
  for (size_t i = 0; i < n; i++) {
    if (v[i] == x) return true;
  }
  return false;
}

int nk_vlog_open(const struct nokv_env *env, const char *dir, uint64_t segment_bytes,
                 uint32_t head_fid, uint64_t head_off, const uint32_t *obsolete,
                 size_t nobsolete, nk_vlog **out, nk_vlog_recovery *rec) {
  memset(rec, 0, sizeof *rec);
  nk_vlog *vl = calloc(1, sizeof *vl);
  if (vl == NULL || (vl->dir = strdup(dir)) == NULL) {
    free(vl);
    return nk_err(NOKV_ENOMEM, "out of memory opening the value log");
  }
  vl->env = env;
  vl->segment_bytes = segment_bytes;
  vl->head_fid = head_fid;
  vl->rec = rec;
  pthread_mutex_init(&vl->mu, NULL);
  pthread_mutex_init(&vl->wmu, NULL);
  pthread_mutex_init(&vl->sync_mu, NULL);
  char **names = NULL;
  size_t n = 0, nfids = 0;
  uint32_t *fids = NULL;
  int ret = NOKV_OK;
  NK_ERR(env->list_dir(env, dir, &names, &n));
  if ((fids = malloc((n ? n : 1) * sizeof *fids)) == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
  }
  for (size_t i = 0; i < n; i++) {
    uint32_t fid;
    if (!nk_vlog_parse_name(names[i], &fid)) continue;
    if (listed(obsolete, nobsolete, fid)) {
      /* The manifest says GC retired it: provably abandoned, deleted by
       * nk_vlog_start once the open cannot fail any more. */
      uint32_t *v = realloc(vl->retired, (vl->nretired + 1) * sizeof *v);
      if (v == NULL) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
      vl->retired = v;
      vl->retired[vl->nretired++] = fid;
      continue;
    }
    fids[nfids++] = fid;
  }
  qsort(fids, nfids, sizeof *fids, cmp_u32);
  bool torn_seen = false;
  for (size_t i = 0; i < nfids; i++) {
    segment *s = seg_new(vl, fids[i]);
    if (s == NULL) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
    bool newest = i + 1 == nfids;
    if (fids[i] < head_fid) {
      /* Wholly before the head: durable, sealed. */
      ret = seg_insert(vl, s);
      if (ret == NOKV_OK) ret = seg_open_read(vl, s, 0);
      if (ret == NOKV_OK) ret = nk_file_size(s->rfile, &s->size);
      if (ret == NOKV_OK) seg_drop_fd(s);
      if (ret != NOKV_OK) {
        if (vl->nsegs == 0 || vl->segs[vl->nsegs - 1] != s) seg_unref(s);
        goto err;
      }
      continue;
    }
    uint64_t from = fids[i] == head_fid ? head_off : 0;
    nk_vlog_scan_result r;
    ret = nk_vlog_scan_file(env, s->path, s->fid, from, NULL, NULL, &r);
    if (ret != NOKV_OK) {
      seg_unref(s);
      goto err;
    }
    rec->validated_bytes += r.valid_end - from;
    if (r.torn) {
      /* Segments are sealed unsynced, so any of them past the head may end in
       * a tear (and a later one still hold entries written after it). The
       * first tear ends the value log: a WAL record pointing at or past it
       * was never synced, or the replay refuses the open (db.c). Torn tails
       * are cut later (nk_vlog_start), once the replay has shown that. */
      if (!torn_seen) {
        torn_seen = true;
        rec->torn_fid = s->fid;
        rec->torn_off = r.valid_end;
        snprintf(rec->torn_why, sizeof rec->torn_why, "%s", r.why);
      }
      rec->torn_bytes += r.file_size - r.valid_end;
      if (r.valid_end < NK_VLOG_HEADER) {
        /* Not even a header: the crash came while it was being created. */
        if (!nk_grow((void **)&vl->headerless, &vl->nheaderless_cap, vl->nheaderless,
                     sizeof *vl->headerless)) {
          seg_unref(s);
          NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
        }
        vl->headerless[vl->nheaderless++] = s;
        continue;
      }
      s->cut = true;
    }
    ret = seg_insert(vl, s);
    if (ret != NOKV_OK) {
      seg_unref(s);
      goto err;
    }
    s->size = r.valid_end;
    /* The newest may take appends: map it at full capacity. */
    NK_ERR(seg_open_read(vl, s, newest && r.valid_end < segment_bytes ? segment_bytes : 0));
    /* What a crashed process wrote may still be only in the page cache: make
     * it durable before the head can move past it, or before a WAL record
     * written now can depend on it. */
    NK_ERR(nk_file_sync(s->rfile));
    if (!newest) seg_drop_fd(s);
  }
  free(fids);
  nk_env_free_names(names, n);
  *out = vl;
  return NOKV_OK;
err:
  free(fids);
  nk_env_free_names(names, n);
  nk_vlog_close(vl);
  return ret;
}

int nk_vlog_start(nk_vlog *vl) {
  nk_vlog_recovery *rec = vl->rec;
  const struct nokv_env *env = vl->env;
  /* A new segment goes past a half-created one's number too. */
  uint32_t half_created = 0;
  for (size_t i = 0; i < vl->nheaderless; i++) {
    if (vl->headerless[i]->fid > half_created) half_created = vl->headerless[i]->fid;
  }
  for (size_t i = 0; i < vl->nretired; i++) {
    char *path = nk_vlog_segment_path(vl, vl->retired[i]);
    if (path != NULL && env->remove(env, path) == NOKV_OK) rec->obsolete_removed++;
    free(path);
  }
  vl->nretired = 0;
  /* The replay found no promised write needing what follows a tear: cut it
   * (synced, so a later tear is not taken for this one), and remove segments
   * that never got a header (they hold no entry). */
  for (size_t i = 0; i < vl->nsegs; i++) {
    segment *s = vl->segs[i];
    if (!s->cut) continue;
    NK_RET(env->truncate(env, s->path, s->size));
    nk_file *f;
    NK_RET(env->open_read(env, s->path, &f));
    int ret = nk_file_sync(f);
    nk_file_close(f);
    NK_RET(ret);
    s->cut = false;
  }
  while (vl->nheaderless > 0) {
    segment *s = vl->headerless[vl->nheaderless - 1];
    NK_RET(env->remove(env, s->path));
    seg_unref(s);
    vl->nheaderless--;
  }
  /* Continue the newest segment, or start one. */
  segment *last = vl->nsegs > 0 ? vl->segs[vl->nsegs - 1] : NULL;
  if (last != NULL && last->size < vl->segment_bytes && last->fid >= vl->head_fid) {
    /* It was opened as a sealed one if a half-created segment followed it:
     * appends need a descriptor and a mapping at full capacity. */
    if (last->rfile == NULL) NK_RET(env->open_read(env, last->path, &last->rfile));
    if (env->map != NULL && last->map_len < vl->segment_bytes) {
      if (last->map != NULL) env->unmap(env, last->map, last->map_len);
      last->map = NULL;
      last->map_len = 0;
      uint64_t len = vl->segment_bytes;
      NK_RET(env->map(env, last->path, &last->map, &len));
      last->map_len = len;
    }
    NK_RET(env->open_append(env, last->path, false, &vl->wfile));
    vl->active = last;
    vl->wfid = last->fid;
    vl->written = vl->synced = last->size;
    return NOKV_OK;
  }
  if (last != NULL) seg_drop_fd(last);  /* sealed from now on */
  uint32_t next = last != NULL ? last->fid + 1 : 1;
  if (half_created >= next) next = half_created + 1;
  if (next <= vl->head_fid) next = vl->head_fid + 1;
  return start_segment(vl, next);
}

void nk_vlog_close(nk_vlog *vl) {
  if (vl == NULL) return;
  nk_file_close(vl->wfile);
  for (size_t i = 0; i < vl->nunsynced; i++) nk_file_close(vl->unsynced[i].file);
  free(vl->unsynced);
  for (size_t i = 0; i < vl->nheaderless; i++) seg_unref(vl->headerless[i]);
  free(vl->headerless);
  free(vl->retired);
  for (size_t i = 0; i < vl->nsegs; i++) seg_unref(vl->segs[i]);
  free(vl->segs);
  nk_buf_release(&vl->pending);
  pthread_mutex_destroy(&vl->mu);
  pthread_mutex_destroy(&vl->wmu);
  pthread_mutex_destroy(&vl->sync_mu);
  free(vl->dir);
  free(vl);
}

bool nk_vlog_contains(nk_vlog *vl, const nk_vptr *p) {
  pthread_mutex_lock(&vl->mu);
  long i = seg_find(vl, p->fid);
  bool ok = i >= 0 && (uint64_t)p->off + p->len <= vl->segs[i]->size;
  pthread_mutex_unlock(&vl->mu);
  return ok;
}

/* ---- writing ---- */

int nk_vlog_add(nk_vlog *vl, const char *key, size_t klen, uint64_t ts, const char *val,
                size_t vlen, nk_vptr *out) {
  size_t len = entry_len(klen, vlen);
  if (len > UINT32_MAX / 2) return nk_err(NOKV_EINVAL, "value of %zu bytes is too large", vlen);
  uint64_t at = vl->written + vl->pending.len;
  if (at > NK_VLOG_HEADER && at + len > vl->segment_bytes) {
    NK_RET(nk_vlog_write(vl, false));  /* synced by the next sync (start_segment) */
    segment *sealed = vl->active;
    NK_RET(start_segment(vl, vl->active->fid + 1));
    seg_drop_fd(sealed);
    at = vl->written;
  }
  if (at + len > UINT32_MAX) return nk_err(NOKV_EINVAL, "value log segment offset overflow");
  if (!nk_buf_reserve(&vl->pending, len)) {
    return nk_err(NOKV_ENOMEM, "out of memory buffering a %zu-byte value", vlen);
  }
  char *p = vl->pending.data + vl->pending.len;
  nk_put_u32(p + 4, (uint32_t)klen);
  nk_put_u32(p + 8, (uint32_t)vlen);
  nk_put_u64(p + 12, ts);
  memcpy(p + NK_VLOG_ENTRY_HEADER, key, klen);
  if (vlen > 0) memcpy(p + NK_VLOG_ENTRY_HEADER + klen, val, vlen);
  uint32_t crc = nk_checksum32(p + 4, len - 4, 0);
  nk_put_u32(p, crc);
  vl->pending.len += len;
  *out = (nk_vptr){.fid = vl->active->fid, .off = (uint32_t)at, .len = (uint32_t)len, .crc = crc};
  return NOKV_OK;
}

/* Makes what the active segment holds durable, if anything is not yet. The
 * leader may append meanwhile: only the bytes written before count as synced.
 * REQUIRES: sync_mu held (so the file is not switched under the fsync). */
static int sync_active(nk_vlog *vl) {
  pthread_mutex_lock(&vl->wmu);
  uint64_t target = vl->written;
  bool needed = vl->synced < target;
  nk_file *f = vl->wfile;
  pthread_mutex_unlock(&vl->wmu);
  if (!needed) return NOKV_OK;
  int ret = nk_file_sync(f);
  if (ret == NOKV_OK) {
    pthread_mutex_lock(&vl->wmu);
    if (target > vl->synced) vl->synced = target;
    pthread_mutex_unlock(&vl->wmu);
  }
  return sync_failed(vl, ret);
}

int nk_vlog_write(nk_vlog *vl, bool sync) {
  if (vl->wfile == NULL) return NOKV_OK;  /* nothing was ever opened for writing */
  if (vl->pending.len > 0) {
    NK_RET(nk_file_append(vl->wfile, vl->pending.data, vl->pending.len));
    pthread_mutex_lock(&vl->wmu);  /* nk_vlog_sync_to reads it */
    vl->written += vl->pending.len;
    pthread_mutex_unlock(&vl->wmu);
    __atomic_fetch_add(&vl->bytes_written, vl->pending.len, __ATOMIC_RELAXED);
    vl->pending.len = 0;
    pthread_mutex_lock(&vl->mu);
    vl->active->size = vl->written;
    pthread_mutex_unlock(&vl->mu);
  }
  if (!sync) return NOKV_OK;
  pthread_mutex_lock(&vl->sync_mu);
  int ret = sync_sealed(vl, UINT32_MAX);
  if (ret == NOKV_OK) ret = sync_active(vl);
  pthread_mutex_unlock(&vl->sync_mu);
  return ret;
}

int nk_vlog_undo(nk_vlog *vl) {
  if (vl->pending.len == 0) return NOKV_OK;
  NK_RET(vl->env->truncate(vl->env, vl->active->path, vl->written));
  vl->pending.len = 0;
  return NOKV_OK;
}

void nk_vlog_head(nk_vlog *vl, uint32_t *fid, uint64_t *off) {
  *fid = vl->active->fid;
  *off = vl->written;
}

int nk_vlog_sync_to(nk_vlog *vl, uint32_t fid) {
  pthread_mutex_lock(&vl->sync_mu);
  pthread_mutex_lock(&vl->wmu);
  bool active = vl->wfid == fid;
  pthread_mutex_unlock(&vl->wmu);
  /* Segments from an earlier run were synced at open. */
  int ret = sync_sealed(vl, fid);
  if (ret == NOKV_OK && active) ret = sync_active(vl);
  pthread_mutex_unlock(&vl->sync_mu);
  return ret;
}

uint64_t nk_vlog_bytes_written(const nk_vlog *vl) {
  return __atomic_load_n(&vl->bytes_written, __ATOMIC_RELAXED);
}

/* ---- reading ---- */

/* Checks the entry p names, read into e from bytes at data. */
static int check_entry(const segment *s, const nk_vptr *p, const char *data, const char *key,
                       size_t klen, nk_vlog_entry *e) {
  char why[96];
  if (!parse_entry(data, p->len, e, why, sizeof why)) {
    return nk_err(NOKV_ECORRUPT, "value log %s: entry at offset %u: %s", s->path, p->off, why);
  }
  if (e->len != p->len || e->crc != p->crc) {
    return nk_err(NOKV_ECORRUPT, "value log %s: entry at offset %u does not match its pointer",
                  s->path, p->off);
  }
  if (key != NULL && (e->klen != klen || memcmp(e->key, key, klen) != 0)) {
    return nk_err(NOKV_ECORRUPT, "value log %s: entry at offset %u belongs to another key",
                  s->path, p->off);
  }
  return NOKV_OK;
}

int nk_vlog_read(nk_vlog *vl, const nk_vptr *p, const char *key, size_t klen, nk_buf *buf,
                 const char **val, size_t *vlen) {
  uint64_t size = 0;
  segment *s = seg_get(vl, p->fid, &size);
  if (s == NULL) {
    return nk_err(NOKV_ECORRUPT, "value log segment %u (offset %u) does not exist", p->fid,
                  p->off);
  }
  int ret = NOKV_OK;
  nk_vlog_entry e;
  if ((uint64_t)p->off + p->len > size) {
    /* Never touch a mapping past what was written (that would fault). */
    NK_ERR(nk_err(NOKV_ECORRUPT, "value log %s: entry at offset %u runs past the end (%llu)",
                  s->path, p->off, (unsigned long long)size));
  }
  if (s->map != NULL && (uint64_t)p->off + p->len <= s->map_len) {
    /* In place: the mapping outlives every reader that can hold this pointer
     * (a segment is unmapped only after its epoch's readers are gone). */
    NK_ERR(check_entry(s, p, s->map + p->off, key, klen, &e));
  } else {
    buf->len = 0;
    if (!nk_buf_reserve(buf, p->len)) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory reading a value"));
    size_t got = 0;
    if (s->rfile == NULL) {  /* cannot happen: a mapping covers every sealed entry */
      NK_ERR(nk_err(NOKV_ECORRUPT, "value log %s: entry at offset %u lies past its mapping",
                    s->path, p->off));
    }
    NK_ERR(nk_file_read_at(s->rfile, p->off, buf->data, p->len, &got));
    if (got < p->len) {
      NK_ERR(nk_err(NOKV_ECORRUPT,
                    "value log %s: entry at offset %u is cut short (%zu of %u bytes)", s->path,
                    p->off, got, p->len));
    }
    NK_ERR(check_entry(s, p, buf->data, key, klen, &e));
    buf->len = p->len;
  }
  *val = e.val;
  *vlen = e.vlen;
err:
  seg_unref(s);
  return ret;
}

void nk_vlog_prefetch(nk_vlog *vl, const nk_vptr *p, uint32_t extra) {
  if (vl->env->prefetch == NULL) return;
  uint64_t size = 0;
  segment *s = seg_get(vl, p->fid, &size);
  if (s == NULL) return;
  uint64_t end = (uint64_t)p->off + p->len;
  if (s->map != NULL && end <= size && end <= s->map_len) {
    uint64_t last = end + extra;
    if (last > size) last = size;
    if (last > s->map_len) last = s->map_len;
    vl->env->prefetch(vl->env, s->map + p->off, last - p->off);
    __atomic_fetch_add(&vl->prefetches, 1, __ATOMIC_RELAXED);
  }
  seg_unref(s);
}

uint64_t nk_vlog_prefetches(const nk_vlog *vl) {
  return __atomic_load_n(&vl->prefetches, __ATOMIC_RELAXED);
}

/* ---- segments ---- */

int nk_vlog_segments(nk_vlog *vl, nk_vlog_segment_info **out, size_t *n) {
  pthread_mutex_lock(&vl->mu);
  nk_vlog_segment_info *v = malloc((vl->nsegs ? vl->nsegs : 1) * sizeof *v);
  if (v != NULL) {
    for (size_t i = 0; i < vl->nsegs; i++) {
      v[i] = (nk_vlog_segment_info){vl->segs[i]->fid, vl->segs[i]->size,
                                    vl->segs[i] == vl->active};
    }
    *n = vl->nsegs;
  }
  pthread_mutex_unlock(&vl->mu);
  if (v == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  *out = v;
  return NOKV_OK;
}

char *nk_vlog_segment_path(const nk_vlog *vl, uint32_t fid) {
  char name[32];
  nk_vlog_file_name(fid, name);
  return nk_path_join(vl->dir, name);
}

void nk_vlog_set_reaper(nk_vlog *vl, struct nk_reaper *r) { vl->reaper = r; }

int nk_vlog_remove_segment(nk_vlog *vl, uint32_t fid) {
  pthread_mutex_lock(&vl->mu);
  long i = seg_find(vl, fid);
  segment *s = NULL;
  if (i >= 0 && vl->segs[i] != vl->active) {
    s = vl->segs[i];
    memmove(&vl->segs[i], &vl->segs[i + 1], (vl->nsegs - (size_t)i - 1) * sizeof *vl->segs);
    vl->nsegs--;
    s->removed = true;
    s->reaper = vl->reaper;
  }
  pthread_mutex_unlock(&vl->mu);
  if (s == NULL) return nk_err(NOKV_EINVAL, "value log segment %u is not removable", fid);
  seg_unref(s);
  return NOKV_OK;
}
