/*
 * error.h — how the engine reports errors.
 *
 * Functions return an int status (NOKV_OK or a negative NOKV_E* code). Where an
 * error is born, nk_err() records a detailed, thread-local message that the public
 * nokv_errmsg() returns. The NK_RET/NK_ERR macros follow WiredTiger's WT_RET/WT_ERR:
 * NK_ERR jumps to the function's single `err:` label with `ret` set.
 */
#ifndef NOKV_UTIL_ERROR_H
#define NOKV_UTIL_ERROR_H

#include <stddef.h>

#include "nokv/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define NK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define NK_PRINTF(f, a)
#endif

/* Records a message for nokv_errmsg() and returns rc. */
int nk_err(int rc, const char *fmt, ...) NK_PRINTF(2, 3);
/* Records strerror(errno_value) after the message; returns NOKV_EIO, or NOKV_ENOMEM
 * for ENOMEM, or NOKV_EFULL for a full disk or file table (ENOSPC, EDQUOT, EMFILE,
 * ENFILE). */
int nk_err_errno(int errno_value, const char *fmt, ...) NK_PRINTF(2, 3);
/* The errno behind this thread's last error if nk_err_errno() recorded it, else 0
 * (nk_err() resets it). Lets a caller tell "does not exist" (ENOENT) from every
 * other failure of the same call. */
int nk_err_os_errno(void);
/* The thread's message and errno, kept across cleanup that may fail (a cleanup
 * must never replace the error that made it necessary). */
typedef struct nk_err_saved {
  char msg[512];
  int os_errno;
} nk_err_saved;
void nk_err_save(nk_err_saved *s);
void nk_err_restore(const nk_err_saved *s);
/* Clears the thread's message (called at the start of each public entry point). */
void nk_err_clear(void);

/* A key as a message shows it: quoted, its first 48 bytes with anything but
 * printable ASCII as \xHH, then the whole length if it was cut. Returns buf. */
#define NK_KEY_SHOWN 256
const char *nk_show_key(const void *key, size_t klen, char buf[NK_KEY_SHOWN]);

#define NK_RET(x)                 \
  do {                            \
    int nk_ret_ = (x);            \
    if (nk_ret_ != NOKV_OK) {     \
      return nk_ret_;             \
    }                             \
  } while (0)

#define NK_ERR(x)                 \
  do {                            \
    ret = (x);                    \
    if (ret != NOKV_OK) {         \
      goto err;                   \
    }                             \
  } while (0)

#ifdef __cplusplus
}
#endif

#endif /* NOKV_UTIL_ERROR_H */
