// Three replicas in one process on libraft's real libuv I/O (TCP on loopback,
// logs on disk): entries proposed on the leader are applied by all three at
// the same timestamps; a follower refuses proposals and reads; the leader's
// announced client address reaches the followers; after the leader stops, the
// other two elect a new one and go on; the old one, restarted on its own log
// and engine, catches up.
#include <netinet/in.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "repl/identity.h"
#include "repl/node.h"
#include "tests/core/test_util.h"

// For ThreadSanitizer: Debian's libuv (not built with it) closes descriptors
// with a raw close system call, which TSan does not see, so a number libuv
// opened and closed looks still owned by its thread when the engine reuses it
// (a "race" between libuv's socket() and the engine's closedir()). Reports
// with libuv on a stack are left out: its own accesses are not instrumented,
// so only such calls of its can appear there.
extern "C" const char* __tsan_default_suppressions() { return "race:libuv.so.1\n"; }

namespace {

using nokv_test::GetAt;
using nokv_test::TempDir;
using std::chrono::steady_clock;

// A port on loopback free for TCP and UDP now (a node's Raft port carries
// both), drawn below Linux's ephemeral range, which outgoing connections take
// their ports from.
// Claimed against the other tests running at once, as tests/service/cluster.py
// does: an flock on /tmp/nokv-test-ports/PORT, held until the process exits.
bool ClaimPort(int port) {
  const char* dir = "/tmp/nokv-test-ports";
  mkdir(dir, 0777);
  int fd = open((std::string(dir) + "/" + std::to_string(port)).c_str(), O_RDWR | O_CREAT, 0666);
  if (fd < 0) return true;  // no shared directory: the bind check alone
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return false;
  }
  return true;  // fd stays open: the claim lasts as long as the process
}

int FreePort() {
  static std::mt19937 rng(std::random_device{}());
  for (int tries = 0; tries < 1000; tries++) {
    int port = 20000 + static_cast<int>(rng() % 12000);
    if (!ClaimPort(port)) continue;
    bool free = true;
    for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
      int fd = socket(AF_INET, type, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(port));
      free = free && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      close(fd);
    }
    if (free) return port;
  }
  return -1;
}

// Polls cond (a replica's state, which its own thread moves) until it holds
// or 30 s pass.
bool WaitFor(const std::function<bool()>& cond) {
  auto deadline = steady_clock::now() + std::chrono::seconds(30);
  while (!cond()) {
    if (steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// One call's outcome, waited for.
struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  nokv_repl_outcome out{};
  static void Cb(void* arg, const nokv_repl_outcome* o) {
    auto* w = static_cast<Waiter*>(arg);
    std::lock_guard<std::mutex> l(w->mu);
    w->out = *o;
    w->done = true;
    w->cv.notify_all();
  }
  // The outcome; rc 1 (no answer at all) after 30 s.
  nokv_repl_outcome Wait() {
    std::unique_lock<std::mutex> l(mu);
    if (!cv.wait_for(l, std::chrono::seconds(30), [&] { return done; })) return {1, 0, 0};
    return out;
  }
};

class NodeTest : public ::testing::Test {
 protected:
  static constexpr int kNodes = 3;  // the first members; one more may join
  static constexpr int kMax = 4;

  void SetUp() override {
    for (int i = 0; i < kMax; i++) {
      int port = FreePort();
      ASSERT_GT(port, 0);
      addrs_[i] = (host_names_ ? "localhost:" : "127.0.0.1:") + std::to_string(port);
      clients_[i] = "client-" + std::to_string(i + 1) + ":50051";
      peers_[i] = {static_cast<uint64_t>(i + 1), addrs_[i].c_str()};
    }
    for (int i = 0; i < initial_; i++) Start(i);
  }
  void TearDown() override {
    for (int i = 0; i < kMax; i++) Stop(i);
  }

  // join: start with no peers, to be added to the running group.
  void Start(int i, bool join = false) {
    char err[256] = "";
    ASSERT_EQ(TryStart(i, join, err, sizeof err), NOKV_OK) << err;
  }
  // Opens replica i's engine and starts its node; the node's answer. On
  // failure the engine stays open (Stop closes it).
  int TryStart(int i, bool join, char* err, size_t errlen) {
    nokv_options o;
    nokv_options_init(&o);
    o.value_threshold = 64;
    int rc = nokv_open((dirs_[i].path() + "/db").c_str(), &o, &dbs_[i]);
    if (rc != NOKV_OK) {
      snprintf(err, errlen, "%s", nokv_errmsg());
      return rc;
    }
    nokv_repl_options ro = {};
    ro.id = i + 1;
    ro.address = addrs_[i].c_str();
    ro.client_address = clients_[i].c_str();
    std::string dir = dirs_[i].path() + "/raft";
    ro.dir = dir.c_str();
    ro.peers = peers_;
    ro.n_peers = join ? 0 : kNodes;
    ro.election_timeout_ms = 300;
    ro.heartbeat_ms = 30;
    ro.snapshot_entries = snapshot_entries_;
    ro.snapshot_trailing = snapshot_trailing_;
    ro.entries_in_flight = entries_in_flight_;
    ro.peer_check_ms = 200;  // peers not started yet answer nothing: a short wait
    ro.catch_up_ms = catch_up_ms_;
    ro.fetch = &NodeTest::Fetch;
    ro.fetch_ctx = this;
    return nokv_repl_node_start(dbs_[i], &ro, &nodes_[i], err, errlen);
  }
  void Stop(int i) {
    if (nodes_[i] != nullptr) nokv_repl_node_stop(nodes_[i]);
    nodes_[i] = nullptr;
    if (dbs_[i] != nullptr) {
      EXPECT_EQ(nokv_close(dbs_[i]), NOKV_OK) << nokv_errmsg();
    }
    dbs_[i] = nullptr;
  }

  // Replica i's disk lost: everything under its directory gone.
  void Wipe(int i) {
    for (auto& e : std::filesystem::directory_iterator(dirs_[i].path())) {
      std::filesystem::remove_all(e.path());
    }
  }

  // The replica that leads, once one does and every running one agrees.
  int Leader() {
    int leader = -1;
    bool ok = WaitFor([&] {
      leader = -1;
      for (int i = 0; i < kMax; i++) {
        if (nodes_[i] != nullptr && nokv_repl_is_leader(nodes_[i])) leader = i;
      }
      if (leader < 0) return false;
      for (int i = 0; i < kMax; i++) {
        if (nodes_[i] == nullptr) continue;
        if (nokv_repl_leader(nodes_[i], nullptr, 0) != static_cast<uint64_t>(leader + 1)) {
          return false;
        }
      }
      return true;
    });
    EXPECT_TRUE(ok) << "no leader elected";
    return leader;
  }

  nokv_repl_outcome Put(int i, const std::string& k, const std::string& v) {
    nokv_batch* b;
    EXPECT_EQ(nokv_batch_new(&b), NOKV_OK);
    nokv_batch_put(b, k.data(), k.size(), v.data(), v.size());
    raft_buffer e;
    EXPECT_EQ(nokv_repl_entry(b, &e), NOKV_OK);
    nokv_batch_free(b);
    Waiter w;
    nokv_repl_propose(nodes_[i], e, &Waiter::Cb, &w);
    return w.Wait();
  }

  // Puts k0 .. k(n-1) = "v" through replica i; the last one's commit timestamp.
  uint64_t PutKeys(int i, int n) {
    uint64_t ts = 0;
    for (int k = 0; k < n; k++) ts = Put(i, "k" + std::to_string(k), "v").commit_ts;
    return ts;
  }

  // Put through whichever replica leads: one refused, or of unknown outcome
  // (elections come and go under a loaded sanitizer build), goes again to the
  // replica whose loop says it leads now, which *leader follows (the puts are
  // idempotent). Leader() would not do: it reads the state cached per tick.
  nokv_repl_outcome PutToLeader(int* leader, const std::string& k, const std::string& v) {
    nokv_repl_outcome o{};
    auto deadline = steady_clock::now() + std::chrono::seconds(30);
    while (steady_clock::now() < deadline) {
      o = Put(*leader, k, v);
      if (o.rc != NOKV_REPL_ENOTLEADER && o.rc != NOKV_REPL_EUNKNOWN) break;
      EXPECT_TRUE(WaitFor([&] {
        for (int i = 0; i < kMax; i++) {
          nokv_repl_status st;
          if (nodes_[i] != nullptr && nokv_repl_node_status(nodes_[i], &st) == NOKV_OK &&
              st.state == RAFT_LEADER) {
            *leader = i;
            return true;
          }
        }
        return false;
      }));
    }
    return o;
  }

  nokv_repl_outcome Change(int on, nokv_repl_change_kind kind, int target) {
    Waiter w;
    nokv_repl_change(nodes_[on], kind, target < 0 ? 0 : target + 1,
                     target < 0 ? nullptr : addrs_[target].c_str(), &Waiter::Cb, &w);
    return w.Wait();
  }

  // A snapshot ahead of a replica's engine: recorded, for the test to install.
  static void Fetch(void* ctx, const nokv_repl_snapshot_info* info) {
    auto* t = static_cast<NodeTest*>(ctx);
    std::lock_guard<std::mutex> l(t->fetch_mu_);
    t->fetches_.push_back(*info);
  }
  size_t fetches() {
    std::lock_guard<std::mutex> l(fetch_mu_);
    return fetches_.size();
  }

  unsigned snapshot_entries_ = 0, snapshot_trailing_ = 0;  // 0: the node's defaults
  unsigned entries_in_flight_ = 0;
  unsigned catch_up_ms_ = 0;
  int initial_ = kNodes;  // first members started by SetUp
  bool host_names_ = false;  // peers by name (localhost), not IPv4 literals
  std::mutex fetch_mu_;
  std::vector<nokv_repl_snapshot_info> fetches_;
  TempDir dirs_[kMax];
  std::string addrs_[kMax], clients_[kMax];
  nokv_repl_peer peers_[kMax];
  nokv_db* dbs_[kMax] = {};
  nokv_repl_node* nodes_[kMax] = {};
};

TEST_F(NodeTest, ReplicatesThroughElectionsAndRestarts) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  uint64_t last_ts = 0;
  for (int k = 0; k < 50; k++) {
    std::string v = k % 5 == 0 ? std::string(200, 'v') : "v" + std::to_string(k);  // some in vlog
    nokv_repl_outcome o = Put(leader, "k" + std::to_string(k), v);
    ASSERT_EQ(o.rc, NOKV_OK) << k;
    EXPECT_GT(o.commit_ts, last_ts);
    EXPECT_EQ(o.commit_ts % (1u << NOKV_REPL_TS_SHIFT), 0u);
    last_ts = o.commit_ts;
  }
  // Every replica applies them, at the leader's timestamps; the followers
  // learned the leader's client address from the log.
  for (int i = 0; i < kNodes; i++) {
    ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[i]) == last_ts; })) << i;
    EXPECT_EQ(GetAt(dbs_[i], "k49"), "v49");
    char client[NOKV_REPL_ADDR_MAX];
    EXPECT_EQ(nokv_repl_leader(nodes_[i], client, sizeof client),
              static_cast<uint64_t>(leader + 1));
    EXPECT_EQ(std::string(client), clients_[leader]) << i;
  }

  // A follower proposes nothing and serves no linearizable read.
  int follower = (leader + 1) % kNodes;
  EXPECT_EQ(Put(follower, "x", "y").rc, NOKV_REPL_ENOTLEADER);
  Waiter r1;
  nokv_repl_read_index(nodes_[follower], &Waiter::Cb, &r1);
  EXPECT_EQ(r1.Wait().rc, NOKV_REPL_ENOTLEADER);
  Waiter r2;
  nokv_repl_read_index(nodes_[leader], &Waiter::Cb, &r2);
  nokv_repl_outcome ro = r2.Wait();
  EXPECT_EQ(ro.rc, NOKV_OK);
  EXPECT_GE(ro.commit_ts, last_ts);

  nokv_repl_status st;
  ASSERT_EQ(nokv_repl_node_status(nodes_[leader], &st), NOKV_OK);
  EXPECT_EQ(st.state, RAFT_LEADER);
  EXPECT_EQ(st.n_members, 3u);
  EXPECT_GE(st.commit_index, 50u);
  // Every member's match index, once it has answered this term's leader (a
  // leader elected again, as a slow sanitizer build may see, starts from 0).
  EXPECT_TRUE(WaitFor([&] {
    if (nokv_repl_node_status(nodes_[leader], &st) != NOKV_OK) return false;
    for (size_t m = 0; m < st.n_members; m++) {
      if (st.members[m].match_index == 0) return false;
    }
    return true;
  }));

  // The leader stops; the other two elect one of themselves and go on.
  Stop(leader);
  int next = Leader();
  ASSERT_GE(next, 0);
  ASSERT_NE(next, leader);
  for (int k = 50; k < 80; k++) {
    nokv_repl_outcome o = Put(next, "k" + std::to_string(k), "w" + std::to_string(k));
    ASSERT_EQ(o.rc, NOKV_OK) << k;
    EXPECT_GT(o.commit_ts, last_ts);
    last_ts = o.commit_ts;
  }
  // The old leader comes back on its own log and engine, and catches up.
  Start(leader);
  ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[leader]) == last_ts; }));
  for (int i = 0; i < kNodes; i++) {
    EXPECT_EQ(GetAt(dbs_[i], "k79"), "w79") << i;
    EXPECT_EQ(GetAt(dbs_[i], "k0"), std::string(200, 'v')) << i;
  }
}

// Proposals from many threads at once: those that reach the node's loop
// together go into one log entry (fsm.h's MULTI), yet each is answered with
// its own commit timestamp, and every replica applies every one of them.
TEST_F(NodeTest, ConcurrentProposalsAreEachAnsweredAndAppliedEverywhere) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  nokv_repl_status before;
  ASSERT_EQ(nokv_repl_node_status(nodes_[leader], &before), NOKV_OK);
  constexpr int kThreads = 8, kEach = 50;
  std::vector<uint64_t> ts(kThreads * kEach);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; i++) {
        nokv_repl_outcome o = Put(leader, "c" + std::to_string(t * kEach + i), "v");
        EXPECT_EQ(o.rc, NOKV_OK);
        ts[t * kEach + i] = o.commit_ts;
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<uint64_t> sorted = ts;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end()) << "a timestamp given twice";
  for (int i = 0; i < kNodes; i++) {
    ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[i]) >= sorted.back(); })) << i;
    for (int k = 0; k < kThreads * kEach; k += 37) {
      auto got = nokv_test::Get(dbs_[i], "c" + std::to_string(k));
      ASSERT_TRUE(got.has_value()) << i << " " << k;
      EXPECT_EQ(got->commit_ts, ts[k]) << i << " " << k;
    }
  }
  nokv_repl_status after;
  ASSERT_EQ(nokv_repl_node_status(nodes_[leader], &after), NOKV_OK);
  printf("%d proposals in %llu log entries\n", kThreads * kEach,
         (unsigned long long)(after.last_index - before.last_index));

  // The same on a follower: proposals gathered together are refused together,
  // each answered, none applied anywhere.
  int follower = (leader + 1) % kNodes;
  std::atomic<int> refused{0};
  threads.clear();
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; i++) {
        nokv_repl_outcome o = Put(follower, "f" + std::to_string(t * kEach + i), "v");
        if (o.rc == NOKV_REPL_ENOTLEADER) refused++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(refused.load(), kThreads * kEach);
  uint64_t fence = Put(leader, "fence", "v").commit_ts;
  for (int i = 0; i < kNodes; i++) {
    ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[i]) >= fence; })) << i;
    for (int k = 0; k < kThreads * kEach; k += 37) {
      EXPECT_FALSE(nokv_test::Get(dbs_[i], "f" + std::to_string(k)).has_value()) << i << " " << k;
    }
  }
}

TEST_F(NodeTest, StoppingAnswersWhatIsPending) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  // Proposals racing the stop are each answered once: applied, or not.
  std::vector<std::unique_ptr<Waiter>> ws;
  for (int k = 0; k < 20; k++) {
    ws.push_back(std::make_unique<Waiter>());
    nokv_batch* b;
    ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
    nokv_batch_put(b, "k", 1, "v", 1);
    raft_buffer e;
    ASSERT_EQ(nokv_repl_entry(b, &e), NOKV_OK);
    nokv_batch_free(b);
    nokv_repl_propose(nodes_[leader], e, &Waiter::Cb, ws.back().get());
  }
  nokv_repl_node_stop(nodes_[leader]);
  nodes_[leader] = nullptr;
  for (auto& w : ws) {
    int rc = w->Wait().rc;
    EXPECT_TRUE(rc == NOKV_OK || rc == NOKV_REPL_EUNKNOWN || rc == NOKV_REPL_ESTOPPED) << rc;
  }
}



TEST_F(NodeTest, StopsWhileItCannotCommit) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  ASSERT_EQ(Put(leader, "a", "1").rc, NOKV_OK);
  for (int i = 0; i < kNodes; i++) {
    if (i != leader) Stop(i);
  }
  // With no majority, these are stored but never committed: stopping answers
  // them as of unknown outcome (a later leader could still commit them).
  std::vector<std::unique_ptr<Waiter>> ws;
  for (int k = 0; k < 5; k++) {
    ws.push_back(std::make_unique<Waiter>());
    nokv_batch* b;
    ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
    nokv_batch_put(b, "b", 1, "2", 1);
    raft_buffer e;
    ASSERT_EQ(nokv_repl_entry(b, &e), NOKV_OK);
    nokv_batch_free(b);
    nokv_repl_propose(nodes_[leader], e, &Waiter::Cb, ws.back().get());
  }
  Stop(leader);
  for (auto& w : ws) {
    int rc = w->Wait().rc;  // ESTOPPED: still waiting to be proposed
    EXPECT_TRUE(rc == NOKV_REPL_EUNKNOWN || rc == NOKV_REPL_ENOTLEADER ||
                rc == NOKV_REPL_ESTOPPED) << rc;
  }
}
TEST_F(NodeTest, AddsRemovesAndTransfers) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  uint64_t last_ts = PutKeys(leader, 20);
  // A fourth node, started with no peers, is added: it catches up and votes.
  Start(3, /*join=*/true);
  nokv_repl_outcome o = Change(leader, NOKV_REPL_ADD, 3);
  ASSERT_EQ(o.rc, NOKV_OK) << (o.msg ? o.msg : "");
  ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[3]) >= last_ts; }));
  EXPECT_EQ(GetAt(dbs_[3], "k19"), "v");
  nokv_repl_status st;
  ASSERT_EQ(nokv_repl_node_status(nodes_[leader], &st), NOKV_OK);
  ASSERT_EQ(st.n_members, 4u);
  for (size_t m = 0; m < st.n_members; m++) EXPECT_EQ(st.members[m].role, RAFT_VOTER) << m;
  // Adding it twice, or changing on a follower, is refused plainly.
  EXPECT_EQ(Change(leader, NOKV_REPL_ADD, 3).rc, NOKV_EINVAL);
  EXPECT_EQ(Change((leader + 1) % kNodes, NOKV_REPL_REMOVE, 3).rc, NOKV_REPL_ENOTLEADER);

  // Leadership moves to the new node, which then removes a first member.
  // (A transfer that the target does not complete within an election timeout
  // is answered NOKV_ETIMEDOUT, honestly; on a loaded machine, it is retried.)
  int rc = NOKV_ETIMEDOUT;
  for (int tries = 0; tries < 10 && rc == NOKV_ETIMEDOUT; tries++) {
    rc = Change(leader, NOKV_REPL_TRANSFER, 3).rc;
    if (rc == NOKV_REPL_ENOTLEADER && nokv_repl_is_leader(nodes_[3])) rc = NOKV_OK;  // it did
  }
  ASSERT_EQ(rc, NOKV_OK);
  ASSERT_TRUE(WaitFor([&] { return !nokv_repl_is_leader(nodes_[leader]); }));
  ASSERT_EQ(Leader(), 3);
  int gone = leader == 0 ? 1 : 0;
  ASSERT_EQ(Change(3, NOKV_REPL_REMOVE, gone).rc, NOKV_OK);
  Stop(gone);
  ASSERT_EQ(nokv_repl_node_status(nodes_[3], &st), NOKV_OK);
  EXPECT_EQ(st.n_members, 3u);
  // The three left commit without it.
  nokv_repl_outcome p = Put(3, "after", "removal");
  ASSERT_EQ(p.rc, NOKV_OK);
  for (int i = 0; i < kMax; i++) {
    if (nodes_[i] == nullptr) continue;
    ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[i]) >= p.commit_ts; })) << i;
  }
}

// The leader's read lease (lease.h): a read is answered at once, on the
// caller's thread, while a follower's promise holds; a transfer drops it; with
// no follower left to answer it lapses within an election timeout, and reads
// go through the log again.
TEST_F(NodeTest, LeaseAnswersReadsAtOnceUntilItCannotBeRenewed) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  uint64_t ts = Put(leader, "k", "v").commit_ts;
  auto status = [&](int i) {
    nokv_repl_status st{};
    EXPECT_EQ(nokv_repl_node_status(nodes_[i], &st), NOKV_OK);
    return st;
  };
  ASSERT_TRUE(WaitFor([&] { return status(leader).lease_ms > 0; }));
  EXPECT_LE(status(leader).lease_ms, 300);  // the election timeout
  for (int i = 0; i < kNodes; i++) {
    if (i != leader) {
      EXPECT_EQ(status(i).lease_ms, 0) << i;
    }
  }

  struct Inline {
    std::thread::id thread;
    nokv_repl_outcome out{};
    std::atomic<bool> done{false};
    static void Cb(void* arg, const nokv_repl_outcome* o) {
      auto* r = static_cast<Inline*>(arg);
      r->thread = std::this_thread::get_id();
      r->out = *o;
      r->done = true;
    }
  };
  uint64_t barrier_reads = status(leader).barrier_reads;
  Inline r;
  nokv_repl_read_index(nodes_[leader], &Inline::Cb, &r);
  ASSERT_TRUE(r.done);  // before the call returned
  EXPECT_EQ(r.thread, std::this_thread::get_id());
  EXPECT_EQ(r.out.rc, NOKV_OK);
  EXPECT_GE(r.out.commit_ts, ts);
  EXPECT_GE(status(leader).lease_reads, 1u);
  EXPECT_EQ(status(leader).barrier_reads, barrier_reads);

  // A transfer drops the lease as it is asked, whatever its outcome (one the
  // target does not complete in time is asked again, as in AddsRemovesAndTransfers).
  int target = (leader + 1) % kNodes;
  int rc = NOKV_ETIMEDOUT;
  for (int tries = 0; tries < 10 && rc == NOKV_ETIMEDOUT; tries++) {
    rc = Change(leader, NOKV_REPL_TRANSFER, target).rc;
    EXPECT_EQ(status(leader).lease_ms, 0);
    if (rc == NOKV_REPL_ENOTLEADER && nokv_repl_is_leader(nodes_[target])) rc = NOKV_OK;
  }
  ASSERT_EQ(rc, NOKV_OK);

  // The next leader takes one; then its followers stop answering.
  ASSERT_TRUE(WaitFor([&] { return !nokv_repl_is_leader(nodes_[leader]); }));
  int next = Leader();
  ASSERT_EQ(next, target);
  ASSERT_TRUE(WaitFor([&] { return status(next).lease_ms > 0; }));
  for (int i = 0; i < kNodes; i++) {
    if (i != next) Stop(i);
  }
  auto stopped = steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return status(next).lease_ms == 0; }));
  EXPECT_LT(steady_clock::now() - stopped, std::chrono::milliseconds(300 + 1000));
  Waiter w;
  nokv_repl_read_index(nodes_[next], &Waiter::Cb, &w);
  EXPECT_EQ(w.Wait().rc, NOKV_REPL_ENOTLEADER);  // no barrier commits; it steps down
  EXPECT_GT(status(next).barrier_reads, 0u);
}

// A node that cannot listen for lease probes (its Raft port taken for UDP)
// does not start, says why, and leaves nothing running.
TEST_F(NodeTest, StartFailsPlainlyWhenTheLeasePortIsTaken) {
  int port = std::stoi(addrs_[3].substr(addrs_[3].rfind(':') + 1));
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  char err[256] = "";
  EXPECT_EQ(TryStart(3, /*join=*/true, err, sizeof err), NOKV_EIO);
  EXPECT_EQ(nodes_[3], nullptr);
  EXPECT_NE(std::string(err).find("lease probes on udp " + addrs_[3]), std::string::npos) << err;
  close(fd);
  Stop(3);  // the engine only
  Start(3, /*join=*/true);  // the port free again: it starts
}

// Log compaction: snapshots every 32 entries, keeping 8.
// One entry in flight at a time: what arrives meanwhile waits, and goes into
// the next entry with everything else that waits.
class OneEntryInFlightTest : public NodeTest {
 protected:
  void SetUp() override {
    entries_in_flight_ = 1;
    NodeTest::SetUp();
  }
  // Proposes n puts keyed prefix+i at once, without waiting for any.
  std::vector<std::unique_ptr<Waiter>> ProposeMany(int i, const std::string& prefix, int n) {
    std::vector<std::unique_ptr<Waiter>> ws;
    for (int k = 0; k < n; k++) {
      ws.push_back(std::make_unique<Waiter>());
      nokv_batch* b;
      EXPECT_EQ(nokv_batch_new(&b), NOKV_OK);
      std::string key = prefix + std::to_string(k);
      nokv_batch_put(b, key.data(), key.size(), "v", 1);
      raft_buffer e;
      EXPECT_EQ(nokv_repl_entry(b, &e), NOKV_OK);
      nokv_batch_free(b);
      nokv_repl_propose(nodes_[i], e, &Waiter::Cb, ws.back().get());
    }
    return ws;
  }
};

TEST_F(OneEntryInFlightTest, ProposalsThatWaitGoTogetherInArrivalOrder) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  nokv_repl_status before, after;
  ASSERT_EQ(nokv_repl_node_status(nodes_[leader], &before), NOKV_OK);
  constexpr int kN = 600;  // more than one entry may carry (NOKV_REPL_MULTI_MAX)
  auto ws = ProposeMany(leader, "h", kN);
  uint64_t prev = 0;
  for (int k = 0; k < kN; k++) {
    nokv_repl_outcome o = ws[k]->Wait();
    ASSERT_EQ(o.rc, NOKV_OK) << k;
    EXPECT_GT(o.commit_ts, prev) << "proposal " << k << " applied out of its arrival order";
    prev = o.commit_ts;
  }
  ASSERT_EQ(nokv_repl_node_status(nodes_[leader], &after), NOKV_OK);
  uint64_t entries = after.last_index - before.last_index;
  printf("%d proposals in %llu log entries\n", kN, (unsigned long long)entries);
  // Proposed at once, they wait while one entry is in flight: a few entries
  // carry them all (one each would be 600).
  EXPECT_LE(entries, 60u);
  for (int i = 0; i < kNodes; i++) {
    ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[i]) >= prev; })) << i;
    for (int k = 0; k < kN; k += 31) EXPECT_EQ(GetAt(dbs_[i], "h" + std::to_string(k)), "v") << i;
  }
}

// Proposals still waiting when leadership moves are each answered: those
// refused are applied nowhere, those acknowledged everywhere.
TEST_F(OneEntryInFlightTest, WaitingProposalsAreAnsweredWhenLeadershipMoves) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  int target = (leader + 1) % kNodes;
  constexpr int kN = 2000;
  auto ws = ProposeMany(leader, "t", kN);
  ASSERT_EQ(ws[0]->Wait().rc, NOKV_OK);  // entries flow; most still wait
  Waiter moved;
  nokv_repl_change(nodes_[leader], NOKV_REPL_TRANSFER, target + 1, nullptr, &Waiter::Cb, &moved);
  std::vector<int> rcs(kN);
  int ok = 0, refused = 0;
  for (int k = 0; k < kN; k++) {
    rcs[k] = ws[k]->Wait().rc;
    ASSERT_TRUE(rcs[k] == NOKV_OK || rcs[k] == NOKV_REPL_ENOTLEADER || rcs[k] == NOKV_REPL_EUNKNOWN)
        << k << ": " << rcs[k];
    ok += rcs[k] == NOKV_OK;
    refused += rcs[k] == NOKV_REPL_ENOTLEADER;
  }
  moved.Wait();  // done, or timed out: either way leadership settles
  printf("%d acknowledged, %d refused, %d unknown\n", ok, refused, kN - ok - refused);
  EXPECT_GT(ok, 0);
  EXPECT_GT(refused, 0) << "no proposal was still waiting when leadership moved";
  // A write after all of them, through whichever node leads by then (the
  // transfer may still be settling: a refused try is tried again).
  uint64_t fence = 0;
  for (int tries = 0; tries < 50 && fence == 0; tries++) {
    int now = Leader();
    ASSERT_GE(now, 0);
    nokv_repl_outcome o = Put(now, "fence", "v");
    if (o.rc == NOKV_OK) {
      fence = o.commit_ts;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ASSERT_GT(fence, 0u);
  for (int i = 0; i < kNodes; i++) {
    ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[i]) >= fence; })) << i;
    for (int k = 0; k < kN; k++) {
      bool there = nokv_test::Get(dbs_[i], "t" + std::to_string(k)).has_value();
      if (rcs[k] == NOKV_OK) {
        ASSERT_TRUE(there) << i << " " << k;
      } else if (rcs[k] == NOKV_REPL_ENOTLEADER) {
        ASSERT_FALSE(there) << i << " " << k;
      }
    }
  }
}

// What replica i's record holds of node id (identity.h).
uint64_t SeenBy(const std::string& raft_dir, uint64_t id) {
  nokv_seen s;
  char err[256];
  if (nokv_seen_load(&s, raft_dir.c_str(), err, sizeof err) != NOKV_OK) return 0;
  return nokv_seen_get(&s, id);
}

// A first member whose state is lost (a wiped volume) and that restarts with
// the same peers must not bootstrap again: it would have forgotten its votes
// and the entries it acknowledged. Once removed from the group it may start
// afresh and be added back.
TEST_F(NodeTest, AReplicaThatLostItsStateIsRefusedUntilRemoved) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  uint64_t ts = PutKeys(leader, 10);
  int lost = (leader + 1) % kNodes;
  std::string raft = dirs_[leader].path() + "/raft";
  uint64_t was = nokv_incarnation_peek((dirs_[lost].path() + "/raft").c_str());
  ASSERT_NE(was, 0u);
  ASSERT_TRUE(WaitFor([&] { return SeenBy(raft, lost + 1) == was; }))
      << "the leader never recorded its follower's incarnation";
  auto wipe = [&](int i) {
    Stop(i);
    Wipe(i);
  };
  wipe(lost);
  char err[1024] = "";
  EXPECT_EQ(TryStart(lost, /*join=*/false, err, sizeof err), NOKV_EINVAL);
  EXPECT_NE(std::string(err).find("its state was lost"), std::string::npos) << err;
  EXPECT_EQ(nodes_[lost], nullptr);
  // The others commit on without it.
  ASSERT_EQ(PutToLeader(&leader, "while", "refused").rc, NOKV_OK);

  ASSERT_EQ(Change(leader, NOKV_REPL_REMOVE, lost).rc, NOKV_OK);
  for (int i = 0; i < kNodes; i++) {
    if (i == lost) continue;
    std::string dir = dirs_[i].path() + "/raft";
    ASSERT_TRUE(WaitFor([&] { return SeenBy(dir, lost + 1) == 0; })) << "still recorded by " << i;
  }
  wipe(lost);
  Start(lost);  // nobody has seen it now: it bootstraps, outside the group
  ASSERT_EQ(Change(leader, NOKV_REPL_ADD, lost).rc, NOKV_OK);
  ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[lost]) >= ts; }));
  EXPECT_EQ(GetAt(dbs_[lost], "k9"), "v");
  uint64_t now = nokv_incarnation_peek((dirs_[lost].path() + "/raft").c_str());
  EXPECT_NE(now, was);
  // Recorded under its new incarnation by whichever node leads now (followers
  // record only their leader, and leadership may have moved since).
  EXPECT_TRUE(WaitFor([&] {
    for (int i = 0; i < kNodes; i++) {
      if (i != lost && SeenBy(dirs_[i].path() + "/raft", lost + 1) == now) return true;
    }
    return false;
  }));
}

// A node whose incarnation cannot be read does not start, and says which file.
TEST_F(NodeTest, AnUnreadableIncarnationStopsTheStartNamingIt) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  int other = (leader + 1) % kNodes;
  Stop(other);
  std::string file = dirs_[other].path() + "/raft/" NOKV_INCARNATION_FILE;
  ASSERT_TRUE(std::filesystem::remove(file));
  ASSERT_TRUE(std::filesystem::create_directory(file));
  char err[1024] = "";
  EXPECT_EQ(TryStart(other, /*join=*/false, err, sizeof err), NOKV_EIO);
  EXPECT_NE(std::string(err).find(file), std::string::npos) << err;
  EXPECT_EQ(nodes_[other], nullptr);
}

// A first member that starts long after the others (its pod was scheduled
// late) has never been seen: it bootstraps and catches up.
class LateMemberTest : public NodeTest {
 protected:
  void SetUp() override {
    initial_ = kNodes - 1;
    NodeTest::SetUp();
  }
};

TEST_F(LateMemberTest, AFirstMemberStartingLateBootstrapsAndCatchesUp) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  uint64_t ts = PutKeys(leader, 10);
  Start(kNodes - 1);
  ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[kNodes - 1]) >= ts; }));
  EXPECT_EQ(GetAt(dbs_[kNodes - 1], "k9"), "v");
}

class SnapshotTest : public NodeTest {
 protected:
  void SetUp() override {
    snapshot_entries_ = 32;
    snapshot_trailing_ = 8;
    NodeTest::SetUp();
  }
};

TEST_F(SnapshotTest, CompactsTheLogAndCatchesUpFromASnapshot) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  int behind = (leader + 1) % kNodes;
  ASSERT_EQ(Put(leader, "first", "1").rc, NOKV_OK);
  Stop(behind);
  uint64_t last_ts = 0;
  for (int k = 0; k < 200; k++) {
    nokv_repl_outcome o =
        PutToLeader(&leader, "k" + std::to_string(k), std::string(k % 3 ? 10 : 100, 'v'));
    ASSERT_EQ(o.rc, NOKV_OK) << k;
    last_ts = o.commit_ts;
  }
  nokv_repl_status st;
  ASSERT_TRUE(WaitFor([&] {
    return nokv_repl_node_status(nodes_[leader], &st) == NOKV_OK && st.snapshot_index > 150;
  }));
  EXPECT_LT(st.last_index - st.snapshot_index, 100u);

  // The replica that missed them is further behind than the log kept: the
  // leader sends a snapshot, which is ahead of its engine, so it is fetched.
  Start(behind);
  ASSERT_TRUE(WaitFor([&] { return fetches() > 0; }));
  {
    std::lock_guard<std::mutex> l(fetch_mu_);
    EXPECT_EQ(fetches_[0].origin_id, static_cast<uint64_t>(leader + 1));
    EXPECT_EQ(std::string(fetches_[0].origin_client), clients_[leader]);
    EXPECT_GT(fetches_[0].written_ts, nokv_last_commit_ts(dbs_[behind]));
  }
  EXPECT_EQ(GetAt(dbs_[behind], "k199"), std::nullopt);
  // Installed as a server does: the origin's engine copied over the replica's.
  Stop(behind);
  std::string db = dirs_[behind].path() + "/db", fresh = dirs_[behind].path() + "/fetched";
  ASSERT_EQ(nokv_checkpoint(dbs_[leader], fresh.c_str(), nullptr), NOKV_OK) << nokv_errmsg();
  std::filesystem::remove_all(db);
  std::filesystem::rename(fresh, db);
  Start(behind);
  ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[behind]) >= last_ts; }));
  nokv_repl_outcome o = Put(leader, "after", "install");
  ASSERT_EQ(o.rc, NOKV_OK);
  ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[behind]) >= o.commit_ts; }));
  EXPECT_EQ(GetAt(dbs_[behind], "k198"), std::string(100, 'v'));  // in the value log
  EXPECT_EQ(GetAt(dbs_[behind], "k199"), std::string(10, 'v'));
  EXPECT_EQ(GetAt(dbs_[behind], "after"), "install");

  // Every node restarts on a compacted log: each restores its own snapshot
  // (its engine holds it) and replays what follows.
  for (int i = 0; i < kNodes; i++) {
    Stop(i);
    Start(i);
  }
  leader = Leader();
  ASSERT_GE(leader, 0);
  o = Put(leader, "after", "restarts");
  ASSERT_EQ(o.rc, NOKV_OK);
  for (int i = 0; i < kNodes; i++) {
    ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[i]) >= o.commit_ts; })) << i;
    EXPECT_EQ(GetAt(dbs_[i], "after"), "restarts") << i;
    EXPECT_EQ(GetAt(dbs_[i], "first"), "1") << i;
  }
}

// A majority lost for good: the survivor's state is rewritten to make it the
// only voter, it leads alone with everything it had, and the lost nodes come
// back empty as new members.
TEST_F(NodeTest, ASurvivorOfALostMajorityRecoversAsTheOnlyVoter) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  uint64_t ts = PutKeys(leader, 20);
  for (int i = 0; i < kNodes; i++) {
    ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[i]) >= ts; })) << i;
  }
  for (int i = 0; i < kNodes; i++) Stop(i);
  for (int i = 1; i < kNodes; i++) Wipe(i);
  char err[512] = "";
  EXPECT_EQ(nokv_repl_recover((dirs_[1].path() + "/raft").c_str(), 2, addrs_[1].c_str(), err,
                              sizeof err),
            NOKV_EINVAL);  // nothing there to recover
  ASSERT_EQ(nokv_repl_recover((dirs_[0].path() + "/raft").c_str(), 1, addrs_[0].c_str(), err,
                              sizeof err),
            NOKV_OK)
      << err;
  Start(0);  // with its first members' list, which its state overrides
  ASSERT_EQ(Leader(), 0);
  EXPECT_EQ(GetAt(dbs_[0], "k19"), "v");
  nokv_repl_outcome o = Put(0, "alone", "1");
  ASSERT_EQ(o.rc, NOKV_OK) << (o.msg ? o.msg : "");
  nokv_repl_status st;
  ASSERT_EQ(nokv_repl_node_status(nodes_[0], &st), NOKV_OK);
  EXPECT_EQ(st.n_members, 1u);
  // A lost node comes back empty and is added.
  Start(1, /*join=*/true);
  ASSERT_EQ(Change(0, NOKV_REPL_ADD, 1).rc, NOKV_OK);
  ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[1]) >= o.commit_ts; }));
  EXPECT_EQ(GetAt(dbs_[1], "k19"), "v");
  EXPECT_EQ(GetAt(dbs_[1], "alone"), "1");
}

// A node added to a group whose log was compacted must first fetch the state;
// when that takes longer than a catch-up round may, the add fails and leaves
// it a spare; once it has the state, adding it again makes it a voter.
class SlowAddTest : public SnapshotTest {
 protected:
  void SetUp() override {
    catch_up_ms_ = 1000;
    SnapshotTest::SetUp();
  }
};

TEST_F(SlowAddTest, AnAddThatRanOutOfTimeIsCompletedByAddingAgain) {
  int leader = Leader();
  ASSERT_GE(leader, 0);
  uint64_t last_ts = PutKeys(leader, 200);
  nokv_repl_status st;
  ASSERT_TRUE(WaitFor([&] {
    return nokv_repl_node_status(nodes_[leader], &st) == NOKV_OK && st.snapshot_index > 150;
  }));
  Start(3, /*join=*/true);
  // It is sent a snapshot ahead of its engine and asked to fetch the state,
  // which (here) nobody brings: the round runs out.
  nokv_repl_outcome o = Change(leader, NOKV_REPL_ADD, 3);
  EXPECT_EQ(o.rc, NOKV_ETIMEDOUT) << (o.msg ? o.msg : "");
  EXPECT_GT(fetches(), 0u);
  ASSERT_EQ(nokv_repl_node_status(nodes_[leader], &st), NOKV_OK);
  ASSERT_EQ(st.n_members, 4u);
  for (size_t m = 0; m < st.n_members; m++) {
    if (st.members[m].id == 4) {
      EXPECT_NE(st.members[m].role, RAFT_VOTER);
    }
  }
  // The state arrives (installed as a server does), and the same add again
  // promotes it.
  Stop(3);
  std::string db = dirs_[3].path() + "/db", fresh = dirs_[3].path() + "/fetched";
  ASSERT_EQ(nokv_checkpoint(dbs_[leader], fresh.c_str(), nullptr), NOKV_OK) << nokv_errmsg();
  std::filesystem::remove_all(db);
  std::filesystem::rename(fresh, db);
  Start(3, /*join=*/true);
  o = Change(leader, NOKV_REPL_ADD, 3);
  ASSERT_EQ(o.rc, NOKV_OK) << (o.msg ? o.msg : "");
  ASSERT_EQ(nokv_repl_node_status(nodes_[leader], &st), NOKV_OK);
  for (size_t m = 0; m < st.n_members; m++) EXPECT_EQ(st.members[m].role, RAFT_VOTER) << m;
  ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[3]) >= last_ts; }));
  EXPECT_EQ(GetAt(dbs_[3], "k199"), "v");
  // Added at another address, it is refused plainly.
  Waiter w;
  nokv_repl_change(nodes_[leader], NOKV_REPL_ADD, 4, "127.0.0.1:1", &Waiter::Cb, &w);
  EXPECT_EQ(w.Wait().rc, NOKV_EINVAL);
}

// Peers named by host name (as a StatefulSet's are), which libraft's own TCP
// transport cannot dial: resolved before each connection.
class HostNameTest : public NodeTest {
 protected:
  void SetUp() override {
    host_names_ = true;
    NodeTest::SetUp();
  }
};

TEST_F(HostNameTest, ReplicatesBetweenNamedPeers) {
  ASSERT_EQ(addrs_[0].rfind("localhost:", 0), 0u);
  int leader = Leader();
  ASSERT_GE(leader, 0);
  nokv_repl_outcome o = Put(leader, "named", "peers");
  ASSERT_EQ(o.rc, NOKV_OK);
  for (int i = 0; i < kNodes; i++) {
    ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[i]) >= o.commit_ts; })) << i;
  }
  // The lease's probes find the followers by name too.
  ASSERT_TRUE(WaitFor([&] {
    nokv_repl_status st{};
    return nokv_repl_node_status(nodes_[leader], &st) == NOKV_OK && st.lease_ms > 0;
  }));
  // A peer down, then back: found again by name.
  int other = (leader + 1) % kNodes;
  Stop(other);
  o = Put(leader, "while", "down");
  ASSERT_EQ(o.rc, NOKV_OK);
  Start(other);
  ASSERT_TRUE(WaitFor([&] { return nokv_last_commit_ts(dbs_[other]) >= o.commit_ts; }));
  EXPECT_EQ(GetAt(dbs_[other], "while"), "down");
}

}  // namespace
