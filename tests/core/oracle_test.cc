// The oracle: timestamps, snapshots, and the conflict check's memory of which
// keys were written when. White-box: it drives the oracle as the write leader
// does, including the moments between recording a commit and publishing it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "test_util.h"

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
    return nk_oracle_conflicts(&o_, read_ts, false, reads.data(), reads.size(), nullptr, 0, nullptr, 0) !=
           NK_NO_CONFLICT;
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
  EXPECT_EQ(nk_oracle_conflicts(&o_, old->ts, false, nullptr, 0, nullptr, 0, nullptr, 0), NK_CONFLICT_TOO_OLD);
  EXPECT_EQ(Tracked(), 0u);
  nokv_snapshot* fresh = nk_oracle_snapshot(&o_);
  EXPECT_FALSE(Conflicts(fresh->ts, {1, 2, 3}));
  Commit({2});
  EXPECT_EQ(nk_oracle_conflicts(&o_, fresh->ts, false, std::vector<uint64_t>{2}.data(), 1, nullptr, 0, nullptr, 0),
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

// Random commits (some recorded before they are published, as the leader
// does), snapshots taken and released in any order, over a small key space
// (dead slots reused) and bursts of fresh keys (growth, shrinking). Every check
// must agree with the plain definition: a key read conflicts if some commit
// after read_ts wrote it.
TEST_F(OracleTest, AgreesWithAListOfEveryCommit) {
  std::mt19937_64 rng(nokv_test::TestSeed());
  struct Record {
    uint64_t ts, key;
  };
  std::vector<Record> history;
  std::vector<nokv_snapshot*> live;
  uint64_t fresh = 1000000;
  size_t checks = 0, hits = 0, most_slots = 0;
  for (int step = 0; step < 60000; step++) {
    int op = static_cast<int>(rng() % 100);
    if (op < 40) {  // a commit of 1-8 keys, snapshots possibly taken in between
      uint64_t ts = nk_oracle_reserve(&o_, 1);
      std::vector<uint64_t> keys;
      size_t n = 1 + rng() % 8;
      for (size_t i = 0; i < n; i++) keys.push_back(rng() % 8 == 0 ? fresh++ : rng() % 64);
      nk_oracle_record_commit(&o_, ts, keys.data(), keys.size());
      for (uint64_t k : keys) history.push_back({ts, k});
      if (rng() % 4 == 0) live.push_back(nk_oracle_snapshot(&o_));  // below ts
      nk_oracle_publish(&o_, ts);
    } else if (op < 45) {  // a burst of fresh keys
      uint64_t ts = nk_oracle_reserve(&o_, 1);
      std::vector<uint64_t> keys;
      for (int i = 0; i < 500; i++) keys.push_back(fresh++);
      nk_oracle_record_commit(&o_, ts, keys.data(), keys.size());
      for (uint64_t k : keys) history.push_back({ts, k});
      nk_oracle_publish(&o_, ts);
    } else if (op < 60 && live.size() < 6) {
      live.push_back(nk_oracle_snapshot(&o_));
    } else if (op < 75 && !live.empty()) {
      size_t i = rng() % live.size();
      nk_oracle_release(&o_, live[i]);
      live.erase(live.begin() + static_cast<long>(i));
    } else if (!live.empty()) {  // a check by a live reader
      const nokv_snapshot* s = live[rng() % live.size()];
      std::vector<uint64_t> reads;
      size_t n = rng() % 6;
      for (size_t i = 0; i < n; i++) reads.push_back(rng() % 2 ? rng() % 64 : fresh - 1 - rng() % 600);
      bool want = std::any_of(history.begin(), history.end(), [&](const Record& r) {
        return r.ts > s->ts && std::find(reads.begin(), reads.end(), r.key) != reads.end();
      });
      ASSERT_EQ(Conflicts(s->ts, reads), want) << "step " << step << ", read_ts " << s->ts;
      checks++;
      hits += want;
    }
    // The model forgets what no live reader can need, as the oracle may.
    uint64_t oldest = nk_oracle_read_ts(&o_);
    for (const nokv_snapshot* s : live) oldest = std::min(oldest, s->ts);
    history.erase(std::remove_if(history.begin(), history.end(),
                                 [&](const Record& r) { return r.ts <= oldest; }),
                  history.end());
    most_slots = std::max(most_slots, nk_oracle_table_slots(&o_));
  }
  printf("%zu checks, %zu conflicts, table at most %zu slots\n", checks, hits, most_slots);
  EXPECT_GT(hits, checks / 10);
  EXPECT_LT(hits, checks);
  for (nokv_snapshot* s : live) nk_oracle_release(&o_, s);
  EXPECT_EQ(Tracked(), 0u);
}

}  // namespace
