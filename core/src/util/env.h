/*
 * env.h — the file layer. Every byte the engine reads or writes goes through a
 * struct nokv_env, so tests can wrap the POSIX one to inject faults (failed writes,
 * failed fsyncs, lost unsynced data) exactly where real disks fail.
 *
 * A file handle starts with `const struct nokv_env *env`, the env that made it;
 * the nk_file_* helpers dispatch through it. Implementations extend nk_file.
 * Every function returns a NOKV_* status and, on failure, sets nokv_errmsg()
 * naming the path.
 */
#ifndef NOKV_UTIL_ENV_H
#define NOKV_UTIL_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_file {
  const struct nokv_env *env;
} nk_file;

struct nokv_env {
  /* Opens path for appending, creating it if needed (truncating if truncate). */
  int (*open_append)(const struct nokv_env *env, const char *path, bool truncate, nk_file **out);
  int (*open_read)(const struct nokv_env *env, const char *path, nk_file **out);
  /* Reads up to n bytes at off; *got < n only at end of file. */
  int (*read_at)(nk_file *f, uint64_t off, void *buf, size_t n, size_t *got);
  int (*append)(nk_file *f, const void *data, size_t n);
  int (*sync)(nk_file *f);        /* data and size durable (fdatasync) */
  int (*size)(nk_file *f, uint64_t *out);
  int (*close)(nk_file *f);       /* frees f even on error */
  int (*truncate)(const struct nokv_env *env, const char *path, uint64_t size);
  int (*remove)(const struct nokv_env *env, const char *path);
  int (*rename)(const struct nokv_env *env, const char *from, const char *to);
  int (*mkdir)(const struct nokv_env *env, const char *path);  /* ok if it exists */
  int (*sync_dir)(const struct nokv_env *env, const char *path);
  /* *names is a malloc'ed array of malloc'ed names (no "." or ".."); free with
   * nk_env_free_names. */
  int (*list_dir)(const struct nokv_env *env, const char *path, char ***names, size_t *n);
  /* Takes an exclusive advisory lock on path (created if needed). NOKV_EBUSY if
   * another process holds it. Released by close (or by process death). */
  int (*lock)(const struct nokv_env *env, const char *path, nk_file **out);
  /* Maps the file at path read-only at *base. *len on input: 0 maps the whole
   * file at its current size (and returns that size); otherwise that many bytes,
   * which may run past the end of a file still being appended to (value log
   * segments): only bytes already written may then be read. Optional: NULL means
   * the engine reads with read_at. Unmap with the same base and length. */
  int (*map)(const struct nokv_env *env, const char *path, const char **base, uint64_t *len);
  void (*unmap)(const struct nokv_env *env, const char *base, uint64_t len);
  /* Hints that [base, base + len) of a mapping will be read soon, so the pages
   * not in memory are read ahead, many at once (madvise WILLNEED). Optional. */
  void (*prefetch)(const struct nokv_env *env, const char *base, uint64_t len);
  /* Makes `to` a second name of the file `from` (a hard link). Optional: NULL, or
   * a failure (another filesystem), and the engine copies instead. */
  int (*link)(const struct nokv_env *env, const char *from, const char *to);
  void *state;  /* for wrappers */
};

const struct nokv_env *nk_env_posix(void);

void nk_env_free_names(char **names, size_t n);

static inline int nk_file_read_at(nk_file *f, uint64_t off, void *buf, size_t n, size_t *got) {
  return f->env->read_at(f, off, buf, n, got);
}
static inline int nk_file_append(nk_file *f, const void *data, size_t n) {
  return f->env->append(f, data, n);
}
static inline int nk_file_sync(nk_file *f) { return f->env->sync(f); }
static inline int nk_file_size(nk_file *f, uint64_t *out) { return f->env->size(f, out); }
static inline int nk_file_close(nk_file *f) { return f == NULL ? 0 : f->env->close(f); }

/* Removes path for cleanup: whether it works or not, the thread's error message
 * stays what it was (the error that made the cleanup necessary). */
void nk_env_remove_quiet(const struct nokv_env *env, const char *path);

/* Reads the whole file at path into a malloc'ed buffer. */
int nk_env_read_file(const struct nokv_env *env, const char *path, char **data, size_t *len);

/* path = dir + "/" + name, malloc'ed. NULL on ENOMEM. */
char *nk_path_join(const char *dir, const char *name);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_UTIL_ENV_H */
