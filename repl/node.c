/* node.c — a replica's event loop, and the calls other threads make into it
 * (node.h). libraft is single-threaded: every call into it happens on the
 * loop's thread. Other threads queue an op and wake the loop. */
#include "repl/node.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <raft/uv.h>

#include "repl/identity.h"
#include "repl/lease.h"
#include "repl/transport.h"

typedef struct nokv_repl_node nokv_repl_node;
typedef enum { OP_PROPOSE, OP_READ, OP_STATUS, OP_CHANGE, OP_STOP } op_kind;

typedef struct op {
  struct op *next;
  op_kind kind;
  nokv_repl_cb cb; /* PROPOSE, READ; NULL: an entry of the node's own */
  void *arg;
  struct raft_buffer entry;  /* PROPOSE */
  struct raft_apply req;     /* PROPOSE, in flight */
  nokv_repl_node *node;      /* PROPOSE, in flight */
  nokv_repl_status *status;  /* STATUS: filled, then done set under mu */
  bool done;
  void *arg2;                         /* CHANGE: the node */
  nokv_repl_change_kind change;       /* CHANGE */
  uint64_t id;
  char address[NOKV_REPL_ADDR_MAX];
  struct raft_change change_req;
  struct raft_transfer transfer_req;
} op;

struct nokv_repl_node {
  uv_loop_t loop;
  nokv_dns_transport *transport;
  struct raft_io io;
  nokv_lease *lease; /* wraps io: what libraft uses */
  nokv_seen seen;    /* the members this node has seen (identity.h) */
  struct raft raft;
  nokv_repl_fsm fsm;
  uv_async_t wake;
  uv_timer_t tick;
  pthread_t thread;
  char client_address[NOKV_REPL_ADDR_MAX];
  unsigned tick_ms;

  /* Loop thread only. */
  uint64_t announced_term; /* the term this node last announced itself in */
  op *reads_waiting;       /* reads no barrier answers yet */
  unsigned barriers;       /* in flight */
  bool closing;
  bool draining;            /* stop asked: closing once nothing is in flight */
  uint64_t drain_deadline;  /* uv_now() past which it closes regardless */
  size_t applies;           /* proposals libraft holds */
  op *held, *held_tail;     /* proposals waiting for room in the pipeline */
  size_t in_flight_max;     /* entries proposed and not yet applied, at most */
  size_t changes;           /* membership changes libraft holds */
  bool handles; /* wake and tick are initialized */
  op stop;      /* queued by nokv_repl_node_stop */

  /* The syncer: keeps the engine's log synced in the background (every
   * SYNC_MS), so that the sync a snapshot needs, on the loop's thread, finds
   * little left to write. */
  pthread_t syncer;
  bool syncer_started;
  bool syncer_stop; /* under mu */

  /* Under mu. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  op *head, *tail; /* queued for the loop */
  bool stopping;   /* no more ops are queued */
  int state;       /* cache, refreshed every tick */
  uint64_t leader_id;

  _Atomic uint64_t lease_reads, barrier_reads;
};

static void set_err(char *buf, size_t n, const char *fmt, ...) {
  if (buf == NULL || n == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, n, fmt, ap);
  va_end(ap);
}

static void answer_msg(op *o, int rc, uint64_t ts, size_t failed, const char *msg) {
  if (o->cb != NULL) {
    nokv_repl_outcome out = {.rc = rc, .msg = msg, .commit_ts = ts, .failed = failed};
    o->cb(o->arg, &out);
  }
  free(o);
}

static void answer(op *o, int rc, uint64_t ts, size_t failed) {
  answer_msg(o, rc, ts, failed, NULL);
}

static void answer_all(op *list, int rc) {
  while (list != NULL) {
    op *next = list->next;
    answer(list, rc, 0, 0);
    list = next;
  }
}

/* ---- proposals ---- */

/* A proposed entry is answered: room for one more, which proposals held back
 * take at the loop's next turn (propose_held, from on_wake). */
static void left_pipeline(nokv_repl_node *n) {
  n->applies--;
  if (n->held != NULL) uv_async_send(&n->wake);
}

static void on_applied(struct raft_apply *req, int status, void *result) {
  op *o = req->data;
  nokv_repl_node *n = o->node;
  left_pipeline(n);
  if (status == 0 || result != NULL) {
    answer(o, nokv_repl_result_rc(result), nokv_repl_ts(nokv_repl_result_n(result)),
           nokv_repl_result_failed(result));
  } else {
    /* Not applied here: lost leadership (it may commit under the next leader,
     * or be overwritten), or the node is closing. */
    answer(o, status == RAFT_NOTLEADER ? NOKV_REPL_ENOTLEADER : NOKV_REPL_EUNKNOWN, 0, 0);
  }
}

/* Why a proposal cannot be made now (NOKV_OK: it can). */
static int cannot_propose(nokv_repl_node *n) {
  if (n->closing || n->draining) return NOKV_REPL_ESTOPPED;
  return raft_state(&n->raft) == RAFT_LEADER ? NOKV_OK : NOKV_REPL_ENOTLEADER;
}

static void propose_now(nokv_repl_node *n, op *o) {
  int refused = cannot_propose(n);
  if (refused != NOKV_OK) {
    raft_free(o->entry.base);
    answer(o, refused, 0, 0);
    return;
  }
  o->req.data = o;
  o->node = n;
  int rv = raft_apply(&n->raft, &o->req, &o->entry, 1, on_applied);
  if (rv == 0) n->applies++;
  if (rv != 0) {
    raft_free(o->entry.base);
    answer(o, rv == RAFT_NOTLEADER ? NOKV_REPL_ENOTLEADER : NOKV_EIO, 0, 0);
  }
}

/* Commands proposed together as one MULTI entry (fsm.h). */
typedef struct multi {
  struct raft_apply req;
  nokv_repl_node *node;
  size_t n;
  op *ops[NOKV_REPL_MULTI_MAX];
} multi;

static void on_multi_applied(struct raft_apply *req, int status, void *result) {
  multi *m = req->data;
  nokv_repl_node *n = m->node;
  const nokv_repl_fsm *f = &n->fsm;
  left_pipeline(n);
  bool applied = status == 0 || result != NULL;
  int rc = applied ? nokv_repl_result_rc(result) : 0;
  /* Applied here: each command's outcome is the state machine's, kept until
   * the next entry applies (this callback runs right after this one). */
  bool outcomes = applied && rc == NOKV_OK && f->multi.first == nokv_repl_result_n(result) &&
                  f->multi.count == m->n;
  for (size_t i = 0; i < m->n; i++) {
    if (outcomes) {
      answer(m->ops[i], f->multi.rc[i], nokv_repl_ts(f->multi.first + i), f->multi.failed[i]);
    } else if (applied) {
      answer(m->ops[i], rc == NOKV_OK ? NOKV_REPL_EUNKNOWN : rc, 0, 0);
    } else {
      answer(m->ops[i], status == RAFT_NOTLEADER ? NOKV_REPL_ENOTLEADER : NOKV_REPL_EUNKNOWN, 0,
             0);
    }
  }
  free(m);
}

/* Proposes ops[0..count) (PROPOSE ops, in arrival order) as one entry; a
 * single one as itself. */
static void propose_together(nokv_repl_node *n, op **ops, size_t count) {
  if (count == 1) {
    propose_now(n, ops[0]);
    return;
  }
  int rc = cannot_propose(n);
  multi *m = rc == NOKV_OK ? calloc(1, sizeof *m) : NULL;
  if (rc == NOKV_OK && m == NULL) rc = NOKV_ENOMEM;
  struct raft_buffer entries[NOKV_REPL_MULTI_MAX], entry;
  for (size_t i = 0; i < count; i++) entries[i] = ops[i]->entry;
  if (rc == NOKV_OK) rc = nokv_repl_multi_entry(entries, count, &entry);
  for (size_t i = 0; i < count; i++) raft_free(ops[i]->entry.base);
  if (rc == NOKV_OK) {
    m->node = n;
    m->n = count;
    memcpy(m->ops, ops, count * sizeof *ops);
    m->req.data = m;
    int rv = raft_apply(&n->raft, &m->req, &entry, 1, on_multi_applied);
    if (rv == 0) {
      n->applies++;
      return;
    }
    raft_free(entry.base);
    rc = rv == RAFT_NOTLEADER ? NOKV_REPL_ENOTLEADER : NOKV_EIO;
  }
  free(m);
  for (size_t i = 0; i < count; i++) answer(ops[i], rc, 0, 0);
}

/* Proposals waiting in one wake-up, gathered into entries of at most
 * NOKV_REPL_MULTI_MAX commands and about MULTI_BYTES. */
#define MULTI_BYTES (1u << 20)

typedef struct gathered {
  op *ops[NOKV_REPL_MULTI_MAX];
  size_t n, bytes;
} gathered;

static void gathered_flush(nokv_repl_node *n, gathered *g) {
  if (g->n > 0) propose_together(n, g->ops, g->n);
  g->n = g->bytes = 0;
}

static bool gathered_fits(const gathered *g, const op *o) {
  return g->n < NOKV_REPL_MULTI_MAX && (g->n == 0 || g->bytes + o->entry.len <= MULTI_BYTES);
}

/* Proposes the held proposals, in arrival order, gathered into entries, while
 * fewer than in_flight_max entries are in flight; every one of them at once
 * (to be answered) if none can be proposed now. Holding proposals back while
 * the log's pipeline is full makes the entries bigger as the load grows: one
 * append, one fsync and one message per follower for all a batch holds. */
static void propose_held(nokv_repl_node *n) {
  bool refused = cannot_propose(n) != NOKV_OK;
  while (n->held != NULL && (refused || n->applies < n->in_flight_max)) {
    gathered g = {.n = 0};
    while (n->held != NULL && gathered_fits(&g, n->held)) {
      op *o = n->held;
      n->held = o->next;
      o->next = NULL;
      g.ops[g.n++] = o;
      g.bytes += o->entry.len;
    }
    if (n->held == NULL) n->held_tail = NULL;
    gathered_flush(n, &g);
  }
}

/* ---- linearizable reads: one barrier for every read waiting ---- */

/* Barriers in flight at once: reads that arrive while one is under way get the
 * next, at once, so that a read waits for one barrier, not for the end of the
 * one before it too. libraft writes entries appended together in one batch. */
#define MAX_BARRIERS 4

typedef struct read_batch {
  struct raft_barrier req;
  nokv_repl_node *node;
  op *reads;
} read_batch;

static void start_barrier(nokv_repl_node *n);
static void begin_close(nokv_repl_node *n);

static void on_barrier(struct raft_barrier *req, int status) {
  read_batch *b = req->data;
  nokv_repl_node *n = b->node;
  n->barriers--;
  uint64_t ts = nokv_repl_ts(n->fsm.commands);
  for (op *o = b->reads, *next; o != NULL; o = next) {
    next = o->next;
    answer(o, status == 0 ? NOKV_OK : NOKV_REPL_ENOTLEADER, status == 0 ? ts : 0, 0);
  }
  free(b);
  start_barrier(n);
}

static void start_barrier(nokv_repl_node *n) {
  if (n->barriers >= MAX_BARRIERS || n->reads_waiting == NULL) return;
  op *list = n->reads_waiting;
  n->reads_waiting = NULL;
  if (n->closing || n->draining) {
    answer_all(list, NOKV_REPL_ESTOPPED);
    return;
  }
  if (raft_state(&n->raft) != RAFT_LEADER) {
    answer_all(list, NOKV_REPL_ENOTLEADER);
    return;
  }
  read_batch *b = malloc(sizeof *b);
  if (b == NULL) {
    answer_all(list, NOKV_ENOMEM);
    return;
  }
  for (op *o = list; o != NULL; o = o->next) atomic_fetch_add(&n->barrier_reads, 1);
  b->req.data = b;
  b->node = n;
  b->reads = list;
  int rv = raft_barrier(&n->raft, &b->req, on_barrier);
  if (rv != 0) {
    free(b);
    answer_all(list, rv == RAFT_NOTLEADER ? NOKV_REPL_ENOTLEADER : NOKV_EIO);
    return;
  }
  n->barriers++;
}

/* ---- membership ---- */

/* libraft's answer to a change, as the engine's codes and a message. */
static void answer_raft(op *o, int rv, struct raft *r) {
  char msg[256];
  switch (rv) {
    case 0:
      answer(o, NOKV_OK, 0, 0);
      return;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
      answer(o, rv == RAFT_NOTLEADER ? NOKV_REPL_ENOTLEADER : NOKV_REPL_EUNKNOWN, 0, 0);
      return;
    case RAFT_SHUTDOWN:
      answer(o, NOKV_REPL_ESTOPPED, 0, 0);
      return;
    case RAFT_CANTCHANGE:
    case RAFT_BUSY:
      answer_msg(o, NOKV_EBUSY, 0, 0, "another membership change is in progress; retry");
      return;
    case RAFT_NOCONNECTION:
      answer_msg(o, NOKV_ETIMEDOUT, 0, 0,
                 "the node did not catch up with the log in time (is it running, with --join, "
                 "and reachable at its Raft address?)");
      return;
    default:
      snprintf(msg, sizeof msg, "%s (%s)", raft_strerror(rv), raft_errmsg(r));
      answer_msg(o, rv == RAFT_BADID || rv == RAFT_DUPLICATEID || rv == RAFT_DUPLICATEADDRESS ||
                            rv == RAFT_BADROLE || rv == RAFT_NOTFOUND
                        ? NOKV_EINVAL
                        : NOKV_EIO,
                 0, 0, msg);
  }
}

/* A change's callback has run: it no longer holds the node open. */
static nokv_repl_node *change_done(op *o) {
  nokv_repl_node *n = o->arg2;
  n->changes--;
  return n;
}

static void on_assigned(struct raft_change *req, int status) {
  op *o = req->data;
  answer_raft(o, status, &change_done(o)->raft);
}

static void on_added(struct raft_change *req, int status) {
  op *o = req->data;
  nokv_repl_node *n = change_done(o);
  if (status != 0) {
    answer_raft(o, status, &n->raft);
    return;
  }
  /* A spare now: libraft replicates the log to it, and makes it a voter once
   * it has caught up. */
  int rv = n->draining ? RAFT_SHUTDOWN
                       : raft_assign(&n->raft, &o->change_req, o->id, RAFT_VOTER, on_assigned);
  if (rv == 0) n->changes++;
  if (rv != 0) answer_raft(o, rv, &n->raft);
}

static void on_removed(struct raft_change *req, int status) {
  op *o = req->data;
  answer_raft(o, status, &change_done(o)->raft);
}

static void on_transferred(struct raft_transfer *req) {
  op *o = req->data;
  nokv_repl_node *n = change_done(o);
  const char *addr = NULL;
  raft_id leader = 0;
  raft_leader(&n->raft, &leader, &addr);
  if (leader != 0 && (o->id == 0 ? leader != n->raft.id : leader == o->id)) {
    answer(o, NOKV_OK, 0, 0);
  } else {
    answer_msg(o, NOKV_ETIMEDOUT, 0, 0, "the target did not take over within an election timeout");
  }
}

static void change_now(nokv_repl_node *n, op *o) {
  if (n->closing || n->draining) {
    answer(o, NOKV_REPL_ESTOPPED, 0, 0);
    return;
  }
  if (raft_state(&n->raft) != RAFT_LEADER) {
    answer(o, NOKV_REPL_ENOTLEADER, 0, 0);
    return;
  }
  /* A transfer lets its target disrupt this leader, and a new configuration
   * counts majorities anew: no lease for the rest of the term. */
  nokv_lease_drop(n->lease);
  o->arg2 = n;
  o->change_req.data = o;
  o->transfer_req.data = o;
  int rv;
  switch (o->change) {
    case NOKV_REPL_ADD: {
      /* Already a spare at that address (an earlier add whose catch-up ran
       * out of time, the node still catching up): this add promotes it. */
      const struct raft_server *s = NULL;
      for (unsigned i = 0; i < n->raft.configuration.n && s == NULL; i++) {
        if (n->raft.configuration.servers[i].id == o->id) s = &n->raft.configuration.servers[i];
      }
      if (s != NULL && s->role != RAFT_VOTER && strcmp(s->address, o->address) == 0) {
        rv = raft_assign(&n->raft, &o->change_req, o->id, RAFT_VOTER, on_assigned);
      } else {
        rv = raft_add(&n->raft, &o->change_req, o->id, o->address, on_added);
      }
      break;
    }
    case NOKV_REPL_REMOVE:
      rv = raft_remove(&n->raft, &o->change_req, o->id, on_removed);
      break;
    default:
      rv = raft_transfer(&n->raft, &o->transfer_req, o->id, on_transferred);
      break;
  }
  if (rv == 0) n->changes++;
  if (rv != 0) answer_raft(o, rv, &n->raft);
}

/* ---- status ---- */

static void fill_status(nokv_repl_node *n, nokv_repl_status *st) {
  struct raft *r = &n->raft;
  memset(st, 0, sizeof *st);
  st->id = r->id;
  st->state = raft_state(r);
  st->term = r->current_term;
  st->commit_index = r->commit_index;
  st->applied_index = raft_last_applied(r);
  st->last_index = raft_last_index(r);
  st->snapshot_index = r->log.snapshot.last_index;
  st->lease_ms = nokv_lease_remaining_ms(n->lease);
  st->lease_reads = atomic_load(&n->lease_reads);
  st->barrier_reads = atomic_load(&n->barrier_reads);
  st->votes_held = nokv_lease_votes_held(n->lease);
  const char *addr = NULL;
  raft_id leader = 0;
  raft_leader(r, &leader, &addr);
  st->leader_id = leader;
  char client[NOKV_REPL_ADDR_MAX];
  if (leader != 0 && nokv_repl_fsm_announced(&n->fsm, client, sizeof client) == leader) {
    memcpy(st->leader_client_address, client, sizeof client);
  }
  for (unsigned i = 0; i < r->configuration.n && i < NOKV_REPL_MAX_MEMBERS; i++) {
    const struct raft_server *s = &r->configuration.servers[i];
    nokv_repl_member *m = &st->members[st->n_members++];
    m->id = s->id;
    snprintf(m->address, sizeof m->address, "%s", s->address);
    m->role = s->role;
    if (st->state == RAFT_LEADER && r->leader_state.progress != NULL) {
      m->match_index = s->id == r->id ? raft_last_index(r) : r->leader_state.progress[i].match_index;
    }
  }
}

/* ---- the loop ---- */

/* libraft 0.15 crashes if closed while its log holds entries in flight (a
 * reference it releases twice): a node stops once what it proposed has been
 * answered and its log is on disk, or after two election timeouts. */
static void maybe_close(nokv_repl_node *n) {
  if (!n->draining || n->closing) return;
  struct raft *r = &n->raft;
  bool idle = n->applies == 0 && n->changes == 0 && n->barriers == 0 &&
              r->last_stored == raft_last_index(r);
  if (idle || uv_now(&n->loop) >= n->drain_deadline) begin_close(n);
}

static void on_closed_handle(uv_handle_t *h) { (void)h; }

static void on_raft_closed(struct raft *r) {
  nokv_repl_node *n = r->data;
  raft_uv_close(&n->io);
  nokv_dns_transport_free(n->transport);
  n->transport = NULL;
  if (n->handles) {
    uv_close((uv_handle_t *)&n->wake, on_closed_handle);
    uv_close((uv_handle_t *)&n->tick, on_closed_handle);
  }
}

static void begin_close(nokv_repl_node *n) {
  if (n->closing) return;
  n->closing = true;
  nokv_lease_close(n->lease);
  answer_all(n->reads_waiting, NOKV_REPL_ESTOPPED);
  n->reads_waiting = NULL;
  answer_all(n->held, NOKV_REPL_ESTOPPED);
  n->held = n->held_tail = NULL;
  uv_timer_stop(&n->tick);
  raft_close(&n->raft, on_raft_closed);
}

/* Refreshes the cache other threads read, and has a new leader announce
 * itself: its client address reaches every follower through the log. */
static void on_tick(uv_timer_t *t) {
  nokv_repl_node *n = t->data;
  if (n->draining) {
    maybe_close(n);
    return;
  }
  struct raft *r = &n->raft;
  const char *addr = NULL;
  raft_id leader = 0;
  raft_leader(r, &leader, &addr);
  pthread_mutex_lock(&n->mu);
  n->state = raft_state(r);
  n->leader_id = leader;
  pthread_mutex_unlock(&n->mu);
  /* Before the announcement: a new leader's lease waits for an entry of its
   * own term to apply, and the announcement is one. */
  nokv_lease_tick(n->lease);
  if (raft_state(r) == RAFT_LEADER && n->announced_term != r->current_term) {
    op *o = calloc(1, sizeof *o);
    if (o == NULL) return;
    o->kind = OP_PROPOSE;
    if (nokv_repl_announce_entry(r->id, n->client_address, &o->entry) != NOKV_OK) {
      free(o);
      return;
    }
    n->announced_term = r->current_term;
    propose_now(n, o);
  }
}

static void on_wake(uv_async_t *a) {
  nokv_repl_node *n = a->data;
  pthread_mutex_lock(&n->mu);
  op *list = n->head;
  n->head = n->tail = NULL;
  pthread_mutex_unlock(&n->mu);
  while (list != NULL) {
    op *o = list;
    list = o->next;
    o->next = NULL;
    switch (o->kind) {
      case OP_PROPOSE:  /* proposed below, with those held before it */
        if (n->held_tail != NULL) {
          n->held_tail->next = o;
        } else {
          n->held = o;
        }
        n->held_tail = o;
        break;
      case OP_READ:
        o->next = n->reads_waiting;
        n->reads_waiting = o;
        break;
      case OP_STATUS:
        fill_status(n, o->status);
        pthread_mutex_lock(&n->mu);
        o->done = true;
        pthread_cond_broadcast(&n->cv);
        pthread_mutex_unlock(&n->mu);
        break;
      case OP_CHANGE:
        change_now(n, o);
        break;
      case OP_STOP:  /* the next tick closes, once the node is idle */
        nokv_lease_close(n->lease);
        n->draining = true;
        n->drain_deadline = uv_now(&n->loop) + 2 * n->raft.election_timeout;
        break;
    }
  }
  propose_held(n);
  start_barrier(n);
}

static void *run_loop(void *arg) {
  nokv_repl_node *n = arg;
  /* A peer that hung up must fail the write (EPIPE), not kill the process:
   * SIGPIPE goes to the thread that wrote, this one. */
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, NULL);
  uv_run(&n->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* Queues o for the loop; false (o not queued) if the node is stopping. */
static bool enqueue(nokv_repl_node *n, op *o) {
  pthread_mutex_lock(&n->mu);
  if (n->stopping && o->kind != OP_STOP) {
    pthread_mutex_unlock(&n->mu);
    return false;
  }
  if (o->kind == OP_STOP) n->stopping = true;
  if (n->tail != NULL) {
    n->tail->next = o;
  } else {
    n->head = o;
  }
  n->tail = o;
  pthread_mutex_unlock(&n->mu);
  uv_async_send(&n->wake);
  return true;
}

void nokv_repl_propose(nokv_repl_node *n, struct raft_buffer entry, nokv_repl_cb cb, void *arg) {
  op *o = calloc(1, sizeof *o);
  if (o == NULL) {
    raft_free(entry.base);
    nokv_repl_outcome out = {.rc = NOKV_ENOMEM};
    cb(arg, &out);
    return;
  }
  o->kind = OP_PROPOSE;
  o->entry = entry;
  o->cb = cb;
  o->arg = arg;
  if (!enqueue(n, o)) {
    raft_free(entry.base);
    answer(o, NOKV_REPL_ESTOPPED, 0, 0);
  }
}

void nokv_repl_read_index(nokv_repl_node *n, nokv_repl_cb cb, void *arg) {
  if (nokv_lease_holds(n->lease)) {
    atomic_fetch_add_explicit(&n->lease_reads, 1, memory_order_relaxed);
    nokv_repl_outcome out = {.rc = NOKV_OK, .commit_ts = nokv_last_commit_ts(n->fsm.db)};
    cb(arg, &out);
    return;
  }
  op *o = calloc(1, sizeof *o);
  if (o == NULL) {
    nokv_repl_outcome out = {.rc = NOKV_ENOMEM};
    cb(arg, &out);
    return;
  }
  o->kind = OP_READ;
  o->cb = cb;
  o->arg = arg;
  if (!enqueue(n, o)) answer(o, NOKV_REPL_ESTOPPED, 0, 0);
}

void nokv_repl_change(nokv_repl_node *n, nokv_repl_change_kind kind, uint64_t id,
                      const char *address, nokv_repl_cb cb, void *arg) {
  op *o = calloc(1, sizeof *o);
  if (o == NULL) {
    nokv_repl_outcome out = {.rc = NOKV_ENOMEM};
    cb(arg, &out);
    return;
  }
  o->kind = OP_CHANGE;
  o->change = kind;
  o->id = id;
  o->cb = cb;
  o->arg = arg;
  if (kind == NOKV_REPL_ADD &&
      (address == NULL || address[0] == '\0' || strlen(address) >= sizeof o->address || id == 0)) {
    answer_msg(o, NOKV_EINVAL, 0, 0, "adding a node takes its id (not 0) and Raft address");
    return;
  }
  if (address != NULL) snprintf(o->address, sizeof o->address, "%s", address);
  if (!enqueue(n, o)) answer(o, NOKV_REPL_ESTOPPED, 0, 0);
}

int nokv_repl_node_status(nokv_repl_node *n, nokv_repl_status *st) {
  /* On this thread's stack: it waits until the loop has answered, and the
   * loop frees no STATUS op. */
  op o = {.kind = OP_STATUS, .status = st};
  if (!enqueue(n, &o)) return NOKV_REPL_ESTOPPED;
  pthread_mutex_lock(&n->mu);
  while (!o.done) pthread_cond_wait(&n->cv, &n->mu);
  pthread_mutex_unlock(&n->mu);
  return NOKV_OK;
}

uint64_t nokv_repl_leader(nokv_repl_node *n, char *client_address, size_t len) {
  pthread_mutex_lock(&n->mu);
  uint64_t leader = n->leader_id;
  pthread_mutex_unlock(&n->mu);
  char buf[NOKV_REPL_ADDR_MAX];
  uint64_t announced = nokv_repl_fsm_announced(&n->fsm, buf, sizeof buf);
  if (len > 0) {
    client_address[0] = '\0';
    if (leader != 0 && announced == leader) snprintf(client_address, len, "%s", buf);
  }
  return leader;
}

bool nokv_repl_is_leader(nokv_repl_node *n) {
  pthread_mutex_lock(&n->mu);
  bool leader = n->state == RAFT_LEADER;
  pthread_mutex_unlock(&n->mu);
  return leader;
}

const char *nokv_repl_state_name(int state) {
  switch (state) {
    case RAFT_FOLLOWER: return "follower";
    case RAFT_CANDIDATE: return "candidate";
    case RAFT_LEADER: return "leader";
    default: return "unavailable";
  }
}

const char *nokv_repl_role_name(int role) {
  switch (role) {
    case RAFT_VOTER: return "voter";
    case RAFT_STANDBY: return "standby";
    default: return "spare";
  }
}

/* ---- the syncer ---- */

/* A snapshot syncs the engine on the loop's thread, and every write waits
 * behind it: with 65,536 entries between snapshots the fsync of all they left
 * unsynced took tens of milliseconds (p99.9 of replicated puts 60 ms). Synced
 * in the background every SYNC_MS, what is left is one interval's worth. */
#define SYNC_MS 100

static void *run_syncer(void *arg) {
  nokv_repl_node *n = arg;
  uint64_t synced_ts = 0;
  pthread_mutex_lock(&n->mu);
  while (!n->syncer_stop) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += SYNC_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&n->cv, &n->mu, &until);  /* the interval, or the stop */
    if (n->syncer_stop) break;
    pthread_mutex_unlock(&n->mu);
    uint64_t ts = nokv_last_commit_ts(n->fsm.db);
    if (ts != synced_ts && nokv_sync(n->fsm.db) == NOKV_OK) synced_ts = ts;
    pthread_mutex_lock(&n->mu);
  }
  pthread_mutex_unlock(&n->mu);
  return NULL;
}

/* ---- start and stop ---- */

static int mkdir_p(const char *dir) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) return ENAMETOOLONG;
  for (char *p = path + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return errno;
    *p = '/';
  }
  if (mkdir(path, 0755) != 0 && errno != EEXIST) return errno;
  return 0;
}

static void free_node(nokv_repl_node *n) {
  nokv_repl_fsm_destroy(&n->fsm);
  if (n->lease != NULL) nokv_lease_free(n->lease);
  pthread_mutex_destroy(&n->mu);
  pthread_cond_destroy(&n->cv);
  free(n);
}

/* Closes what start opened, after raft_init, on the caller's thread. */
static void abandon(nokv_repl_node *n) {
  raft_close(&n->raft, on_raft_closed);
  uv_run(&n->loop, UV_RUN_DEFAULT);
  uv_loop_close(&n->loop);
  free_node(n);
}

int nokv_repl_node_start(nokv_db *db, const nokv_repl_options *o, nokv_repl_node **out,
                         char *errbuf, size_t errlen) {
  *out = NULL;
  if (o->id == 0 || o->address == NULL || o->dir == NULL) {
    set_err(errbuf, errlen, "a node needs an id (not 0), an address and a directory");
    return NOKV_EINVAL;
  }
  const char *client = o->client_address != NULL ? o->client_address : "";
  if (strlen(client) >= NOKV_REPL_ADDR_MAX || strlen(o->address) >= NOKV_REPL_ADDR_MAX) {
    set_err(errbuf, errlen, "address longer than %d bytes", NOKV_REPL_ADDR_MAX - 1);
    return NOKV_EINVAL;
  }
  if (mkdir_p(o->dir) != 0) {
    set_err(errbuf, errlen, "cannot create %s: %s", o->dir, strerror(errno));
    return NOKV_EIO;
  }
  /* With no state, a first member bootstraps: unless a peer has seen this
   * node before, and its state was lost (identity.h). */
  if (o->n_peers > 0 && !nokv_raft_state_exists(o->dir)) {
    uint64_t who = 0, known = 0;
    if (nokv_seen_elsewhere(o->peers, o->n_peers, o->id, nokv_incarnation_peek(o->dir),
                            o->peer_check_ms ? o->peer_check_ms : 1000, &who, &known)) {
      set_err(errbuf, errlen,
              "node %llu has no Raft state in %s, but node %llu has seen it as a member "
              "(incarnation %016llx): its state was lost, and bootstrapping it again could "
              "lose acknowledged writes. Remove it from the group (nokv cluster remove) and "
              "start it again, or restore its data directory",
              (unsigned long long)o->id, o->dir, (unsigned long long)who,
              (unsigned long long)known);
      return NOKV_EINVAL;
    }
  }
  char why[512] = "";
  uint64_t incarnation = nokv_incarnation(o->dir, why, sizeof why);
  if (incarnation == 0) {
    set_err(errbuf, errlen, "%s", why);
    return NOKV_EIO;
  }
  nokv_repl_node *n = calloc(1, sizeof *n);
  if (n == NULL) return NOKV_ENOMEM;
  int seen_rc = nokv_seen_load(&n->seen, o->dir, why, sizeof why);
  if (seen_rc != NOKV_OK) {
    set_err(errbuf, errlen, "%s", why);
    free(n);
    return seen_rc;
  }
  pthread_mutex_init(&n->mu, NULL);
  pthread_cond_init(&n->cv, NULL);
  snprintf(n->client_address, sizeof n->client_address, "%s", client);
  n->state = RAFT_UNAVAILABLE;
  if (nokv_repl_fsm_init(&n->fsm, db) != NOKV_OK) {
    free_node(n);
    return NOKV_ENOMEM;
  }
  n->fsm.id = o->id;
  snprintf(n->fsm.client, sizeof n->fsm.client, "%s", client);
  n->fsm.fetch = o->fetch;
  n->fsm.fetch_ctx = o->fetch_ctx;
  int rv = uv_loop_init(&n->loop);
  if (rv != 0) {
    set_err(errbuf, errlen, "event loop: %s", uv_strerror(rv));
    free_node(n);
    return NOKV_EIO;
  }
  n->transport = nokv_dns_transport_new(&n->loop, &rv);
  /* A host name for this node's own address: listen on every interface, at
   * its port, unless told where. */
  char any[32];
  const char *bind = o->bind_address;
  const char *colon = strrchr(o->address, ':');
  if (bind == NULL && !nokv_is_ipv4_address(o->address) && colon != NULL) {
    snprintf(any, sizeof any, "0.0.0.0%s", colon);
    bind = any;
  }
  if (rv == 0 && bind != NULL) rv = nokv_dns_transport_set_bind_address(n->transport, bind);
  if (rv == 0) {
    rv = raft_uv_init(&n->io, &n->loop, o->dir, nokv_dns_transport_raft(n->transport));
  }
  if (rv != 0) {
    nokv_dns_transport_free(n->transport);
    set_err(errbuf, errlen, "raft I/O in %s: %s (%s)", o->dir, raft_strerror(rv),
            n->io.errmsg);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    uv_loop_close(&n->loop);
    free_node(n);
    return NOKV_EIO;
  }
  n->lease = nokv_lease_new(&n->io, !o->no_read_lease);
  if (n->lease != NULL) nokv_lease_set_identity(n->lease, incarnation, &n->seen);
  rv = n->lease != NULL
           ? raft_init(&n->raft, nokv_lease_io(n->lease), &n->fsm.fsm, o->id, o->address)
           : RAFT_NOMEM;
  if (rv != 0) {
    set_err(errbuf, errlen, "raft: %s", n->lease != NULL ? raft_errmsg(&n->raft) : "no memory");
    raft_uv_close(&n->io);
    nokv_dns_transport_free(n->transport);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    uv_loop_close(&n->loop);
    free_node(n);
    return NOKV_EIO;
  }
  n->raft.data = n;
  const unsigned election = o->election_timeout_ms ? o->election_timeout_ms : 1000;
  raft_set_election_timeout(&n->raft, election);
  raft_set_heartbeat_timeout(&n->raft, o->heartbeat_ms ? o->heartbeat_ms : 100);
  raft_set_pre_vote(&n->raft, true);
  /* A snapshot is a small record (the data moves apart, fsm.h): one not
   * answered within an election timeout (its replica was down, or is still
   * fetching the data) is sent again then, not after libraft's 30 s. */
  raft_set_install_snapshot_timeout(&n->raft, election);
  /* A node being added may first fetch the whole state (fsm.h) and restart on
   * it: libraft's 5 s for a catch-up round would fail any add of a database
   * that takes longer to copy. */
  raft_set_max_catch_up_round_duration(
      &n->raft, o->catch_up_ms ? o->catch_up_ms : (30 * election > 30000 ? 30 * election : 30000));
  raft_set_snapshot_threshold(&n->raft, o->snapshot_entries ? o->snapshot_entries : 65536);
  raft_set_snapshot_trailing(&n->raft, o->snapshot_trailing ? o->snapshot_trailing : 8192);
  n->tick_ms = (o->heartbeat_ms ? o->heartbeat_ms : 100) / 2;
  if (n->tick_ms == 0) n->tick_ms = 1;
  n->in_flight_max = o->entries_in_flight ? o->entries_in_flight : 4;
  if (o->n_peers > 0) {
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    rv = 0;
    for (size_t i = 0; i < o->n_peers && rv == 0; i++) {
      rv = raft_configuration_add(&conf, o->peers[i].id, o->peers[i].address, RAFT_VOTER);
    }
    if (rv == 0) rv = raft_bootstrap(&n->raft, &conf);
    raft_configuration_close(&conf);
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {  /* CANTBOOTSTRAP: it has state already */
      set_err(errbuf, errlen, "bootstrap: %s (%s)", raft_strerror(rv), raft_errmsg(&n->raft));
      abandon(n);
      return NOKV_EIO;
    }
  }
  rv = raft_start(&n->raft);
  if (rv != 0) {
    set_err(errbuf, errlen, "start: %s (%s%s%s)", raft_strerror(rv), raft_errmsg(&n->raft),
            n->io.errmsg[0] != '\0' ? "; " : "", n->io.errmsg);
    abandon(n);
    return NOKV_EIO;
  }
  /* Lease probes go over UDP on the Raft port (lease.h). */
  const char *udp = bind != NULL ? bind : o->address;
  rv = nokv_lease_listen(n->lease, &n->loop, &n->raft, udp);
  if (rv != 0) {
    set_err(errbuf, errlen, "lease probes on udp %s: %s", udp, uv_strerror(rv));
    nokv_lease_close(n->lease);
    abandon(n);
    return NOKV_EIO;
  }
  uv_async_init(&n->loop, &n->wake, on_wake);
  n->wake.data = n;
  uv_timer_init(&n->loop, &n->tick);
  n->tick.data = n;
  uv_timer_start(&n->tick, on_tick, 0, n->tick_ms);
  n->handles = true;
  if (pthread_create(&n->thread, NULL, run_loop, n) != 0) {
    begin_close(n);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    uv_loop_close(&n->loop);
    free_node(n);
    set_err(errbuf, errlen, "cannot start the node's thread");
    return NOKV_EIO;
  }
  n->syncer_started = pthread_create(&n->syncer, NULL, run_syncer, n) == 0;
  *out = n;
  return NOKV_OK;
}

void nokv_repl_node_stop(nokv_repl_node *n) {
  if (n == NULL) return;
  n->stop.kind = OP_STOP;
  enqueue(n, &n->stop);
  pthread_join(n->thread, NULL);
  if (n->syncer_started) {
    pthread_mutex_lock(&n->mu);
    n->syncer_stop = true;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->syncer, NULL);
  }
  uv_loop_close(&n->loop);
  free_node(n);
}

/* ---- recovery from a lost majority ---- */

static void on_recover_closed(struct raft *r) {
  raft_uv_close(r->io);
}

int nokv_repl_recover(const char *dir, uint64_t id, const char *address, char *errbuf,
                      size_t errlen) {
  if (id == 0 || address == NULL || !nokv_raft_state_exists(dir)) {
    set_err(errbuf, errlen, "%s holds no Raft state to recover", dir);
    return NOKV_EINVAL;
  }
  uv_loop_t loop;
  int rv = uv_loop_init(&loop);
  if (rv != 0) {
    set_err(errbuf, errlen, "event loop: %s", uv_strerror(rv));
    return NOKV_EIO;
  }
  struct raft_uv_transport transport;
  struct raft_io io;
  struct raft r;
  struct raft_fsm fsm = {.version = 1}; /* applies nothing: the node is not started */
  rv = raft_uv_tcp_init(&transport, &loop);
  if (rv == 0) rv = raft_uv_init(&io, &loop, dir, &transport);
  if (rv != 0) {
    set_err(errbuf, errlen, "raft I/O in %s: %s", dir, raft_strerror(rv));
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return NOKV_EIO;
  }
  int rc = NOKV_OK;
  rv = raft_init(&r, &io, &fsm, id, address);
  if (rv != 0) {
    set_err(errbuf, errlen, "raft: %s", raft_errmsg(&r));
    raft_uv_close(&io);
    rc = NOKV_EIO;
  } else {
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    rv = raft_configuration_add(&conf, id, address, RAFT_VOTER);
    if (rv == 0) rv = raft_recover(&r, &conf);
    raft_configuration_close(&conf);
    if (rv != 0) {
      set_err(errbuf, errlen, "recover: %s (%s%s%s)", raft_strerror(rv), raft_errmsg(&r),
              io.errmsg[0] != '\0' ? "; " : "", io.errmsg);
      rc = NOKV_EIO;
    }
    raft_close(&r, on_recover_closed);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  raft_uv_tcp_close(&transport);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return rc;
}
