/*
 * identity.h — telling a replica that lost its state from one starting for
 * the first time.
 *
 * A voter that comes back with no Raft state has forgotten its votes and the
 * entries it acknowledged. Bootstrapping it again (a pod whose volume was
 * lost restarts with the same --peers) could let it vote twice in one term,
 * or make a majority with a node that lacks a committed entry, and lose it.
 *
 * So every node's Raft state carries an incarnation: a random number made
 * with the state (DIR/incarnation). Lease messages carry the sender's, and
 * every node records the incarnation it has seen of each member of the
 * configuration (DIR/members-seen, synced when it changes; members removed
 * from the configuration are forgotten). A node about to bootstrap, that is
 * with no state, first asks its peers whether they have seen it: one that has
 * seen it under another incarnation proves its state was lost, and it does
 * not start. A node starting for the first time has never been seen, and
 * bootstraps as before. Both files end with an XXH64 checksum.
 *
 * The check needs a peer that saw the node to answer within the wait; peers
 * all down at that moment cannot. docs/replication.md says what to do instead.
 */
#ifndef NOKV_REPL_IDENTITY_H
#define NOKV_REPL_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NOKV_INCARNATION_FILE "incarnation"
#define NOKV_SEEN_FILE "members-seen"
#define NOKV_SEEN_MAX 64

/* Whether dir holds libraft state (its metadata files). */
bool nokv_raft_state_exists(const char *dir);

/* This state's incarnation: read from dir, or made (random, synced) if the
 * file is missing. 0 and a message in err on failure (never an incarnation). */
uint64_t nokv_incarnation(const char *dir, char *err, size_t errlen);

/* Reads dir's incarnation without making one: 0 if there is none (or it is
 * unreadable). */
uint64_t nokv_incarnation_peek(const char *dir);

typedef struct nokv_seen_member {
  uint64_t id, incarnation;
} nokv_seen_member;

typedef struct nokv_seen {
  char path[4096];
  size_t n;
  nokv_seen_member m[NOKV_SEEN_MAX];
} nokv_seen;

/* Loads dir's record (empty if there is none). NOKV_ECORRUPT, naming the
 * file, if it fails its checksum. */
int nokv_seen_load(nokv_seen *s, const char *dir, char *err, size_t errlen);
/* The incarnation seen of id (0: none). */
uint64_t nokv_seen_get(const nokv_seen *s, uint64_t id);
/* Records id's incarnation, in memory (the lease saves it off its loop);
 * *before gets the one recorded until now (0: none). 1 if the record
 * changed, 0 if not, -1 if it is full. */
int nokv_seen_set(nokv_seen *s, uint64_t id, uint64_t incarnation, uint64_t *before);
/* Forgets every member not among ids[0..n), in memory: whether any went. */
bool nokv_seen_keep(nokv_seen *s, const uint64_t *ids, size_t n);
/* Writes the record to its file, synced. An errno-style code on failure. */
int nokv_seen_save(const nokv_seen *s);

/* Asks every peer but self, over UDP at its Raft address, whether it has seen
 * node self; waits until each answered or wait_ms passed. true, with the peer
 * and the incarnation it saw in *who and *known, if one saw self under an
 * incarnation other than mine (0: this state has none yet). */
struct nokv_repl_peer;
bool nokv_seen_elsewhere(const struct nokv_repl_peer *peers, size_t n, uint64_t self, uint64_t mine,
                         unsigned wait_ms, uint64_t *who, uint64_t *known);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_REPL_IDENTITY_H */
