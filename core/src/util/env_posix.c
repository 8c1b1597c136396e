/*
 * env_posix.c — the file layer on POSIX file descriptors. Appends loop over short
 * writes and EINTR; sync is fdatasync; directory sync makes new names durable.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/env.h"
#include "util/error.h"

typedef struct posix_file {
  nk_file base;
  int fd;
  char *path;
} posix_file;

static int posix_wrap(const struct nokv_env *env, int fd, const char *path, nk_file **out) {
  posix_file *f = calloc(1, sizeof *f);
  char *p = strdup(path);
  if (f == NULL || p == NULL) {
    free(f);
    free(p);
    close(fd);
    return nk_err(NOKV_ENOMEM, "out of memory opening %s", path);
  }
  f->base.env = env;
  f->fd = fd;
  f->path = p;
  *out = &f->base;
  return NOKV_OK;
}

static int posix_open_append(const struct nokv_env *env, const char *path, bool truncate,
                             nk_file **out) {
  int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0);
  int fd;
  do {
    fd = open(path, flags, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return nk_err_errno(errno, "open %s for writing", path);
  }
  return posix_wrap(env, fd, path, out);
}

static int posix_open_read(const struct nokv_env *env, const char *path, nk_file **out) {
  int fd;
  do {
    fd = open(path, O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return nk_err_errno(errno, "open %s", path);
  }
  return posix_wrap(env, fd, path, out);
}

static int posix_read_at(nk_file *file, uint64_t off, void *buf, size_t n, size_t *got) {
  posix_file *f = (posix_file *)file;
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(f->fd, (char *)buf + done, n - done, (off_t)(off + done));
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return nk_err_errno(errno, "read %s at offset %llu", f->path,
                          (unsigned long long)(off + done));
    }
    if (r == 0) {
      break;
    }
    done += (size_t)r;
  }
  *got = done;
  return NOKV_OK;
}

static int posix_append(nk_file *file, const void *data, size_t n) {
  posix_file *f = (posix_file *)file;
  const char *p = data;
  while (n > 0) {
    ssize_t w = write(f->fd, p, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      return nk_err_errno(errno, "write %s", f->path);
    }
    p += w;
    n -= (size_t)w;
  }
  return NOKV_OK;
}

static int posix_sync(nk_file *file) {
  posix_file *f = (posix_file *)file;
  if (fdatasync(f->fd) != 0) {
    return nk_err_errno(errno, "fdatasync %s", f->path);
  }
  return NOKV_OK;
}

static int posix_size(nk_file *file, uint64_t *out) {
  posix_file *f = (posix_file *)file;
  struct stat st;
  if (fstat(f->fd, &st) != 0) {
    return nk_err_errno(errno, "stat %s", f->path);
  }
  *out = (uint64_t)st.st_size;
  return NOKV_OK;
}

static int posix_close(nk_file *file) {
  posix_file *f = (posix_file *)file;
  int ret = NOKV_OK;
  if (close(f->fd) != 0) {
    ret = nk_err_errno(errno, "close %s", f->path);
  }
  free(f->path);
  free(f);
  return ret;
}

static int posix_truncate(const struct nokv_env *env, const char *path, uint64_t size) {
  (void)env;
  if (truncate(path, (off_t)size) != 0) {
    return nk_err_errno(errno, "truncate %s to %llu bytes", path, (unsigned long long)size);
  }
  return NOKV_OK;
}

static int posix_remove(const struct nokv_env *env, const char *path) {
  (void)env;
  if (unlink(path) != 0) {
    return nk_err_errno(errno, "remove %s", path);
  }
  return NOKV_OK;
}

static int posix_rename(const struct nokv_env *env, const char *from, const char *to) {
  (void)env;
  if (rename(from, to) != 0) {
    return nk_err_errno(errno, "rename %s to %s", from, to);
  }
  return NOKV_OK;
}

static int posix_mkdir(const struct nokv_env *env, const char *path) {
  (void)env;
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    return nk_err_errno(errno, "create directory %s", path);
  }
  return NOKV_OK;
}

static int posix_sync_dir(const struct nokv_env *env, const char *path) {
  (void)env;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return nk_err_errno(errno, "open directory %s", path);
  }
  int ret = NOKV_OK;
  if (fsync(fd) != 0) {
    ret = nk_err_errno(errno, "fsync directory %s", path);
  }
  close(fd);
  return ret;
}

static int posix_list_dir(const struct nokv_env *env, const char *path, char ***names,
                          size_t *n) {
  (void)env;
  DIR *d = opendir(path);
  if (d == NULL) {
    return nk_err_errno(errno, "list directory %s", path);
  }
  char **v = NULL;
  size_t len = 0, cap = 0;
  int ret = NOKV_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
      continue;
    }
    if (len == cap) {
      cap = cap ? cap * 2 : 16;
      char **nv = realloc(v, cap * sizeof *v);
      if (nv == NULL) {
        ret = nk_err(NOKV_ENOMEM, "out of memory listing %s", path);
        break;
      }
      v = nv;
    }
    if ((v[len] = strdup(e->d_name)) == NULL) {
      ret = nk_err(NOKV_ENOMEM, "out of memory listing %s", path);
      break;
    }
    len++;
  }
  closedir(d);
  if (ret != NOKV_OK) {
    nk_env_free_names(v, len);
    return ret;
  }
  *names = v;
  *n = len;
  return NOKV_OK;
}

static int posix_lock(const struct nokv_env *env, const char *path, nk_file **out) {
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return nk_err_errno(errno, "open lock file %s", path);
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) {
      return nk_err(NOKV_EBUSY, "%s is locked: another process has this database open", path);
    }
    return nk_err_errno(e, "lock %s", path);
  }
  return posix_wrap(env, fd, path, out);
}

static int posix_map(const struct nokv_env *env, const char *path, const char **base,
                     uint64_t *len) {
  (void)env;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nk_err_errno(errno, "open %s", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return nk_err_errno(e, "stat %s", path);
  }
  uint64_t n = *len > 0 ? *len : (uint64_t)st.st_size;
  void *p = n > 0 ? mmap(NULL, (size_t)n, PROT_READ, MAP_SHARED, fd, 0) : NULL;
  int e = errno;
  close(fd);  /* the mapping keeps the file */
  if (p == MAP_FAILED) return nk_err_errno(e, "mmap %s", path);
  *base = p;
  *len = n;
  return NOKV_OK;
}

static void posix_unmap(const struct nokv_env *env, const char *base, uint64_t len) {
  (void)env;
  if (base != NULL) munmap((void *)base, (size_t)len);
}

static void posix_prefetch(const struct nokv_env *env, const char *base, uint64_t len) {
  (void)env;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = (uintptr_t)base & ~(page - 1);
  madvise((void *)start, (size_t)((uintptr_t)base + len - start), MADV_WILLNEED);
}

static int posix_link(const struct nokv_env *env, const char *from, const char *to) {
  (void)env;
  if (link(from, to) != 0) {
    return nk_err_errno(errno, "link %s to %s", from, to);
  }
  return NOKV_OK;
}

static const struct nokv_env posix_env = {
    .open_append = posix_open_append,
    .open_read = posix_open_read,
    .read_at = posix_read_at,
    .append = posix_append,
    .sync = posix_sync,
    .size = posix_size,
    .close = posix_close,
    .truncate = posix_truncate,
    .remove = posix_remove,
    .rename = posix_rename,
    .mkdir = posix_mkdir,
    .sync_dir = posix_sync_dir,
    .list_dir = posix_list_dir,
    .lock = posix_lock,
    .map = posix_map,
    .unmap = posix_unmap,
    .prefetch = posix_prefetch,
    .link = posix_link,
    .state = NULL,
};

const struct nokv_env *nk_env_posix(void) { return &posix_env; }
