/* error.c — thread-local error messages and the names of status codes. */
#include "util/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char nk_errbuf[512];
static _Thread_local int nk_errno_last;

/* Messages are formatted into a scratch buffer first: callers often wrap the
 * previous message (nk_err(rc, "...: %s", nokv_errmsg())), and formatting a
 * buffer into itself is undefined. */
int nk_err(int rc, const char *fmt, ...) {
  char tmp[sizeof nk_errbuf];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  memcpy(nk_errbuf, tmp, sizeof tmp);
  nk_errno_last = 0;
  return rc;
}

int nk_err_errno(int errno_value, const char *fmt, ...) {
  char tmp[sizeof nk_errbuf];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  memcpy(nk_errbuf, tmp, sizeof tmp);
  nk_errno_last = errno_value;
  if (n >= 0 && (size_t)n < sizeof nk_errbuf) {
    char msg[128];
    if (strerror_r(errno_value, msg, sizeof msg) != 0) { /* POSIX strerror_r */
      snprintf(msg, sizeof msg, "errno %d", errno_value);
    }
    snprintf(nk_errbuf + n, sizeof nk_errbuf - (size_t)n, ": %s", msg);
  }
  switch (errno_value) {
    case ENOMEM: return NOKV_ENOMEM;
    case ENOSPC:  /* the disk, or the process's or the system's file table, is full */
    case EDQUOT:
    case EMFILE:
    case ENFILE: return NOKV_EFULL;
    default: return NOKV_EIO;
  }
}

void nk_err_clear(void) {
  nk_errbuf[0] = '\0';
  nk_errno_last = 0;
}

int nk_err_os_errno(void) { return nk_errno_last; }

void nk_err_save(nk_err_saved *s) {
  memcpy(s->msg, nk_errbuf, sizeof s->msg);
  s->os_errno = nk_errno_last;
}

void nk_err_restore(const nk_err_saved *s) {
  memcpy(nk_errbuf, s->msg, sizeof s->msg);
  nk_errno_last = s->os_errno;
}

const char *nokv_errmsg(void) { return nk_errbuf; }

const char *nokv_strerror(int rc) {
  switch (rc) {
    case NOKV_OK: return "ok";
    case NOKV_ENOTFOUND: return "not found";
    case NOKV_EINVAL: return "invalid argument";
    case NOKV_ECORRUPT: return "corruption";
    case NOKV_EIO: return "I/O error";
    case NOKV_ENOMEM: return "out of memory";
    case NOKV_EFULL: return "capacity exhausted";
    case NOKV_EBUSY: return "busy";
    case NOKV_ECLOSED: return "database closed";
    case NOKV_ECONFLICT: return "transaction conflict";
    case NOKV_ESTALE: return "read timestamp too old";
    case NOKV_EHOTKEY: return "key written too often";
    case NOKV_ECONDITION: return "condition not met";
    case NOKV_ETIMEDOUT: return "timed out";
    case NOKV_ECANCELED: return "canceled";
    default: return "unknown error";
  }
}

const char *nk_show_key(const void *key, size_t klen, char buf[NK_KEY_SHOWN]) {
  const unsigned char *k = key;
  size_t shown = klen < 48 ? klen : 48, n = 0;
  buf[n++] = '"';
  for (size_t i = 0; i < shown; i++) {
    if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '"' && k[i] != '\\') {
      buf[n++] = (char)k[i];
    } else {
      n += (size_t)snprintf(buf + n, NK_KEY_SHOWN - n, "\\x%02x", k[i]);
    }
  }
  buf[n++] = '"';
  if (shown < klen) {
    snprintf(buf + n, NK_KEY_SHOWN - n, "... (%zu bytes)", klen);
  } else {
    buf[n] = '\0';
  }
  return buf;
}
