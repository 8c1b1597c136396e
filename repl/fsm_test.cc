// The engine as a Raft group's state machine, on libraft's raft_fixture (an
// in-memory network and disk, driven step by step): batches proposed on the
// leader are applied by every replica at the same commit timestamps, so every
// replica ends with the same versions at the same timestamps; that holds
// through a partition of the leader, a new election and the old leader's
// return, whose uncommitted entries are discarded.
extern "C" {  // libraft's headers declare nothing extern "C" themselves
#include <raft.h>
#include <raft/fixture.h>
}

#include <cstring>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "repl/fsm.h"
#include "tests/core/test_util.h"

namespace {

constexpr unsigned kNodes = 3;

// Every version an iterator at the newest timestamp shows: key -> (value, commit_ts).
std::map<std::string, std::pair<std::string, uint64_t>> Dump(nokv_db* db) {
  std::map<std::string, std::pair<std::string, uint64_t>> out;
  nokv_iter* it;
  EXPECT_EQ(nokv_iter_new(db, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
    size_t kn, vn;
    const char* k = static_cast<const char*>(nokv_iter_key(it, &kn));
    const char* v = static_cast<const char*>(nokv_iter_value(it, &vn));
    out[std::string(k, kn)] = {std::string(v, vn), nokv_iter_commit_ts(it)};
  }
  nokv_iter_close(it);
  return out;
}

class FsmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memset(&f_, 0, sizeof f_);  // raft_fixture_initialize leaves fields it expects zeroed
    ASSERT_EQ(raft_fixture_initialize(&f_), 0);
    for (unsigned i = 0; i < kNodes; i++) {
      nokv_options o;
      nokv_options_init(&o);
      o.value_threshold = 64;  // some values in the value log
      o.history_retention_commits = nokv_repl_ts(NOKV_REPL_TXN_WINDOW);  // as fsm.h asks
      ASSERT_EQ(nokv_open(dirs_[i].path().c_str(), &o, &dbs_[i]), NOKV_OK) << nokv_errmsg();
      ASSERT_EQ(nokv_repl_fsm_init(&fsms_[i], dbs_[i]), NOKV_OK);
      ASSERT_EQ(raft_fixture_grow(&f_, &fsms_[i].fsm), 0);
      raft_set_snapshot_threshold(raft_fixture_get(&f_, i), 1u << 30);  // snapshots: not yet
    }
    struct raft_configuration conf;
    ASSERT_EQ(raft_fixture_configuration(&f_, kNodes, &conf), 0);
    ASSERT_EQ(raft_fixture_bootstrap(&f_, &conf), 0);
    raft_configuration_close(&conf);
    ASSERT_EQ(raft_fixture_start(&f_), 0);
  }
  void TearDown() override {
    raft_fixture_close(&f_);
    for (nokv_repl_fsm& f : fsms_) nokv_repl_fsm_destroy(&f);
    for (nokv_db* db : dbs_) {
      if (db != nullptr) {
        EXPECT_EQ(nokv_close(db), NOKV_OK) << nokv_errmsg();
      }
    }
  }

  // A random batch of puts, deletes and now and then a range deletion.
  nokv_batch* RandomBatch() {
    nokv_batch* b;
    EXPECT_EQ(nokv_batch_new(&b), NOKV_OK);
    int n = 1 + static_cast<int>(rng_() % 4);
    for (int i = 0; i < n; i++) {
      std::string k = "k" + std::to_string(rng_() % 50);
      unsigned what = rng_() % 10;
      if (what == 0) {
        std::string e = "k" + std::to_string(rng_() % 50);
        if (k < e) nokv_batch_delete_range(b, k.data(), k.size(), e.data(), e.size());
      } else if (what < 3) {
        nokv_batch_delete(b, k.data(), k.size());
      } else {
        std::string v(rng_() % 2 ? 10 : 200, static_cast<char>('a' + rng_() % 26));
        nokv_batch_put(b, k.data(), k.size(), v.data(), v.size());
      }
    }
    return b;
  }

  // Proposes a batch on server i; the entry's index (0 if refused).
  raft_index Propose(unsigned i) {
    nokv_batch* b = RandomBatch();
    struct raft_buffer buf;
    EXPECT_EQ(nokv_repl_entry(b, &buf), NOKV_OK);
    nokv_batch_free(b);
    auto* req = new struct raft_apply;
    reqs_.emplace_back(req);
    struct raft* r = raft_fixture_get(&f_, i);
    int rc = raft_apply(r, req, &buf, 1, nullptr);
    if (rc != 0) {
      raft_free(buf.base);
      return 0;
    }
    return raft_last_index(r);
  }

  void ExpectSameEverywhere() {
    ExpectSameEverywhere2();
    for (unsigned i = 0; i < kNodes; i++) EXPECT_EQ(fsms_[i].last_rc, NOKV_OK) << i;
  }
  void ExpectSameEverywhere2() {
    auto want = Dump(dbs_[0]);
    for (unsigned i = 1; i < kNodes; i++) EXPECT_EQ(Dump(dbs_[i]), want) << "replica " << i;
  }

  struct raft_fixture f_;
  nokv_test::TempDir dirs_[kNodes];
  nokv_db* dbs_[kNodes] = {};
  nokv_repl_fsm fsms_[kNodes] = {};
  std::vector<std::unique_ptr<struct raft_apply>> reqs_;
  std::mt19937_64 rng_{1};
};

TEST_F(FsmTest, EveryReplicaHoldsTheSameVersionsAtTheSameTimestamps) {
  raft_fixture_elect(&f_, 0);
  raft_index last = 0;
  for (int i = 0; i < 60; i++) last = Propose(0);
  ASSERT_GT(last, 0u);
  ASSERT_TRUE(raft_fixture_step_until_applied(&f_, kNodes, last, 10000));
  ExpectSameEverywhere();
  for (unsigned i = 0; i < kNodes; i++) {
    EXPECT_EQ(fsms_[i].commands, 60u);
    EXPECT_EQ(nokv_last_commit_ts(dbs_[i]), nokv_repl_ts(60));
  }
  auto state = Dump(dbs_[1]);
  EXPECT_FALSE(state.empty());
  for (const auto& [k, v] : state) EXPECT_EQ(v.second % nokv_repl_ts(1), 0u) << k;
}

TEST_F(FsmTest, APartitionedLeaderIsReplacedAndItsUncommittedEntriesDiscarded) {
  raft_fixture_elect(&f_, 0);
  raft_index last = 0;
  for (int i = 0; i < 20; i++) last = Propose(0);
  ASSERT_TRUE(raft_fixture_step_until_applied(&f_, kNodes, last, 10000));
  // Cut the leader off: what it accepts now cannot commit.
  for (unsigned j = 1; j < kNodes; j++) {
    raft_fixture_disconnect(&f_, 0, j);
    raft_fixture_disconnect(&f_, j, 0);
  }
  for (int i = 0; i < 5; i++) Propose(0);
  // The fixture names a leader only when every live server agrees on it: the
  // cut-off one is taken out of that count while the others elect.
  raft_fixture_kill(&f_, 0);
  unsigned leader = 0;
  for (int step = 0; step < 1000000 && leader == 0; step++) {
    raft_fixture_step(&f_);
    for (unsigned j = 1; j < kNodes; j++) {
      if (raft_state(raft_fixture_get(&f_, j)) == RAFT_LEADER) leader = j;
    }
  }
  ASSERT_NE(leader, 0u) << "no new leader";
  for (int i = 0; i < 20; i++) last = Propose(leader);
  ASSERT_GT(last, 0u);
  // Heal: the old leader's 5 entries lose to the new term's.
  raft_fixture_revive(&f_, 0);
  for (unsigned j = 1; j < kNodes; j++) {
    raft_fixture_reconnect(&f_, 0, j);
    raft_fixture_reconnect(&f_, j, 0);
  }
  ASSERT_TRUE(raft_fixture_step_until_applied(&f_, kNodes, last, 20000));
  ExpectSameEverywhere();
  for (unsigned i = 0; i < kNodes; i++) EXPECT_EQ(fsms_[i].commands, 40u) << i;
}

// Proposes a write of key=value under conds on server i; the result lands in
// *out once applied (the callback runs on the leader).
struct Outcome {
  bool done = false;
  int status = -1;
  void* result = nullptr;
};

void OnApplied(struct raft_apply* req, int status, void* result) {
  auto* o = static_cast<Outcome*>(req->data);
  o->done = true;
  o->status = status;
  o->result = result;
}

TEST_F(FsmTest, ConditionalWritesReachTheSameVerdictOnEveryReplica) {
  raft_fixture_elect(&f_, 0);
  struct raft* leader = raft_fixture_get(&f_, 0);
  auto propose = [&](const std::vector<nokv_condition>& conds, const std::string& value,
                     Outcome* out) {
    nokv_batch* b;
    EXPECT_EQ(nokv_batch_new(&b), NOKV_OK);
    EXPECT_EQ(nokv_batch_put(b, "counter", 7, value.data(), value.size()), NOKV_OK);
    struct raft_buffer buf;
    EXPECT_EQ(nokv_repl_cond_entry(conds.data(), conds.size(), b, &buf), NOKV_OK);
    nokv_batch_free(b);
    auto* req = new struct raft_apply;
    reqs_.emplace_back(req);
    req->data = out;
    EXPECT_EQ(raft_apply(leader, req, &buf, 1, OnApplied), 0);
    return raft_last_index(leader);
  };
  Outcome first;
  raft_index last = propose({nokv_condition{NOKV_COND_ABSENT, "counter", 7, nullptr, 0, 0}},
                            "0", &first);
  ASSERT_TRUE(raft_fixture_step_until_applied(&f_, kNodes, last, 10000));
  ASSERT_TRUE(first.done);
  EXPECT_EQ(nokv_repl_result_rc(first.result), NOKV_OK);
  uint64_t c0 = Dump(dbs_[0]).at("counter").second;
  EXPECT_EQ(c0, nokv_repl_ts(1));
  // Three compare-and-sets against the same version, in one round: the log
  // orders them, the first wins everywhere, the others fail everywhere.
  Outcome o[3];
  for (int i = 0; i < 3; i++) {
    last = propose({nokv_condition{NOKV_COND_TS_EQUALS, "counter", 7, nullptr, 0, c0}},
                   "1" + std::string(1, static_cast<char>('a' + i)), &o[i]);
  }
  ASSERT_TRUE(raft_fixture_step_until_applied(&f_, kNodes, last, 10000));
  EXPECT_EQ(nokv_repl_result_rc(o[0].result), NOKV_OK);
  for (int i = 1; i < 3; i++) {
    EXPECT_TRUE(o[i].done);
    EXPECT_EQ(nokv_repl_result_rc(o[i].result), NOKV_ECONDITION) << i;
    EXPECT_EQ(nokv_repl_result_failed(o[i].result), 0u) << i;
  }
  for (unsigned i = 0; i < kNodes; i++) {
    auto state = Dump(dbs_[i]);
    EXPECT_EQ(state.at("counter").first, "1a") << i;
    EXPECT_EQ(state.at("counter").second, nokv_repl_ts(2)) << i;
    EXPECT_EQ(fsms_[i].commands, 4u) << i;
  }
  // A malformed condition list is refused alike everywhere, and the group goes on.
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "x", 1, "y", 1), NOKV_OK);
  struct raft_buffer buf;
  ASSERT_EQ(nokv_repl_cond_entry(nullptr, 0, b, &buf), NOKV_OK);
  nokv_batch_free(b);
  reinterpret_cast<unsigned char*>(buf.base)[8] = 0xff;  // an absurd condition count
  Outcome bad;
  auto* req = new struct raft_apply;
  reqs_.emplace_back(req);
  req->data = &bad;
  ASSERT_EQ(raft_apply(leader, req, &buf, 1, OnApplied), 0);
  last = raft_last_index(leader);
  ASSERT_TRUE(raft_fixture_step_until_applied(&f_, kNodes, last, 10000));
  EXPECT_EQ(nokv_repl_result_rc(bad.result), NOKV_ECORRUPT);
  ExpectSameEverywhere2();
}

// Transactions travel as their exported conditional writes (fsm.h): wherever
// they read, the log orders their commits and every replica judges each
// against the same state, so all reach the same verdicts: of two transfers
// from one snapshot the first commits and the second conflicts; a read key
// deleted meanwhile conflicts even on a replica that compacted the deletion
// away into its last level; and a transaction older than the window conflicts
// everywhere, however much history a replica happens to hold.
TEST_F(FsmTest, TransactionsReachTheSameVerdictOnEveryReplica) {
  for (nokv_repl_fsm& f : fsms_) f.txn_window = 8;
  raft_fixture_elect(&f_, 0);
  struct raft* leader = raft_fixture_get(&f_, 0);
  auto propose = [&](nokv_batch* b, const nokv_condition* c, size_t n, Outcome* out) {
    struct raft_buffer buf;
    EXPECT_EQ(nokv_repl_cond_entry(c, n, b, &buf), NOKV_OK);
    auto* req = new struct raft_apply;
    reqs_.emplace_back(req);
    req->data = out;
    EXPECT_EQ(raft_apply(leader, req, &buf, 1, OnApplied), 0);
    raft_index last = raft_last_index(leader);
    EXPECT_TRUE(raft_fixture_step_until_applied(&f_, kNodes, last, 10000));
    EXPECT_TRUE(out->done);
  };
  auto write = [&](const std::string& k, const std::string* v) {
    nokv_batch* b;
    EXPECT_EQ(nokv_batch_new(&b), NOKV_OK);
    if (v != nullptr) {
      EXPECT_EQ(nokv_batch_put(b, k.data(), k.size(), v->data(), v->size()), NOKV_OK);
    } else {
      EXPECT_EQ(nokv_batch_delete(b, k.data(), k.size()), NOKV_OK);
    }
    Outcome o;
    propose(b, nullptr, 0, &o);
    nokv_batch_free(b);
    EXPECT_EQ(nokv_repl_result_rc(o.result), NOKV_OK);
  };
  // A transfer of amount from a to b, read on replica r; exported, not committed.
  struct Exported {
    nokv_txn* txn = nullptr;
    nokv_batch* writes = nullptr;
    nokv_condition* conds = nullptr;
    size_t n = 0;
  };
  auto transfer = [&](unsigned r, int amount) {
    Exported e;
    EXPECT_EQ(nokv_txn_begin(dbs_[r], NOKV_TXN_EXPORTABLE, &e.txn), NOKV_OK);
    int a = 0, b = 0;
    for (auto [key, out] : {std::pair{"a", &a}, std::pair{"b", &b}}) {
      void* v;
      size_t n;
      EXPECT_EQ(nokv_txn_get(e.txn, key, 1, &v, &n), NOKV_OK);
      *out = std::stoi(std::string(static_cast<char*>(v), n));
      nokv_free(v);
    }
    std::string na = std::to_string(a - amount), nb = std::to_string(b + amount);
    EXPECT_EQ(nokv_txn_put(e.txn, "a", 1, na.data(), na.size()), NOKV_OK);
    EXPECT_EQ(nokv_txn_put(e.txn, "b", 1, nb.data(), nb.size()), NOKV_OK);
    EXPECT_EQ(nokv_txn_export(e.txn, NOKV_REPL_MAX_CONDS, &e.writes, &e.conds, &e.n), NOKV_OK);
    return e;
  };
  size_t failed = 0;  // the last commit's failed condition
  auto commit = [&](Exported& e) {
    Outcome o;
    propose(e.writes, e.conds, e.n, &o);
    failed = nokv_repl_result_failed(o.result);
    nokv_free(e.conds);
    nokv_batch_free(e.writes);
    nokv_txn_discard(e.txn);
    return nokv_repl_result_rc(o.result);
  };
  std::string hundred = "100", zero = "0";
  write("a", &hundred);
  write("b", &zero);
  // Both read the same snapshot, one on the leader and one on a follower.
  Exported first = transfer(0, 10), second = transfer(2, 5);
  EXPECT_EQ(commit(first), NOKV_OK);
  EXPECT_EQ(commit(second), NOKV_ECONDITION);
  Exported third = transfer(1, 30);
  EXPECT_EQ(commit(third), NOKV_OK);
  for (unsigned i = 0; i < kNodes; i++) {
    auto state = Dump(dbs_[i]);
    EXPECT_EQ(state.at("a").first, "60") << i;
    EXPECT_EQ(state.at("b").first, "40") << i;
  }
  // A deletion after the read, compacted into replica 1's last level.
  Exported stale = transfer(0, 1);
  write("b", nullptr);
  ASSERT_EQ(nokv_compact(dbs_[1]), NOKV_OK);
  EXPECT_EQ(commit(stale), NOKV_ECONDITION);
  EXPECT_EQ(failed, 1u);  // "b" (conditions are sorted by key)
  // Older than the window (8 commands): refused everywhere, unread keys or not.
  write("b", &zero);
  Exported old = transfer(2, 1);
  for (int i = 0; i < 8; i++) write("filler" + std::to_string(i), &zero);
  Outcome o;
  propose(old.writes, old.conds, old.n, &o);
  EXPECT_EQ(nokv_repl_result_rc(o.result), NOKV_ECONDITION);
  EXPECT_EQ(nokv_repl_result_failed(o.result), 0u);
  nokv_free(old.conds);
  nokv_batch_free(old.writes);
  nokv_txn_discard(old.txn);
  for (unsigned i = 0; i < kNodes; i++) EXPECT_EQ(Dump(dbs_[i]).at("a").first, "60") << i;
  ExpectSameEverywhere2();
}

// Log compaction on the fixture: snapshots every 16 entries, keeping 4. A
// replica cut off while 60 entries commit is further behind than the log the
// leader kept, so it is sent a snapshot ahead of its engine: its state machine
// asks for the engine's state (the fetch hook, naming the snapshot's origin);
// with the origin's checkpoint in place of its engine the snapshot restores,
// and it catches up from the log like the others. (A hook that only starts a
// fetch has the snapshot refused until then: node_test, on real I/O.)
TEST_F(FsmTest, AReplicaBehindTheCompactedLogCatchesUpFromAFetchedState) {
  for (unsigned i = 0; i < kNodes; i++) {
    raft_set_snapshot_threshold(raft_fixture_get(&f_, i), 16);
    raft_set_snapshot_trailing(raft_fixture_get(&f_, i), 4);
    raft_set_install_snapshot_timeout(raft_fixture_get(&f_, i), 1000);  // as node.c
    fsms_[i].id = i + 1;
  }
  // The fetch hook installs the origin's state at once, as a server does
  // (there in the background, and then it restarts): the origin's checkpoint
  // in place of the engine.
  struct Fetch {
    nokv_db** dbs;
    nokv_repl_fsm* fsm;
    int calls = 0;
    nokv_repl_snapshot_info info;
    uint64_t engine_ts = 0;  // the engine's last commit when asked
    nokv_test::TempDir installed;
  } fetch{dbs_, &fsms_[2]};
  fsms_[2].fetch = [](void* ctx, const nokv_repl_snapshot_info* info) {
    auto* f = static_cast<Fetch*>(ctx);
    f->calls++;
    f->info = *info;
    f->engine_ts = nokv_last_commit_ts(f->dbs[2]);
    std::string dir = f->installed.path() + "/engine";
    ASSERT_EQ(nokv_checkpoint(f->dbs[info->origin_id - 1], dir.c_str(), nullptr), NOKV_OK);
    ASSERT_EQ(nokv_close(f->dbs[2]), NOKV_OK);
    nokv_options o;
    nokv_options_init(&o);
    o.history_retention_commits = nokv_repl_ts(NOKV_REPL_TXN_WINDOW);
    ASSERT_EQ(nokv_open(dir.c_str(), &o, &f->dbs[2]), NOKV_OK) << nokv_errmsg();
    f->fsm->db = f->dbs[2];
  };
  fsms_[2].fetch_ctx = &fetch;
  raft_fixture_elect(&f_, 0);
  for (unsigned j = 0; j < 2; j++) {
    raft_fixture_disconnect(&f_, 2, j);
    raft_fixture_disconnect(&f_, j, 2);
  }
  raft_index last = 0;
  for (int i = 0; i < 60; i++) last = Propose(0);
  ASSERT_TRUE(raft_fixture_step_until_applied(&f_, 0, last, 10000));
  ASSERT_TRUE(raft_fixture_step_until_applied(&f_, 1, last, 10000));
  EXPECT_GT(raft_fixture_get(&f_, 0)->log.snapshot.last_index, 40u);
  for (unsigned j = 0; j < 2; j++) {
    raft_fixture_reconnect(&f_, 2, j);
    raft_fixture_reconnect(&f_, j, 2);
  }
  for (int step = 0; step < 100000 && fetch.calls == 0; step++) raft_fixture_step(&f_);
  ASSERT_GT(fetch.calls, 0) << "no snapshot reached the replica behind";
  EXPECT_EQ(fetch.info.origin_id, 1u);
  EXPECT_GT(fetch.info.written_ts, fetch.engine_ts);
  for (int i = 0; i < 10; i++) last = Propose(0);
  ASSERT_TRUE(raft_fixture_step_until_applied(&f_, kNodes, last, 100000));
  EXPECT_EQ(fetch.calls, 1);
  ExpectSameEverywhere();
  EXPECT_EQ(fsms_[2].commands, 70u);
  EXPECT_EQ(nokv_last_commit_ts(dbs_[2]), nokv_repl_ts(70));
}

// Commands proposed together travel as one MULTI entry, and each is still a
// command of its own: its own rank and timestamp, its own verdict (here a
// compare-and-set that the command before it in the same entry made fail),
// alike on every replica; a malformed MULTI entry is refused whole, alike.
TEST_F(FsmTest, CommandsProposedTogetherKeepTheirOwnTimestampsAndVerdicts) {
  raft_fixture_elect(&f_, 0);
  struct raft* leader = raft_fixture_get(&f_, 0);
  auto put_entry = [](const std::string& k, const std::string& v,
                      const std::vector<nokv_condition>& conds) {
    nokv_batch* b;
    EXPECT_EQ(nokv_batch_new(&b), NOKV_OK);
    EXPECT_EQ(nokv_batch_put(b, k.data(), k.size(), v.data(), v.size()), NOKV_OK);
    struct raft_buffer buf;
    EXPECT_EQ(conds.empty() ? nokv_repl_entry(b, &buf)
                            : nokv_repl_cond_entry(conds.data(), conds.size(), b, &buf),
              NOKV_OK);
    nokv_batch_free(b);
    return buf;
  };
  auto propose = [&](struct raft_buffer entry, Outcome* out) {
    auto* req = new struct raft_apply;
    reqs_.emplace_back(req);
    req->data = out;
    EXPECT_EQ(raft_apply(leader, req, &entry, 1, OnApplied), 0);
    EXPECT_TRUE(raft_fixture_step_until_applied(&f_, kNodes, raft_last_index(leader), 10000));
  };
  Outcome first;
  propose(put_entry("a", "0", {}), &first);
  uint64_t a0 = nokv_repl_ts(1);
  // Three commands: a CAS on a's first version, a second CAS on it (fails:
  // the first just wrote a), and a plain put.
  nokv_condition on_a0{NOKV_COND_TS_EQUALS, "a", 1, nullptr, 0, a0};
  struct raft_buffer parts[3] = {put_entry("a", "1", {on_a0}), put_entry("a", "2", {on_a0}),
                                 put_entry("b", "x", {})};
  struct raft_buffer entry;
  ASSERT_EQ(nokv_repl_multi_entry(parts, 3, &entry), NOKV_OK);
  for (auto& part : parts) raft_free(part.base);
  Outcome together;
  propose(entry, &together);
  ASSERT_TRUE(together.done);
  EXPECT_EQ(nokv_repl_result_rc(together.result), NOKV_OK);
  EXPECT_EQ(nokv_repl_result_n(together.result), 2u);       // the first command's rank
  EXPECT_EQ(nokv_repl_result_failed(together.result), 3u);  // the count
  for (unsigned i = 0; i < kNodes; i++) {
    const nokv_repl_fsm& f = fsms_[i];
    EXPECT_EQ(f.commands, 4u) << i;
    ASSERT_EQ(f.multi.count, 3u) << i;
    EXPECT_EQ(f.multi.first, 2u) << i;
    EXPECT_EQ(f.multi.rc[0], NOKV_OK) << i;
    EXPECT_EQ(f.multi.rc[1], NOKV_ECONDITION) << i;
    EXPECT_EQ(f.multi.failed[1], 0u) << i;
    EXPECT_EQ(f.multi.rc[2], NOKV_OK) << i;
    auto state = Dump(dbs_[i]);
    EXPECT_EQ(state.at("a"), std::make_pair(std::string("1"), nokv_repl_ts(2))) << i;
    EXPECT_EQ(state.at("b"), std::make_pair(std::string("x"), nokv_repl_ts(4))) << i;
  }
  // A MULTI entry whose count overruns its body is refused whole.
  struct raft_buffer one[2] = {put_entry("c", "1", {}), put_entry("d", "1", {})};
  ASSERT_EQ(nokv_repl_multi_entry(one, 2, &entry), NOKV_OK);
  for (auto& part : one) raft_free(part.base);
  reinterpret_cast<unsigned char*>(entry.base)[8] = 3;  // claims 3 commands
  Outcome bad;
  propose(entry, &bad);
  EXPECT_EQ(nokv_repl_result_rc(bad.result), NOKV_ECORRUPT);
  for (unsigned i = 0; i < kNodes; i++) {
    EXPECT_EQ(fsms_[i].commands, 5u) << i;
    EXPECT_EQ(Dump(dbs_[i]).count("c"), 0u) << i;
  }
  ExpectSameEverywhere2();
}

}  // namespace
