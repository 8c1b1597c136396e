/*
 * wal_reader.c — replay, and the line between a torn tail and corruption.
 *
 * Only the newest segment of a log can hold bytes that were never made durable;
 * a power loss may drop any of them, in any order (the kernel writes dirty pages
 * back in no particular order). So damage there is a torn tail exactly when no
 * record after it was promised durable: a manifest edit (each is fsync'ed before
 * the next is written) or a WAL batch of type NK_WAL_BATCH_SYNCED. An intact
 * promised record after the damage means the damaged bytes had been fsync'ed
 * too: that is corruption, and the replay refuses. Intact records after the
 * damage that were never synced are cut with the tail: nothing promised them to
 * a power loss. The search looks for a well-framed record (promised type,
 * length within the file, matching checksum) at every later offset, so a
 * damaged length field cannot hide records behind it; random bytes rarely pass
 * the type and length filters, so it checksums almost nothing on a real tear.
 */
#include <stdio.h>
#include <stdlib.h>

#include "util/error.h"
#include "wal/wal.h"
#include "wal/wal_format.h"

/* The record type whose presence after damage proves the damage was durable. */
static uint8_t promised_type(uint8_t expected) {
  return expected == NK_WAL_BATCH ? NK_WAL_BATCH_SYNCED : expected;
}

static bool accepted(uint8_t expected, uint8_t type) {
  return expected == NK_WAL_BATCH ? nk_wal_is_batch(type) || type == NK_WAL_LINK
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

/* Offset of the first intact record of type after off, or 0 if none. */
static size_t intact_record_after(const char *data, size_t off, size_t size, uint8_t type) {
  for (size_t p = off + 1; p + NK_WAL_HEADER <= size; p++) {
    if (nk_wal_record_intact(data, p, size, type)) {
      return p;
    }
  }
  return 0;
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
      } else if (!accepted(expected, type)) {
        problem = "unknown record type";
        unknown_type = true;
      }
    }
    if (problem != NULL) {
      /* A well-formed record of a type we do not know is from a newer format,
       * never a torn write. */
      size_t promised = is_newest && !unknown_type
                            ? intact_record_after(data, off, size, promised_type(expected))
                            : 0;
      if (!is_newest || unknown_type || promised != 0) {
        char where[96] = " in a sealed segment";
        if (unknown_type) {
          snprintf(where, sizeof where, " (type %u)", type);
        } else if (is_newest) {
          snprintf(where, sizeof where, " and a durable record follows at offset %zu",
                   promised);
        }
        ret = nk_err(NOKV_ECORRUPT,
                     "%s %s is corrupt at offset %zu of %zu (%s)%s; refusing to open, "
                     "since skipping it would lose acknowledged writes",
                     what, path, off, size, problem, where);
        break;
      }
      /* The manifest is only read: an open that succeeds writes a new one, and
       * one that fails must leave the files as they were. A WAL segment is cut:
       * a new segment follows it, after which its tail would be sealed damage. */
      ret = expected == NK_WAL_EDIT ? NOKV_OK : env->truncate(env, path, off);
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
    if (type != NK_WAL_LINK) st->records++;
    st->bytes += NK_WAL_HEADER + len;
    off += NK_WAL_HEADER + len;
  }
  free(data);
  if (ret == NOKV_OK && is_newest && expected != NK_WAL_EDIT) {
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
