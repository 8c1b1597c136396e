/*
 * edit_codec.c — version edits to and from protobuf (core/proto/manifest.proto),
 * through protobuf-c.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/manifest.pb-c.h"
#include "memtable/internal_key.h"
#include "util/error.h"
#include "version/version.h"

int nk_edit_encode(const nk_edit *e, bool snapshot, nk_buf *out) {
  Nokv__Manifest__VersionEdit m = NOKV__MANIFEST__VERSION_EDIT__INIT;
  Nokv__Manifest__TableFile *files = calloc(e->nadds ? e->nadds : 1, sizeof *files);
  Nokv__Manifest__TableFile **fptrs = calloc(e->nadds ? e->nadds : 1, sizeof *fptrs);
  Nokv__Manifest__RemovedTable *rems = calloc(e->nremoves ? e->nremoves : 1, sizeof *rems);
  Nokv__Manifest__RemovedTable **rptrs = calloc(e->nremoves ? e->nremoves : 1, sizeof *rptrs);
  Nokv__Manifest__VlogDiscard *disc = calloc(e->ndiscards ? e->ndiscards : 1, sizeof *disc);
  Nokv__Manifest__VlogDiscard **dptrs = calloc(e->ndiscards ? e->ndiscards : 1, sizeof *dptrs);
  Nokv__Manifest__RangeTombstone *rds = calloc(e->nrdels ? e->nrdels : 1, sizeof *rds);
  Nokv__Manifest__RangeTombstone **rdptrs = calloc(e->nrdels ? e->nrdels : 1, sizeof *rdptrs);
  int ret = NOKV_OK;
  if (files == NULL || fptrs == NULL || rems == NULL || rptrs == NULL || disc == NULL ||
      dptrs == NULL || rds == NULL || rdptrs == NULL) {
    NK_ERR(nk_err(NOKV_ENOMEM, "out of memory encoding a version edit"));
  }
  for (size_t i = 0; i < e->nadds; i++) {
    const nk_file_meta *f = e->adds[i].f;
    Nokv__Manifest__TableFile t = NOKV__MANIFEST__TABLE_FILE__INIT;
    t.level = (uint32_t)e->adds[i].level;
    t.number = f->number;
    t.size = f->size;
    t.smallest = (ProtobufCBinaryData){f->smallest_len, (uint8_t *)f->smallest};
    t.largest = (ProtobufCBinaryData){f->largest_len, (uint8_t *)f->largest};
    t.has_min_ts = t.has_max_ts = t.has_entries = t.has_tombstones = 1;
    t.min_ts = f->min_ts;
    t.max_ts = f->max_ts;
    t.entries = f->entries;
    t.tombstones = f->tombstones;
    t.has_range_clean_ts = f->range_clean_ts != 0;
    t.range_clean_ts = f->range_clean_ts;
    files[i] = t;
    fptrs[i] = &files[i];
  }
  for (size_t i = 0; i < e->nremoves; i++) {
    Nokv__Manifest__RemovedTable r = NOKV__MANIFEST__REMOVED_TABLE__INIT;
    r.level = (uint32_t)e->removes[i].level;
    r.number = e->removes[i].number;
    rems[i] = r;
    rptrs[i] = &rems[i];
  }
  m.n_add = e->nadds;
  m.add = fptrs;
  m.n_remove = e->nremoves;
  m.remove = rptrs;
  m.has_log_number = e->has_log_number;
  m.log_number = e->log_number;
  m.has_next_file_number = e->has_next_file;
  m.next_file_number = e->next_file;
  m.has_last_commit_ts = e->has_last_ts;
  m.last_commit_ts = e->last_ts;
  for (size_t i = 0; i < e->ndiscards; i++) {
    Nokv__Manifest__VlogDiscard d = NOKV__MANIFEST__VLOG_DISCARD__INIT;
    d.segment = e->discards[i].fid;
    d.bytes = e->discards[i].bytes;
    disc[i] = d;
    dptrs[i] = &disc[i];
  }
  m.n_vlog_discard = e->ndiscards;
  m.vlog_discard = dptrs;
  m.n_vlog_retired = e->nretired;
  m.vlog_retired = e->retired;
  m.has_vlog_head_segment = m.has_vlog_head_offset = e->has_vlog_head;
  m.vlog_head_segment = e->vlog_head_fid;
  m.vlog_head_offset = e->vlog_head_off;
  for (size_t i = 0; i < e->nrdels; i++) {
    Nokv__Manifest__RangeTombstone r = NOKV__MANIFEST__RANGE_TOMBSTONE__INIT;
    r.start = (ProtobufCBinaryData){e->rdels[i].slen, (uint8_t *)e->rdels[i].start};
    r.end = (ProtobufCBinaryData){e->rdels[i].elen, (uint8_t *)e->rdels[i].end};
    r.ts = e->rdels[i].ts;
    rds[i] = r;
    rdptrs[i] = &rds[i];
  }
  m.has_history_horizon = e->has_horizon;
  m.history_horizon = e->horizon;
  m.n_range_del = e->nrdels;
  m.range_del = rdptrs;
  m.has_snapshot = snapshot;
  m.snapshot = snapshot;
  size_t n = nokv__manifest__version_edit__get_packed_size(&m);
  if (!nk_buf_reserve(out, n)) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory encoding an edit"));
  out->len += nokv__manifest__version_edit__pack(&m, (uint8_t *)out->data + out->len);
err:
  free(files);
  free(fptrs);
  free(rems);
  free(rptrs);
  free(disc);
  free(dptrs);
  free(rds);
  free(rdptrs);
  return ret;
}

int nk_edit_decode(const char *data, size_t len, nk_edit *out) {
  nk_edit_init(out);
  Nokv__Manifest__VersionEdit *m =
      nokv__manifest__version_edit__unpack(NULL, len, (const uint8_t *)data);
  if (m == NULL) return nk_err(NOKV_ECORRUPT, "undecodable version edit");
  int ret = NOKV_OK;
  for (size_t i = 0; i < m->n_add; i++) {
    const Nokv__Manifest__TableFile *t = m->add[i];
    if (t->smallest.len <= 8 || t->largest.len <= 8 || t->level >= NK_NUM_LEVELS) {
      NK_ERR(nk_err(NOKV_ECORRUPT, "version edit has a malformed table %llu",
                    (unsigned long long)t->number));
    }
    nk_file_meta *f = nk_file_meta_new(t->number, t->size, (const char *)t->smallest.data,
                                       t->smallest.len, (const char *)t->largest.data,
                                       t->largest.len);
    if (f == NULL) NK_ERR(nk_err(NOKV_ENOMEM, "out of memory"));
    f->min_ts = t->min_ts;
    f->max_ts = t->max_ts;
    f->entries = t->entries;
    f->tombstones = t->tombstones;
    f->range_clean_ts = t->range_clean_ts;
    ret = nk_edit_add_file(out, (int)t->level, f);
    nk_file_meta_unref(f);
    NK_ERR(ret);
  }
  for (size_t i = 0; i < m->n_remove; i++) {
    NK_ERR(nk_edit_remove_file(out, (int)m->remove[i]->level, m->remove[i]->number));
  }
  out->has_log_number = m->has_log_number;
  out->log_number = m->log_number;
  out->has_next_file = m->has_next_file_number;
  out->next_file = m->next_file_number;
  out->has_horizon = m->has_history_horizon;
  out->horizon = m->history_horizon;
  out->has_last_ts = m->has_last_commit_ts;
  out->last_ts = m->last_commit_ts;
  if (m->has_vlog_head_segment != m->has_vlog_head_offset) {
    NK_ERR(nk_err(NOKV_ECORRUPT, "version edit has half a value log head"));
  }
  out->has_vlog_head = m->has_vlog_head_segment;
  out->vlog_head_fid = m->vlog_head_segment;
  out->vlog_head_off = m->vlog_head_offset;
  for (size_t i = 0; i < m->n_vlog_discard; i++) {
    NK_ERR(nk_edit_add_discard(out, m->vlog_discard[i]->segment, m->vlog_discard[i]->bytes));
  }
  for (size_t i = 0; i < m->n_vlog_retired; i++) {
    NK_ERR(nk_edit_retire_segment(out, m->vlog_retired[i]));
  }
  for (size_t i = 0; i < m->n_range_del; i++) {
    const Nokv__Manifest__RangeTombstone *r = m->range_del[i];
    if (nk_user_key_cmp((const char *)r->start.data, r->start.len, (const char *)r->end.data,
                        r->end.len) >= 0 ||
        r->ts == 0 || r->ts > NK_MAX_TS) {
      NK_ERR(nk_err(NOKV_ECORRUPT, "version edit has a malformed range tombstone"));
    }
    nk_rdel d = {.start = (const char *)r->start.data, .slen = r->start.len,
                 .end = (const char *)r->end.data, .elen = r->end.len, .ts = r->ts};
    NK_ERR(nk_edit_add_rdel(out, &d));
  }
  nokv__manifest__version_edit__free_unpacked(m, NULL);
  return NOKV_OK;
err:
  nokv__manifest__version_edit__free_unpacked(m, NULL);
  nk_edit_release(out);
  return ret;
}
