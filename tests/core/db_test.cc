// The public API end to end: reads, writes, versions, snapshots, iterators,
// limits, reopen and the data directory lock.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "nokv/nokv.h"
#include "test_util.h"

namespace {

using nokv_test::Delete;
using nokv_test::Get;
using nokv_test::Put;
using nokv_test::Stats;
using nokv_test::TempDir;

std::string IterKey(nokv_iter* it) {
  size_t kl;
  const void* k = nokv_iter_key(it, &kl);
  return std::string(static_cast<const char*>(k), kl);
}

class DbTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override {
    if (db_) {
      ASSERT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
    }
  }
  void Open(const nokv_options* opts = nullptr) {
    ASSERT_EQ(nokv_open(dir_.path().c_str(), opts, &db_), NOKV_OK) << nokv_errmsg();
  }
  void Reopen(const nokv_options* opts = nullptr) {
    ASSERT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
    db_ = nullptr;
    Open(opts);
  }
  std::vector<std::pair<std::string, std::string>> Scan(const std::string& start,
                                                        const std::string& end,
                                                        uint64_t read_ts = 0) {
    nokv_read_options ro{};
    ro.read_ts = read_ts;
    nokv_iter* it;
    EXPECT_EQ(nokv_iter_new(db_, &ro, start.data(), start.size(), end.data(), end.size(), &it),
              NOKV_OK);
    std::vector<std::pair<std::string, std::string>> out;
    for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
      size_t kl, vl;
      const char* k = static_cast<const char*>(nokv_iter_key(it, &kl));
      const char* v = static_cast<const char*>(nokv_iter_value(it, &vl));
      out.emplace_back(std::string(k, kl), std::string(v, vl));
    }
    EXPECT_EQ(nokv_iter_status(it), NOKV_OK);
    nokv_iter_close(it);
    return out;
  }

  TempDir dir_;
  nokv_db* db_ = nullptr;
};

TEST_F(DbTest, PutGetDelete) {
  EXPECT_FALSE(Get(db_, "a"));
  uint64_t t1, t2, t3;
  ASSERT_EQ(Put(db_, "a", "1", false, &t1), NOKV_OK);
  ASSERT_EQ(Put(db_, "a", "2", false, &t2), NOKV_OK);
  EXPECT_LT(t1, t2);
  auto v = Get(db_, "a");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->data, "2");
  EXPECT_EQ(v->commit_ts, t2);
  ASSERT_EQ(Delete(db_, "a", &t3), NOKV_OK);
  int rc;
  EXPECT_FALSE(Get(db_, "a", 0, &rc));
  EXPECT_EQ(rc, NOKV_ENOTFOUND);
  // Older versions stay readable at their timestamps.
  EXPECT_EQ(Get(db_, "a", t1)->data, "1");
  EXPECT_EQ(Get(db_, "a", t2)->data, "2");
  EXPECT_FALSE(Get(db_, "a", t3));
  EXPECT_FALSE(Get(db_, "a", t1 - 1));
}

TEST_F(DbTest, EmptyValueIsAValue) {
  ASSERT_EQ(Put(db_, "k", ""), NOKV_OK);
  auto v = Get(db_, "k");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->data, "");
}

TEST_F(DbTest, BinaryKeysAndValues) {
  std::string k("a\0b", 3), v("\0\xff\0", 3);
  ASSERT_EQ(Put(db_, k, v), NOKV_OK);
  EXPECT_EQ(Get(db_, k)->data, v);
  EXPECT_FALSE(Get(db_, std::string("a\0c", 3)));
  EXPECT_FALSE(Get(db_, "a"));
}

TEST_F(DbTest, LimitsAreClearErrors) {
  EXPECT_EQ(Put(db_, "", "v"), NOKV_EINVAL);
  EXPECT_STREQ(nokv_errmsg(), "empty key");
  EXPECT_EQ(Put(db_, std::string(65537, 'k'), "v"), NOKV_EINVAL);
  EXPECT_NE(std::string(nokv_errmsg()).find("max_key_size"), std::string::npos);
  EXPECT_EQ(Put(db_, std::string(65536, 'k'), "v"), NOKV_OK);
  int rc;
  Get(db_, "", 0, &rc);
  EXPECT_EQ(rc, NOKV_EINVAL);
  Reopen();
  nokv_options o;
  nokv_options_init(&o);
  o.max_value_size = 1000;
  Reopen(&o);
  EXPECT_EQ(Put(db_, "k", std::string(1001, 'v')), NOKV_EINVAL);
  EXPECT_NE(std::string(nokv_errmsg()).find("max_value_size"), std::string::npos);
  EXPECT_EQ(Put(db_, "k", std::string(1000, 'v')), NOKV_OK);
  o.max_key_size = 70000;
  ASSERT_EQ(nokv_close(db_), NOKV_OK);
  db_ = nullptr;
  EXPECT_EQ(nokv_open(dir_.path().c_str(), &o, &db_), NOKV_EINVAL);
  Open();
}

TEST_F(DbTest, WritesPastTheMemtableFlushToTablesAndStayReadable) {
  nokv_options o;
  nokv_options_init(&o);
  o.memtable_max_bytes = 1 << 20;
  Reopen(&o);
  std::string v(1000, 'x');
  const int n = 5000;  // ~5 MB: several memtables
  for (int i = 0; i < n; i++) ASSERT_EQ(Put(db_, "key" + std::to_string(i), v), NOKV_OK);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  nokv_statistics s = Stats(db_);
  EXPECT_GE(s.flushes, 4u);
  EXPECT_GT(s.flush_bytes_written, static_cast<uint64_t>(n) * 1000 * 4 / 5);  // all of it reached tables
  EXPECT_EQ(s.immutable_memtables, 0u);
  EXPECT_GT(s.tables, 0u);
  EXPECT_EQ(s.memtable_entries, 0u);
  // Flushed WAL segments are gone: only the live one remains.
  EXPECT_EQ(s.wal_segments, 1u);
  for (int i = 0; i < n; i++) ASSERT_EQ(Get(db_, "key" + std::to_string(i))->data, v) << i;
  Reopen(&o);
  for (int i = 0; i < n; i++) ASSERT_EQ(Get(db_, "key" + std::to_string(i))->data, v) << i;
}

TEST_F(DbTest, BatchIsAtomicAndLastOpWins) {
  ASSERT_EQ(Put(db_, "before", "1"), NOKV_OK);
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "x", 1, "1", 1), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "y", 1, "2", 1), NOKV_OK);
  ASSERT_EQ(nokv_batch_delete(b, "x", 1), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "z", 1, "a", 1), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "z", 1, "b", 1), NOKV_OK);
  EXPECT_EQ(nokv_batch_count(b), 5u);
  uint64_t ts;
  ASSERT_EQ(nokv_write(db_, nullptr, b, &ts), NOKV_OK);
  EXPECT_FALSE(Get(db_, "x"));
  EXPECT_EQ(Get(db_, "y")->commit_ts, ts);
  EXPECT_EQ(Get(db_, "z")->data, "b");
  EXPECT_FALSE(Get(db_, "y", ts - 1));  // all or nothing at a timestamp
  // A batch with one bad key is rejected whole.
  nokv_batch_clear(b);
  ASSERT_EQ(nokv_batch_put(b, "ok", 2, "1", 1), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "", 0, "1", 1), NOKV_OK);
  EXPECT_EQ(nokv_write(db_, nullptr, b, nullptr), NOKV_EINVAL);
  EXPECT_FALSE(Get(db_, "ok"));
  nokv_batch_free(b);
  Reopen();
  EXPECT_FALSE(Get(db_, "x"));
  EXPECT_EQ(Get(db_, "z")->data, "b");
  EXPECT_EQ(Get(db_, "z")->commit_ts, ts);
}

TEST_F(DbTest, SnapshotSeesExactlyVersionsUpToItsTimestamp) {
  std::vector<uint64_t> ts(5);
  for (int i = 0; i < 5; i++) ASSERT_EQ(Put(db_, "k", "v" + std::to_string(i), false, &ts[i]), 0);
  nokv_snapshot* snap;
  ASSERT_EQ(nokv_snapshot_create(db_, &snap), NOKV_OK);
  EXPECT_EQ(nokv_snapshot_ts(snap), ts[4]);
  ASSERT_EQ(Put(db_, "k", "later"), NOKV_OK);
  ASSERT_EQ(Put(db_, "new", "x"), NOKV_OK);
  ASSERT_EQ(Delete(db_, "k"), NOKV_OK);
  nokv_read_options ro{};
  ro.snapshot = snap;
  void* v;
  size_t n;
  uint64_t cts;
  ASSERT_EQ(nokv_get(db_, &ro, "k", 1, &v, &n, &cts), NOKV_OK);
  EXPECT_EQ(std::string(static_cast<char*>(v), n), "v4");
  EXPECT_EQ(cts, ts[4]);
  nokv_free(v);
  EXPECT_EQ(nokv_get(db_, &ro, "new", 3, &v, &n, &cts), NOKV_ENOTFOUND);
  for (int i = 0; i < 5; i++) EXPECT_EQ(Get(db_, "k", ts[i])->data, "v" + std::to_string(i));
  nokv_statistics s = Stats(db_);
  EXPECT_EQ(s.live_snapshots, 1u);
  EXPECT_EQ(s.oldest_snapshot_ts, ts[4]);
  // Handles keep the database open.
  EXPECT_EQ(nokv_close(db_), NOKV_EBUSY);
  nokv_snapshot_release(db_, snap);
  EXPECT_EQ(Stats(db_).live_snapshots, 0u);
}

TEST_F(DbTest, ReadTimestampBeyondCommittedIsClamped) {
  uint64_t t;
  ASSERT_EQ(Put(db_, "k", "v", false, &t), NOKV_OK);
  EXPECT_EQ(Get(db_, "k", t + 1000)->data, "v");
}

// A read at an explicit timestamp that nothing pins is exact until a flush or
// compaction collects history above it; from then on it fails with ESTALE (the
// version it should see may be gone) while snapshots keep theirs.
TEST_F(DbTest, ExplicitReadTimestampBelowCollectedHistoryIsRefused) {
  uint64_t t1, t2, t3;
  ASSERT_EQ(Put(db_, "k", "v1", false, &t1), NOKV_OK);
  ASSERT_EQ(Put(db_, "k", "v2", false, &t2), NOKV_OK);
  nokv_snapshot* snap;
  ASSERT_EQ(nokv_snapshot_create(db_, &snap), NOKV_OK);
  ASSERT_EQ(Put(db_, "k", "v3", false, &t3), NOKV_OK);
  EXPECT_EQ(Get(db_, "k", t1)->data, "v1");
  EXPECT_EQ(Stats(db_).history_horizon, 0u);

  ASSERT_EQ(nokv_flush(db_), NOKV_OK);  // the snapshot holds the watermark at t2
  EXPECT_EQ(Stats(db_).history_horizon, t2);
  int rc;
  EXPECT_FALSE(Get(db_, "k", t1, &rc));
  EXPECT_EQ(rc, NOKV_ESTALE);
  EXPECT_NE(std::string(nokv_errmsg()).find("older than the history"), std::string::npos)
      << nokv_errmsg();
  nokv_read_options ro{};
  ro.read_ts = t1;
  nokv_iter* it = nullptr;
  EXPECT_EQ(nokv_iter_new(db_, &ro, "", 0, "", 0, &it), NOKV_ESTALE);
  EXPECT_EQ(it, nullptr);
  EXPECT_EQ(Get(db_, "k", t2)->data, "v2");
  ro.read_ts = 0;
  ro.snapshot = snap;
  void* v;
  size_t n;
  ASSERT_EQ(nokv_get(db_, &ro, "k", 1, &v, &n, nullptr), NOKV_OK);
  EXPECT_EQ(std::string(static_cast<char*>(v), n), "v2");
  nokv_free(v);
  nokv_snapshot_release(db_, snap);

  ASSERT_EQ(Put(db_, "k", "v4"), NOKV_OK);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);  // no snapshot: collects up to the latest
  EXPECT_EQ(Stats(db_).history_horizon, Stats(db_).last_commit_ts);
  EXPECT_FALSE(Get(db_, "k", t3, &rc));
  EXPECT_EQ(rc, NOKV_ESTALE);
  EXPECT_EQ(Get(db_, "k")->data, "v4");
  EXPECT_EQ(nokv_close(db_), NOKV_OK);  // no handle leaked by the refused iterator
  db_ = nullptr;
}

TEST_F(DbTest, IteratorRangesSkipDeletesAndOldVersions) {
  for (char c = 'a'; c <= 'h'; c++) ASSERT_EQ(Put(db_, std::string(1, c), "1"), NOKV_OK);
  uint64_t before;
  ASSERT_EQ(Put(db_, "c", "2", false, &before), NOKV_OK);
  ASSERT_EQ(Delete(db_, "d"), NOKV_OK);
  ASSERT_EQ(Put(db_, "c", "3"), NOKV_OK);
  using KV = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(Scan("b", "f"), (KV{{"b", "1"}, {"c", "3"}, {"e", "1"}}));
  EXPECT_EQ(Scan("b", "f", before), (KV{{"b", "1"}, {"c", "2"}, {"d", "1"}, {"e", "1"}}));
  EXPECT_EQ(Scan("g", ""), (KV{{"g", "1"}, {"h", "1"}}));
  EXPECT_EQ(Scan("", "b"), (KV{std::make_pair("a", "1")}));
  EXPECT_EQ(Scan("x", ""), KV{});
  EXPECT_EQ(Scan("", "").size(), 7u);

  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db_, nullptr, "b", 1, "g", 1, &it), NOKV_OK);
  nokv_iter_seek(it, "a", 1);  // clamped to start
  ASSERT_TRUE(nokv_iter_valid(it));
  EXPECT_EQ(IterKey(it), "b");
  nokv_iter_seek(it, "cc", 2);
  ASSERT_TRUE(nokv_iter_valid(it));
  EXPECT_EQ(IterKey(it), "e");
  nokv_iter_seek(it, "g", 1);
  EXPECT_FALSE(nokv_iter_valid(it));
  nokv_iter_close(it);
}

TEST_F(DbTest, PrefixIteratorStopsAtTheEndOfThePrefix) {
  for (const char* k : {"ab", "ab\xff", "ab\xff\xff", "aba", "abz", "ac", "b", "\xff\xff", "\xff\xff" "a"}) {
    ASSERT_EQ(Put(db_, k, "v"), NOKV_OK);
  }
  auto keys = [&](const std::string& prefix) {
    nokv_iter* it;
    EXPECT_EQ(nokv_iter_new_prefix(db_, nullptr, prefix.data(), prefix.size(), &it), NOKV_OK);
    std::vector<std::string> out;
    for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) out.push_back(IterKey(it));
    nokv_iter_close(it);
    return out;
  };
  EXPECT_EQ(keys("ab"), (std::vector<std::string>{"ab", "aba", "abz", "ab\xff", "ab\xff\xff"}));
  EXPECT_EQ(keys("ab\xff"), (std::vector<std::string>{"ab\xff", "ab\xff\xff"}));
  EXPECT_EQ(keys("\xff\xff"), (std::vector<std::string>{"\xff\xff", "\xff\xff" "a"}));
  EXPECT_EQ(keys("").size(), 9u);
  EXPECT_TRUE(keys("zz").empty());
}

TEST_F(DbTest, IteratorIsASnapshot) {
  ASSERT_EQ(Put(db_, "a", "1"), NOKV_OK);
  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db_, nullptr, "", 0, "", 0, &it), NOKV_OK);
  ASSERT_EQ(Put(db_, "b", "1"), NOKV_OK);
  int n = 0;
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) n++;
  EXPECT_EQ(n, 1);
  nokv_iter_close(it);
}

TEST_F(DbTest, ReopenRestoresDataAndTimestamps) {
  uint64_t last;
  for (int i = 0; i < 100; i++) ASSERT_EQ(Put(db_, "k" + std::to_string(i), "v", false, &last), 0);
  ASSERT_EQ(Delete(db_, "k7", &last), NOKV_OK);
  Reopen();
  EXPECT_EQ(Stats(db_).last_commit_ts, last);
  EXPECT_EQ(Stats(db_).recovered_records, 101u);
  EXPECT_EQ(Stats(db_).puts, 0u);  // replayed writes are not new writes
  EXPECT_EQ(Stats(db_).deletes, 0u);
  EXPECT_FALSE(Get(db_, "k7"));
  EXPECT_EQ(Get(db_, "k8")->data, "v");
  uint64_t next;
  ASSERT_EQ(Put(db_, "k8", "w", false, &next), NOKV_OK);
  EXPECT_GT(next, last);
  EXPECT_EQ(Get(db_, "k8", last)->data, "v");
  Reopen();
  EXPECT_EQ(Get(db_, "k8")->data, "w");
  // History is not kept across a reopen: an explicit older timestamp is refused
  // rather than answered from whatever versions survived.
  int rc;
  EXPECT_FALSE(Get(db_, "k8", last, &rc));
  EXPECT_EQ(rc, NOKV_ESTALE);
  EXPECT_EQ(Get(db_, "k8", next)->data, "w");
}

TEST_F(DbTest, SegmentsRotateAndAllReplay) {
  nokv_options o;
  nokv_options_init(&o);
  o.wal_segment_bytes = 4096;
  Reopen(&o);
  for (int i = 0; i < 300; i++) ASSERT_EQ(Put(db_, "k" + std::to_string(i), std::string(100, 'v')), 0);
  EXPECT_GT(Stats(db_).wal_segments, 5u);
  Reopen(&o);
  for (int i = 0; i < 300; i++) ASSERT_TRUE(Get(db_, "k" + std::to_string(i))) << i;
}

TEST_F(DbTest, SecondOpenOfADirectoryIsBusy) {
  nokv_db* other = nullptr;
  EXPECT_EQ(nokv_open(dir_.path().c_str(), nullptr, &other), NOKV_EBUSY);
  EXPECT_NE(std::string(nokv_errmsg()).find("another process"), std::string::npos);
}

TEST_F(DbTest, OpenOptionsForExistence) {
  nokv_options o;
  nokv_options_init(&o);
  o.create_if_missing = false;
  nokv_db* db = nullptr;
  std::string missing = dir_.path() + "/nope";
  EXPECT_EQ(nokv_open(missing.c_str(), &o, &db), NOKV_EIO);
  EXPECT_NE(std::string(nokv_errmsg()).find("nope"), std::string::npos);
  ASSERT_EQ(Put(db_, "k", "v"), NOKV_OK);
  o.create_if_missing = true;
  o.error_if_exists = true;
  Reopen();
  ASSERT_EQ(nokv_close(db_), NOKV_OK);
  db_ = nullptr;
  EXPECT_EQ(nokv_open(dir_.path().c_str(), &o, &db), NOKV_EINVAL);
  Open();
}

// Keys with many versions (more than an iterator steps over before it seeks
// past them), some ending deleted, read at timestamps between every round:
// each scan sees exactly each key's newest version at or below its timestamp.
TEST_F(DbTest, ScansOverManyVersionsSeeEachTimestampExactly) {
  const int keys = 12, rounds = 40;
  std::vector<uint64_t> after_round;
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < keys; k++) {
      std::string key = "k" + std::to_string(10 + k);
      if (k % 4 == 3 && r % 10 == 9) {
        ASSERT_EQ(Delete(db_, key), NOKV_OK);
      } else {
        ASSERT_EQ(Put(db_, key, key + "@" + std::to_string(r)), NOKV_OK);
      }
    }
    after_round.push_back(nokv_last_commit_ts(db_));
  }
  for (int r = 0; r < rounds; r++) {
    std::vector<std::pair<std::string, std::string>> want;
    for (int k = 0; k < keys; k++) {
      std::string key = "k" + std::to_string(10 + k);
      if (k % 4 == 3 && r % 10 == 9) continue;  // deleted in this round
      want.emplace_back(key, key + "@" + std::to_string(r));
    }
    EXPECT_EQ(Scan("", "", after_round[r]), want) << "as of round " << r;
    // A range starting inside the keys, too.
    std::vector<std::pair<std::string, std::string>> tail(want.begin() + 5, want.end());
    EXPECT_EQ(Scan(want[5].first, "", after_round[r]), tail) << "as of round " << r;
  }
}

TEST_F(DbTest, StatsCountOperations) {
  ASSERT_EQ(Put(db_, "a", "1", true), NOKV_OK);
  ASSERT_EQ(Put(db_, "b", "1"), NOKV_OK);
  ASSERT_EQ(Delete(db_, "a"), NOKV_OK);
  Get(db_, "a");
  Get(db_, "b");
  nokv_statistics s = Stats(db_);
  EXPECT_EQ(s.puts, 2u);
  EXPECT_EQ(s.deletes, 1u);
  EXPECT_EQ(s.batches, 3u);
  EXPECT_EQ(s.write_groups, 3u);
  EXPECT_EQ(s.wal_syncs, 1u);
  EXPECT_EQ(s.gets, 2u);
  EXPECT_EQ(s.get_hits, 1u);
  EXPECT_EQ(s.memtable_entries, 3u);
  EXPECT_GT(s.memtable_bytes, 0u);
  EXPECT_GT(s.wal_bytes_written, 0u);
}

TEST(StatusTest, EveryCodeHasAName) {
  for (int rc = NOKV_ESTALE; rc <= NOKV_OK; rc++) {
    EXPECT_STRNE(nokv_strerror(rc), "unknown error") << rc;
  }
  EXPECT_STREQ(nokv_strerror(-100), "unknown error");
}

}  // namespace
