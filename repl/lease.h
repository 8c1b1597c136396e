/*
 * lease.h — the leader's read lease: linearizable reads with no round trip.
 *
 * A linearizable read must not miss a write some other leader acknowledged.
 * A barrier through the log proves there is none, at the price of an append,
 * an fsync and a round trip per batch of reads. A lease proves it from time:
 *
 *   A follower of libraft that has a leader rejects every vote request (its
 *   has-leader rule; only a leadership transfer's request may disrupt it), and
 *   keeps its leader until an election timeout has passed since the leader's
 *   last AppendEntries reached it (its timer is randomized between one and two
 *   timeouts). So a follower that still follows L in term T at a moment p
 *   promises: no vote for anyone else until its timer start + one election
 *   timeout.
 *
 * The leader asks its voters for that promise over UDP, on its Raft port: a
 * probe names its term and a round; a follower following it in that term
 * answers with the time its promise has left, read off libraft's timer. The
 * follower answered after the probe left, so the promise holds on the leader's
 * clock until the probe's send time plus what was left, shortened by the drift
 * bound. While promises from enough voters hold that, with the leader, they
 * make a majority of the configuration, no other node can win an election, so
 * no other leader can acknowledge a write: the leader reads its own applied
 * state, once it has applied an entry of its own term (every write an earlier
 * leader acknowledged is then in it).
 *
 * The leader's own part: it never votes while it leads, and any term or vote
 * it records (set_term, set_vote, wrapped here) first drops the lease.
 *
 * Assumptions, documented in docs/replication.md:
 *   - clocks run at rates within NOKV_LEASE_DRIFT_PPM of each other (the
 *     leader measures on CLOCK_BOOTTIME, which counts a suspended machine's
 *     sleep; followers' libraft timers run on CLOCK_MONOTONIC, which does not,
 *     and a stopped clock only lengthens a follower's real promise);
 *   - a node that restarts does not vote within an election timeout of
 *     starting (enforced here: vote requests are dropped until then), so a
 *     promise made before a crash is kept; a node bootstrapped in this start
 *     promised nothing before, and votes at once;
 *   - no lease in a term in which a leadership transfer was asked, nor while a
 *     configuration change is uncommitted.
 *
 * Everything but nokv_lease_holds runs on the node's loop thread.
 */
#ifndef NOKV_REPL_LEASE_H
#define NOKV_REPL_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#include <raft.h> /* declares nothing extern "C" itself */

/* Clocks' rates differ by less than this (parts per million): 1%, far more
 * than NTP allows a clock to slew (500 ppm). */
#define NOKV_LEASE_DRIFT_PPM 10000

typedef struct nokv_lease nokv_lease;

/* A lease over inner (libraft's I/O, already initialized). serve: whether this
 * node takes leases when it leads (it answers probes, and holds vote requests
 * back after starting, either way). NULL when out of memory. */
nokv_lease *nokv_lease_new(struct raft_io *inner, bool serve);

/* The I/O to hand to raft_init: inner's, with set_term and set_vote dropping
 * the lease first, and vote requests held back for an election timeout after
 * the node starts. */
struct raft_io *nokv_lease_io(nokv_lease *l);

/* Listens for probes and promises on UDP at address (IPv4 host:port, the Raft
 * listener's); r is the started node. errno-style code (a uv error) on
 * failure. */
int nokv_lease_listen(nokv_lease *l, uv_loop_t *loop, struct raft *r, const char *address);

/* The UDP port it listens on (0: not listening). */
int nokv_lease_port(nokv_lease *l);

/* Every tick: follows the node's role and term, and, leading, sends a round of
 * probes and renews the lease from the promises held. */
void nokv_lease_tick(nokv_lease *l);

/* Drops the lease for the rest of the term (before a leadership transfer or a
 * membership change). */
void nokv_lease_drop(nokv_lease *l);

/* Any thread: whether the lease holds now. */
bool nokv_lease_holds(nokv_lease *l);

/* What is left of the lease, in milliseconds (0: none). */
int64_t nokv_lease_remaining_ms(nokv_lease *l);

/* Vote requests dropped while starting, and promises taken as the leader. */
uint64_t nokv_lease_votes_held(nokv_lease *l);
uint64_t nokv_lease_promises(nokv_lease *l);

/* Identity (identity.h): this state's incarnation, sent with every message,
 * and the record of members seen, kept up to date from the messages received
 * and answered from when asked (borrowed: it outlives the lease). */
struct nokv_seen;
void nokv_lease_set_identity(nokv_lease *l, uint64_t incarnation, struct nokv_seen *seen);

/* Closes the UDP socket; the loop finishes closing it. */
void nokv_lease_close(nokv_lease *l);
/* Frees it, once its loop has stopped. */
void nokv_lease_free(nokv_lease *l);

/* The time until which `needed` of the n promises hold (each a deadline): the
 * needed-th latest; INT64_MAX if none is needed, 0 if fewer than needed. */
int64_t nokv_lease_quorum_until(const int64_t *promises, size_t n, size_t needed);

/* Probes and promises, as on the wire (exposed for tests). */
typedef struct nokv_lease_msg {
  uint8_t kind;        /* NOKV_LEASE_* */
  uint64_t from;       /* the sender's node id */
  uint64_t term;       /* the probe's term */
  uint64_t seq;        /* the probe's round; ASK, SEEN: which question */
  uint64_t leader;     /* PROMISE: the leader followed */
  int64_t remaining_us;/* PROMISE: what the promise has left */
  uint64_t incarnation;/* the sender's state's (identity.h; 0: none yet) */
  uint64_t subject;    /* ASK, SEEN: the node asked about */
  uint64_t known;      /* SEEN: the incarnation seen of subject (0: never seen) */
} nokv_lease_msg;

#define NOKV_LEASE_PROBE 1
#define NOKV_LEASE_PROMISE 2
#define NOKV_LEASE_ASK 3  /* a node with no state: have you seen me? (identity.h) */
#define NOKV_LEASE_SEEN 4 /* the answer */
#define NOKV_LEASE_MSG_SIZE 72

/* A follower's answer to probe at now_us (CLOCK_MONOTONIC, as uv_hrtime() /
 * 1000): false if it owes none (not following the prober in the probe's term,
 * or its timer already ran out). */
bool nokv_lease_answer(const struct raft *r, const nokv_lease_msg *probe, uint64_t now_us,
                       nokv_lease_msg *promise);

/* Until when, on the leader's clock, a promise answering a probe sent at
 * sent_ns holds: what was left of it, less the drift bound, from sent_ns. */
int64_t nokv_lease_deadline(int64_t sent_ns, int64_t remaining_us);

void nokv_lease_encode(const nokv_lease_msg *m, uint8_t out[NOKV_LEASE_MSG_SIZE]);
/* false: not a lease message of this version. */
bool nokv_lease_decode(const uint8_t *buf, size_t len, nokv_lease_msg *m);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_REPL_LEASE_H */
