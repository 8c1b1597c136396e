/*
 * node.h — one replica of a NoKV-C Raft group, on libraft's libuv I/O.
 *
 * The node owns a thread that runs libraft's event loop: the Raft log on disk
 * under dir, the peer connections, elections, and the state machine (fsm.h),
 * which applies committed entries to the engine on that thread. Every call
 * below may come from any thread; its answer comes back through a callback,
 * on the node's thread (or at once, on the caller's, if the node is stopping).
 * Callbacks must not block: they run where Raft's heartbeats do.
 */
#ifndef NOKV_REPL_NODE_H
#define NOKV_REPL_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repl/fsm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Answers besides the engine's own (nokv.h). */
#define NOKV_REPL_ENOTLEADER (-100) /* this node does not lead: nothing proposed */
#define NOKV_REPL_EUNKNOWN (-101)   /* leadership lost after proposing: the entry
                                     * may yet commit, or not */
#define NOKV_REPL_ESTOPPED (-102)   /* the node is stopping: nothing proposed */

#define NOKV_REPL_MAX_MEMBERS 16

typedef struct nokv_repl_node nokv_repl_node;

typedef struct nokv_repl_peer {
  uint64_t id;
  const char *address; /* host:port of its Raft listener */
} nokv_repl_peer;

typedef struct nokv_repl_options {
  uint64_t id;                /* this node's id in the group (not 0) */
  const char *address;        /* this node's Raft address, host:port, as peers dial it */
  const char *bind_address;   /* where to listen, if not address (e.g. 0.0.0.0:7001) */
  const char *client_address; /* what clients dial for this node: a leader announces it */
  const char *dir;            /* the Raft log and metadata (created if missing) */
  /* The group's first members, this node among them: bootstraps dir if it
   * holds no state yet (every first member bootstraps with the same list).
   * None: the node waits to be added to a running group. */
  const nokv_repl_peer *peers;
  size_t n_peers;
  unsigned election_timeout_ms; /* 0: 1000 */
  unsigned heartbeat_ms;        /* 0: 100 */
  /* Log compaction: a snapshot every this many entries (0: 65536), keeping
   * the last snapshot_trailing of them (0: 8192), so that a replica that far
   * behind still catches up from the log. */
  unsigned snapshot_entries;
  unsigned snapshot_trailing;
  /* A replica further behind than the log kept gets a snapshot ahead of its
   * engine: fetch (fsm.h) is asked to bring the engine's state over. NULL:
   * such a snapshot is refused, and the replica stays behind. */
  nokv_repl_fetch_fn fetch;
  void *fetch_ctx;
  /* Linearizable reads by a barrier each (batched), never by the leader's
   * lease (lease.h: it assumes bounded clock drift). The node still answers
   * other leaders' lease probes. */
  bool no_read_lease;
  /* Entries proposed and not yet applied, at most (0: 4). Proposals that
   * arrive while the pipeline is full wait, and then go into the log
   * together: under load entries grow instead of multiplying (one append,
   * one fsync, one message per follower for each). */
  unsigned entries_in_flight;
  /* A node with no Raft state asks its peers, before bootstrapping, whether
   * they have seen it (identity.h), for at most this long (0: 1000 ms). */
  unsigned peer_check_ms;
  /* How long a node being added may take to reach the log's end as it was
   * when it started (a catch-up round: fetching the state counts), before
   * the add fails (0: 30 s, or 30 election timeouts if longer). The node
   * then stays a spare, catching up; adding it again promotes it. */
  unsigned catch_up_ms;
} nokv_repl_options;

typedef struct nokv_repl_outcome {
  int rc;             /* NOKV_OK, the engine's error, or NOKV_REPL_E* */
  const char *msg;    /* why not, if rc says so (NULL: nothing to add) */
  uint64_t commit_ts; /* a write's commit timestamp (also when a condition
                       * failed); a read's: the newest it can see */
  size_t failed;      /* NOKV_ECONDITION: the condition that failed */
} nokv_repl_outcome;

typedef void (*nokv_repl_cb)(void *arg, const nokv_repl_outcome *o);

/* Starts the node over db (borrowed; outlives the node). On failure nothing is
 * left running, and nokv_errmsg-style text is in errbuf. */
int nokv_repl_node_start(nokv_db *db, const nokv_repl_options *o, nokv_repl_node **out,
                         char *errbuf, size_t errlen);

/* Stops the node: entries proposed and not yet answered are answered
 * NOKV_REPL_EUNKNOWN, reads NOKV_REPL_ESTOPPED; then frees it. */
void nokv_repl_node_stop(nokv_repl_node *n);

/* After a majority of the group is lost for good: rewrites the Raft state in
 * dir (no node running on it) so that this node, id at address, is the
 * group's only voter. Entries the lost nodes committed and this one never
 * stored are lost; members added back later start empty (--join). Run it
 * once, on the survivor whose log is longest. errno-style text in errbuf. */
int nokv_repl_recover(const char *dir, uint64_t id, const char *address, char *errbuf,
                      size_t errlen);

/* Proposes entry (from nokv_repl_entry or nokv_repl_cond_entry; ownership
 * passes to the node). cb learns the outcome once the entry is committed by a
 * majority and applied here, or why it was not. */
void nokv_repl_propose(nokv_repl_node *n, struct raft_buffer entry, nokv_repl_cb cb, void *arg);

/* A linearizable read point: cb runs once every write acknowledged before the
 * call is applied here, with this node still the leader. Then read the engine
 * at its newest. While the leader's lease holds (lease.h), at once, on the
 * caller's thread; otherwise through a Raft barrier (the reads waiting
 * together share one), on the node's. */
void nokv_repl_read_index(nokv_repl_node *n, nokv_repl_cb cb, void *arg);

typedef enum {
  NOKV_REPL_ADD,      /* a node started with no peers: it catches up, then votes */
  NOKV_REPL_REMOVE,   /* a member, the leader itself included */
  NOKV_REPL_TRANSFER  /* leadership, to a voter (0: the most caught-up one) */
} nokv_repl_change_kind;

/* Changes the group, on its leader; one change at a time. ADD takes the new
 * node's id and Raft address, and answers once it votes: libraft first lets it
 * catch up with the log (as a spare), then makes it a voter. TRANSFER answers
 * once the target leads, or NOKV_ETIMEDOUT after an election timeout. */
void nokv_repl_change(nokv_repl_node *n, nokv_repl_change_kind kind, uint64_t id,
                      const char *address, nokv_repl_cb cb, void *arg);

/* The leader as last seen (at most a tick old): its id (0: none known) and,
 * if it announced one, the address clients dial for it ("" if not). */
uint64_t nokv_repl_leader(nokv_repl_node *n, char *client_address, size_t len);
bool nokv_repl_is_leader(nokv_repl_node *n);

typedef struct nokv_repl_member {
  uint64_t id;
  char address[NOKV_REPL_ADDR_MAX]; /* Raft address */
  int role;                          /* RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE */
  uint64_t match_index;              /* on the leader: the log it holds (else 0) */
} nokv_repl_member;

typedef struct nokv_repl_status {
  uint64_t id;
  int state; /* RAFT_FOLLOWER, RAFT_CANDIDATE, RAFT_LEADER, RAFT_UNAVAILABLE */
  uint64_t term, leader_id, commit_index, applied_index, last_index;
  uint64_t snapshot_index; /* the last snapshot's (the log before it is gone) */
  int64_t lease_ms;        /* what the read lease has left (0: none) */
  uint64_t lease_reads, barrier_reads; /* linearizable reads served each way */
  uint64_t votes_held;     /* vote requests dropped while starting */
  char leader_client_address[NOKV_REPL_ADDR_MAX];
  size_t n_members;
  nokv_repl_member members[NOKV_REPL_MAX_MEMBERS];
} nokv_repl_status;

/* The node's Raft state now (asked of its thread; waits for the answer). */
int nokv_repl_node_status(nokv_repl_node *n, nokv_repl_status *st);

/* "follower", "candidate", "leader" or "unavailable". */
const char *nokv_repl_state_name(int state);
const char *nokv_repl_role_name(int role);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_REPL_NODE_H */
