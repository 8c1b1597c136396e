/*
 * wal_reader.c — replay, and the line between a torn tail and corruption.
 *
 * A power loss may drop any bytes that were never fsync'ed, in any order (the
 * kernel writes dirty pages back in no particular order). Unsynced bytes sit at
 * the end of the newest segment, and at the end of the segments sealed without
 * a sync since the last sync (the writer syncs those first at the next sync).
 * So damage is a torn tail exactly when it may hold unsynced bytes — in the
 * newest segment, or in one whose successor's link says it was sealed unsynced
 * (or is itself unreadable) — and no record after it was promised durable: a
 * manifest edit (each is fsync'ed before the next is written) or a WAL batch of
 * type NK_WAL_BATCH_SYNCED, in the same segment or any later one. An intact
 * promised record after the damage means the damaged bytes had been fsync'ed
 * too: that is corruption, and the replay refuses. Intact records after the
 * damage that were never synced are cut with the tail, later segments
 * included: nothing promised them to a power loss, and replaying them past a
 * hole would make a state no prefix of the writes ever was. A sealed segment
 * shorter than the size its successor's link records is damaged at its end.
 * The search looks for a well-framed record (promised type, length within the
 * file, matching checksum) at every later offset, so a damaged length field
 * cannot hide records behind it; random bytes rarely pass the type and length
 * filters, so it checksums almost nothing on a real tear.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/error.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

static bool accepted(uint8_t expected, uint8_t type) {
  return expected == NK_WAL_BATCH
             ? nk_wal_is_batch(type) || nk_wal_is_link(type) || type == NK_WAL_SYNC_POINT
             : type == expected;
}

bool nk_wal_record_intact(const char *data, size_t off, size_t size, uint8_t type) {
  if (size - off < NK_WAL_HEADER || (uint8_t)data[off + 8] != type) {
    return false;
  }
  uint32_t len = nk_get_u32(data + off + 4);
  return len <= size - off - NK_WAL_HEADER &&
         nk_get_u32(data + off) == nk_wal_checksum(type, data + off + NK_WAL_HEADER, len);
}

/* Is there an intact record at p whose presence after damage proves the
 * damage was durable (a promise, in a log of `expected` records)? */
static bool promise_at(const char *data, size_t p, size_t size, uint8_t expected) {
  if (expected != NK_WAL_BATCH) return nk_wal_record_intact(data, p, size, expected);
  uint8_t type = (uint8_t)data[p + 8];
  return nk_wal_is_promise(type) && nk_wal_record_intact(data, p, size, type);
}

/* Offset of the first promise at or after from, or SIZE_MAX if none. */
static size_t promise_from(const char *data, size_t from, size_t size, uint8_t expected) {
  for (size_t p = from; p + NK_WAL_HEADER <= size; p++) {
    if (promise_at(data, p, size, expected)) return p;
  }
  return SIZE_MAX;
}

/* What damage in one log file may be. */
typedef struct tail_rule {
  bool may_tear;          /* its end may hold unsynced bytes */
  bool sized;             /* its final size is known: */
  uint64_t size;          /*   this */
  /* Later WAL segments (numbers, in dir): a promised record in any of them
   * proves damage here durable; the log ends at a tear here, so they are cut. */
  const char *dir;
  const uint64_t *later;
  size_t nlater;
} tail_rule;

static char *segment_path(const char *dir, uint64_t number) {
  char name[32];
  nk_wal_segment_name(number, name);
  return nk_path_join(dir, name);
}

/* Finds an intact promised record in the later segments: sets *number and
 * *off; false if there is none. A segment that cannot be read promises
 * nothing we could use, and is refused by the cut that follows. */
static int promised_in_later(const struct nokv_env *env, const tail_rule *r, uint64_t *number,
                             size_t *off, bool *found) {
  *found = false;
  for (size_t i = 0; i < r->nlater && !*found; i++) {
    char *path = segment_path(r->dir, r->later[i]);
    if (path == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
    char *data;
    size_t size;
    int ret = nk_env_read_file(env, path, &data, &size);
    free(path);
    NK_RET(ret);
    size_t p = promise_from(data, 0, size, NK_WAL_BATCH);
    if (p != SIZE_MAX) {
      *found = true;
      *number = r->later[i];
      *off = p;
    }
    free(data);
  }
  return NOKV_OK;
}

static int sync_file(const struct nokv_env *env, const char *path) {
  nk_file *f;
  NK_RET(env->open_append(env, path, false, &f));
  int ret = nk_file_sync(f);
  int r2 = nk_file_close(f);
  return ret != NOKV_OK ? ret : r2;
}

/* Truncates path to size and syncs it, so the cut survives a power loss. */
static int cut_file(const struct nokv_env *env, const char *path, uint64_t size) {
  NK_RET(env->truncate(env, path, size));
  return sync_file(env, path);
}

/* The log ends at a tear in an earlier segment: cuts each later one back to
 * its link record (or to nothing if that is damaged too), newest first, so a
 * crash half-way leaves no intact record after a hole. Adds what went to st. */
static int cut_later(const struct nokv_env *env, const tail_rule *r, nk_wal_replay_stats *st) {
  for (size_t k = r->nlater; k-- > 0;) {
    char *path = segment_path(r->dir, r->later[k]);
    if (path == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
    char *data;
    size_t size;
    int ret = nk_env_read_file(env, path, &data, &size);
    if (ret == NOKV_OK) {
      size_t keep = nk_wal_record_intact(data, 0, size, NK_WAL_LINK) ? NK_WAL_LINK_RECORD : 0;
      free(data);
      if (keep > size) keep = size;
      ret = cut_file(env, path, keep);  /* synced even if nothing goes: it was not */
      st->torn_bytes += size - keep;
    }
    free(path);
    NK_RET(ret);
  }
  return NOKV_OK;
}

/* Replays one log file under rule r. On a torn tail, the file is cut (a WAL
 * segment; a manifest is only read, its torn tail skipped) and *torn set. */
static int replay_file(const struct nokv_env *env, const char *path, uint8_t expected,
                       const tail_rule *r, nk_wal_record_fn fn, void *arg,
                       nk_wal_replay_stats *st, bool *torn) {
  const char *what = expected == NK_WAL_BATCH ? "WAL" : "manifest";
  *torn = false;
  char *data;
  size_t size;
  NK_RET(nk_env_read_file(env, path, &data, &size));
  int ret = NOKV_OK;
  size_t off = 0;
  const char *problem = NULL;
  char problem_buf[128];
  bool unknown_type = false;
  while (off < size) {
    size_t left = size - off;
    uint32_t len = 0;
    uint8_t type = 0;
    if (left < NK_WAL_HEADER) {
      problem = "truncated record header";
    } else {
      len = nk_get_u32(data + off + 4);
      type = (uint8_t)data[off + 8];
      if (len > left - NK_WAL_HEADER) {
        problem = "record runs past the end of the segment";
      } else if (nk_get_u32(data + off) !=
                 nk_wal_checksum(type, data + off + NK_WAL_HEADER, len)) {
        problem = "checksum mismatch";
      } else if (!accepted(expected, type)) {
        /* A well-formed record of a type we do not know is from a newer
         * format, never a torn write. */
        snprintf(problem_buf, sizeof problem_buf, "unknown record type %u", type);
        problem = problem_buf;
        unknown_type = true;
      }
    }
    if (problem != NULL) break;
    ret = fn(arg, type, data + off + NK_WAL_HEADER, len);
    if (ret != NOKV_OK) break;
    if (nk_wal_is_batch(type) || type == NK_WAL_EDIT) st->records++;
    st->bytes += NK_WAL_HEADER + len;
    off += NK_WAL_HEADER + len;
  }
  bool sealed_damage = false;  /* damage that no tear explains */
  if (ret == NOKV_OK && problem == NULL && r->sized && size != r->size) {
    snprintf(problem_buf, sizeof problem_buf,
             "it is %zu bytes, but the next segment's link says it was sealed at %llu", size,
             (unsigned long long)r->size);
    problem = problem_buf;
    sealed_damage = size > r->size;  /* bytes appended after sealing: never a tear */
  }
  if (ret == NOKV_OK && problem != NULL) {
    char where[160] = " in a sealed segment";
    if (unknown_type) where[0] = '\0';
    bool tear = r->may_tear && !unknown_type && !sealed_damage;
    if (tear) {
      size_t p = promise_from(data, off + 1, size, expected);
      if (p != SIZE_MAX) {
        snprintf(where, sizeof where, " and a durable record follows at offset %zu", p);
        tear = false;
      }
    }
    if (tear && r->nlater > 0) {
      uint64_t number;
      size_t p;
      bool found;
      ret = promised_in_later(env, r, &number, &p, &found);
      if (ret == NOKV_OK && found) {
        char name[32];
        nk_wal_segment_name(number, name);
        snprintf(where, sizeof where, " and a durable record follows in %s at offset %zu", name,
                 p);
        tear = false;
      }
    }
    if (ret == NOKV_OK && !tear) {
      ret = nk_err(NOKV_ECORRUPT,
                   "%s %s is corrupt at offset %zu of %zu (%s)%s; refusing to open, since "
                   "skipping it would lose acknowledged writes",
                   what, path, off, size, problem, where);
    } else if (ret == NOKV_OK) {
      /* A WAL segment is cut (a new segment follows it, after which its tail
       * would be sealed damage), later segments first. */
      if (expected != NK_WAL_EDIT) {
        ret = cut_later(env, r, st);
        if (ret == NOKV_OK && off < size) ret = cut_file(env, path, off);
      }
      if (ret == NOKV_OK) {
        st->torn_tails++;
        st->torn_bytes += size - off;
        *torn = true;
      }
    }
  }
  free(data);
  return ret;
}

/* Reads the link record that opens a WAL segment: false if it has none intact. */
static bool read_link(const struct nokv_env *env, const char *path, uint8_t *type,
                      uint64_t *prev, uint64_t *prev_size, uint8_t *flags) {
  nk_file *f;
  if (env->open_read(env, path, &f) != NOKV_OK) return false;
  char buf[NK_WAL_LINK_RECORD];
  size_t got = 0;
  bool ok = env->read_at(f, 0, buf, sizeof buf, &got) == NOKV_OK;
  nk_file_close(f);
  if (ok && nk_wal_record_intact(buf, 0, got, NK_WAL_LINK) &&
      nk_get_u32(buf + 4) == NK_WAL_LINK_PAYLOAD) {
    *type = NK_WAL_LINK;
    *prev = nk_get_u64(buf + NK_WAL_HEADER);
    *prev_size = nk_get_u64(buf + NK_WAL_HEADER + 8);
    *flags = (uint8_t)buf[NK_WAL_HEADER + 16];
    return true;
  }
  if (ok && nk_wal_record_intact(buf, 0, got, NK_WAL_LINK_V1) &&
      nk_get_u32(buf + 4) == NK_WAL_LINK_V1_PAYLOAD) {
    *type = NK_WAL_LINK_V1;
    *prev = nk_get_u64(buf + NK_WAL_HEADER);
    return true;
  }
  return false;
}

int nk_wal_replay_segment(const struct nokv_env *env, const char *dir, const uint64_t *numbers,
                          size_t n, size_t i, nk_wal_record_fn fn, void *arg,
                          nk_wal_replay_stats *st, bool *ended) {
  *ended = false;
  char *path = segment_path(dir, numbers[i]);
  if (path == NULL) return nk_err(NOKV_ENOMEM, "out of memory");
  tail_rule r = {.may_tear = i + 1 == n, .dir = dir, .later = numbers + i + 1,
                 .nlater = n - i - 1};
  if (i + 1 < n) {
    /* How was this segment sealed? Its successor's link says. */
    char *next = segment_path(dir, numbers[i + 1]);
    if (next == NULL) {
      free(path);
      return nk_err(NOKV_ENOMEM, "out of memory");
    }
    uint8_t type = 0, flags = 0;
    uint64_t prev = 0, size = 0;
    if (read_link(env, next, &type, &prev, &size, &flags)) {
      /* A link to another segment means one is missing between them, which
       * the successor's replay reports; until then, assume nothing tears. */
      bool ours = prev == numbers[i];
      r.may_tear = ours && type == NK_WAL_LINK && (flags & NK_WAL_LINK_PREV_UNSYNCED) != 0;
      r.sized = ours && type == NK_WAL_LINK;
      r.size = size;
    } else {
      /* The successor's own link never reached the disk, so nothing in it
       * was synced. If this segment was written by a version that seals
       * without syncing (its link is the new kind), so was the successor
       * (a replay's new segment syncs its link at once): this one's end may
       * be torn. Older versions synced before starting a segment. */
      uint8_t own = 0;
      r.may_tear = read_link(env, path, &own, &prev, &size, &flags) && own == NK_WAL_LINK;
    }
    free(next);
  }
  bool torn = false;
  int ret = replay_file(env, path, NK_WAL_BATCH, &r, fn, arg, st, &torn);
  *ended = torn && i + 1 < n;
  /* A new segment is about to follow the newest: sync it, so its tail cannot
   * tear once it is no longer the newest. */
  if (ret == NOKV_OK && i + 1 == n) ret = sync_file(env, path);
  free(path);
  return ret;
}

int nk_log_replay(const struct nokv_env *env, const char *path, uint8_t expected,
                  bool is_newest, nk_wal_record_fn fn, void *arg, nk_wal_replay_stats *st) {
  tail_rule r = {.may_tear = is_newest};
  bool torn;
  return replay_file(env, path, expected, &r, fn, arg, st, &torn);
}
