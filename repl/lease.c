/* lease.c — the leader's read lease (lease.h). */
#include "repl/lease.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "repl/bytes.h"
#include "repl/identity.h"
#include "repl/transport.h"

#define MAGIC "NKLS"
#define VERSION 2
/* Rounds whose send time is kept: a promise answering an older round is
 * ignored (its lease would be short anyway). */
#define ROUNDS 16
/* How long a peer's resolved host name is trusted (a pod may move). */
#define RESOLVE_US (5 * 1000 * 1000)
#define MAX_PEERS 16

typedef struct peer {
  raft_id id;
  char address[256];
  struct sockaddr_in sa;
  bool resolved, resolving;
  uint64_t resolved_us; /* when sa was looked up */
  int64_t promise_ns;   /* on the leader's clock; this term's */
} peer;

struct nokv_lease {
  struct raft_io io; /* first: what libraft holds (lease.h) */
  struct raft_io *inner;
  raft_io_recv_cb recv; /* libraft's */
  bool serve, hold_votes;
  _Atomic int64_t until_ns; /* CLOCK_BOOTTIME; 0: no lease */
  _Atomic uint64_t votes_held;
  _Atomic uint64_t promises; /* taken, as the leader */

  /* Loop thread only. */
  uint64_t hold_votes_until_us; /* CLOCK_MONOTONIC, from nokv_lease_io's start */
  uv_loop_t *loop;
  struct raft *r;
  uv_udp_t udp;
  bool listening, closing;
  raft_term term;         /* the term led, whose promises are held */
  raft_index term_start;  /* an entry of that term: applied, the lease serves */
  bool tainted;           /* a transfer or change was asked in that term */
  uint64_t seq;           /* the last round sent */
  uint64_t incarnation;   /* this state's (identity.h) */
  nokv_seen *seen;        /* members seen; NULL: not kept */
  raft_index seen_conf;   /* the configuration the record was last pruned to */
  bool saving, save_again; /* the record's file being written off the loop */
  int64_t sent_ns[ROUNDS];
  peer peers[MAX_PEERS];
  size_t n_peers;
};

/* ---- clocks ---- */

static int64_t boot_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* libraft's timers run on uv_now(), CLOCK_MONOTONIC (possibly its coarse
 * variant, never ahead of this) in milliseconds; uv_hrtime() is the same
 * clock, precise. */
static uint64_t mono_us(void) { return uv_hrtime() / 1000; }

/* ---- messages ---- */

void nokv_lease_encode(const nokv_lease_msg *m, uint8_t out[NOKV_LEASE_MSG_SIZE]) {
  memset(out, 0, NOKV_LEASE_MSG_SIZE);
  memcpy(out, MAGIC, 4);
  out[4] = VERSION;
  out[5] = m->kind;
  nokv_put64(out + 8, m->from);
  nokv_put64(out + 16, m->term);
  nokv_put64(out + 24, m->seq);
  nokv_put64(out + 32, m->leader);
  nokv_put64(out + 40, (uint64_t)m->remaining_us);
  nokv_put64(out + 48, m->incarnation);
  nokv_put64(out + 56, m->subject);
  nokv_put64(out + 64, m->known);
}

bool nokv_lease_decode(const uint8_t *buf, size_t len, nokv_lease_msg *m) {
  if (len != NOKV_LEASE_MSG_SIZE || memcmp(buf, MAGIC, 4) != 0 || buf[4] != VERSION ||
      buf[5] < NOKV_LEASE_PROBE || buf[5] > NOKV_LEASE_SEEN || buf[6] != 0 || buf[7] != 0) {
    return false;
  }
  m->kind = buf[5];
  m->from = nokv_get64(buf + 8);
  m->term = nokv_get64(buf + 16);
  m->seq = nokv_get64(buf + 24);
  m->leader = nokv_get64(buf + 32);
  m->remaining_us = (int64_t)nokv_get64(buf + 40);
  m->incarnation = nokv_get64(buf + 48);
  m->subject = nokv_get64(buf + 56);
  m->known = nokv_get64(buf + 64);
  return m->from != 0;
}

/* ---- the lease ---- */

static int by_latest(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

int64_t nokv_lease_quorum_until(const int64_t *promises, size_t n, size_t needed) {
  if (needed == 0) return INT64_MAX;
  if (n < needed || n > MAX_PEERS) return 0;
  int64_t sorted[MAX_PEERS];
  memcpy(sorted, promises, n * sizeof *promises);
  qsort(sorted, n, sizeof *sorted, by_latest);
  return sorted[needed - 1];
}

static void drop(nokv_lease *l) { atomic_store(&l->until_ns, 0); }

void nokv_lease_drop(nokv_lease *l) {
  drop(l);
  l->tainted = true;
}

bool nokv_lease_holds(nokv_lease *l) {
  int64_t until = atomic_load(&l->until_ns);
  return until != 0 && boot_ns() < until;
}

int64_t nokv_lease_remaining_ms(nokv_lease *l) {
  int64_t until = atomic_load(&l->until_ns), now = boot_ns();
  if (until == 0 || until <= now) return 0;
  return until == INT64_MAX ? INT64_MAX : (until - now + 999999) / 1000000; /* 0: over */
}

uint64_t nokv_lease_votes_held(nokv_lease *l) { return atomic_load(&l->votes_held); }

uint64_t nokv_lease_promises(nokv_lease *l) { return atomic_load(&l->promises); }

static peer *find_peer(nokv_lease *l, raft_id id) {
  for (size_t i = 0; i < l->n_peers; i++) {
    if (l->peers[i].id == id) return &l->peers[i];
  }
  return NULL;
}

/* The lease from the promises held: until enough of the configuration's other
 * voters are bound that, with this node, they are a majority. */
static void renew(nokv_lease *l) {
  struct raft *r = l->r;
  bool ready = l->serve && !l->closing && !l->tainted && raft_state(r) == RAFT_LEADER &&
               r->current_term == l->term && r->transfer == NULL &&
               r->configuration_uncommitted_index == 0 && raft_last_applied(r) >= l->term_start;
  if (!ready) {
    drop(l);
    return;
  }
  size_t voters = 0, others = 0;
  bool self_votes = false;
  int64_t promises[MAX_PEERS];
  for (unsigned i = 0; i < r->configuration.n; i++) {
    const struct raft_server *s = &r->configuration.servers[i];
    if (s->role != RAFT_VOTER) continue;
    voters++;
    if (s->id == r->id) {
      self_votes = true;
      continue;
    }
    const peer *p = find_peer(l, s->id);
    if (others < MAX_PEERS) promises[others++] = p != NULL ? p->promise_ns : 0;
  }
  if (!self_votes) {
    drop(l);
    return;
  }
  /* A majority is voters / 2 + 1, this node one of them. */
  atomic_store(&l->until_ns, nokv_lease_quorum_until(promises, others, voters / 2));
}

/* ---- UDP ---- */

static void send_msg(nokv_lease *l, const struct sockaddr *to, const nokv_lease_msg *msg) {
  nokv_lease_msg m = *msg;
  m.incarnation = l->incarnation;
  uint8_t buf[NOKV_LEASE_MSG_SIZE];
  nokv_lease_encode(&m, buf);
  uv_buf_t b = uv_buf_init((char *)buf, sizeof buf);
  (void)uv_udp_try_send(&l->udp, &b, 1, to); /* lost or refused: no promise this round */
}

bool nokv_lease_answer(const struct raft *r, const nokv_lease_msg *probe, uint64_t now_us,
                       nokv_lease_msg *promise) {
  if (probe->kind != NOKV_LEASE_PROBE || r->state != RAFT_FOLLOWER ||
      r->current_term != probe->term || r->follower_state.current_leader.id != probe->from) {
    return false;
  }
  int64_t deadline_us = ((int64_t)r->election_timer_start + (int64_t)r->election_timeout) * 1000;
  int64_t left = deadline_us - (int64_t)now_us;
  if (left <= 0) return false;
  *promise = (nokv_lease_msg){.kind = NOKV_LEASE_PROMISE,
                              .from = r->id,
                              .term = probe->term,
                              .seq = probe->seq,
                              .leader = probe->from,
                              .remaining_us = left};
  return true;
}

int64_t nokv_lease_deadline(int64_t sent_ns, int64_t remaining_us) {
  int64_t left_ns = remaining_us * 1000;
  left_ns -= left_ns / 1000000 * 2 * NOKV_LEASE_DRIFT_PPM; /* their clock fast, ours slow */
  return sent_ns + left_ns;
}

/* The leader takes a promise (lease.h). */
static void take_promise(nokv_lease *l, const nokv_lease_msg *m) {
  struct raft *r = l->r;
  if (raft_state(r) != RAFT_LEADER || m->term != r->current_term || m->term != l->term ||
      m->leader != r->id || m->seq == 0 || m->seq > l->seq || l->seq - m->seq >= ROUNDS ||
      m->remaining_us <= 0) {
    return;
  }
  peer *p = find_peer(l, m->from);
  if (p == NULL) return;
  int64_t promise = nokv_lease_deadline(l->sent_ns[m->seq % ROUNDS], m->remaining_us);
  if (promise > p->promise_ns) p->promise_ns = promise;
  atomic_fetch_add(&l->promises, 1);
  renew(l);
}

/* ---- identity (identity.h) ---- */

static bool is_member(const struct raft *r, raft_id id) {
  for (unsigned i = 0; i < r->configuration.n; i++) {
    if (r->configuration.servers[i].id == id) return true;
  }
  return false;
}

/* The record is saved on libuv's thread pool, not the loop (an fsync there
 * would hold back heartbeats): one save at a time, of a copy, and one more if
 * it changed meanwhile. A crash before a save completes forgets what it held:
 * the check then misses that member (identity.h), as if never seen. */
typedef struct seen_save {
  uv_work_t req;
  nokv_lease *l;
  int err;
  nokv_seen copy;
} seen_save;

static void schedule_save(nokv_lease *l);

static void save_work(uv_work_t *req) {
  seen_save *s = req->data;
  s->err = nokv_seen_save(&s->copy);
}

static void save_done(uv_work_t *req, int status) {
  (void)status;
  seen_save *s = req->data;
  nokv_lease *l = s->l;
  if (s->err != 0) {
    fprintf(stderr, "nokv: cannot save %s: %s\n", s->copy.path, strerror(s->err));
  }
  free(s);
  l->saving = false;
  if (l->save_again) {
    l->save_again = false;
    schedule_save(l);
  }
}

static void schedule_save(nokv_lease *l) {
  if (l->saving) {
    l->save_again = true;
    return;
  }
  seen_save *s = malloc(sizeof *s);
  if (s == NULL) {
    fprintf(stderr, "nokv: no memory to save %s\n", l->seen->path);
    return;
  }
  s->l = l;
  s->err = 0;
  s->copy = *l->seen;
  s->req.data = s;
  if (uv_queue_work(l->loop, &s->req, save_work, save_done) != 0) {
    free(s);
    return;
  }
  l->saving = true;
}

/* Records the incarnation a member's message carries. */
static void record_seen(nokv_lease *l, const nokv_lease_msg *m) {
  if (l->seen == NULL || m->incarnation == 0 || !is_member(l->r, m->from)) return;
  uint64_t before = 0;
  int changed = nokv_seen_set(l->seen, m->from, m->incarnation, &before);
  if (changed < 0) {
    fprintf(stderr, "nokv: %s is full: node %llu not recorded\n", l->seen->path,
            (unsigned long long)m->from);
    return;
  }
  if (changed == 0) return;
  schedule_save(l);
  if (before != 0) {
    /* Its state was made anew while it stayed a member: it may have
     * forgotten votes and entries (identity.h). */
    fprintf(stderr, "nokv: node %llu answers with new Raft state (incarnation %016llx, was "
            "%016llx): if it lost its data, remove it and add it back (docs/replication.md)\n",
            (unsigned long long)m->from, (unsigned long long)m->incarnation,
            (unsigned long long)before);
  }
}

static void answer_ask(nokv_lease *l, const struct sockaddr *from, const nokv_lease_msg *m) {
  if (m->subject == 0 || m->subject == l->r->id) return;
  nokv_lease_msg seen = {.kind = NOKV_LEASE_SEEN,
                         .from = l->r->id,
                         .seq = m->seq,
                         .subject = m->subject,
                         .known = l->seen != NULL ? nokv_seen_get(l->seen, m->subject) : 0};
  send_msg(l, from, &seen);
}

/* Forgets members no longer in the committed configuration: one removed and
 * added back later starts afresh, and is not taken for one that lost its state. */
static void prune_seen(nokv_lease *l) {
  struct raft *r = l->r;
  if (l->seen == NULL || r->configuration_index == 0 || r->configuration_index == l->seen_conf ||
      r->configuration_uncommitted_index != 0 || r->configuration.n == 0) {
    return;
  }
  uint64_t ids[NOKV_SEEN_MAX];
  size_t n = 0;
  for (unsigned i = 0; i < r->configuration.n && n < NOKV_SEEN_MAX; i++) {
    ids[n++] = r->configuration.servers[i].id;
  }
  if (nokv_seen_keep(l->seen, ids, n)) schedule_save(l);
  l->seen_conf = r->configuration_index;
}

void nokv_lease_set_identity(nokv_lease *l, uint64_t incarnation, nokv_seen *seen) {
  l->incarnation = incarnation;
  l->seen = seen;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  static _Thread_local char slab[NOKV_LEASE_MSG_SIZE + 1];
  (void)h;
  *buf = uv_buf_init(slab, sizeof slab);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags) {
  nokv_lease *l = h->data;
  nokv_lease_msg m;
  if (nread <= 0 || from == NULL || (flags & UV_UDP_PARTIAL) || l->closing ||
      !nokv_lease_decode((const uint8_t *)buf->base, (size_t)nread, &m)) {
    return;
  }
  if (m.kind == NOKV_LEASE_ASK) {
    answer_ask(l, from, &m);
    return;
  }
  if (m.kind == NOKV_LEASE_SEEN) return; /* only a node starting asks */
  record_seen(l, &m);
  if (m.kind == NOKV_LEASE_PROBE) {
    nokv_lease_msg promise;
    if (nokv_lease_answer(l->r, &m, mono_us(), &promise)) send_msg(l, from, &promise);
  } else {
    take_promise(l, &m);
  }
}

typedef struct lookup {
  uv_getaddrinfo_t gai;
  nokv_lease *l;
  raft_id id;
  char address[256];
} lookup;

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res) {
  lookup *q = gai->data;
  nokv_lease *l = q->l;
  peer *p = l->closing ? NULL : find_peer(l, q->id);
  if (p != NULL && strcmp(p->address, q->address) == 0) {
    p->resolving = false;
    p->resolved_us = mono_us();
    if (status == 0 && res != NULL && res->ai_family == AF_INET) {
      memcpy(&p->sa, res->ai_addr, sizeof p->sa);
      p->resolved = true;
    }
  }
  if (res != NULL) uv_freeaddrinfo(res);
  free(q);
}

/* Finds p's socket address: at once for an IPv4 literal, else through the
 * resolver, afresh every RESOLVE_US. */
static void resolve(nokv_lease *l, peer *p) {
  if (p->resolving || (p->resolved && mono_us() - p->resolved_us < RESOLVE_US)) return;
  char host[256], port[8];
  if (!nokv_split_address(p->address, host, sizeof host, port, sizeof port)) return;
  if (uv_ip4_addr(host, atoi(port), &p->sa) == 0) {
    p->resolved = true;
    p->resolved_us = UINT64_MAX / 2; /* a literal: never again */
    return;
  }
  lookup *q = calloc(1, sizeof *q);
  if (q == NULL) return;
  q->l = l;
  q->id = p->id;
  snprintf(q->address, sizeof q->address, "%s", p->address);
  q->gai.data = q;
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM};
  if (uv_getaddrinfo(l->loop, &q->gai, on_resolved, host, port, &hints) != 0) {
    free(q);
    return;
  }
  p->resolving = true;
}

/* Keeps one peer per other voter of the configuration. */
static void follow_configuration(nokv_lease *l) {
  struct raft *r = l->r;
  peer kept[MAX_PEERS];
  size_t n = 0;
  for (unsigned i = 0; i < r->configuration.n && n < MAX_PEERS; i++) {
    const struct raft_server *s = &r->configuration.servers[i];
    if (s->role != RAFT_VOTER || s->id == r->id) continue;
    const peer *old = find_peer(l, s->id);
    if (old != NULL && strcmp(old->address, s->address) == 0) {
      kept[n++] = *old;
    } else {
      memset(&kept[n], 0, sizeof kept[n]);
      kept[n].id = s->id;
      snprintf(kept[n].address, sizeof kept[n].address, "%s", s->address);
      n++;
    }
  }
  memcpy(l->peers, kept, n * sizeof *kept);
  l->n_peers = n;
}

void nokv_lease_tick(nokv_lease *l) {
  struct raft *r = l->r;
  if (r == NULL || !l->listening || l->closing) return;
  prune_seen(l);
  /* A leader probes even when it serves no lease: the promises tell it its
   * followers' incarnations (identity.h). renew() takes no lease then. */
  if (raft_state(r) != RAFT_LEADER) {
    drop(l);
    l->term = 0;
    return;
  }
  if (r->current_term != l->term) {
    drop(l);
    l->term = r->current_term;
    l->term_start = raft_last_index(r) + 1; /* the next entry is this term's */
    l->tainted = false;
    for (size_t i = 0; i < l->n_peers; i++) l->peers[i].promise_ns = 0;
  }
  if (r->transfer != NULL) l->tainted = true;
  follow_configuration(l);
  renew(l);
  /* Probes go out in a tainted term too (renew() takes no lease then): the
   * promises carry the followers' incarnations, a member just added among them. */
  nokv_lease_msg probe = {
      .kind = NOKV_LEASE_PROBE, .from = r->id, .term = l->term, .seq = ++l->seq};
  l->sent_ns[probe.seq % ROUNDS] = boot_ns();  /* before any probe leaves */
  for (size_t i = 0; i < l->n_peers; i++) {
    peer *p = &l->peers[i];
    resolve(l, p);
    if (p->resolved) send_msg(l, (const struct sockaddr *)&p->sa, &probe);
  }
}

int nokv_lease_listen(nokv_lease *l, uv_loop_t *loop, struct raft *r, const char *address) {
  char host[64], port[8];
  if (!nokv_split_address(address, host, sizeof host, port, sizeof port)) return UV_EINVAL;
  struct sockaddr_in sa;
  int rv = uv_ip4_addr(host, atoi(port), &sa);
  if (rv != 0) return rv;
  l->loop = loop;
  l->r = r;
  rv = uv_udp_init(loop, &l->udp);
  if (rv != 0) return rv;
  l->udp.data = l;
  l->listening = true; /* the handle is open: close it */
  rv = uv_udp_bind(&l->udp, (const struct sockaddr *)&sa, 0);
  if (rv == 0) rv = uv_udp_recv_start(&l->udp, on_alloc, on_recv);
  return rv;
}

int nokv_lease_port(nokv_lease *l) {
  struct sockaddr_in sa;
  int len = sizeof sa;
  if (!l->listening || uv_udp_getsockname(&l->udp, (struct sockaddr *)&sa, &len) != 0) return 0;
  return ntohs(sa.sin_port);
}

static void on_udp_closed(uv_handle_t *h) { (void)h; }

void nokv_lease_close(nokv_lease *l) {
  drop(l);
  l->closing = true;
  if (l->listening) {
    uv_udp_recv_stop(&l->udp);
    uv_close((uv_handle_t *)&l->udp, on_udp_closed);
    l->listening = false;
  }
}

void nokv_lease_free(nokv_lease *l) { free(l); }

/* ---- libraft's I/O, wrapped ---- */

static nokv_lease *of(struct raft_io *io) { return (nokv_lease *)io; }

/* libraft reads errmsg off the I/O it was given after a failure. */
static int carry(nokv_lease *l, int rv) {
  if (rv != 0) memcpy(l->io.errmsg, l->inner->errmsg, sizeof l->io.errmsg);
  return rv;
}

static int w_init(struct raft_io *io, raft_id id, const char *address) {
  nokv_lease *l = of(io);
  l->inner->data = io->data; /* libraft's callbacks find the raft through it */
  return carry(l, l->inner->init(l->inner, id, address));
}

static void w_close(struct raft_io *io, raft_io_close_cb cb) {
  nokv_lease *l = of(io);
  l->inner->data = io->data;
  l->inner->close(l->inner, cb);
}

static int w_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                  struct raft_snapshot **snapshot, raft_index *start_index,
                  struct raft_entry *entries[], size_t *n_entries) {
  nokv_lease *l = of(io);
  return carry(l, l->inner->load(l->inner, term, voted_for, snapshot, start_index, entries,
                                 n_entries));
}

/* A vote request while starting is dropped (lease.h): the candidate hears
 * nothing, as from a node still down. */
static void w_recv(struct raft_io *inner, struct raft_message *m) {
  struct raft *r = inner->data;
  nokv_lease *l = of(r->io);
  if (m->type == RAFT_IO_REQUEST_VOTE && !m->request_vote.pre_vote &&
      mono_us() < l->hold_votes_until_us) {
    atomic_fetch_add(&l->votes_held, 1);
    return;
  }
  l->recv(r->io, m);
}

static int w_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv) {
  nokv_lease *l = of(io);
  struct raft *r = io->data;
  l->inner->data = r;
  l->recv = recv;
  if (l->hold_votes) l->hold_votes_until_us = mono_us() + (uint64_t)r->election_timeout * 1000;
  return carry(l, l->inner->start(l->inner, msecs, tick, w_recv));
}

/* A state created now has promised nothing: no votes to hold back. */
static int w_bootstrap(struct raft_io *io, const struct raft_configuration *conf) {
  nokv_lease *l = of(io);
  int rv = l->inner->bootstrap(l->inner, conf);
  if (rv == 0) l->hold_votes = false;
  return carry(l, rv);
}

static int w_recover(struct raft_io *io, const struct raft_configuration *conf) {
  nokv_lease *l = of(io);
  return carry(l, l->inner->recover(l->inner, conf));
}

/* Recording a term or a vote means this node no longer leads its term as it
 * did: the lease goes first. */
static int w_set_term(struct raft_io *io, raft_term term) {
  nokv_lease *l = of(io);
  drop(l);
  return carry(l, l->inner->set_term(l->inner, term));
}

static int w_set_vote(struct raft_io *io, raft_id server_id) {
  nokv_lease *l = of(io);
  drop(l);
  return carry(l, l->inner->set_vote(l->inner, server_id));
}

static int w_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *message,
                  raft_io_send_cb cb) {
  nokv_lease *l = of(io);
  return carry(l, l->inner->send(l->inner, req, message, cb));
}

static int w_append(struct raft_io *io, struct raft_io_append *req,
                    const struct raft_entry entries[], unsigned n, raft_io_append_cb cb) {
  nokv_lease *l = of(io);
  return carry(l, l->inner->append(l->inner, req, entries, n, cb));
}

static int w_truncate(struct raft_io *io, raft_index index) {
  nokv_lease *l = of(io);
  return carry(l, l->inner->truncate(l->inner, index));
}

static int w_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                          const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb) {
  nokv_lease *l = of(io);
  return carry(l, l->inner->snapshot_put(l->inner, trailing, req, snapshot, cb));
}

static int w_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                          raft_io_snapshot_get_cb cb) {
  nokv_lease *l = of(io);
  return carry(l, l->inner->snapshot_get(l->inner, req, cb));
}

static raft_time w_time(struct raft_io *io) {
  nokv_lease *l = of(io);
  return l->inner->time(l->inner);
}

static int w_random(struct raft_io *io, int min, int max) {
  nokv_lease *l = of(io);
  return l->inner->random(l->inner, min, max);
}

static int w_async_work(struct raft_io *io, struct raft_io_async_work *req,
                        raft_io_async_work_cb cb) {
  nokv_lease *l = of(io);
  return carry(l, l->inner->async_work(l->inner, req, cb));
}

nokv_lease *nokv_lease_new(struct raft_io *inner, bool serve) {
  nokv_lease *l = calloc(1, sizeof *l);
  if (l == NULL) return NULL;
  l->inner = inner;
  l->serve = serve;
  l->hold_votes = true;
  atomic_init(&l->until_ns, 0);
  atomic_init(&l->votes_held, 0);
  atomic_init(&l->promises, 0);
  struct raft_io *io = &l->io;
  io->version = inner->version;
  io->impl = inner->impl;
  io->init = w_init;
  io->close = w_close;
  io->load = w_load;
  io->start = w_start;
  io->bootstrap = w_bootstrap;
  io->recover = w_recover;
  io->set_term = w_set_term;
  io->set_vote = w_set_vote;
  io->send = w_send;
  io->append = w_append;
  io->truncate = w_truncate;
  io->snapshot_put = w_snapshot_put;
  io->snapshot_get = w_snapshot_get;
  io->time = w_time;
  io->random = w_random;
  io->async_work = inner->version >= 2 && inner->async_work != NULL ? w_async_work : NULL;
  return l;
}

struct raft_io *nokv_lease_io(nokv_lease *l) { return &l->io; }
