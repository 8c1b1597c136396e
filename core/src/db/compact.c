/*
 * compact.c — leveled compaction with a size-tiered L0.
 *
 * L0 collects flushed tables (which may overlap). Once l0_compaction_trigger of
 * them exist, all of them are merged together, with the L1 tables their key range
 * overlaps, into new L1 tables: L0 is tiered (several tables merged in one pass)
 * rather than fed to L1 one table at a time. Levels 1..6 hold disjoint tables and
 * have byte targets level1_max_bytes * ratio^(level-1); the level most over its
 * target (score = bytes / target, L0: files / trigger) is compacted first, one
 * table at a time in round-robin key order, merged with the overlapping tables of
 * the next level. A table with nothing overlapping below is moved down without
 * being rewritten (a trivial move).
 *
 * Up to max_background_compactions run at once, each on its own thread. A
 * compaction marks its input tables (both levels) as being compacted, under the
 * database mutex, and a new one may only take tables no running one holds: so
 * running compactions have disjoint inputs and, since a compaction takes every
 * table of the next level its range overlaps, disjoint output ranges too. Only
 * one L0 compaction runs at a time (a second would push newer data into L1
 * alongside older data for the same keys). The flush thread only adds L0 tables.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db_impl.h"
#include "memtable/internal_key.h"
#include "util/error.h"
#include "util/merge_iter.h"

static uint64_t level_target(const nokv_options *o, int level) {
  uint64_t t = o->level1_max_bytes;
  for (int l = 1; l < level; l++) t *= (uint64_t)o->level_size_ratio;
  return t;
}

uint64_t nk_db_pending_compaction_bytes(nokv_db *db, const nk_version *v) {
  uint64_t debt = 0;
  if ((int)v->nfiles[0] >= db->opts.l0_compaction_trigger) debt += v->level_bytes[0];
  for (int l = 1; l < NK_NUM_LEVELS - 1; l++) {
    uint64_t t = level_target(&db->opts, l);
    if (v->level_bytes[l] > t) debt += v->level_bytes[l] - t;
  }
  return debt;
}

/* Levels ordered by need (score >= 1 only, highest first); returns the count. */
static int levels_by_score(const nokv_db *db, const nk_version *v, int order[NK_NUM_LEVELS]) {
  double score[NK_NUM_LEVELS];
  int n = 0;
  for (int l = 0; l < NK_NUM_LEVELS - 1; l++) {
    score[l] = l == 0 ? (double)v->nfiles[0] / (double)db->opts.l0_compaction_trigger
                      : (double)v->level_bytes[l] / (double)level_target(&db->opts, l);
    if (score[l] < 1.0 || (l > 0 && score[l] <= 1.0)) continue;
    int i = n++;
    while (i > 0 && score[order[i - 1]] < score[l]) {
      order[i] = order[i - 1];
      i--;
    }
    order[i] = l;
  }
  return n;
}

typedef struct compaction {
  int level;                  /* inputs from level and level + 1 */
  int out_level;              /* level + 1, or level itself for a bottom rewrite */
  bool rewrite;               /* never a trivial move (a range tombstone cleanup) */
  nk_file_meta **in[2];
  size_t nin[2];
  nk_version *v;              /* pinned input version */
} compaction;

static void compaction_free(compaction *c) {
  free(c->in[0]);
  free(c->in[1]);
  nk_version_unref(c->v);
  memset(c, 0, sizeof *c);
}

static bool any_busy(nk_file_meta *const *files, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (files[i]->being_compacted) return true;
  }
  return false;
}

/* Marks (or clears) the inputs. REQUIRES: mu held. */
static void mark_inputs(compaction *c, bool busy) {
  for (int w = 0; w < 2; w++) {
    for (size_t i = 0; i < c->nin[w]; i++) c->in[w][i]->being_compacted = busy;
  }
}

/* User-key range of files. */
static void key_range(nk_file_meta *const *files, size_t n, const char **lo, size_t *lo_len,
                      const char **hi, size_t *hi_len) {
  *lo = *hi = NULL;
  for (size_t i = 0; i < n; i++) {
    const nk_file_meta *f = files[i];
    size_t sl = nk_ikey_user_len(f->smallest_len), ll = nk_ikey_user_len(f->largest_len);
    if (*lo == NULL || nk_user_key_cmp(f->smallest, sl, *lo, *lo_len) < 0) {
      *lo = f->smallest;
      *lo_len = sl;
    }
    if (*hi == NULL || nk_user_key_cmp(f->largest, ll, *hi, *hi_len) > 0) {
      *hi = f->largest;
      *hi_len = ll;
    }
  }
}

static int collect_overlaps(const nk_version *v, int level, const char *lo, size_t lo_len,
                            const char *hi, size_t hi_len, nk_file_meta ***out, size_t *n) {
  *out = malloc((v->nfiles[level] ? v->nfiles[level] : 1) * sizeof **out);
  if (*out == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  *n = 0;
  for (size_t i = 0; i < v->nfiles[level]; i++) {
    if (nk_file_overlaps(v->files[level][i], lo, lo_len, hi, hi_len)) {
      (*out)[(*n)++] = v->files[level][i];
    }
  }
  return NOKV_OK;
}

/* Adds the next-level tables overlapping c->in[0] to c->in[1]. */
static int add_overlaps(const nk_version *v, compaction *c) {
  free(c->in[1]);
  c->in[1] = NULL;
  c->nin[1] = 0;
  if (c->level + 1 >= NK_NUM_LEVELS) return NOKV_OK;  /* the last level: in place only */
  const char *lo, *hi;
  size_t lo_len = 0, hi_len = 0;
  key_range(c->in[0], c->nin[0], &lo, &lo_len, &hi, &hi_len);
  return collect_overlaps(v, c->level + 1, lo, lo_len, hi, hi_len, &c->in[1], &c->nin[1]);
}

/* Chooses the inputs of a compaction from level: all of L0 (or, if whole_level,
 * all of the level), else the next free table of the level in round-robin key
 * order. Returns NOKV_EBUSY if every candidate conflicts with a running
 * compaction. REQUIRES: mu held (being_compacted flags, compact pointers). */
static int setup_compaction(nokv_db *db, nk_version *v, int level, bool whole_level,
                            compaction *c) {
  memset(c, 0, sizeof *c);
  c->level = level;
  c->out_level = level + 1;
  c->v = v;
  nk_version_ref(v);
  size_t n = v->nfiles[level];
  if ((c->in[0] = malloc((n ? n : 1) * sizeof *c->in[0])) == NULL) {
    return nk_err(NOKV_ENOMEM, "out of memory");
  }
  if (level == 0 || whole_level) {
    for (size_t i = 0; i < n; i++) c->in[0][c->nin[0]++] = v->files[level][i];
    if (any_busy(c->in[0], c->nin[0])) return NOKV_EBUSY;
    NK_RET(add_overlaps(v, c));
    return any_busy(c->in[1], c->nin[1]) ? NOKV_EBUSY : NOKV_OK;
  }
  /* The first table after the compact pointer, wrapping around. */
  size_t start = 0;
  if (db->compact_pointer[level] != NULL) {
    while (start < n &&
           nk_ikey_cmp(v->files[level][start]->largest, v->files[level][start]->largest_len,
                       db->compact_pointer[level], db->compact_pointer_len[level]) <= 0) {
      start++;
    }
  }
  for (size_t k = 0; k < n; k++) {
    nk_file_meta *f = v->files[level][(start + k) % n];
    if (f->being_compacted) continue;
    c->in[0][0] = f;
    c->nin[0] = 1;
    NK_RET(add_overlaps(v, c));
    if (any_busy(c->in[1], c->nin[1])) continue;
    char *p = malloc(f->largest_len);
    if (p != NULL) {
      memcpy(p, f->largest, f->largest_len);
      free(db->compact_pointer[level]);
      db->compact_pointer[level] = p;
      db->compact_pointer_len[level] = f->largest_len;
    }
    return NOKV_OK;
  }
  return NOKV_EBUSY;
}

typedef struct bottom_ctx {
  const nk_version *v;
  int output_level;
} bottom_ctx;

static bool is_bottom(void *arg, const char *k, size_t n) {
  const bottom_ctx *b = arg;
  for (int l = b->output_level + 1; l < NK_NUM_LEVELS; l++) {
    for (size_t i = 0; i < b->v->nfiles[l]; i++) {
      if (nk_file_overlaps(b->v->files[l][i], k, n, k, n)) return false;
    }
  }
  return true;
}

/* The merged input of c: every L0 input table on its own (they overlap), or
 * level's inputs as one concatenation, and level + 1's. NULL on ENOMEM. */
static nk_iter *compaction_input(nokv_db *db, const compaction *c) {
  size_t nk = (c->level == 0 ? c->nin[0] : 1) + 1, k = 0;
  nk_iter **kids = calloc(nk, sizeof *kids);
  if (kids == NULL) return NULL;
  if (c->level == 0) {
    for (size_t i = 0; i < c->nin[0]; i++) {
      kids[k++] = nk_table_cache_iter(db->tc, c->in[0][i]->number, c->in[0][i]->size);
    }
  } else {
    kids[k++] = nk_files_iter_new(c->in[0], c->nin[0], db->tc);
  }
  kids[k++] = nk_files_iter_new(c->in[1], c->nin[1], db->tc);
  for (size_t i = 0; i < k; i++) {
    if (kids[i] == NULL) {
      for (size_t j = 0; j < k; j++) nk_iter_destroy(kids[j]);
      free(kids);
      return NULL;
    }
  }
  nk_iter *merged = nk_merge_iter_new(kids, k);
  free(kids);
  return merged;
}

/* A user key bounding a subcompaction. */
typedef struct bound {
  const char *data;
  size_t len;
} bound;

/* One key range of a compaction, [start, limit) (NULL: unbounded), written
 * by its own thread into its own edit. */
typedef struct subcompaction {
  nokv_db *db;
  const compaction *c;
  const bound *start;
  nk_build_job job;
  nk_edit edit;
  int ret;
  char why[256];  /* the error message, made on the part's own thread */
} subcompaction;

static void *run_subcompaction(void *arg) {
  subcompaction *sc = arg;
  nk_iter *in = compaction_input(sc->db, sc->c);
  if (in == NULL) {
    sc->ret = nk_err(NOKV_ENOMEM, "out of memory");
    return NULL;
  }
  if (sc->start == NULL) {
    nk_iter_seek_first(in);
  } else {
    /* The first version of the range's first key sorts first. */
    size_t n = sc->start->len + NK_IKEY_TRAILER;
    char *target = malloc(n);
    if (target == NULL) {
      nk_iter_destroy(in);
      sc->ret = nk_err(NOKV_ENOMEM, "out of memory");
      return NULL;
    }
    nk_ikey_encode(target, sc->start->data, sc->start->len, NK_MAX_TS, NK_KIND_SEEK);
    nk_iter_seek(in, target, n);
    free(target);
  }
  sc->ret = nk_db_write_tables(sc->db, in, &sc->job, &sc->edit);
  nk_iter_destroy(in);
  if (sc->ret != NOKV_OK) snprintf(sc->why, sizeof sc->why, "%s", nokv_errmsg());
  return NULL;
}

/* Where to split c into at most max parts of similar input size: at the
 * boundaries of its level + 1 inputs, which partition the key space (L0
 * tables usually each span all of it). Returns the number of boundaries
 * (parts - 1), each the smallest user key of an input table. */
static size_t split_points(const compaction *c, int max, bound *out) {
  size_t n = c->nin[1];
  if (max < 2 || n < 2) return 0;
  uint64_t total = 0, seen = 0;
  for (size_t i = 0; i < n; i++) total += c->in[1][i]->size;
  size_t parts = 1;
  for (size_t i = 1; i < n && parts < (size_t)max; i++) {
    seen += c->in[1][i - 1]->size;
    if (seen * (uint64_t)max >= total * parts) {
      const nk_file_meta *f = c->in[1][i];
      out[parts - 1] = (bound){f->smallest, nk_ikey_user_len(f->smallest_len)};
      parts++;
    }
  }
  return parts - 1;
}

/* The range_clean_ts of c's outputs: every range tombstone up to the
 * version's last flushed timestamp is in it (or retired), and the job applies
 * those at or below the watermark; and what was clean in every input stays so. */
static uint64_t range_clean_ts(const compaction *c, uint64_t watermark) {
  uint64_t clean = watermark < c->v->last_ts ? watermark : c->v->last_ts, inputs = UINT64_MAX;
  for (int w = 0; w < 2; w++) {
    for (size_t i = 0; i < c->nin[w]; i++) {
      if (c->in[w][i]->range_clean_ts < inputs) inputs = c->in[w][i]->range_clean_ts;
    }
  }
  return inputs != UINT64_MAX && inputs > clean ? inputs : clean;
}

/* Runs c without mu. Fills the edit; returns bytes read and written. A large
 * compaction is split by key range into subcompactions run in parallel, each
 * writing its own tables; the parts' edits are joined into e. */
static int run_compaction(nokv_db *db, compaction *c, nk_edit *e, uint64_t *read,
                          uint64_t *written, bool *trivial) {
  int out_level = c->out_level;
  *read = *written = 0;
  *trivial = c->nin[1] == 0 && c->nin[0] == 1 && out_level != c->level && !c->rewrite;
  for (int w = 0; w < 2; w++) {
    for (size_t i = 0; i < c->nin[w]; i++) {
      NK_RET(nk_edit_remove_file(e, c->level + w, c->in[w][i]->number));
    }
  }
  if (*trivial) return nk_edit_add_file(e, out_level, c->in[0][0]);

  for (int w = 0; w < 2; w++) {
    for (size_t i = 0; i < c->nin[w]; i++) *read += c->in[w][i]->size;
  }
  bound bounds[NK_MAX_SUBCOMPACTIONS - 1];
  size_t nbounds = *read >= 4 * db->opts.target_file_bytes
                       ? split_points(c, db->opts.max_subcompactions, bounds)
                       : 0;
  size_t parts = nbounds + 1;
  subcompaction sub[NK_MAX_SUBCOMPACTIONS];
  pthread_t threads[NK_MAX_SUBCOMPACTIONS];
  bool started[NK_MAX_SUBCOMPACTIONS] = {false};
  bottom_ctx bctx = {c->v, out_level};
  uint64_t watermark = nk_db_watermark(db);
  /* Either order works: a snapshot taken between the two has a time at or
   * after the horizon (unless the wall clock steps back: docs/ttl.md). */
  uint64_t expired_before = nk_db_expiry_horizon(db);
  int ret = NOKV_OK;
  nk_rdel_set *rdels = nk_db_collect_rdels(c->v, NULL, 0, watermark, &ret);
  NK_RET(ret);
  uint64_t clean = range_clean_ts(c, watermark);
  for (size_t i = 0; i < parts; i++) {
    sub[i] = (subcompaction){
        .ret = NOKV_OK,
        .db = db,
        .c = c,
        .start = i > 0 ? &bounds[i - 1] : NULL,
        .job = {.level = out_level,
                .watermark = watermark,
                .expired_before_ms = expired_before,
                .max_file_bytes = db->opts.target_file_bytes,
                .is_bottom = is_bottom,
                .arg = &bctx,
                .abort = &db->stop_bg,
                .rdels = rdels,
                .range_clean_ts = clean,
                .limit = i < nbounds ? bounds[i].data : NULL,
                .limit_len = i < nbounds ? bounds[i].len : 0},
    };
    nk_edit_init(&sub[i].edit);
  }
  /* Part 0 runs here; a part whose thread cannot start runs here too. */
  for (size_t i = 1; i < parts; i++) {
    started[i] = pthread_create(&threads[i], NULL, run_subcompaction, &sub[i]) == 0;
  }
  run_subcompaction(&sub[0]);
  for (size_t i = 1; i < parts; i++) {
    if (started[i]) {
      pthread_join(threads[i], NULL);
    } else {
      run_subcompaction(&sub[i]);
    }
  }
  nk_rdel_set_unref(rdels);
  e->has_horizon = true;
  e->horizon = watermark;
  for (size_t i = 0; i < parts && ret == NOKV_OK; i++) {
    if (sub[i].ret != NOKV_OK) ret = nk_err(sub[i].ret, "%s", sub[i].why);
  }
  for (size_t i = 0; i < parts; i++) {
    nk_edit *se = &sub[i].edit;
    *written += sub[i].job.bytes_written;
    for (size_t j = 0; ret == NOKV_OK && j < se->nadds; j++) {
      ret = nk_edit_add_file(e, se->adds[j].level, se->adds[j].f);
    }
    for (size_t j = 0; ret == NOKV_OK && j < se->ndiscards; j++) {
      ret = nk_edit_add_discard(e, se->discards[j].fid, se->discards[j].bytes);
    }
  }
  if (ret != NOKV_OK) {
    /* A part failed: nothing will log the tables the others wrote (a failed
     * part removed its own). */
    for (size_t i = 0; i < parts; i++) {
      if (sub[i].ret == NOKV_OK) nk_db_remove_added_tables(db, &sub[i].edit, 0);
    }
  }
  for (size_t i = 0; i < parts; i++) nk_edit_release(&sub[i].edit);
  if (nbounds > 0) nk_count(&db->stats.subcompactions, parts);
  return ret;
}

/* Does any level below `level` hold a table overlapping f? */
static bool deeper_overlaps(const nk_version *v, int level, const nk_file_meta *f) {
  const char *lo = f->smallest, *hi = f->largest;
  size_t lo_len = nk_ikey_user_len(f->smallest_len), hi_len = nk_ikey_user_len(f->largest_len);
  for (int l = level + 1; l < NK_NUM_LEVELS; l++) {
    for (size_t i = 0; i < v->nfiles[l]; i++) {
      if (nk_file_overlaps(v->files[l][i], lo, lo_len, hi, hi_len)) return true;
    }
  }
  return false;
}

/* Sets c up to rewrite table f of level l (all of L0, as L0 compactions do):
 * into the next level, or in place where nothing lies below it; never a
 * trivial move. NOKV_EBUSY if an input is taken. */
static int setup_rewrite(nokv_db *db, nk_version *v, int l, nk_file_meta *f, compaction *c) {
  int rc;
  if (l == 0) {
    rc = setup_compaction(db, v, 0, false, c);
  } else {
    memset(c, 0, sizeof *c);
    c->level = l;
    c->v = v;
    nk_version_ref(v);
    if ((c->in[0] = malloc(sizeof *c->in[0])) == NULL) {
      return nk_err(NOKV_ENOMEM, "out of memory");
    }
    c->in[0][0] = f;
    c->nin[0] = 1;
    bool below = deeper_overlaps(v, l, f);
    c->out_level = below ? l + 1 : l;
    rc = below ? add_overlaps(v, c) : NOKV_OK;
    if (rc == NOKV_OK && any_busy(c->in[1], c->nin[1])) rc = NOKV_EBUSY;
  }
  c->rewrite = rc == NOKV_OK;
  return rc;
}

/* A range tombstone every reader sees (at or below the watermark, and
 * flushed) that a table may still hide versions from keeps its place in the
 * manifest: with no level over its target, rewrite such a table, topmost
 * first (merged down, or in place where nothing lies below), so the tombstone
 * can retire (version.h). Its outputs are written with the tombstone applied.
 * REQUIRES: mu held. */
static bool setup_cleanup(nokv_db *db, nk_version *v, compaction *c, int *ret) {
  *ret = NOKV_OK;
  if (v->rdels == NULL) return false;
  uint64_t w = nk_db_watermark_peek(db);
  for (size_t d = 0; d < v->rdels->n; d++) {
    const nk_rdel *del = &v->rdels->dels[d];
    if (del->ts > w || del->ts > v->last_ts) continue;
    for (int l = 0; l < NK_NUM_LEVELS; l++) {
      for (size_t i = 0; i < v->nfiles[l]; i++) {
        nk_file_meta *f = v->files[l][i];
        if (f->being_compacted || !nk_rdel_may_hide(del, f)) continue;
        int rc = setup_rewrite(db, v, l, f, c);
        if (rc == NOKV_OK) return true;
        compaction_free(c);
        if (rc != NOKV_EBUSY) {
          *ret = rc;
          return false;
        }
      }
    }
  }
  return false;
}

/* Picks one compaction that conflicts with no running one: the given level
 * (forced_level >= 0) or the neediest level that has a free candidate. *c is
 * set up with its inputs marked; returns false if there is nothing to do.
 * REQUIRES: mu held. */
static bool pick(nokv_db *db, int forced_level, bool in_place, compaction *c, int *ret) {
  *ret = NOKV_OK;
  nk_version *v = nk_vset_current(db->vset);
  int order[NK_NUM_LEVELS], n;
  if (forced_level >= 0) {
    order[0] = forced_level;
    n = v->nfiles[forced_level] > 0;
  } else {
    n = levels_by_score(db, v, order);
  }
  bool found = false;
  for (int i = 0; i < n && !found; i++) {
    int rc = setup_compaction(db, v, order[i], forced_level >= 0, c);
    if (rc == NOKV_OK) {
      found = true;
    } else {
      compaction_free(c);
      if (rc != NOKV_EBUSY) {
        *ret = rc;
        break;
      }
    }
  }
  if (!found && forced_level < 0 && *ret == NOKV_OK) found = setup_cleanup(db, v, c, ret);
  nk_version_unref(v);
  if (!found) return false;
  if (in_place) {
    /* Rewrite the bottom level into itself: its own tables are the only input. */
    c->out_level = c->level;
    c->nin[1] = 0;
  }
  mark_inputs(c, true);
  return true;
}

/* Picks and runs one compaction. REQUIRES: mu held (released while working).
 * *did is false if there was nothing (free) to do. */
static int compact_once(nokv_db *db, int forced_level, bool in_place, bool *did) {
  compaction c;
  int ret;
  *did = pick(db, forced_level, in_place, &c, &ret);
  if (!*did) return ret;
  db->running_compactions++;
  pthread_mutex_unlock(&db->mu);

  nk_edit e;
  nk_edit_init(&e);
  uint64_t read = 0, written = 0;
  bool trivial = false;
  ret = run_compaction(db, &c, &e, &read, &written, &trivial);
  if (ret == NOKV_OK) ret = nk_db_log_and_apply(db, &e, "compaction");
  bool discards = e.ndiscards > 0;
  nk_edit_release(&e);
  if (ret == NOKV_OK && discards && !db->opts.disable_auto_gc) nk_db_gc_wanted(db);

  pthread_mutex_lock(&db->mu);
  mark_inputs(&c, false);
  compaction_free(&c);
  db->running_compactions--;
  if (ret == NOKV_OK) {
    nk_count(trivial ? &db->stats.trivial_moves : &db->stats.compactions, 1);
    nk_count(&db->stats.compact_read, trivial ? 0 : read);
    nk_count(&db->stats.compact_written, written);
    ret = nk_db_refresh_view(db);
  }
  pthread_cond_broadcast(&db->room_cv);
  pthread_cond_broadcast(&db->bg_cv);  /* freed inputs: another pick may now fit */
  return ret;
}

/* A full manual compaction: each level in turn is merged into the next, top
 * down, so everything ends in the deepest level holding data, which is then
 * rewritten in place (dropping what no snapshot needs any more). */
static int compact_all(nokv_db *db) {
  for (int l = 0; l < NK_NUM_LEVELS; l++) {
    nk_version *v = nk_vset_current(db->vset);
    bool deeper = false;
    for (int d = l + 1; d < NK_NUM_LEVELS; d++) deeper |= v->nfiles[d] > 0;
    bool has = v->nfiles[l] > 0;
    nk_version_unref(v);
    if (!has) continue;
    bool did;
    /* L0 always moves down (its tables overlap); the bottom stays in place. */
    NK_RET(compact_once(db, l, l > 0 && !deeper, &did));
    if (__atomic_load_n(&db->stop_bg, __ATOMIC_RELAXED) || (l > 0 && !deeper)) break;
  }
  return NOKV_OK;
}

void *nk_db_compact_main(void *arg) {
  nokv_db *db = arg;
  int full_attempts = 0;
  pthread_mutex_lock(&db->mu);
  for (;;) {
    if (db->stop_bg) break;
    if (db->bg_error != NOKV_OK) {
      if (db->manual_compactions > 0) {
        db->manual_compactions = 0;
        db->manual_done++;
        pthread_cond_broadcast(&db->room_cv);
      }
      pthread_cond_wait(&db->bg_cv, &db->mu);
      continue;
    }
    int rc = NOKV_OK;
    bool did = false;
    if (db->manual_compactions > 0) {
      /* A full compaction runs alone: wait for the others to finish. */
      if (db->running_compactions > 0 || db->manual_running) {
        pthread_cond_wait(&db->bg_cv, &db->mu);
        continue;
      }
      db->manual_running = true;
      rc = compact_all(db);
      db->manual_rc = rc;
      db->manual_running = false;
      db->manual_compactions = 0;
      db->manual_done++;
      pthread_cond_broadcast(&db->room_cv);
      pthread_cond_broadcast(&db->bg_cv);
      did = true;
    } else if (!db->opts.disable_auto_compaction) {
      rc = compact_once(db, -1, false, &did);
    }
    if (rc == NOKV_EFULL) {  /* its outputs were removed: retry once space is freed */
      nk_db_full_backoff(db, full_attempts++);
      continue;
    }
    if (rc == NOKV_OK && did) full_attempts = 0;
    if (rc != NOKV_OK && rc != NOKV_ECLOSED) {
      nk_db_set_bg_error(db, rc, "compaction");
      continue;
    }
    if (!did && !db->stop_bg) pthread_cond_wait(&db->bg_cv, &db->mu);
  }
  pthread_mutex_unlock(&db->mu);
  return NULL;
}
