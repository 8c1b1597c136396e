/*
 * wal_reader.c — replay, and the line between a torn tail and corruption.
 *
 * A crash can only tear the record being appended to the newest segment, so
 * damage there is a torn tail exactly when no intact record follows it. That is
 * decided by looking for any well-framed record (right type, length within the
 * file, matching checksum) at any later offset: a damaged length field cannot
 * hide acknowledged records behind it. Random bytes rarely pass the type and
 * length filters, so the search checksums almost nothing on a genuine torn tail.
 */
#include <stdlib.h>

#include "util/error.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

static bool intact_record_at(const char *data, size_t off, size_t size, uint8_t expected) {
  if (size - off < NK_WAL_HEADER || (uint8_t)data[off + 8] != expected) {
    return false;
  }
  uint32_t len = nk_get_u32(data + off + 4);
  return len <= size - off - NK_WAL_HEADER &&
         nk_get_u32(data + off) == nk_wal_checksum(expected, data + off + NK_WAL_HEADER, len);
}

static bool intact_record_after(const char *data, size_t off, size_t size, uint8_t expected) {
  for (size_t p = off + 1; p + NK_WAL_HEADER <= size; p++) {
    if (intact_record_at(data, p, size, expected)) {
      return true;
    }
  }
  return false;
}

int nk_wal_replay_segment(const struct nokv_env *env, const char *path, bool is_newest,
                          nk_wal_record_fn fn, void *arg, nk_wal_replay_stats *st) {
  return nk_log_replay(env, path, NK_WAL_BATCH, is_newest, fn, arg, st);
}

int nk_log_replay(const struct nokv_env *env, const char *path, uint8_t expected,
                  bool is_newest, nk_wal_record_fn fn, void *arg, nk_wal_replay_stats *st) {
  const char *what = expected == NK_WAL_BATCH ? "WAL" : "manifest";
  char *data;
  size_t size;
  NK_RET(nk_env_read_file(env, path, &data, &size));
  int ret = NOKV_OK;
  size_t off = 0;
  while (off < size) {
    size_t left = size - off;
    const char *problem = NULL;
    uint32_t len = 0;
    uint8_t type = 0;
    bool unknown_type = false;
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
      } else if (type != expected) {
        problem = "unknown record type";
        unknown_type = true;
      }
    }
    if (problem != NULL) {
      /* A well-formed record of a type we do not know is from a newer format,
       * never a torn write. */
      bool torn = is_newest && !unknown_type && !intact_record_after(data, off, size, expected);
      if (!torn) {
        ret = nk_err(NOKV_ECORRUPT,
                     "%s %s is corrupt at offset %zu of %zu (%s)%s; refusing to open, "
                     "since skipping it would lose acknowledged writes",
                     what, path, off, size, problem,
                     is_newest ? " and valid data follows" : " in a sealed segment");
        break;
      }
      ret = env->truncate(env, path, off);
      if (ret == NOKV_OK) {
        st->torn_tails++;
        st->torn_bytes += left;
      }
      break;
    }
    ret = fn(arg, type, data + off + NK_WAL_HEADER, len);
    if (ret != NOKV_OK) {
      break;
    }
    st->records++;
    st->bytes += NK_WAL_HEADER + len;
    off += NK_WAL_HEADER + len;
  }
  free(data);
  if (ret == NOKV_OK && is_newest) {
    /* A new segment is about to follow this one: seal it as rotation would, or a
     * power loss could later tear a segment that is no longer the newest. */
    nk_file *f;
    NK_RET(env->open_append(env, path, false, &f));
    ret = nk_file_sync(f);
    int r2 = nk_file_close(f);
    ret = ret != NOKV_OK ? ret : r2;
  }
  return ret;
}
