// nokv_write_if: each kind of condition, the first failing one reported with
// nothing written, pure checks, values in the value log, a write landing
// between judgement and commit (judged again), and compare-and-set increments
// from several threads losing no update.
#include <atomic>
#include <chrono>
#include <future>
#include <tuple>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "test_util.h"
#include "txn/cond.h"

using namespace nokv_test;

namespace {

// The condition points into key and value: literals, or strings that outlive it.
nokv_condition Cond(nokv_cond_op op, std::string_view key, std::string_view value = "",
                    uint64_t ts = 0) {
  nokv_condition c{};
  c.op = op;
  c.key = key.data();
  c.klen = key.size();
  c.value = value.data();
  c.vlen = value.size();
  c.commit_ts = ts;
  return c;
}

class CondTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nokv_options_init(&o_);
    o_.value_threshold = 1024;
    ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK);
  }
  void TearDown() override {
    nk_write_if_judged = nullptr;
    EXPECT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
  }
  // nokv_write_if with one put of (k, v) under conds.
  int PutIf(const std::vector<nokv_condition>& conds, const std::string& k, const std::string& v,
            uint64_t* ts = nullptr, nokv_cond_result* r = nullptr) {
    nokv_batch* b;
    EXPECT_EQ(nokv_batch_new(&b), NOKV_OK);
    EXPECT_EQ(nokv_batch_put(b, k.data(), k.size(), v.data(), v.size()), NOKV_OK);
    int rc = nokv_write_if(db_, nullptr, conds.data(), conds.size(), b, ts, r);
    nokv_batch_free(b);
    return rc;
  }
  TempDir dir_;
  nokv_options o_;
  nokv_db* db_ = nullptr;
};

TEST_F(CondTest, EachConditionHoldsOrFails) {
  uint64_t ts_a = 0;
  ASSERT_EQ(Put(db_, "a", "alpha", false, &ts_a), NOKV_OK);
  ASSERT_EQ(Put(db_, "gone", "x"), NOKV_OK);
  ASSERT_EQ(Delete(db_, "gone"), NOKV_OK);
  struct Case {
    nokv_condition cond;
    bool holds;
  } cases[] = {
      {Cond(NOKV_COND_ABSENT, "missing"), true},
      {Cond(NOKV_COND_ABSENT, "gone"), true},  // a deleted key is absent
      {Cond(NOKV_COND_ABSENT, "a"), false},
      {Cond(NOKV_COND_PRESENT, "a"), true},
      {Cond(NOKV_COND_PRESENT, "gone"), false},
      {Cond(NOKV_COND_VALUE_EQUALS, "a", "alpha"), true},
      {Cond(NOKV_COND_VALUE_EQUALS, "a", "alph"), false},
      {Cond(NOKV_COND_VALUE_EQUALS, "a", "alphaa"), false},
      {Cond(NOKV_COND_VALUE_EQUALS, "missing", ""), false},  // absent is not empty
      {Cond(NOKV_COND_TS_EQUALS, "a", "", ts_a), true},
      {Cond(NOKV_COND_TS_EQUALS, "a", "", ts_a - 1), false},
      {Cond(NOKV_COND_TS_EQUALS, "missing", "", 0), false},
      {Cond(NOKV_COND_TS_BELOW, "a", "", ts_a + 1), true},
      {Cond(NOKV_COND_TS_BELOW, "a", "", ts_a), false},
      {Cond(NOKV_COND_TS_BELOW, "missing", "", 1), true},
  };
  int i = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(i);
    std::string target = "target" + std::to_string(i++);
    nokv_cond_result r;
    uint64_t ts = 0;
    int rc = PutIf({c.cond}, target, "written", &ts, &r);
    if (c.holds) {
      ASSERT_EQ(rc, NOKV_OK) << nokv_errmsg();
      EXPECT_EQ(Get(db_, target)->commit_ts, ts);
    } else {
      ASSERT_EQ(rc, NOKV_ECONDITION);
      EXPECT_EQ(r.failed, 0u);
      EXPECT_FALSE(Get(db_, target).has_value()) << "written although the condition failed";
      bool present = std::string(static_cast<const char*>(c.cond.key), c.cond.klen) == "a";
      EXPECT_EQ(r.found, present);
      EXPECT_EQ(r.found_ts, present ? ts_a : 0);
    }
    EXPECT_GE(r.read_ts, ts_a);
  }
  nokv_statistics s = Stats(db_);
  EXPECT_EQ(s.cond_writes, 7u);
  EXPECT_EQ(s.cond_failures, 8u);
}

TEST_F(CondTest, TheFirstFailedConditionIsReportedAndNothingIsWritten) {
  ASSERT_EQ(Put(db_, "a", "1"), NOKV_OK);
  ASSERT_EQ(Put(db_, "b", "2"), NOKV_OK);
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "a", 1, "10", 2), NOKV_OK);
  ASSERT_EQ(nokv_batch_delete(b, "b", 1), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "c", 1, "30", 2), NOKV_OK);
  std::vector<nokv_condition> conds = {Cond(NOKV_COND_VALUE_EQUALS, "a", "1"),
                                       Cond(NOKV_COND_ABSENT, "c"),
                                       Cond(NOKV_COND_VALUE_EQUALS, "b", "3"),
                                       Cond(NOKV_COND_ABSENT, "a")};
  nokv_cond_result r;
  EXPECT_EQ(nokv_write_if(db_, nullptr, conds.data(), conds.size(), b, nullptr, &r),
            NOKV_ECONDITION);
  EXPECT_EQ(r.failed, 2u);
  EXPECT_TRUE(r.found);
  EXPECT_EQ(Get(db_, "a")->data, "1");
  EXPECT_EQ(Get(db_, "b")->data, "2");
  EXPECT_FALSE(Get(db_, "c").has_value());
  conds[2] = Cond(NOKV_COND_VALUE_EQUALS, "b", "2");
  uint64_t ts = 0;
  EXPECT_EQ(nokv_write_if(db_, nullptr, conds.data(), 3, b, &ts, &r), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(Get(db_, "a")->data, "10");
  EXPECT_FALSE(Get(db_, "b").has_value());
  EXPECT_EQ(Get(db_, "c")->commit_ts, ts);  // one commit timestamp for the batch
  EXPECT_EQ(Get(db_, "a")->commit_ts, ts);
  nokv_batch_free(b);
}

TEST_F(CondTest, AnEmptyBatchIsAPureCheck) {
  ASSERT_EQ(Put(db_, "a", "1"), NOKV_OK);
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  nokv_condition yes = Cond(NOKV_COND_PRESENT, "a"), no = Cond(NOKV_COND_ABSENT, "a");
  uint64_t before = Stats(db_).last_commit_ts, ts = 0;
  EXPECT_EQ(nokv_write_if(db_, nullptr, &yes, 1, b, &ts, nullptr), NOKV_OK);
  EXPECT_EQ(ts, before);
  EXPECT_EQ(nokv_write_if(db_, nullptr, &no, 1, b, &ts, nullptr), NOKV_ECONDITION);
  EXPECT_EQ(Stats(db_).last_commit_ts, before);  // nothing committed either way
  nokv_batch_free(b);
}

TEST_F(CondTest, ValuesInTheValueLogCompare) {
  std::string big(5000, 'v'), other = big;
  other[4999] = 'w';
  ASSERT_EQ(Put(db_, "big", big), NOKV_OK);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);  // from a table, through the value log
  EXPECT_EQ(PutIf({Cond(NOKV_COND_VALUE_EQUALS, "big", other)}, "t", "x"), NOKV_ECONDITION);
  EXPECT_EQ(PutIf({Cond(NOKV_COND_VALUE_EQUALS, "big", big)}, "big", other), NOKV_OK);
  EXPECT_EQ(Get(db_, "big")->data, other);
}

TEST_F(CondTest, BadArgumentsAreRefused) {
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  nokv_condition bad = Cond(static_cast<nokv_cond_op>(9), "a");
  EXPECT_EQ(nokv_write_if(db_, nullptr, &bad, 1, b, nullptr, nullptr), NOKV_EINVAL);
  nokv_condition empty_key = Cond(NOKV_COND_ABSENT, "");
  EXPECT_EQ(nokv_write_if(db_, nullptr, &empty_key, 1, b, nullptr, nullptr), NOKV_EINVAL);
  nokv_condition ok = Cond(NOKV_COND_ABSENT, "a");
  EXPECT_EQ(nokv_write_if(db_, nullptr, &ok, 1, nullptr, nullptr, nullptr), NOKV_EINVAL);
  EXPECT_EQ(nokv_write_if(db_, nullptr, nullptr, 1, b, nullptr, nullptr), NOKV_EINVAL);
  nokv_batch_free(b);
}

// NOKV_COND_UNWRITTEN_SINCE (a transaction's read, checked at its commit)
// fails for a put, a deletion or a range deletion of its key after commit_ts,
// and holds for writes at or before it and for other keys; on no key, it
// fails for any write after commit_ts.
TEST_F(CondTest, UnwrittenSinceSeesPutsDeletionsAndRangeDeletions) {
  nokv_snapshot* snap;  // keeps the history after its timestamp exact
  ASSERT_EQ(nokv_snapshot_create(db_, &snap), NOKV_OK);
  uint64_t t0 = nokv_snapshot_ts(snap), t_put = 0, t_del = 0, t_range = 0, t_other = 0;
  ASSERT_EQ(Put(db_, "put", "1", false, &t_put), NOKV_OK);
  ASSERT_EQ(Put(db_, "del", "1"), NOKV_OK);
  ASSERT_EQ(nokv_delete(db_, nullptr, "del", 3, &t_del), NOKV_OK);
  ASSERT_EQ(Put(db_, "r2", "1"), NOKV_OK);
  ASSERT_EQ(nokv_delete_range(db_, nullptr, "r1", 2, "r9", 2, &t_range), NOKV_OK);
  ASSERT_EQ(Put(db_, "other", "1", false, &t_other), NOKV_OK);
  struct Case {
    nokv_condition cond;
    bool holds;
    uint64_t found_ts;
  } cases[] = {
      {Cond(NOKV_COND_UNWRITTEN_SINCE, "put", "", t0), false, t_put},
      {Cond(NOKV_COND_UNWRITTEN_SINCE, "put", "", t_put), true, 0},  // at it: not after
      {Cond(NOKV_COND_UNWRITTEN_SINCE, "del", "", t_put), false, t_del},
      {Cond(NOKV_COND_UNWRITTEN_SINCE, "r5", "", t0), false, t_range},  // never put, range-deleted
      {Cond(NOKV_COND_UNWRITTEN_SINCE, "r2", "", t_range - 1), false, t_range},
      {Cond(NOKV_COND_UNWRITTEN_SINCE, "missing", "", t0), true, 0},
      {Cond(NOKV_COND_UNWRITTEN_SINCE, "", "", t_other - 1), false, t_other},
      {Cond(NOKV_COND_UNWRITTEN_SINCE, "", "", t_other), true, 0},
  };
  cases[6].cond.key = nullptr;  // on no key: on every key
  cases[7].cond.key = nullptr;
  int i = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(i++);
    nokv_batch* b;
    ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);  // a pure check: the state stays as it is
    nokv_cond_result r;
    int rc = nokv_write_if(db_, nullptr, &c.cond, 1, b, nullptr, &r);
    nokv_batch_free(b);
    if (c.holds) {
      EXPECT_EQ(rc, NOKV_OK) << nokv_errmsg();
    } else {
      ASSERT_EQ(rc, NOKV_ECONDITION);
      EXPECT_TRUE(r.found);
      EXPECT_EQ(r.found_ts, c.found_ts);
    }
  }
  nokv_snapshot_release(db_, snap);
}

// Exact only while the history after commit_ts is kept: with no snapshot and
// no retention the watermark passes it, and the condition fails rather than
// trust versions compaction may have dropped; within history_retention_commits
// a deletion stays visible to it through flushes and compactions.
TEST_F(CondTest, UnwrittenSinceIsExactWithinTheHistoryKept) {
  uint64_t t0 = 0, t1 = 0;
  ASSERT_EQ(Put(db_, "k", "1", false, &t0), NOKV_OK);
  ASSERT_EQ(Put(db_, "other", "1", false, &t1), NOKV_OK);
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  nokv_condition c = Cond(NOKV_COND_UNWRITTEN_SINCE, "k", "", t0);
  nokv_cond_result r;
  EXPECT_EQ(nokv_write_if(db_, nullptr, &c, 1, b, nullptr, &r), NOKV_ECONDITION)
      << "judged exact below the watermark";
  EXPECT_FALSE(r.found);

  ASSERT_EQ(nokv_close(db_), NOKV_OK);
  o_.history_retention_commits = 1000;
  ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK);
  c.commit_ts = nokv_last_commit_ts(db_);
  EXPECT_EQ(nokv_write_if(db_, nullptr, &c, 1, b, nullptr, nullptr), NOKV_OK) << nokv_errmsg();
  uint64_t t_del = 0;
  ASSERT_EQ(nokv_delete(db_, nullptr, "k", 1, &t_del), NOKV_OK);
  for (int i = 0; i < 20; i++) ASSERT_EQ(Put(db_, "x" + std::to_string(i), "v"), NOKV_OK);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);  // every version into the last level
  EXPECT_EQ(nokv_write_if(db_, nullptr, &c, 1, b, nullptr, &r), NOKV_ECONDITION);
  EXPECT_TRUE(r.found);
  EXPECT_EQ(r.found_ts, t_del) << "the tombstone was dropped within the retention";
  nokv_batch_free(b);
}

// A write to a condition's key that lands after the conditions were judged and
// before the batch commits makes them be judged again: here they then fail,
// where a check-then-write would have overwritten it.
TEST_F(CondTest, AWriteBetweenJudgementAndCommitIsSeen) {
  ASSERT_EQ(Put(db_, "k", "old"), NOKV_OK);
  static int calls;
  calls = 0;
  nk_write_if_judged = [](nokv_db* db, void*) {
    if (calls++ == 0) {
      ASSERT_EQ(Put(db, "k", "new"), NOKV_OK);
    }
  };
  nokv_cond_result r;
  EXPECT_EQ(PutIf({Cond(NOKV_COND_VALUE_EQUALS, "k", "old")}, "k", "mine", nullptr, &r),
            NOKV_ECONDITION);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(Get(db_, "k")->data, "new");
  EXPECT_EQ(Stats(db_).cond_rejudged, 1u);
  // A write to another key in between commits nothing the conditions read.
  calls = 0;
  nk_write_if_judged = [](nokv_db* db, void*) {
    if (calls++ == 0) {
      ASSERT_EQ(Put(db, "unrelated", "x"), NOKV_OK);
    }
  };
  EXPECT_EQ(PutIf({Cond(NOKV_COND_VALUE_EQUALS, "k", "new")}, "k", "mine", nullptr, &r),
            NOKV_OK);
  EXPECT_EQ(Get(db_, "k")->data, "mine");
  EXPECT_EQ(Stats(db_).cond_rejudged, 1u);
}

// A key written between every judgement and its commit: after 1000
// judgements the write gives up (NOKV_ECONFLICT), nothing written.
TEST_F(CondTest, EndlessInterferenceEndsInAConflict) {
  ASSERT_EQ(Put(db_, "k", "v"), NOKV_OK);
  static int writes;
  writes = 0;
  nk_write_if_judged = [](nokv_db* db, void*) {
    writes++;
    ASSERT_EQ(Put(db, "k", "v"), NOKV_OK);  // same value, new version
  };
  EXPECT_EQ(PutIf({Cond(NOKV_COND_PRESENT, "k")}, "t", "mine"), NOKV_ECONFLICT);
  nk_write_if_judged = nullptr;
  EXPECT_EQ(writes, 1000);
  EXPECT_FALSE(Get(db_, "t").has_value());
  EXPECT_EQ(Stats(db_).cond_rejudged, 1000u);
  EXPECT_EQ(Stats(db_).txns_active, 0u);
}

// Compare-and-set on a counter's version from several threads: every success
// is one increment, none lost.
TEST_F(CondTest, ConcurrentCompareAndSetLosesNoUpdate) {
  ASSERT_EQ(Put(db_, "counter", "0"), NOKV_OK);
  constexpr int kThreads = 4, kIncrements = 300;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&] {
      for (int done = 0; done < kIncrements;) {
        auto v = Get(db_, "counter");
        if (!v) return;
        std::string next = std::to_string(std::stoi(v->data) + 1);
        int rc = PutIf({Cond(NOKV_COND_TS_EQUALS, "counter", "", v->commit_ts)}, "counter", next);
        if (rc == NOKV_OK) {
          done++;
        } else if (rc == NOKV_ECONDITION) {
          failures++;
        } else {
          ADD_FAILURE() << nokv_strerror(rc) << " " << nokv_errmsg();
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(Get(db_, "counter")->data, std::to_string(kThreads * kIncrements));
  nokv_statistics s = Stats(db_);
  EXPECT_EQ(s.cond_writes, static_cast<uint64_t>(kThreads * kIncrements));
  EXPECT_EQ(s.cond_failures, static_cast<uint64_t>(failures.load()));
}

// nokv_write_if_async: judged in the caller, committed by the commit thread;
// a failed condition answers at once; a write landing in between is reported
// as a conflict with nothing written.
struct AsyncResult {
  std::promise<std::tuple<int, uint64_t, nokv_cond_result>> p;
  static void Done(void* arg, int rc, uint64_t ts, const nokv_cond_result* r, const char*) {
    static_cast<AsyncResult*>(arg)->p.set_value({rc, ts, *r});
  }
};

TEST_F(CondTest, AsyncJudgesHereAndCommitsLater) {
  uint64_t ts_a = 0;
  ASSERT_EQ(Put(db_, "a", "1", false, &ts_a), NOKV_OK);
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "a", 1, "2", 1), NOKV_OK);
  nokv_condition same = Cond(NOKV_COND_TS_EQUALS, "a", "", ts_a);
  AsyncResult ok;
  auto got = ok.p.get_future();
  ASSERT_EQ(nokv_write_if_async(db_, nullptr, &same, 1, b, &AsyncResult::Done, &ok), NOKV_OK);
  auto [rc, ts, r] = got.get();
  ASSERT_EQ(rc, NOKV_OK);
  EXPECT_EQ(Get(db_, "a")->commit_ts, ts);
  EXPECT_EQ(Get(db_, "a")->data, "2");
  // The version moved on: answered before the call returns, nothing written.
  AsyncResult failed;
  auto got2 = failed.p.get_future();
  ASSERT_EQ(nokv_write_if_async(db_, nullptr, &same, 1, b, &AsyncResult::Done, &failed), NOKV_OK);
  ASSERT_EQ(got2.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  auto [rc2, ts2, r2] = got2.get();
  EXPECT_EQ(rc2, NOKV_ECONDITION);
  EXPECT_EQ(r2.found_ts, ts);
  // A write landing between judgement and commit: a conflict, nothing written.
  static int calls;
  calls = 0;
  nk_write_if_judged = [](nokv_db* db, void*) {
    if (calls++ == 0) {
      ASSERT_EQ(Put(db, "a", "3"), NOKV_OK);
    }
  };
  nokv_condition now = Cond(NOKV_COND_VALUE_EQUALS, "a", "2");
  AsyncResult raced;
  auto got3 = raced.p.get_future();
  ASSERT_EQ(nokv_write_if_async(db_, nullptr, &now, 1, b, &AsyncResult::Done, &raced), NOKV_OK);
  EXPECT_EQ(std::get<0>(got3.get()), NOKV_ECONFLICT);
  EXPECT_EQ(Get(db_, "a")->data, "3");
  nk_write_if_judged = nullptr;
  EXPECT_EQ(Stats(db_).txns_active, 0u);  // every judgement's snapshot released
  nokv_batch_free(b);
}

}  // namespace
