// TTL (nokv_batch_put_ttl, nokv_txn_put_ttl): an expired version is invisible
// to Get, iterators, transactions and conditions, judged at a snapshot's time;
// values inline and in the value log; compaction turns expired versions into
// tombstones (their value-log bytes counted dead) unless a snapshot still sees
// them; the expiry survives reopening and value-log GC. A fake wall clock.
#include <atomic>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "test_util.h"
#include "util/clock.h"

using namespace nokv_test;

namespace {

std::atomic<uint64_t> fake_now{1'700'000'000'000};
uint64_t FakeNow() { return fake_now.load(); }

class TtlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nk_wall_clock_override = FakeNow;
    fake_now = 1'700'000'000'000;
    nokv_options_init(&o_);
    o_.value_threshold = 1024;
    o_.value_log_segment_bytes = 16 << 10;  // sealed segments, for GC
    o_.disable_auto_gc = true;  // only the test collects: the garbage counts stay put
    Open();
  }
  void TearDown() override {
    if (db_ != nullptr) EXPECT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
    nk_wall_clock_override = nullptr;
  }
  void Open() { ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK) << nokv_errmsg(); }
  void Reopen() {
    ASSERT_EQ(nokv_close(db_), NOKV_OK);
    db_ = nullptr;
    Open();
  }
  int PutTtl(const std::string& k, const std::string& v, uint64_t ttl_ms) {
    nokv_batch* b;
    EXPECT_EQ(nokv_batch_new(&b), NOKV_OK);
    EXPECT_EQ(nokv_batch_put_ttl(b, k.data(), k.size(), v.data(), v.size(), ttl_ms), NOKV_OK);
    int rc = nokv_write(db_, nullptr, b, nullptr);
    nokv_batch_free(b);
    return rc;
  }
  std::optional<std::string> GetAt(const std::string& k, const nokv_snapshot* snap = nullptr,
                                   uint64_t* expires = nullptr) {
    return nokv_test::GetAt(db_, k, snap, expires);
  }
  std::vector<std::pair<std::string, std::string>> Scan(const nokv_snapshot* snap = nullptr) {
    return ScanAt(db_, snap);
  }
  TempDir dir_;
  nokv_options o_;
  nokv_db* db_ = nullptr;
};

const std::string kBig(3000, 'B');  // past value_threshold: in the value log

TEST_F(TtlTest, AnExpiredVersionIsGoneToEveryRead) {
  uint64_t t0 = fake_now;
  ASSERT_EQ(Put(db_, "k", "old"), NOKV_OK);
  ASSERT_EQ(PutTtl("k", "new", 1000), NOKV_OK);  // hides "old" once expired, like a delete
  ASSERT_EQ(PutTtl("big", kBig, 1000), NOKV_OK);
  ASSERT_EQ(PutTtl("long", "lives", 60000), NOKV_OK);
  ASSERT_EQ(Put(db_, "plain", "p"), NOKV_OK);
  for (bool flushed : {false, true}) {
    SCOPED_TRACE(flushed ? "from tables" : "from the memtable");
    if (flushed) ASSERT_EQ(nokv_flush(db_), NOKV_OK);
    fake_now = t0 + 999;
    uint64_t e = 0;
    EXPECT_EQ(GetAt("k", nullptr, &e), "new");
    EXPECT_EQ(e, t0 + 1000);
    EXPECT_EQ(GetAt("big", nullptr, &e), kBig);
    EXPECT_EQ(e, t0 + 1000);
    EXPECT_EQ(GetAt("plain", nullptr, &e), "p");
    EXPECT_EQ(e, 0u);
    EXPECT_EQ(Scan().size(), 4u);
    fake_now = t0 + 1000;
    EXPECT_FALSE(GetAt("k").has_value());
    EXPECT_FALSE(GetAt("big").has_value());
    EXPECT_EQ(GetAt("long"), "lives");
    auto rows = Scan();
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].first, "long");
    EXPECT_EQ(rows[1].first, "plain");
    fake_now = t0;  // back for the second round
  }
}

TEST_F(TtlTest, ASnapshotJudgesExpiryAtItsOwnTime) {
  uint64_t t0 = fake_now;
  ASSERT_EQ(PutTtl("k", "v", 1000), NOKV_OK);
  ASSERT_EQ(PutTtl("big", kBig, 1000), NOKV_OK);
  fake_now = t0 + 500;
  nokv_snapshot* snap;
  ASSERT_EQ(nokv_snapshot_create(db_, &snap), NOKV_OK);
  fake_now = t0 + 5000;
  EXPECT_EQ(GetAt("k", snap), "v");  // the snapshot's time is t0 + 500
  EXPECT_EQ(GetAt("big", snap), kBig);
  EXPECT_EQ(Scan(snap).size(), 2u);
  EXPECT_FALSE(GetAt("k").has_value());
  EXPECT_TRUE(Scan().empty());
  // Compaction keeps what a live snapshot still sees.
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  EXPECT_EQ(Stats(db_).ttl_expired, 0u);
  EXPECT_EQ(GetAt("big", snap), kBig);
  nokv_snapshot_release(db_, snap);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  EXPECT_EQ(Stats(db_).ttl_expired, 2u);
}

TEST_F(TtlTest, CompactionTurnsExpiredVersionsIntoTombstones) {
  uint64_t t0 = fake_now;
  ASSERT_EQ(Put(db_, "k", "older"), NOKV_OK);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);  // "older" in the deepest level
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(PutTtl("big" + std::to_string(i), kBig, 1000), NOKV_OK);
  }
  ASSERT_EQ(PutTtl("k", "newer", 1000), NOKV_OK);
  ASSERT_EQ(PutTtl("stays", "s", 100000), NOKV_OK);
  uint64_t garbage = Stats(db_).vlog_garbage_bytes;
  fake_now = t0 + 2000;
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  nokv_statistics s = Stats(db_);
  EXPECT_EQ(s.ttl_expired, 11u);
  EXPECT_GE(s.vlog_garbage_bytes, garbage + 10 * kBig.size());  // their values are dead
  EXPECT_FALSE(GetAt("k").has_value()) << "the tombstone must still hide the older version";
  EXPECT_EQ(GetAt("stays"), "s");
  // Even if the clock steps back, what compaction dropped stays dropped.
  fake_now = t0;
  EXPECT_FALSE(GetAt("big0").has_value());
  EXPECT_EQ(GetAt("stays"), "s");
}

TEST_F(TtlTest, ExpirySurvivesReopenAndValueLogGc) {
  uint64_t t0 = fake_now;
  ASSERT_EQ(PutTtl("a", "inline", 10000), NOKV_OK);
  ASSERT_EQ(PutTtl("b", kBig, 10000), NOKV_OK);
  Reopen();  // from the WAL
  uint64_t e = 0;
  EXPECT_EQ(GetAt("b", nullptr, &e), kBig);
  EXPECT_EQ(e, t0 + 10000);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  Reopen();  // from tables
  EXPECT_EQ(GetAt("a", nullptr, &e), "inline");
  EXPECT_EQ(e, t0 + 10000);
  // Make b's segment mostly garbage, then collect it: b is rewritten with its expiry.
  for (int i = 0; i < 20; i++) ASSERT_EQ(Put(db_, "junk", kBig), NOKV_OK);
  ASSERT_EQ(Put(db_, "junk", "x"), NOKV_OK);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  uint32_t collected = 0;
  ASSERT_EQ(nokv_vlog_gc(db_, 0.5, &collected), NOKV_OK) << nokv_errmsg();
  EXPECT_GE(collected, 1u);
  EXPECT_EQ(GetAt("b", nullptr, &e), kBig);
  EXPECT_EQ(e, t0 + 10000);
  fake_now = t0 + 10000;
  EXPECT_FALSE(GetAt("b").has_value());
}

TEST_F(TtlTest, TransactionsAndConditionsSeeExpiry) {
  uint64_t t0 = fake_now;
  nokv_txn* t;
  ASSERT_EQ(nokv_txn_begin(db_, 0, &t), NOKV_OK);
  ASSERT_EQ(nokv_txn_put_ttl(t, "x", 1, "1", 1, 1000), NOKV_OK);
  ASSERT_EQ(nokv_txn_put_ttl(t, "y", 1, "2", 1, 0), NOKV_OK);  // 0: never expires
  void* v;
  size_t n;
  ASSERT_EQ(nokv_txn_get(t, "x", 1, &v, &n), NOKV_OK);  // its own write, unexpired
  EXPECT_EQ(std::string(static_cast<char*>(v), n), "1");
  nokv_free(v);
  ASSERT_EQ(nokv_txn_commit(t, nullptr, nullptr), NOKV_OK);
  uint64_t e = 0;
  EXPECT_EQ(GetAt("x", nullptr, &e), "1");
  EXPECT_EQ(e, t0 + 1000);
  EXPECT_EQ(GetAt("y", nullptr, &e), "2");
  EXPECT_EQ(e, 0u);
  // A transaction begun after expiry finds nothing, in its own writes either.
  fake_now = t0 + 1000;
  ASSERT_EQ(nokv_txn_begin(db_, 0, &t), NOKV_OK);
  EXPECT_EQ(nokv_txn_get(t, "x", 1, &v, &n), NOKV_ENOTFOUND);
  ASSERT_EQ(nokv_txn_put_ttl(t, "z", 1, "3", 1, 1), NOKV_OK);
  fake_now = t0 + 5000;  // the transaction's time stays t0 + 1000: z is alive to it
  ASSERT_EQ(nokv_txn_get(t, "z", 1, &v, &n), NOKV_OK);
  nokv_free(v);
  nokv_txn_discard(t);
  // A condition judges the expired key absent.
  nokv_condition c{};
  c.op = NOKV_COND_ABSENT;
  c.key = "x";
  c.klen = 1;
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "x", 1, "again", 5), NOKV_OK);
  EXPECT_EQ(nokv_write_if(db_, nullptr, &c, 1, b, nullptr, nullptr), NOKV_OK);
  nokv_batch_free(b);
  EXPECT_EQ(GetAt("x"), "again");
}

TEST_F(TtlTest, TtlPastTheClockIsRefused) {
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  EXPECT_EQ(nokv_batch_put_ttl(b, "k", 1, "v", 1, UINT64_MAX), NOKV_EINVAL);
  EXPECT_EQ(nokv_batch_count(b), 0u);
  nokv_batch_free(b);
}

}  // namespace
