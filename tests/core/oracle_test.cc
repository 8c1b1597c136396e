// The oracle: timestamps, snapshots, and the conflict check's memory of which
// keys were written when. White-box: it drives the oracle as the write leader
// does, including the moments between recording a commit and publishing it.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

extern "C" {
#include "txn/oracle.h"
}

namespace {

class OracleTest : public ::testing::Test {
 protected:
  void SetUp() override { nk_oracle_init(&o_, 10, kMaxBytes); }
  static constexpr size_t kMaxBytes = 64 << 20;
  void TearDown() override { nk_oracle_destroy(&o_); }

  // Commits the keys at the next timestamp, as the leader does: reserve,
  // record, then publish.
  uint64_t Commit(std::vector<uint64_t> keys) {
    uint64_t ts = nk_oracle_reserve(&o_, 1);
    nk_oracle_record_commit(&o_, ts, keys.data(), keys.size());
    nk_oracle_publish(&o_, ts);
    return ts;
  }
  bool Conflicts(uint64_t read_ts, std::vector<uint64_t> reads) {
    return nk_oracle_conflicts(&o_, read_ts, reads.data(), reads.size()) != NK_NO_CONFLICT;
  }
  uint64_t Tracked() { return nk_oracle_tracked_keys(&o_, nullptr); }

  nk_oracle o_;
};

TEST_F(OracleTest, SnapshotsReadThePublishedTimestamp) {
  EXPECT_EQ(nk_oracle_read_ts(&o_), 10u);
  uint64_t ts = nk_oracle_reserve(&o_, 3);
  EXPECT_EQ(ts, 11u);
  nokv_snapshot* before = nk_oracle_snapshot(&o_);
  EXPECT_EQ(before->ts, 10u);  // reserved is not visible
  nk_oracle_publish(&o_, ts + 2);
  nokv_snapshot* after = nk_oracle_snapshot(&o_);
  EXPECT_EQ(after->ts, 13u);
  uint64_t oldest, live;
  nk_oracle_snapshots(&o_, &oldest, &live);
  EXPECT_EQ(oldest, 10u);
  EXPECT_EQ(live, 2u);
  nk_oracle_release(&o_, before);
  nk_oracle_snapshots(&o_, &oldest, &live);
  EXPECT_EQ(oldest, 13u);
  EXPECT_EQ(live, 1u);
  nk_oracle_release(&o_, after);
}

TEST_F(OracleTest, ConflictsOnlyWithKeysWrittenAfterTheReadTimestamp) {
  nokv_snapshot* s = nk_oracle_snapshot(&o_);
  uint64_t read_ts = s->ts;
  Commit({1, 2});
  Commit({3});
  EXPECT_TRUE(Conflicts(read_ts, {2}));
  EXPECT_TRUE(Conflicts(read_ts, {7, 3}));
  EXPECT_FALSE(Conflicts(read_ts, {4, 5, 6}));
  EXPECT_FALSE(Conflicts(read_ts, {}));
  // A reader that began after the first commit conflicts only with the second.
  uint64_t later = read_ts + 1;
  EXPECT_FALSE(Conflicts(later, {1, 2}));
  EXPECT_TRUE(Conflicts(later, {3}));
  nk_oracle_release(&o_, s);
}

// The leader records a commit before it publishes it. A snapshot taken in
// between reads below that commit, so the record must survive even when no
// snapshot was live at the moment it was recorded.
TEST_F(OracleTest, ACommitRecordedBeforeItIsPublishedIsKeptForLaterSnapshots) {
  uint64_t ts = nk_oracle_reserve(&o_, 1);
  uint64_t key = 42;
  nk_oracle_record_commit(&o_, ts, &key, 1);  // no snapshot is live
  nokv_snapshot* s = nk_oracle_snapshot(&o_);
  EXPECT_LT(s->ts, ts);
  nk_oracle_publish(&o_, ts);
  EXPECT_TRUE(Conflicts(s->ts, {42})) << "a write the snapshot cannot see went unnoticed";
  nk_oracle_release(&o_, s);
}

TEST_F(OracleTest, KeepsOnlyWhatALiveSnapshotCanConflictWith) {
  Commit({1, 2, 3});  // no snapshot: nothing to keep once published
  nokv_snapshot* s = nk_oracle_snapshot(&o_);
  EXPECT_EQ(Tracked(), 0u);
  // A hot key rewritten many times is one key to remember, not many.
  for (int i = 0; i < 1000; i++) Commit({7});
  for (uint64_t k = 100; k < 200; k++) Commit({k});
  EXPECT_EQ(Tracked(), 101u);
  EXPECT_TRUE(Conflicts(s->ts, {7}));
  EXPECT_TRUE(Conflicts(s->ts, {150}));
  nokv_snapshot* newer = nk_oracle_snapshot(&o_);
  nk_oracle_release(&o_, s);  // the newer snapshot saw every commit so far
  EXPECT_EQ(Tracked(), 0u);
  EXPECT_FALSE(Conflicts(newer->ts, {7, 150}));
  Commit({7});
  EXPECT_TRUE(Conflicts(newer->ts, {7}));
  nk_oracle_release(&o_, newer);
  EXPECT_EQ(Tracked(), 0u);
}

// Many distinct keys while an old snapshot lives: the table grows and every
// key stays findable; after the snapshot goes, its memory is given back.
TEST_F(OracleTest, GrowsAndShrinksWithTheKeysALiveSnapshotNeeds) {
  nokv_snapshot* s = nk_oracle_snapshot(&o_);
  const uint64_t kKeys = 200000;
  std::vector<uint64_t> batch;
  for (uint64_t k = 0; k < kKeys; k++) {
    batch.push_back(k * 0x9E3779B97F4A7C15ull);  // spread like fingerprints
    if (batch.size() == 100) {
      Commit(batch);
      batch.clear();
    }
  }
  EXPECT_EQ(Tracked(), kKeys);
  for (uint64_t k = 0; k < kKeys; k += 997) {
    EXPECT_TRUE(Conflicts(s->ts, {k * 0x9E3779B97F4A7C15ull})) << k;
  }
  EXPECT_FALSE(Conflicts(s->ts, {12345}));
  nk_oracle_release(&o_, s);
  EXPECT_EQ(Tracked(), 0u);
  EXPECT_LE(nk_oracle_table_slots(&o_), 1024u);
}

// At its memory limit the table stops tracking keys: the readers open then
// conflict (as too old), the table empties, and newer readers are tracked as
// before.
TEST_F(OracleTest, AtItsLimitOpenReadersConflictAndTheTableEmpties) {
  nk_oracle_destroy(&o_);
  nk_oracle_init(&o_, 10, 64 << 10);  // 4,096 slots: at most 1,536 keys
  nokv_snapshot* old = nk_oracle_snapshot(&o_);
  uint64_t k = 0;
  uint64_t overflows = 0;
  while (overflows == 0 && k < 10000) {
    Commit({k++});
    ASSERT_LE(Tracked(), 2048u);
    nk_oracle_tracked_keys(&o_, &overflows);
  }
  EXPECT_EQ(overflows, 1u);
  EXPECT_GE(k, 1000u);  // it held a good share of its slots first
  EXPECT_LE(nk_oracle_table_slots(&o_), 4096u);
  EXPECT_EQ(nk_oracle_conflicts(&o_, old->ts, nullptr, 0), NK_CONFLICT_TOO_OLD);
  EXPECT_EQ(Tracked(), 0u);
  nokv_snapshot* fresh = nk_oracle_snapshot(&o_);
  EXPECT_FALSE(Conflicts(fresh->ts, {1, 2, 3}));
  Commit({2});
  EXPECT_EQ(nk_oracle_conflicts(&o_, fresh->ts, std::vector<uint64_t>{2}.data(), 1),
            NK_CONFLICT_KEY);
  EXPECT_FALSE(Conflicts(fresh->ts, {3}));
  nk_oracle_release(&o_, old);
  nk_oracle_release(&o_, fresh);
}

TEST_F(OracleTest, ALostRecordMakesEveryOlderReaderConflict) {
  nokv_snapshot* s = nk_oracle_snapshot(&o_);
  uint64_t ts = nk_oracle_reserve(&o_, 1);
  nk_oracle_lose_record(&o_, ts);
  nk_oracle_publish(&o_, ts);
  EXPECT_TRUE(Conflicts(s->ts, {1}));
  EXPECT_FALSE(Conflicts(ts, {1}));  // a reader that saw it is safe
  nk_oracle_release(&o_, s);
}

}  // namespace
