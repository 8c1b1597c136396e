// Transactions: the anomalies snapshot isolation prevents, the one it allows
// (write skew), own-write visibility, iterators, limits and durability.
#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "test_util.h"

using namespace nokv_test;

namespace {

class TxnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nokv_options_init(&o_);
    ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK);
  }
  void TearDown() override {
    if (db_ != nullptr) {
      EXPECT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
    }
  }
  nokv_txn* Begin(unsigned flags = 0) {
    nokv_txn* t = nullptr;
    EXPECT_EQ(nokv_txn_begin(db_, flags, &t), NOKV_OK);
    return t;
  }
  // The value of k in t, or "<none>".
  static std::string TGet(nokv_txn* t, const std::string& k) {
    void* v;
    size_t n;
    int rc = nokv_txn_get(t, k.data(), k.size(), &v, &n);
    if (rc == NOKV_ENOTFOUND) return "<none>";
    EXPECT_EQ(rc, NOKV_OK) << nokv_errmsg();
    if (rc != NOKV_OK) return "<error>";
    std::string s(static_cast<char*>(v), n);
    nokv_free(v);
    return s;
  }
  static int TPut(nokv_txn* t, const std::string& k, const std::string& v) {
    return nokv_txn_put(t, k.data(), k.size(), v.data(), v.size());
  }
  static int Commit(nokv_txn* t, uint64_t* ts = nullptr) { return nokv_txn_commit(t, nullptr, ts); }

  TempDir dir_;
  nokv_options o_;
  nokv_db* db_ = nullptr;
};

TEST_F(TxnTest, NoDirtyReads) {
  nokv_txn* w = Begin();
  ASSERT_EQ(TPut(w, "x", "uncommitted"), NOKV_OK);
  nokv_txn* r = Begin();
  EXPECT_EQ(TGet(r, "x"), "<none>");
  EXPECT_FALSE(Get(db_, "x").has_value());  // nor outside any transaction
  ASSERT_EQ(Commit(w), NOKV_OK);
  EXPECT_EQ(TGet(r, "x"), "<none>");        // r's snapshot predates the commit
  EXPECT_EQ(Get(db_, "x")->data, "uncommitted");
  nokv_txn_discard(r);
}

TEST_F(TxnTest, RepeatableReads) {
  ASSERT_EQ(Put(db_, "x", "1"), NOKV_OK);
  nokv_txn* r = Begin();
  EXPECT_EQ(TGet(r, "x"), "1");
  nokv_txn* w = Begin();
  ASSERT_EQ(TPut(w, "x", "2"), NOKV_OK);
  ASSERT_EQ(Commit(w), NOKV_OK);
  ASSERT_EQ(Put(db_, "x", "3"), NOKV_OK);   // a plain write too
  EXPECT_EQ(TGet(r, "x"), "1");
  ASSERT_EQ(Commit(r), NOKV_OK);            // wrote nothing: no conflict
}

TEST_F(TxnTest, LostUpdateOneOfTwoIncrementsAborts) {
  ASSERT_EQ(Put(db_, "counter", "10"), NOKV_OK);
  nokv_txn* a = Begin();
  nokv_txn* b = Begin();
  int va = std::stoi(TGet(a, "counter")), vb = std::stoi(TGet(b, "counter"));
  ASSERT_EQ(TPut(a, "counter", std::to_string(va + 1)), NOKV_OK);
  ASSERT_EQ(TPut(b, "counter", std::to_string(vb + 1)), NOKV_OK);
  ASSERT_EQ(Commit(a), NOKV_OK);
  EXPECT_EQ(Commit(b), NOKV_ECONFLICT);
  EXPECT_NE(std::string(nokv_errmsg()).find("retry"), std::string::npos) << nokv_errmsg();
  EXPECT_EQ(Get(db_, "counter")->data, "11");
  // The retry sees a's increment and succeeds.
  nokv_txn* c = Begin();
  ASSERT_EQ(TPut(c, "counter", std::to_string(std::stoi(TGet(c, "counter")) + 1)), NOKV_OK);
  ASSERT_EQ(Commit(c), NOKV_OK);
  EXPECT_EQ(Get(db_, "counter")->data, "12");
  nokv_statistics s = Stats(db_);
  EXPECT_EQ(s.txn_commits, 2u);
  EXPECT_EQ(s.txn_conflicts, 1u);
  EXPECT_EQ(s.txns_active, 0u);
  // No transaction is left that could conflict with the recorded write sets.
  EXPECT_EQ(s.txn_tracked_keys, 0u);
}

// A long run of overlapping transactions, at most kWindow open at a time: the
// oracle must keep only the keys some open transaction could conflict with
// (those written after the oldest one began), never the whole history.
TEST_F(TxnTest, TrackedKeysStayBoundedOverALongRun) {
  const int kWindow = 4, kRounds = 5000;
  std::vector<nokv_txn*> open;
  uint64_t most = 0;
  for (int i = 0; i < kRounds; i++) {
    open.push_back(Begin());
    if (open.size() == kWindow) {  // the oldest commits a write, and leaves
      nokv_txn* t = open.front();
      open.erase(open.begin());
      ASSERT_EQ(TPut(t, "k" + std::to_string(i % 64), std::to_string(i)), NOKV_OK);
      ASSERT_EQ(Commit(t), NOKV_OK) << nokv_errmsg();
    }
    ASSERT_EQ(Put(db_, "plain" + std::to_string(i % 64), "v"), NOKV_OK);  // recorded too
    most = std::max(most, Stats(db_).txn_tracked_keys);
  }
  // Each open transaction began at most kWindow rounds ago, and a round writes
  // two keys: nothing older can be needed.
  EXPECT_LE(most, 2u * kWindow + 2) << "of " << 2 * kRounds << " commits";
  EXPECT_GT(most, 0u);
  for (nokv_txn* t : open) nokv_txn_discard(t);
  EXPECT_EQ(Stats(db_).txn_tracked_keys, 0u);
}

// A transaction held open while more keys are written than conflict tracking
// may hold (max_txn_conflict_bytes) cannot be checked any more: its commit is
// refused with a retry message that says why, and memory stays at the limit.
// Transactions that began afterwards commit as usual.
TEST_F(TxnTest, ATransactionOlderThanConflictTrackingHoldsConflicts) {
  ASSERT_EQ(nokv_close(db_), NOKV_OK);
  o_.max_txn_conflict_bytes = 64 << 10;  // 4,096 slots
  ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK);
  nokv_txn* old = Begin();
  EXPECT_EQ(TGet(old, "a"), "<none>");
  ASSERT_EQ(TPut(old, "a", "1"), NOKV_OK);
  for (int i = 0; i < 5000; i++) {
    ASSERT_EQ(Put(db_, "key" + std::to_string(i), "v"), NOKV_OK);
    ASSERT_LE(Stats(db_).txn_tracked_keys, 2048u);
  }
  EXPECT_GE(Stats(db_).txn_tracking_overflows, 1u);
  nokv_txn* young = Begin();
  EXPECT_EQ(TGet(young, "key1"), "v");
  ASSERT_EQ(TPut(young, "b", "1"), NOKV_OK);
  EXPECT_EQ(Commit(old), NOKV_ECONFLICT);
  EXPECT_NE(std::string(nokv_errmsg()).find("max_txn_conflict_bytes"), std::string::npos)
      << nokv_errmsg();
  EXPECT_EQ(Commit(young), NOKV_OK) << nokv_errmsg();
  EXPECT_FALSE(Get(db_, "a").has_value());
  o_.max_txn_conflict_bytes = 1000;  // below the minimum
  nokv_db* other;
  EXPECT_EQ(nokv_open((dir_.path() + "-x").c_str(), &o_, &other), NOKV_EINVAL);
}

// A read-write transaction that reads more keys than max_txn_reads stops
// remembering them one by one: it then conflicts with any write committed after
// it began (even to a key it never read), and with none if nothing was written.
TEST_F(TxnTest, PastMaxTxnReadsAnyLaterWriteConflicts) {
  ASSERT_EQ(nokv_close(db_), NOKV_OK);
  o_.max_txn_reads = 10;
  ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK);
  for (int i = 0; i < 20; i++) ASSERT_EQ(Put(db_, "k" + std::to_string(i), "v"), NOKV_OK);
  auto scan_all = [](nokv_txn* t) {
    nokv_iter* it;
    int n = 0;
    EXPECT_EQ(nokv_txn_iter_new_prefix(t, "k", 1, &it), NOKV_OK);
    for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) n++;
    nokv_iter_close(it);
    return n;
  };
  // Few reads: an unrelated write does not conflict.
  nokv_txn* few = Begin();
  EXPECT_EQ(TGet(few, "k1"), "v");
  ASSERT_EQ(TPut(few, "out", "1"), NOKV_OK);
  ASSERT_EQ(Put(db_, "unrelated", "x"), NOKV_OK);
  EXPECT_EQ(Commit(few), NOKV_OK) << nokv_errmsg();
  // Many reads, nothing written meanwhile: commits.
  nokv_txn* quiet = Begin();
  EXPECT_EQ(scan_all(quiet), 20);
  ASSERT_EQ(TPut(quiet, "out", "2"), NOKV_OK);
  EXPECT_EQ(Commit(quiet), NOKV_OK) << nokv_errmsg();
  // Many reads, then an unrelated write: conflicts, and says why.
  nokv_txn* busy = Begin();
  EXPECT_EQ(scan_all(busy), 20);
  ASSERT_EQ(TPut(busy, "out", "3"), NOKV_OK);
  ASSERT_EQ(Put(db_, "unrelated", "y"), NOKV_OK);
  EXPECT_EQ(Commit(busy), NOKV_ECONFLICT);
  EXPECT_NE(std::string(nokv_errmsg()).find("max_txn_reads"), std::string::npos)
      << nokv_errmsg();
  EXPECT_EQ(Get(db_, "out")->data, "2");
}

TEST_F(TxnTest, NoReadSkew) {
  // Invariant x + y = 100; a transfer moves 30 from x to y between r's two reads.
  ASSERT_EQ(Put(db_, "x", "50"), NOKV_OK);
  ASSERT_EQ(Put(db_, "y", "50"), NOKV_OK);
  nokv_txn* r = Begin(NOKV_TXN_READ_ONLY);
  int x = std::stoi(TGet(r, "x"));
  nokv_txn* t = Begin();
  ASSERT_EQ(TPut(t, "x", std::to_string(std::stoi(TGet(t, "x")) - 30)), NOKV_OK);
  ASSERT_EQ(TPut(t, "y", std::to_string(std::stoi(TGet(t, "y")) + 30)), NOKV_OK);
  ASSERT_EQ(Commit(t), NOKV_OK);
  int y = std::stoi(TGet(r, "y"));
  EXPECT_EQ(x + y, 100);
  ASSERT_EQ(Commit(r), NOKV_OK);
}

// Conflicts are checked on the keys a transaction read, so write skew through
// keys both transactions read (x + y >= 0, each withdrawing from one) aborts the
// second committer. Snapshot isolation still allows write skew through keys that
// did not exist when read (phantoms): two bookings each check that a room is
// free with a range scan that finds nothing, and each inserts its own booking.
// Both commit and the room is double-booked. This is what snapshot isolation
// means (docs/transactions.md); a serializable design would abort one.
TEST_F(TxnTest, WriteSkewThroughKeysBothReadAborts) {
  ASSERT_EQ(Put(db_, "x", "50"), NOKV_OK);
  ASSERT_EQ(Put(db_, "y", "50"), NOKV_OK);
  nokv_txn* a = Begin();
  nokv_txn* b = Begin();
  ASSERT_GE(std::stoi(TGet(a, "x")) + std::stoi(TGet(a, "y")) - 80, 0);
  ASSERT_GE(std::stoi(TGet(b, "x")) + std::stoi(TGet(b, "y")) - 80, 0);
  ASSERT_EQ(TPut(a, "x", "-30"), NOKV_OK);
  ASSERT_EQ(TPut(b, "y", "-30"), NOKV_OK);
  EXPECT_EQ(Commit(a), NOKV_OK);
  EXPECT_EQ(Commit(b), NOKV_ECONFLICT);
}

TEST_F(TxnTest, WriteSkewThroughPhantomsIsAllowedUnderSnapshotIsolation) {
  auto free_room = [](nokv_txn* t) {
    nokv_iter* it;
    EXPECT_EQ(nokv_txn_iter_new(t, "room1/", 6, "room10", 6, &it), NOKV_OK);
    nokv_iter_seek_first(it);
    bool empty = !nokv_iter_valid(it);
    nokv_iter_close(it);
    return empty;
  };
  nokv_txn* a = Begin();
  nokv_txn* b = Begin();
  ASSERT_TRUE(free_room(a));
  ASSERT_TRUE(free_room(b));
  ASSERT_EQ(TPut(a, "room1/alice", "9:00"), NOKV_OK);
  ASSERT_EQ(TPut(b, "room1/bob", "9:00"), NOKV_OK);
  EXPECT_EQ(Commit(a), NOKV_OK);
  EXPECT_EQ(Commit(b), NOKV_OK);  // the anomaly: both bookings stand
  EXPECT_TRUE(Get(db_, "room1/alice").has_value());
  EXPECT_TRUE(Get(db_, "room1/bob").has_value());
}

TEST_F(TxnTest, SeesItsOwnWritesAndCommitsThemAtOneTimestamp) {
  ASSERT_EQ(Put(db_, "a", "old"), NOKV_OK);
  ASSERT_EQ(Put(db_, "c", "old"), NOKV_OK);
  nokv_txn* t = Begin();
  ASSERT_EQ(TPut(t, "a", "new"), NOKV_OK);
  ASSERT_EQ(TPut(t, "b", "new"), NOKV_OK);
  ASSERT_EQ(nokv_txn_delete(t, "c", 1), NOKV_OK);
  ASSERT_EQ(TPut(t, "b", "newer"), NOKV_OK);
  EXPECT_EQ(TGet(t, "a"), "new");
  EXPECT_EQ(TGet(t, "b"), "newer");
  EXPECT_EQ(TGet(t, "c"), "<none>");
  nokv_iter* it;
  ASSERT_EQ(nokv_txn_iter_new(t, "", 0, nullptr, 0, &it), NOKV_OK);
  std::vector<std::string> seen;
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
    size_t kn, vn;
    const char* k = static_cast<const char*>(nokv_iter_key(it, &kn));
    const char* v = static_cast<const char*>(nokv_iter_value(it, &vn));
    seen.push_back(std::string(k, kn) + "=" + std::string(v, vn));
  }
  EXPECT_EQ(nokv_iter_status(it), NOKV_OK);
  nokv_iter_close(it);
  EXPECT_EQ(seen, (std::vector<std::string>{"a=new", "b=newer"}));
  uint64_t ts = 0;
  ASSERT_EQ(Commit(t, &ts), NOKV_OK);
  EXPECT_EQ(Get(db_, "a")->commit_ts, ts);
  EXPECT_EQ(Get(db_, "b")->commit_ts, ts);
  EXPECT_EQ(Get(db_, "b")->data, "newer");
  EXPECT_FALSE(Get(db_, "c").has_value());
}

TEST_F(TxnTest, KeysReadThroughAnIteratorConflictToo) {
  ASSERT_EQ(Put(db_, "k1", "1"), NOKV_OK);
  ASSERT_EQ(Put(db_, "k2", "2"), NOKV_OK);
  nokv_txn* t = Begin();
  nokv_iter* it;
  ASSERT_EQ(nokv_txn_iter_new(t, "k", 1, "l", 1, &it), NOKV_OK);
  int n = 0;
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) n++;
  nokv_iter_close(it);
  EXPECT_EQ(n, 2);
  ASSERT_EQ(TPut(t, "sum", "3"), NOKV_OK);
  ASSERT_EQ(Put(db_, "k2", "20"), NOKV_OK);  // a plain write is a committed write too
  EXPECT_EQ(Commit(t), NOKV_ECONFLICT);
}

TEST_F(TxnTest, PrefixIteratorMergesOwnWritesWithinThePrefixOnly) {
  ASSERT_EQ(Put(db_, "p1", "1"), NOKV_OK);
  ASSERT_EQ(Put(db_, "p2", "2"), NOKV_OK);
  ASSERT_EQ(Put(db_, "q", "outside"), NOKV_OK);
  nokv_txn* t = Begin();
  ASSERT_EQ(TPut(t, "p3", "mine"), NOKV_OK);
  ASSERT_EQ(nokv_txn_delete(t, "p1", 2), NOKV_OK);
  ASSERT_EQ(TPut(t, "o", "before the prefix"), NOKV_OK);
  nokv_iter* it;
  ASSERT_EQ(nokv_txn_iter_new_prefix(t, "p", 1, &it), NOKV_OK);
  std::vector<std::string> keys;
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
    size_t n;
    const char* k = static_cast<const char*>(nokv_iter_key(it, &n));
    keys.emplace_back(k, n);
  }
  EXPECT_EQ(nokv_iter_status(it), NOKV_OK);
  nokv_iter_close(it);
  EXPECT_EQ(keys, (std::vector<std::string>{"p2", "p3"}));
  ASSERT_EQ(Put(db_, "p2", "20"), NOKV_OK);  // a key the iterator returned
  EXPECT_EQ(Commit(t), NOKV_ECONFLICT);
}

TEST_F(TxnTest, ReadOnlyTransactionsNeverConflictAndCannotWrite) {
  ASSERT_EQ(Put(db_, "x", "1"), NOKV_OK);
  nokv_txn* r = Begin(NOKV_TXN_READ_ONLY);
  EXPECT_EQ(TGet(r, "x"), "1");
  EXPECT_EQ(TPut(r, "x", "2"), NOKV_EINVAL);
  ASSERT_EQ(Put(db_, "x", "3"), NOKV_OK);
  EXPECT_EQ(Commit(r), NOKV_OK);
}

TEST_F(TxnTest, SizeLimitsGiveAClearError) {
  ASSERT_EQ(nokv_close(db_), NOKV_OK);
  o_.max_txn_ops = 3;
  o_.max_txn_bytes = 100;
  ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK);
  nokv_txn* t = Begin();
  EXPECT_EQ(TPut(t, "a", "1"), NOKV_OK);
  EXPECT_EQ(TPut(t, "b", std::string(200, 'v')), NOKV_EINVAL);
  EXPECT_NE(std::string(nokv_errmsg()).find("transaction too large"), std::string::npos);
  EXPECT_EQ(TPut(t, "b", "2"), NOKV_OK);
  EXPECT_EQ(TPut(t, "c", "3"), NOKV_OK);
  EXPECT_EQ(TPut(t, "d", "4"), NOKV_EINVAL);
  EXPECT_EQ(nokv_txn_put(t, "", 0, "v", 1), NOKV_EINVAL);
  ASSERT_EQ(Commit(t), NOKV_OK);  // what was accepted commits
  EXPECT_EQ(Get(db_, "c")->data, "3");
}

TEST_F(TxnTest, CloseRefusesWhileATransactionIsOpen) {
  nokv_txn* t = Begin();
  EXPECT_EQ(nokv_close(db_), NOKV_EBUSY);
  nokv_txn_discard(t);
}

TEST_F(TxnTest, CommittedTransactionsSurviveReopenAndLargeValuesGoToTheLog) {
  nokv_txn* t = Begin();
  std::string big(8000, 'b');
  ASSERT_EQ(TPut(t, "small", "s"), NOKV_OK);
  ASSERT_EQ(TPut(t, "big", big), NOKV_OK);
  nokv_write_options wo{};
  wo.sync = true;
  ASSERT_EQ(nokv_txn_commit(t, &wo, nullptr), NOKV_OK);
  EXPECT_GE(Stats(db_).vlog_bytes, big.size());
  ASSERT_EQ(nokv_close(db_), NOKV_OK);
  ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK);
  EXPECT_EQ(Get(db_, "small")->data, "s");
  EXPECT_EQ(Get(db_, "big")->data, big);
}

// A transaction exported as a conditional write (what a replicated log
// carries): one condition per distinct key read, sorted, and its writes; the
// write commits exactly when nothing it read was written since read_ts.
TEST_F(TxnTest, AnExportedTransactionCommitsAsAConditionalWrite) {
  ASSERT_EQ(Put(db_, "a", "1"), NOKV_OK);
  ASSERT_EQ(Put(db_, "k1", "1"), NOKV_OK);
  ASSERT_EQ(Put(db_, "k2", "2"), NOKV_OK);
  nokv_txn* t = Begin(NOKV_TXN_EXPORTABLE);
  EXPECT_EQ(TGet(t, "b"), "<none>");  // an absent key read counts
  EXPECT_EQ(TGet(t, "a"), "1");
  EXPECT_EQ(TGet(t, "a"), "1");
  nokv_iter* it;
  ASSERT_EQ(nokv_txn_iter_new(t, "k", 1, "l", 1, &it), NOKV_OK);
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
  }
  nokv_iter_close(it);
  ASSERT_EQ(TPut(t, "sum", "3"), NOKV_OK);
  ASSERT_EQ(nokv_txn_delete(t, "a", 1), NOKV_OK);
  ASSERT_EQ(Put(db_, "unrelated", "x"), NOKV_OK);

  nokv_batch* w = nullptr;
  nokv_condition* c = nullptr;
  size_t n = 0;
  ASSERT_EQ(nokv_txn_export(t, 100, &w, &c, &n), NOKV_OK) << nokv_errmsg();
  std::vector<std::string> keys;
  for (size_t i = 0; i < n; i++) {
    EXPECT_EQ(c[i].op, NOKV_COND_UNWRITTEN_SINCE);
    EXPECT_EQ(c[i].commit_ts, nokv_txn_read_ts(t));
    keys.emplace_back(static_cast<const char*>(c[i].key), c[i].klen);
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "k1", "k2"}));
  EXPECT_EQ(nokv_batch_count(w), 2u);
  // Exported twice: once conflicting (k2 rewritten), once as it stands.
  nokv_batch* w2 = nullptr;
  nokv_condition* c2 = nullptr;
  size_t n2 = 0;
  ASSERT_EQ(nokv_txn_export(t, 100, &w2, &c2, &n2), NOKV_OK);
  uint64_t ts = 0;
  EXPECT_EQ(nokv_write_if(db_, nullptr, c, n, w, &ts, nullptr), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(Get(db_, "sum")->data, "3");
  EXPECT_FALSE(Get(db_, "a").has_value());
  nokv_cond_result r;
  EXPECT_EQ(nokv_write_if(db_, nullptr, c2, n2, w2, nullptr, &r), NOKV_ECONDITION)
      << "its own first commit wrote keys it read";
  EXPECT_EQ(r.failed, 0u);  // "a", deleted by that commit
  EXPECT_EQ(r.found_ts, ts);
  nokv_free(c);
  nokv_free(c2);
  nokv_batch_free(w);
  nokv_batch_free(w2);
  nokv_txn_discard(t);
}

// Past max_conds keys, the export checks the whole database: any write since
// read_ts refuses it. A transaction not begun exportable cannot export.
TEST_F(TxnTest, AnExportPastItsConditionLimitChecksEveryKey) {
  nokv_txn* t = Begin(NOKV_TXN_EXPORTABLE);
  EXPECT_EQ(TGet(t, "a"), "<none>");
  EXPECT_EQ(TGet(t, "b"), "<none>");
  ASSERT_EQ(TPut(t, "c", "1"), NOKV_OK);
  nokv_batch* w = nullptr;
  nokv_condition* c = nullptr;
  size_t n = 0;
  ASSERT_EQ(nokv_txn_export(t, 1, &w, &c, &n), NOKV_OK);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(c[0].key, nullptr);
  EXPECT_EQ(c[0].klen, 0u);
  nokv_snapshot* hold;  // keeps the history after read_ts exact
  ASSERT_EQ(nokv_snapshot_create(db_, &hold), NOKV_OK);
  ASSERT_EQ(Put(db_, "z", "unrelated"), NOKV_OK);
  EXPECT_EQ(nokv_write_if(db_, nullptr, c, n, w, nullptr, nullptr), NOKV_ECONDITION);
  EXPECT_FALSE(Get(db_, "c").has_value());
  nokv_snapshot_release(db_, hold);
  nokv_free(c);
  nokv_batch_free(w);
  nokv_txn_discard(t);

  nokv_txn* plain = Begin();
  EXPECT_EQ(nokv_txn_export(plain, 10, &w, &c, &n), NOKV_EINVAL);
  nokv_txn_discard(plain);
}

}  // namespace
