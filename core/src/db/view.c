/*
 * view.c — the reader's pinned state (memtables + version), published as one
 * refcounted pointer so a read never sees a memtable half-flushed: the table
 * that replaces an immutable memtable appears in the same view that drops it.
 */
#include <stdlib.h>

#include "db/db_impl.h"
#include "util/error.h"

nk_view *nk_db_acquire_view(nokv_db *db) {
  pthread_mutex_lock(&db->view_mu);
  nk_view *v = db->view;
  __atomic_fetch_add(&v->refs, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&db->view_mu);
  return v;
}

void nk_view_unref(nk_view *v) {
  if (v == NULL || __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  nk_memtable_unref(v->mem);
  for (size_t i = 0; i < v->nimm; i++) nk_memtable_unref(v->imm[i]);
  nk_version_unref(v->version);
  nk_epoch_unref(v->epoch);
  free(v);
}

int nk_db_refresh_view(nokv_db *db) {
  nk_view *v = calloc(1, sizeof *v);
  if (v == NULL) return nk_err(NOKV_ENOMEM, "out of memory publishing a view");
  v->refs = 1;
  v->mem = db->mem;
  nk_memtable_ref(v->mem);
  for (size_t i = 0; i < db->nimm; i++) {
    v->imm[i] = db->imm[db->nimm - 1 - i];  /* newest first */
    nk_memtable_ref(v->imm[i]);
  }
  v->nimm = db->nimm;
  v->version = nk_vset_current(db->vset);
  v->epoch = db->epoch;  /* changes only under mu, which the caller holds */
  nk_epoch_ref(v->epoch);
  db->l0_files = (int)v->version->nfiles[0];
  db->compaction_debt = nk_db_pending_compaction_bytes(db, v->version);
  pthread_mutex_lock(&db->view_mu);
  nk_view *old = db->view;
  db->view = v;
  pthread_mutex_unlock(&db->view_mu);
  nk_view_unref(old);
  return NOKV_OK;
}
