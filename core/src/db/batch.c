/* batch.c — building and parsing write batches (format in batch_internal.h). */
#include <stdlib.h>
#include <string.h>

#include "db/batch_internal.h"
#include "memtable/memtable.h"
#include "util/coding.h"
#include "util/clock.h"
#include "util/error.h"

static void reset(struct nokv_batch *b) {
  memset(b->rep, 0, NK_BATCH_HEADER);
  b->len = NK_BATCH_HEADER;
  b->count = 0;
  b->deletes = 0;
  b->range_deletes = 0;
  b->mem_cost = 0;
  b->user_bytes = 0;
  b->max_klen = b->max_vlen = 0;
  b->min_klen = SIZE_MAX;
}

void nk_batch_init_inline(struct nokv_batch *b, char *buf, size_t cap) {
  b->rep = buf;
  b->cap = cap;
  b->inline_buf = buf;
  reset(b);
}

void nk_batch_release(struct nokv_batch *b) {
  if (b->rep != b->inline_buf) {
    free(b->rep);
  }
  b->rep = NULL;
}

int nokv_batch_new(nokv_batch **out) {
  nokv_batch *b = calloc(1, sizeof *b);
  char *rep = malloc(256);
  if (b == NULL || rep == NULL) {
    free(b);
    free(rep);
    return nk_err(NOKV_ENOMEM, "out of memory allocating a batch");
  }
  b->rep = rep;
  b->cap = 256;
  b->inline_buf = NULL;
  reset(b);
  *out = b;
  return NOKV_OK;
}

void nokv_batch_free(nokv_batch *b) {
  if (b != NULL) {
    nk_batch_release(b);
    free(b);
  }
}

void nokv_batch_clear(nokv_batch *b) { reset(b); }
uint32_t nokv_batch_count(const nokv_batch *b) { return b->count; }
size_t nokv_batch_size(const nokv_batch *b) { return b->len; }

static int reserve(nokv_batch *b, size_t extra) {
  if (b->len + extra <= b->cap) {
    return NOKV_OK;
  }
  if (extra > SIZE_MAX / 4 - b->len) {
    return nk_err(NOKV_EINVAL, "batch too large");
  }
  size_t cap = b->cap * 2;
  while (cap < b->len + extra) {
    cap *= 2;
  }
  char *rep = b->rep == b->inline_buf ? malloc(cap) : realloc(b->rep, cap);
  if (rep == NULL) {
    return nk_err(NOKV_ENOMEM, "out of memory growing a batch to %zu bytes", cap);
  }
  if (b->rep == b->inline_buf) {
    memcpy(rep, b->rep, b->len);
  }
  b->rep = rep;
  b->cap = cap;
  return NOKV_OK;
}

/* Does an op of this kind carry a value field? */
static bool op_has_value(nk_kind k) {
  return nk_kind_has_value(k) || k == NK_KIND_VALUE_REF || k == NK_KIND_RANGE_DEL;
}

char *nk_batch_encode_op(char *p, const nk_batch_op *op) {
  *p++ = (char)(op->kind | (op->ts != 0 ? NK_BATCH_OP_TS : 0));
  if (op->ts != 0) {
    nk_put_u64(p, op->ts);
    p += 8;
  }
  p = nk_put_varint64(p, op->klen);
  if (op->klen > 0) memcpy(p, op->key, op->klen);
  p += op->klen;
  if (op_has_value(op->kind)) {
    p = nk_put_varint64(p, op->vlen);
    if (op->vlen > 0) memcpy(p, op->val, op->vlen);
    p += op->vlen;
  }
  return p;
}

/* Appends an operation. meta: bytes at the start of val that are the engine's
 * (an expiry), not the user's value, which limits and accounting judge. */
static int add_op(nokv_batch *b, nk_kind kind, const void *key, size_t klen, const void *val,
                  size_t vlen, uint64_t ts, size_t meta) {
  if (klen > UINT32_MAX || vlen > UINT32_MAX) {
    return nk_err(NOKV_EINVAL, "key or value longer than 4 GiB");
  }
  NK_RET(reserve(b, nk_batch_op_max_len(klen, vlen)));
  nk_batch_op op = {.kind = kind, .ts = ts, .key = key, .klen = klen, .val = val, .vlen = vlen};
  b->len = (size_t)(nk_batch_encode_op(b->rep + b->len, &op) - b->rep);
  b->count++;
  b->deletes += kind == NK_KIND_DELETE;
  nk_put_u32(b->rep + 8, b->count);
  b->mem_cost += nk_memtable_cost(klen, vlen);
  b->user_bytes += klen + vlen - meta;
  if (klen > b->max_klen) b->max_klen = klen;
  if (klen < b->min_klen) b->min_klen = klen;
  if (vlen - meta > b->max_vlen) b->max_vlen = vlen - meta;
  return NOKV_OK;
}

static int add(nokv_batch *b, nk_kind kind, const void *key, size_t klen, const void *val,
               size_t vlen, uint64_t ts) {
  return add_op(b, kind, key, klen, val, vlen, ts, 0);
}

int nk_batch_put_ref(nokv_batch *b, const void *key, size_t klen, const void *val, size_t vlen) {
  char ref[sizeof(void *) + sizeof(size_t)];
  memcpy(ref, &val, sizeof val);
  memcpy(ref + sizeof val, &vlen, sizeof vlen);
  size_t cost = b->mem_cost, bytes = b->user_bytes;
  NK_RET(add(b, NK_KIND_VALUE_REF, key, klen, ref, sizeof ref, 0));
  /* Account for the value itself, not the reference. */
  b->mem_cost = cost + nk_memtable_cost(klen, vlen);
  b->user_bytes = bytes + klen + vlen;
  if (vlen > b->max_vlen) b->max_vlen = vlen;
  return NOKV_OK;
}

void nk_batch_op_deref(nk_batch_op *op) {
  const char *val;
  size_t vlen;
  memcpy(&val, op->val, sizeof val);
  memcpy(&vlen, op->val + sizeof val, sizeof vlen);
  op->kind = NK_KIND_VALUE;
  op->val = val;
  op->vlen = vlen;
}

int nk_batch_put_at(nokv_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
                    uint64_t ts) {
  return add(b, NK_KIND_VALUE, key, klen, val, vlen, ts);
}

int nokv_batch_put(nokv_batch *b, const void *key, size_t klen, const void *val, size_t vlen) {
  nk_err_clear();
  return add(b, NK_KIND_VALUE, key, klen, val, vlen, 0);
}

int nk_batch_put_kind(nokv_batch *b, nk_kind kind, const void *key, size_t klen,
                      const void *val, size_t vlen, uint64_t ts) {
  return add_op(b, kind, key, klen, val, vlen, ts, nk_kind_expires(kind) ? NK_TTL_PREFIX : 0);
}

int nk_ttl_expiry(uint64_t ttl_ms, uint64_t *expires_ms) {
  uint64_t now = nk_wall_ms();
  if (ttl_ms > UINT64_MAX - now) {
    return nk_err(NOKV_EINVAL, "ttl_ms %llu overflows the clock", (unsigned long long)ttl_ms);
  }
  *expires_ms = now + ttl_ms;
  return NOKV_OK;
}

char *nk_expiring_value(uint64_t expires_ms, const void *val, size_t vlen, char *stack,
                        size_t stack_len) {
  char *buf = vlen + NK_TTL_PREFIX <= stack_len ? stack : malloc(vlen + NK_TTL_PREFIX);
  if (buf == NULL) return NULL;
  nk_put_u64(buf, expires_ms);
  if (vlen > 0) memcpy(buf + NK_TTL_PREFIX, val, vlen);
  return buf;
}

int nk_batch_put_expiring(nokv_batch *b, const void *key, size_t klen, const void *val,
                          size_t vlen, uint64_t expires_ms, uint64_t ts) {
  if (vlen > UINT32_MAX - NK_TTL_PREFIX) return nk_err(NOKV_EINVAL, "value longer than 4 GiB");
  char stack[256];
  char *buf = nk_expiring_value(expires_ms, val, vlen, stack, sizeof stack);
  if (buf == NULL) return nk_err(NOKV_ENOMEM, "out of memory adding to a batch");
  int rc = add_op(b, NK_KIND_VALUE_TTL, key, klen, buf, vlen + NK_TTL_PREFIX, ts, NK_TTL_PREFIX);
  nk_expiring_value_free(buf, stack);
  return rc;
}

int nokv_batch_put_ttl(nokv_batch *b, const void *key, size_t klen, const void *val, size_t vlen,
                       uint64_t ttl_ms) {
  nk_err_clear();
  if (ttl_ms == 0) return add(b, NK_KIND_VALUE, key, klen, val, vlen, 0);
  uint64_t expires_ms;
  NK_RET(nk_ttl_expiry(ttl_ms, &expires_ms));
  return nk_batch_put_expiring(b, key, klen, val, vlen, expires_ms, 0);
}

int nokv_batch_delete(nokv_batch *b, const void *key, size_t klen) {
  nk_err_clear();
  return add(b, NK_KIND_DELETE, key, klen, NULL, 0, 0);
}

int nokv_batch_delete_range(nokv_batch *b, const void *start, size_t start_len, const void *end,
                            size_t end_len) {
  nk_err_clear();
  if (nk_user_key_cmp(start, start_len, end, end_len) >= 0) {
    return nk_err(NOKV_EINVAL, "empty range: its start must sort before its end");
  }
  /* The end is a key, not a value: limits judge it as one. An empty start
   * (from the first key) is no empty key. */
  size_t min_klen = b->min_klen;
  NK_RET(add_op(b, NK_KIND_RANGE_DEL, start, start_len, end, end_len, 0, end_len));
  if (start_len == 0) b->min_klen = min_klen < end_len ? min_klen : end_len;
  b->range_deletes++;
  b->user_bytes += end_len;
  if (end_len > b->max_klen) b->max_klen = end_len;
  return NOKV_OK;
}

const void *nokv_batch_data(const nokv_batch *b, size_t *len) {
  *len = b->len;
  return b->rep;
}

int nokv_batch_from_data(const void *data, size_t len, nokv_batch **out) {
  nk_err_clear();
  nk_batch_reader r;
  nk_batch_op op;
  uint64_t ts;
  uint32_t count;
  NK_RET(nk_batch_reader_init(&r, data, len, &ts, &count));
  nokv_batch *b;
  NK_RET(nokv_batch_new(&b));
  int rc;
  while ((rc = nk_batch_reader_next(&r, &op)) == 1) {
    /* Only what a caller's batch holds: no value-log pointers, no memory
     * references, no per-op timestamps. */
    if (op.ts != 0 || op.kind == NK_KIND_VPTR || op.kind == NK_KIND_VPTR_TTL ||
        op.kind == NK_KIND_VALUE_REF ||
        (op.kind == NK_KIND_VALUE_TTL && op.vlen < NK_TTL_PREFIX)) {
      rc = nk_err(NOKV_ECORRUPT, "batch data holds an operation of the engine's own (kind %d)",
                  (int)op.kind);
      break;
    }
    if (op.kind == NK_KIND_RANGE_DEL) {
      rc = nokv_batch_delete_range(b, op.key, op.klen, op.val, op.vlen);
    } else if (op.kind == NK_KIND_VALUE_TTL) {
      rc = add_op(b, op.kind, op.key, op.klen, op.val, op.vlen, 0, NK_TTL_PREFIX);
    } else {
      rc = add(b, op.kind, op.key, op.klen, op.val, op.vlen, 0);
    }
    if (rc != NOKV_OK) break;
  }
  if (rc < 0) {
    nokv_batch_free(b);
    if (rc == NOKV_ECORRUPT) return rc;
    return nk_err(NOKV_ECORRUPT, "malformed batch data: %s", nokv_errmsg());
  }
  *out = b;
  return NOKV_OK;
}

int nk_batch_reader_init(nk_batch_reader *r, const char *rep, size_t len, uint64_t *ts,
                         uint32_t *count) {
  if (len < NK_BATCH_HEADER) {
    return nk_err(NOKV_ECORRUPT, "batch of %zu bytes is shorter than its header", len);
  }
  *ts = nk_get_u64(rep);
  *count = nk_get_u32(rep + 8);
  r->p = rep + NK_BATCH_HEADER;
  r->limit = rep + len;
  r->remaining = *count;
  return NOKV_OK;
}

int nk_batch_reader_next(nk_batch_reader *r, nk_batch_op *op) {
  if (r->remaining == 0) {
    if (r->p != r->limit) {
      return nk_err(NOKV_ECORRUPT, "batch has %zu trailing bytes", (size_t)(r->limit - r->p));
    }
    return 0;
  }
  if (r->p >= r->limit) {
    return nk_err(NOKV_ECORRUPT, "batch ends %u operations early", r->remaining);
  }
  uint8_t kind = (uint8_t)*r->p++;
  op->ts = 0;
  if (kind & NK_BATCH_OP_TS) {
    kind &= (uint8_t)~NK_BATCH_OP_TS;
    if (r->limit - r->p < 8) return nk_err(NOKV_ECORRUPT, "batch operation timestamp overruns");
    op->ts = nk_get_u64(r->p);
    r->p += 8;
    if (op->ts == 0) return nk_err(NOKV_ECORRUPT, "batch operation with timestamp 0");
  }
  if (kind != NK_KIND_VALUE && kind != NK_KIND_DELETE && kind != NK_KIND_VPTR &&
      kind != NK_KIND_VALUE_REF && kind != NK_KIND_VALUE_TTL && kind != NK_KIND_VPTR_TTL &&
      kind != NK_KIND_RANGE_DEL) {
    return nk_err(NOKV_ECORRUPT, "batch operation of unknown kind %u", kind);
  }
  uint32_t n;
  const char *p = nk_get_varint32(r->p, r->limit, &n);
  if (p == NULL || (size_t)(r->limit - p) < n) {
    return nk_err(NOKV_ECORRUPT, "batch key overruns the batch");
  }
  op->kind = (nk_kind)kind;
  op->key = p;
  op->klen = n;
  p += n;
  op->val = NULL;
  op->vlen = 0;
  if (op_has_value(op->kind)) {
    p = nk_get_varint32(p, r->limit, &n);
    if (p == NULL || (size_t)(r->limit - p) < n) {
      return nk_err(NOKV_ECORRUPT, "batch value overruns the batch");
    }
    op->val = p;
    op->vlen = n;
    p += n;
  }
  r->p = p;
  r->remaining--;
  return 1;
}
