/* env.c — helpers shared by every file layer. */
#include "util/env.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

void nk_env_free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(names[i]);
  }
  free(names);
}

char *nk_path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (p != NULL) {
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
  }
  return p;
}

int nk_env_read_file(const struct nokv_env *env, const char *path, char **data, size_t *len) {
  nk_file *f = NULL;
  char *buf = NULL;
  uint64_t size;
  size_t got;
  int ret;
  NK_ERR(env->open_read(env, path, &f));
  NK_ERR(nk_file_size(f, &size));
  if ((buf = malloc(size ? size : 1)) == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory reading %s (%llu bytes)", path,
                  (unsigned long long)size));
  }
  NK_ERR(nk_file_read_at(f, 0, buf, size, &got));
  ret = nk_file_close(f);
  f = NULL;
  NK_ERR(ret);
  *data = buf;
  *len = got;
  return NOKV_OK;
err:
  nk_file_close(f);
  free(buf);
  return ret;
}

void nk_env_remove_quiet(const struct nokv_env *env, const char *path) {
  nk_err_saved saved;
  nk_err_save(&saved);
  env->remove(env, path);
  nk_err_restore(&saved);
}
