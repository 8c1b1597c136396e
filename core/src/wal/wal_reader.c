/*
 * wal_reader.c — replay, and the line between a torn tail and corruption.
 *
 * A crash can only tear the record being appended to the newest segment, so
 * damage is a torn tail when nothing good can follow it: the record runs past the
 * end of the file, or it is the file's last record, or only zero bytes follow
 * (space the file system extended but never filled). Anything else is corruption.
 */
#include <stdlib.h>

#include "util/error.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

static bool all_zero(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != 0) {
      return false;
    }
  }
  return true;
}

int nk_wal_replay_segment(const struct nokv_env *env, const char *path, bool is_newest,
                          nk_wal_record_fn fn, void *arg, nk_wal_replay_stats *st) {
  char *data;
  size_t size;
  NK_RET(nk_env_read_file(env, path, &data, &size));
  int ret = NOKV_OK;
  size_t off = 0;
  while (off < size) {
    size_t left = size - off;
    const char *problem = NULL;
    bool torn = false;
    uint32_t len = 0;
    uint8_t type = 0;
    if (left < NK_WAL_HEADER) {
      problem = "truncated record header";
      torn = true;
    } else {
      len = nk_get_u32(data + off + 4);
      type = (uint8_t)data[off + 8];
      if (len > left - NK_WAL_HEADER) {
        problem = "record runs past the end of the segment";
        torn = true;
      } else if (nk_get_u32(data + off) !=
                 nk_wal_checksum(type, data + off + NK_WAL_HEADER, len)) {
        problem = "checksum mismatch";
        size_t end = off + NK_WAL_HEADER + len;
        torn = end == size || all_zero(data + off, left);
      } else if (type != NK_WAL_BATCH) {
        problem = "unknown record type";
      }
    }
    if (problem != NULL) {
      if (!is_newest || !torn) {
        ret = nk_err(NOKV_ECORRUPT,
                     "WAL %s is corrupt at offset %zu of %zu (%s)%s; refusing to open, "
                     "since skipping it would lose acknowledged writes",
                     path, off, size, problem,
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
