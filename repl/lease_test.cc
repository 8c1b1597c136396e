// The read lease's parts (repl/lease.h), on a real libuv loop and UDP sockets
// on loopback, with libraft's state set by hand: the majority arithmetic; the
// wire format; what a follower promises and what the leader makes of it; the
// lease dropped before a term or vote is recorded and for the rest of a term
// after a transfer; vote requests held back while a node starts.
// repl/node_test runs the lease in three real replicas.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <chrono>
#include <cstdio>
#include <functional>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "gtest/gtest.h"
#include "repl/identity.h"
#include "repl/lease.h"
#include "repl/node.h"
#include "tests/core/test_util.h"

namespace {

using std::chrono::steady_clock;

TEST(LeaseQuorum, TheNeededLatestPromiseBoundsTheLease) {
  const int64_t p[] = {300, 100, 500, 0};
  EXPECT_EQ(nokv_lease_quorum_until(p, 4, 0), INT64_MAX);  // a single voter
  EXPECT_EQ(nokv_lease_quorum_until(p, 4, 1), 500);
  EXPECT_EQ(nokv_lease_quorum_until(p, 4, 2), 300);
  EXPECT_EQ(nokv_lease_quorum_until(p, 4, 3), 100);
  EXPECT_EQ(nokv_lease_quorum_until(p, 4, 4), 0);  // one never promised
  EXPECT_EQ(nokv_lease_quorum_until(p, 2, 3), 0);  // fewer peers than needed
}

TEST(LeaseWire, RoundTripsAndRefusesWhatIsNotAMessage) {
  nokv_lease_msg m{NOKV_LEASE_PROMISE, 3, 7, 42, 1, 123456};
  uint8_t buf[NOKV_LEASE_MSG_SIZE + 1];
  nokv_lease_encode(&m, buf);
  nokv_lease_msg got{};
  ASSERT_TRUE(nokv_lease_decode(buf, NOKV_LEASE_MSG_SIZE, &got));
  EXPECT_EQ(got.kind, m.kind);
  EXPECT_EQ(got.from, 3u);
  EXPECT_EQ(got.term, 7u);
  EXPECT_EQ(got.seq, 42u);
  EXPECT_EQ(got.leader, 1u);
  EXPECT_EQ(got.remaining_us, 123456);
  m.kind = NOKV_LEASE_SEEN;
  m.incarnation = 0x1122334455667788ull;
  m.subject = 9;
  m.known = 0x8877665544332211ull;
  nokv_lease_encode(&m, buf);
  ASSERT_TRUE(nokv_lease_decode(buf, NOKV_LEASE_MSG_SIZE, &got));
  EXPECT_EQ(got.kind, NOKV_LEASE_SEEN);
  EXPECT_EQ(got.incarnation, m.incarnation);
  EXPECT_EQ(got.subject, 9u);
  EXPECT_EQ(got.known, m.known);
  buf[5] = NOKV_LEASE_SEEN + 1;  // no such kind
  EXPECT_FALSE(nokv_lease_decode(buf, NOKV_LEASE_MSG_SIZE, &got));
  m.kind = NOKV_LEASE_PROMISE;
  nokv_lease_encode(&m, buf);
  EXPECT_FALSE(nokv_lease_decode(buf, NOKV_LEASE_MSG_SIZE - 1, &got));
  EXPECT_FALSE(nokv_lease_decode(buf, NOKV_LEASE_MSG_SIZE + 1, &got));
  for (size_t at : {0, 4, 5, 6}) {  // magic, version, kind, padding
    uint8_t bad[NOKV_LEASE_MSG_SIZE];
    memcpy(bad, buf, sizeof bad);
    bad[at] ^= 0x40;
    EXPECT_FALSE(nokv_lease_decode(bad, sizeof bad, &got)) << "byte " << at;
  }
  m.from = 0;  // no node is 0
  nokv_lease_encode(&m, buf);
  EXPECT_FALSE(nokv_lease_decode(buf, NOKV_LEASE_MSG_SIZE, &got));
}

// ---- identity (identity.h) ----

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

TEST(Identity, AnIncarnationIsMadeOnceAndADamagedOneRefused) {
  nokv_test::TempDir dir;
  char err[512] = "";
  EXPECT_EQ(nokv_incarnation_peek(dir.path().c_str()), 0u);
  uint64_t a = nokv_incarnation(dir.path().c_str(), err, sizeof err);
  ASSERT_NE(a, 0u) << err;
  EXPECT_EQ(nokv_incarnation(dir.path().c_str(), err, sizeof err), a);
  EXPECT_EQ(nokv_incarnation_peek(dir.path().c_str()), a);
  nokv_test::TempDir other;
  EXPECT_NE(nokv_incarnation(other.path().c_str(), err, sizeof err), a);  // random
  std::string path = dir.file(NOKV_INCARNATION_FILE), good = ReadAll(path);
  for (size_t at : {size_t{0}, size_t{13}, good.size() - 1}) {
    std::string bad = good;
    bad[at] ^= 1;
    WriteAll(path, bad);
    err[0] = '\0';
    EXPECT_EQ(nokv_incarnation(dir.path().c_str(), err, sizeof err), 0u) << at;
    EXPECT_NE(std::string(err).find("damaged"), std::string::npos) << err;
    EXPECT_EQ(nokv_incarnation_peek(dir.path().c_str()), 0u);
  }
  WriteAll(path, good.substr(0, good.size() - 3));  // torn
  EXPECT_EQ(nokv_incarnation(dir.path().c_str(), err, sizeof err), 0u);
}

TEST(Identity, MembersSeenAreKeptAcrossLoadsAndForgottenWhenRemoved) {
  nokv_test::TempDir dir;
  char err[512] = "";
  nokv_seen s;
  ASSERT_EQ(nokv_seen_load(&s, dir.path().c_str(), err, sizeof err), NOKV_OK) << err;
  EXPECT_EQ(nokv_seen_get(&s, 2), 0u);
  uint64_t before = 7;
  ASSERT_EQ(nokv_seen_set(&s, 2, 0xa2, &before), 1);
  EXPECT_EQ(before, 0u);
  ASSERT_EQ(nokv_seen_set(&s, 3, 0xa3, &before), 1);
  EXPECT_EQ(nokv_seen_set(&s, 3, 0xa3, &before), 0);  // already so
  nokv_seen full = s;
  for (uint64_t id = 100; full.n < NOKV_SEEN_MAX; id++) ASSERT_EQ(nokv_seen_set(&full, id, 1, &before), 1);
  EXPECT_EQ(nokv_seen_set(&full, 99, 1, &before), -1);  // no room: not recorded
  EXPECT_EQ(nokv_seen_get(&full, 99), 0u);
  ASSERT_EQ(nokv_seen_set(&s, 2, 0xb2, &before), 1);  // state made anew
  EXPECT_EQ(before, 0xa2u);
  ASSERT_EQ(nokv_seen_save(&s), 0);
  nokv_seen again;
  ASSERT_EQ(nokv_seen_load(&again, dir.path().c_str(), err, sizeof err), NOKV_OK) << err;
  EXPECT_EQ(nokv_seen_get(&again, 2), 0xb2u);
  EXPECT_EQ(nokv_seen_get(&again, 3), 0xa3u);
  const uint64_t members[] = {1, 3};
  ASSERT_TRUE(nokv_seen_keep(&again, members, 2));
  EXPECT_FALSE(nokv_seen_keep(&again, members, 2));  // nothing more to forget
  ASSERT_EQ(nokv_seen_save(&again), 0);
  ASSERT_EQ(nokv_seen_load(&s, dir.path().c_str(), err, sizeof err), NOKV_OK) << err;
  EXPECT_EQ(nokv_seen_get(&s, 2), 0u);
  EXPECT_EQ(nokv_seen_get(&s, 3), 0xa3u);
  std::string path = dir.file(NOKV_SEEN_FILE), good = ReadAll(path);
  std::string bad = good;
  bad[good.size() / 2] ^= 4;
  WriteAll(path, bad);
  EXPECT_EQ(nokv_seen_load(&s, dir.path().c_str(), err, sizeof err), NOKV_ECORRUPT);
  EXPECT_NE(std::string(err).find(NOKV_SEEN_FILE), std::string::npos) << err;
}

// The files' own I/O failing: said plainly, naming the file.
TEST(Identity, FileErrorsAreReportedWithTheirPath) {
  nokv_test::TempDir dir;
  char err[512] = "";
  std::string gone = dir.file("gone");
  EXPECT_EQ(nokv_incarnation(gone.c_str(), err, sizeof err), 0u);  // no such directory
  EXPECT_NE(std::string(err).find("cannot write " + gone + "/" NOKV_INCARNATION_FILE),
            std::string::npos)
      << err;
  ASSERT_EQ(mkdir(dir.file(NOKV_INCARNATION_FILE).c_str(), 0755), 0);  // unreadable as a file
  EXPECT_EQ(nokv_incarnation(dir.path().c_str(), err, sizeof err), 0u);
  EXPECT_NE(std::string(err).find(NOKV_INCARNATION_FILE), std::string::npos) << err;
  ASSERT_EQ(mkdir(dir.file(NOKV_SEEN_FILE).c_str(), 0755), 0);
  nokv_seen s;
  EXPECT_EQ(nokv_seen_load(&s, dir.path().c_str(), err, sizeof err), NOKV_EIO);
  EXPECT_NE(std::string(err).find(NOKV_SEEN_FILE), std::string::npos) << err;
  nokv_test::TempDir other;
  ASSERT_EQ(nokv_seen_load(&s, other.path().c_str(), err, sizeof err), NOKV_OK) << err;
  std::filesystem::remove_all(other.path());  // its directory gone: saving fails
  uint64_t before = 0;
  ASSERT_EQ(nokv_seen_set(&s, 2, 0xa2, &before), 1);
  EXPECT_EQ(nokv_seen_save(&s), ENOENT);
}

// A peer that answers ASK from a UDP socket, as a running node's lease does.
TEST(Identity, AskingPeersFindsOneThatSawThisNode) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  std::string addr = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  std::atomic<uint64_t> known{0};
  std::atomic<bool> stop{false};
  std::thread peer([&] {
    while (!stop) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      uint8_t in[NOKV_LEASE_MSG_SIZE];
      sockaddr_in from{};
      socklen_t flen = sizeof from;
      ssize_t got = recvfrom(fd, in, sizeof in, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      nokv_lease_msg m;
      if (got <= 0 || !nokv_lease_decode(in, got, &m) || m.kind != NOKV_LEASE_ASK) continue;
      nokv_lease_msg seen{NOKV_LEASE_SEEN, 2, 0, m.seq, 0, 0, 0x77, m.subject, known.load()};
      uint8_t out[NOKV_LEASE_MSG_SIZE];
      nokv_lease_encode(&seen, out);
      sendto(fd, out, sizeof out, 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
  });
  // Node 1 asks node 2 (which answers) and node 3 (down: it waits for it).
  nokv_repl_peer peers[] = {{1, "127.0.0.1:1"}, {2, addr.c_str()}, {3, "127.0.0.1:9"}};
  uint64_t who = 0, seen = 0;
  EXPECT_FALSE(nokv_seen_elsewhere(peers, 3, 1, 0, 300, &who, &seen));  // never seen
  known = 0x55;
  auto t0 = steady_clock::now();
  EXPECT_TRUE(nokv_seen_elsewhere(peers, 3, 1, 0, 5000, &who, &seen));  // lost its state
  EXPECT_LT(steady_clock::now() - t0, std::chrono::seconds(2)) << "waited for the peer that is down";
  EXPECT_EQ(who, 2u);
  EXPECT_EQ(seen, 0x55u);
  EXPECT_FALSE(nokv_seen_elsewhere(peers, 3, 1, 0x55, 300, &who, &seen));  // the same state
  stop = true;
  peer.join();
  close(fd);
}

// An inner I/O that records what the wrapper passes through.
struct StubIo {
  raft_io io{};
  raft_io_recv_cb recv = nullptr;
  int set_terms = 0, set_votes = 0;

  StubIo() {
    io.version = 2;
    io.start = [](raft_io* io, unsigned, raft_io_tick_cb, raft_io_recv_cb recv) {
      Of(io)->recv = recv;
      return 0;
    };
    io.set_term = [](raft_io* io, raft_term) {
      Of(io)->set_terms++;
      return 0;
    };
    io.set_vote = [](raft_io* io, raft_id) {
      Of(io)->set_votes++;
      return RAFT_IOERR;
    };
  }
  static StubIo* Of(raft_io* io) { return reinterpret_cast<StubIo*>(io); }
};
static_assert(offsetof(StubIo, io) == 0, "the stub's io comes first");

// A raft as libraft's code would leave it, set by hand.
struct FakeRaft {
  raft r{};
  explicit FakeRaft(raft_id id) {
    r.id = id;
    r.election_timeout = 400;
    raft_configuration_init(&r.configuration);
  }
  ~FakeRaft() { raft_configuration_close(&r.configuration); }
  void Voter(raft_id id, const std::string& address) {
    ASSERT_EQ(raft_configuration_add(&r.configuration, id, address.c_str(), RAFT_VOTER), 0);
  }
};

// Messages raft's recv callback got through the wrapper.
std::vector<int> delivered;
void Recorded(raft_io*, raft_message* m) { delivered.push_back(m->type); }

TEST(LeaseIo, HoldsVoteRequestsForAnElectionTimeoutAfterStarting) {
  for (unsigned timeout : {0u, 60000u}) {
    StubIo stub;
    nokv_lease* l = nokv_lease_new(&stub.io, true);
    ASSERT_NE(l, nullptr);
    FakeRaft f(1);
    f.r.election_timeout = timeout;
    f.r.io = nokv_lease_io(l);
    f.r.io->data = &f.r;
    ASSERT_EQ(f.r.io->start(f.r.io, 100, nullptr, Recorded), 0);
    ASSERT_NE(stub.recv, nullptr);
    EXPECT_EQ(stub.io.data, &f.r);  // libraft's callbacks find their raft

    delivered.clear();
    raft_message vote{};
    vote.type = RAFT_IO_REQUEST_VOTE;
    raft_message pre = vote;
    pre.request_vote.pre_vote = true;
    raft_message append{};
    append.type = RAFT_IO_APPEND_ENTRIES;
    stub.recv(&stub.io, &vote);
    stub.recv(&stub.io, &pre);
    stub.recv(&stub.io, &append);
    if (timeout == 0) {  // the hold is over: everything passes
      EXPECT_EQ(delivered, (std::vector<int>{RAFT_IO_REQUEST_VOTE, RAFT_IO_REQUEST_VOTE,
                                             RAFT_IO_APPEND_ENTRIES}));
      EXPECT_EQ(nokv_lease_votes_held(l), 0u);
    } else {  // within it: only the vote is held back (a pre-vote binds nothing)
      EXPECT_EQ(delivered, (std::vector<int>{RAFT_IO_REQUEST_VOTE, RAFT_IO_APPEND_ENTRIES}));
      EXPECT_EQ(nokv_lease_votes_held(l), 1u);
    }
    nokv_lease_free(l);
  }
}

TEST(LeasePromise, AFollowerPromisesWhatItsTimerHasLeftToTheLeaderItFollows) {
  FakeRaft f(2);
  f.r.state = RAFT_FOLLOWER;
  f.r.current_term = 5;
  f.r.follower_state.current_leader.id = 1;
  f.r.election_timer_start = 10000;  // ms, libraft's clock
  const uint64_t now_us = 10100 * 1000;
  nokv_lease_msg probe{NOKV_LEASE_PROBE, 1, 5, 9, 0, 0};
  nokv_lease_msg promise{};
  ASSERT_TRUE(nokv_lease_answer(&f.r, &probe, now_us, &promise));
  EXPECT_EQ(promise.kind, NOKV_LEASE_PROMISE);
  EXPECT_EQ(promise.from, 2u);
  EXPECT_EQ(promise.term, 5u);
  EXPECT_EQ(promise.seq, 9u);
  EXPECT_EQ(promise.leader, 1u);
  EXPECT_EQ(promise.remaining_us, 300 * 1000);  // 400 ms timeout, 100 ms gone

  nokv_lease_msg other = probe;
  other.from = 3;  // it follows 1, not 3
  EXPECT_FALSE(nokv_lease_answer(&f.r, &other, now_us, &promise));
  other = probe;
  other.term = 6;  // a term it has not seen
  EXPECT_FALSE(nokv_lease_answer(&f.r, &other, now_us, &promise));
  other = probe;
  other.kind = NOKV_LEASE_PROMISE;
  EXPECT_FALSE(nokv_lease_answer(&f.r, &other, now_us, &promise));
  EXPECT_FALSE(nokv_lease_answer(&f.r, &probe, 10400 * 1000, &promise));  // ran out
  f.r.state = RAFT_CANDIDATE;
  EXPECT_FALSE(nokv_lease_answer(&f.r, &probe, now_us, &promise));
}

TEST(LeasePromise, TheLeaderCountsFromTheProbeLessTheDriftBound) {
  // 300 ms left, 1% drift either way: 294 ms from the send time.
  EXPECT_EQ(nokv_lease_deadline(1000000000, 300000), 1000000000 + 294000000);
}

// A loop with leases listening on loopback.
class LeaseLoop : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    for (nokv_lease* l : leases_) nokv_lease_close(l);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    for (nokv_lease* l : leases_) nokv_lease_free(l);
  }

  // A lease for f over stub, listening on an ephemeral port; its address.
  std::string Listen(FakeRaft* f, StubIo* stub, nokv_lease** out) {
    nokv_lease* l = nokv_lease_new(&stub->io, true);
    EXPECT_NE(l, nullptr);
    leases_.push_back(l);
    f->r.io = nokv_lease_io(l);
    f->r.io->data = &f->r;
    EXPECT_EQ(nokv_lease_listen(l, &loop_, &f->r, "127.0.0.1:0"), 0);
    EXPECT_NE(nokv_lease_port(l), 0);
    *out = l;
    return "127.0.0.1:" + std::to_string(nokv_lease_port(l));
  }

  // Runs the loop until cond holds or 10 s pass.
  bool RunUntil(const std::function<bool()>& cond) {
    auto deadline = steady_clock::now() + std::chrono::seconds(10);
    while (!cond()) {
      if (steady_clock::now() > deadline) return false;
      uv_run(&loop_, UV_RUN_NOWAIT);
    }
    return true;
  }

  uv_loop_t loop_{};
  std::vector<nokv_lease*> leases_;
};

// A leader of three voters, one answering follower and one silent: the
// follower's promise alone, with the leader, is a majority.
TEST_F(LeaseLoop, AFollowersPromiseGivesTheLeaderALeaseUntilItIsDropped) {
  StubIo lio, fio;
  FakeRaft lead(1), fol(2);
  nokv_lease *leader, *follower;
  std::string leader_at = Listen(&lead, &lio, &leader);
  std::string follower_at = Listen(&fol, &fio, &follower);
  lead.Voter(1, leader_at);
  lead.Voter(2, follower_at);
  lead.Voter(3, "127.0.0.1:9");  // nobody answers there
  lead.r.state = RAFT_LEADER;
  lead.r.current_term = 5;
  fol.r.state = RAFT_FOLLOWER;
  fol.r.current_term = 5;
  fol.r.follower_state.current_leader.id = 1;
  auto heard_now = [&] {
    uv_update_time(&loop_);
    fol.r.election_timer_start = uv_now(&loop_);
  };

  // Not before an entry of its term is applied (the next index, 1).
  heard_now();
  nokv_lease_tick(leader);
  ASSERT_TRUE(RunUntil([&] { return nokv_lease_promises(leader) >= 1; }));
  EXPECT_FALSE(nokv_lease_holds(leader));
  lead.r.last_applied = 1;
  nokv_lease_tick(leader);
  ASSERT_TRUE(RunUntil([&] { return nokv_lease_holds(leader); }));
  int64_t left = nokv_lease_remaining_ms(leader);
  EXPECT_GT(left, 0);
  EXPECT_LE(left, 392);  // 400 ms less 2%, from before the probe left
  EXPECT_FALSE(nokv_lease_holds(follower));

  // Recording a term drops it before the term is written.
  EXPECT_EQ(lead.r.io->set_term(lead.r.io, 6), 0);
  EXPECT_EQ(lio.set_terms, 1);
  EXPECT_FALSE(nokv_lease_holds(leader));

  // A new term: promises start over.
  lead.r.current_term = fol.r.current_term = 6;
  heard_now();
  uint64_t taken = nokv_lease_promises(leader);
  nokv_lease_tick(leader);
  EXPECT_FALSE(nokv_lease_holds(leader));  // last term's promise does not count
  ASSERT_TRUE(RunUntil([&] { return nokv_lease_promises(leader) > taken; }));
  lead.r.last_applied = 2;
  nokv_lease_tick(leader);
  ASSERT_TRUE(RunUntil([&] { return nokv_lease_holds(leader); }));

  // Recording a vote drops it too, and an error passes through with its text.
  snprintf(lio.io.errmsg, sizeof lio.io.errmsg, "disk full");
  EXPECT_EQ(lead.r.io->set_vote(lead.r.io, 2), RAFT_IOERR);
  EXPECT_STREQ(lead.r.io->errmsg, "disk full");
  EXPECT_FALSE(nokv_lease_holds(leader));

  // Dropped for a transfer: not renewed in this term, promises or not.
  heard_now();
  nokv_lease_tick(leader);
  ASSERT_TRUE(RunUntil([&] { return nokv_lease_holds(leader); }));
  nokv_lease_drop(leader);
  EXPECT_FALSE(nokv_lease_holds(leader));
  taken = nokv_lease_promises(leader);
  nokv_lease_tick(leader);  // sends no probe
  heard_now();
  EXPECT_FALSE(nokv_lease_holds(leader));

  // A follower that stepped out of the configuration's voters counts for
  // nothing: with 2 of 3 silent, no majority.
  lead.r.current_term = fol.r.current_term = 7;
  lead.r.last_applied = 3;
  raft_configuration_close(&lead.r.configuration);
  raft_configuration_init(&lead.r.configuration);
  lead.Voter(1, leader_at);
  lead.Voter(3, "127.0.0.1:9");
  ASSERT_EQ(raft_configuration_add(&lead.r.configuration, 2, follower_at.c_str(), RAFT_SPARE), 0);
  nokv_lease_tick(leader);
  EXPECT_FALSE(nokv_lease_holds(leader));

  // A single voter needs no promise.
  raft_configuration_close(&lead.r.configuration);
  raft_configuration_init(&lead.r.configuration);
  lead.Voter(1, leader_at);
  nokv_lease_tick(leader);
  EXPECT_TRUE(nokv_lease_holds(leader));
  lead.r.state = RAFT_FOLLOWER;  // stepped down: the next tick drops it
  nokv_lease_tick(leader);
  EXPECT_FALSE(nokv_lease_holds(leader));
}

}  // namespace
