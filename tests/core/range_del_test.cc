// Range deletion (nokv_batch_delete_range, nokv_delete_range): a range
// tombstone hides every older version of every key in [start, end) from Get,
// iterators and transactions at or after its commit, while an older snapshot
// still sees them; it survives reopening from the WAL and from the manifest;
// flushes and compactions drop what it hides once no snapshot needs it (the
// value log learns those bytes are dead), and it leaves the manifest once no
// table can hold such a version. A model test checks random writes, range
// deletions, snapshots, flushes, compactions and reopens against a map.
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "test_util.h"

using namespace nokv_test;

namespace {

std::string Key(int i) {
  char b[16];
  snprintf(b, sizeof b, "k%05d", i);
  return b;
}

class RangeDelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nokv_options_init(&o_);
    o_.value_threshold = 256;
    o_.value_log_segment_bytes = 64 << 10;
    o_.disable_auto_gc = true;
    Open();
  }
  void TearDown() override {
    if (db_ != nullptr) {
      EXPECT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
    }
  }
  void Open() { ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK) << nokv_errmsg(); }
  void Reopen() {
    ASSERT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
    db_ = nullptr;
    Open();
  }
  uint64_t Put(const std::string& k, const std::string& v) {
    uint64_t ts = 0;
    EXPECT_EQ(nokv_put(db_, nullptr, k.data(), k.size(), v.data(), v.size(), &ts), NOKV_OK)
        << nokv_errmsg();
    return ts;
  }
  uint64_t DeleteRange(const std::string& a, const std::string& b) {
    uint64_t ts = 0;
    EXPECT_EQ(nokv_delete_range(db_, nullptr, a.data(), a.size(), b.data(), b.size(), &ts),
              NOKV_OK)
        << nokv_errmsg();
    return ts;
  }
  std::optional<std::string> GetAt(const std::string& k, const nokv_snapshot* snap = nullptr) {
    return nokv_test::GetAt(db_, k, snap);
  }
  std::map<std::string, std::string> Scan(const nokv_snapshot* snap = nullptr) {
    auto all = ScanAt(db_, snap);
    return {all.begin(), all.end()};
  }
  nokv_statistics Stats() { return nokv_test::Stats(db_); }
  // Fills k00000..k(n-1), values alternating small and value-log sized.
  void Fill(int n, const std::string& tag = "v") {
    for (int i = 0; i < n; i++) {
      Put(Key(i), i % 2 ? tag + std::to_string(i) : std::string(1000, 'x') + tag);
    }
  }

  TempDir dir_;
  nokv_options o_;
  nokv_db* db_ = nullptr;
};

TEST_F(RangeDelTest, RefusesAnEmptyRangeAndKeysPastTheLimit) {
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  EXPECT_EQ(nokv_batch_delete_range(b, "b", 1, "a", 1), NOKV_EINVAL);
  EXPECT_EQ(nokv_batch_delete_range(b, "a", 1, "a", 1), NOKV_EINVAL);
  nokv_batch_free(b);
  std::string huge(o_.max_key_size + 1, 'z');
  EXPECT_EQ(nokv_delete_range(db_, nullptr, "a", 1, huge.data(), huge.size(), nullptr),
            NOKV_EINVAL);
  EXPECT_EQ(Stats().range_deletes, 0u);
  // An empty start: from the first key.
  Put("a", "1");
  Put("b", "2");
  DeleteRange("", "b");
  EXPECT_FALSE(GetAt("a").has_value());
  EXPECT_TRUE(GetAt("b").has_value());
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  Reopen();  // the empty start through the manifest
  EXPECT_FALSE(GetAt("a").has_value());
  EXPECT_TRUE(GetAt("b").has_value());
}

TEST_F(RangeDelTest, HidesTheRangeFromReadsAtOrAfterIt) {
  Fill(100);
  nokv_snapshot* before;
  ASSERT_EQ(nokv_snapshot_create(db_, &before), NOKV_OK);
  DeleteRange(Key(10), Key(20));
  Put(Key(15), "again");  // written after: visible
  for (int i = 0; i < 100; i++) {
    bool hidden = i >= 10 && i < 20 && i != 15;
    EXPECT_EQ(GetAt(Key(i)).has_value(), !hidden) << i;
    EXPECT_TRUE(GetAt(Key(i), before).has_value()) << i;
  }
  EXPECT_EQ(*GetAt(Key(15)), "again");
  auto now = Scan(), then = Scan(before);
  EXPECT_EQ(now.size(), 91u);
  EXPECT_EQ(then.size(), 100u);
  EXPECT_EQ(now.count(Key(9)), 1u);
  EXPECT_EQ(now.count(Key(10)), 0u);
  EXPECT_EQ(now.count(Key(20)), 1u);  // the end is exclusive
  EXPECT_EQ(Stats().range_deletes, 1u);
  EXPECT_EQ(Stats().range_tombstones, 1u);
  nokv_snapshot_release(db_, before);
}

TEST_F(RangeDelTest, IteratorsSkipAHiddenRangeButNotWhatWasWrittenSince) {
  // An iterator seeks past a range no source wrote to after the tombstone,
  // and steps through one where some source did: both must show exactly the
  // keys written after it.
  Fill(3000);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  DeleteRange(Key(100), Key(2900));
  Put("zz-after", "outside the range");  // the memtable is newer, not in the range
  auto a = Scan();
  EXPECT_EQ(a.size(), 201u);
  EXPECT_EQ(a.count(Key(99)), 1u);
  EXPECT_EQ(a.count(Key(2900)), 1u);
  Put(Key(1500), "memtable");  // newer, in the range, in the memtable
  EXPECT_EQ(Scan().size(), 202u);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);  // ... now in a table
  Put(Key(2000), "memtable");
  auto b = Scan();
  EXPECT_EQ(b.size(), 203u);
  EXPECT_EQ(b[Key(1500)], "memtable");
  EXPECT_EQ(b[Key(2000)], "memtable");
  EXPECT_EQ(b.count(Key(1499)), 0u);
  // Prefix iterators and seeks into the middle of the range.
  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db_, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
  nokv_iter_seek(it, Key(1000).data(), Key(1000).size());
  ASSERT_TRUE(nokv_iter_valid(it));
  size_t n;
  EXPECT_EQ(std::string(static_cast<const char*>(nokv_iter_key(it, &n)), 6), Key(1500));
  nokv_iter_seek(it, Key(50).data(), Key(50).size());  // back, before the range
  ASSERT_TRUE(nokv_iter_valid(it));
  EXPECT_EQ(std::string(static_cast<const char*>(nokv_iter_key(it, &n)), 6), Key(50));
  nokv_iter_close(it);
}

TEST_F(RangeDelTest, SurvivesReopenFromTheWalAndFromTheManifest) {
  Fill(50);
  DeleteRange(Key(5), Key(40));
  Reopen();  // replayed from the WAL, then flushed at open
  EXPECT_FALSE(GetAt(Key(5)).has_value());
  EXPECT_FALSE(GetAt(Key(39)).has_value());
  EXPECT_TRUE(GetAt(Key(40)).has_value());
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  Reopen();  // from the manifest
  EXPECT_FALSE(GetAt(Key(20)).has_value());
  EXPECT_EQ(Scan().size(), 15u);
}

TEST_F(RangeDelTest, HoldsInEveryLayerAndCompactionDropsWhatItHides) {
  Fill(200);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);  // the keys sit in the bottom level
  uint64_t garbage0 = Stats().vlog_garbage_bytes;
  DeleteRange(Key(50), Key(150));
  EXPECT_EQ(Scan().size(), 100u);  // memtable tombstone over tables
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  EXPECT_EQ(Scan().size(), 100u);  // manifest tombstone over tables
  EXPECT_FALSE(GetAt(Key(100)).has_value());
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  nokv_statistics s = Stats();
  EXPECT_EQ(s.range_dropped, 100u);
  EXPECT_EQ(s.range_tombstones, 0u);  // nothing left for it to hide: retired
  // The 50 value-log values it hid are dead bytes now.
  EXPECT_GE(s.vlog_garbage_bytes - garbage0, 50u * 1000u);
  EXPECT_EQ(Scan().size(), 100u);
  EXPECT_FALSE(GetAt(Key(100)).has_value());
  Reopen();
  EXPECT_EQ(Scan().size(), 100u);
  EXPECT_EQ(Stats().range_tombstones, 0u);
}

TEST_F(RangeDelTest, ASnapshotKeepsWhatItSeesThroughCompaction) {
  Fill(100);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  nokv_snapshot* snap;
  ASSERT_EQ(nokv_snapshot_create(db_, &snap), NOKV_OK);
  DeleteRange(Key(0), Key(100));
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  EXPECT_EQ(Scan().size(), 0u);
  EXPECT_EQ(Scan(snap).size(), 100u);
  EXPECT_EQ(Stats().range_dropped, 0u);
  EXPECT_EQ(Stats().range_tombstones, 1u);
  nokv_snapshot_release(db_, snap);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  EXPECT_EQ(Stats().range_dropped, 100u);
  EXPECT_EQ(Stats().range_tombstones, 0u);
  EXPECT_EQ(Scan().size(), 0u);
}

TEST_F(RangeDelTest, BackgroundCompactionRetiresATombstone) {
  // No manual compaction: the compactor rewrites the tables the tombstone may
  // hide versions in once every reader sees it, then drops it.
  Fill(100);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  DeleteRange(Key(0), Key(60));
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);  // wakes the compactor
  PollStats(db_, [](const nokv_statistics& s) { return s.range_tombstones == 0; });
  EXPECT_EQ(Stats().range_tombstones, 0u);
  EXPECT_EQ(Stats().range_dropped, 60u);
  EXPECT_EQ(Scan().size(), 40u);
}

TEST_F(RangeDelTest, ATransactionThatReadAKeyInTheRangeConflicts) {
  Fill(10);
  nokv_txn *inside, *outside;
  ASSERT_EQ(nokv_txn_begin(db_, 0, &inside), NOKV_OK);
  ASSERT_EQ(nokv_txn_begin(db_, 0, &outside), NOKV_OK);
  void* v;
  size_t n;
  ASSERT_EQ(nokv_txn_get(inside, Key(3).data(), Key(3).size(), &v, &n), NOKV_OK);
  nokv_free(v);
  ASSERT_EQ(nokv_txn_get(outside, Key(8).data(), Key(8).size(), &v, &n), NOKV_OK);
  nokv_free(v);
  ASSERT_EQ(nokv_txn_put(inside, "w1", 2, "x", 1), NOKV_OK);
  ASSERT_EQ(nokv_txn_put(outside, "w2", 2, "x", 1), NOKV_OK);
  DeleteRange(Key(2), Key(5));
  EXPECT_EQ(nokv_txn_commit(inside, nullptr, nullptr), NOKV_ECONFLICT);
  EXPECT_EQ(nokv_txn_commit(outside, nullptr, nullptr), NOKV_OK) << nokv_errmsg();
  EXPECT_FALSE(GetAt("w1").has_value());
  EXPECT_TRUE(GetAt("w2").has_value());
}

TEST_F(RangeDelTest, AConditionOnAKeyInTheRangeSeesTheDeletion) {
  Put("a", "1");
  DeleteRange("a", "b");
  nokv_condition c = {};
  c.op = NOKV_COND_ABSENT;
  c.key = "a";
  c.klen = 1;
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "a", 1, "2", 1), NOKV_OK);
  nokv_cond_result r;
  EXPECT_EQ(nokv_write_if(db_, nullptr, &c, 1, b, nullptr, &r), NOKV_OK) << nokv_errmsg();
  nokv_batch_free(b);
  EXPECT_EQ(*GetAt("a"), "2");
}

TEST_F(RangeDelTest, ABatchDeletesARangeAtomicallyWithItsPuts) {
  Fill(20);
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_delete_range(b, Key(0).data(), Key(0).size(), Key(20).data(),
                                    Key(20).size()),
            NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "z", 1, "new", 3), NOKV_OK);
  ASSERT_EQ(nokv_write(db_, nullptr, b, nullptr), NOKV_OK);
  nokv_batch_free(b);
  auto all = Scan();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all.begin()->first, "z");
  EXPECT_EQ(Stats().puts, 21u);
}

// ---- the model ----

struct Version {
  uint64_t ts;
  std::optional<std::string> value;  // nullopt: a point deletion
};
struct RangeTomb {
  std::string start, end;
  uint64_t ts;
};

class Model {
 public:
  void Put(const std::string& k, uint64_t ts, std::optional<std::string> v) {
    keys_[k].push_back({ts, std::move(v)});
  }
  void DeleteRange(const std::string& a, const std::string& b, uint64_t ts) {
    ranges_.push_back({a, b, ts});
  }
  std::optional<std::string> Get(const std::string& k, uint64_t read_ts) const {
    auto it = keys_.find(k);
    if (it == keys_.end()) return std::nullopt;
    const Version* found = nullptr;
    for (const Version& v : it->second) {
      if (v.ts <= read_ts) found = &v;  // pushed in timestamp order
    }
    if (found == nullptr || !found->value) return std::nullopt;
    for (const RangeTomb& r : ranges_) {
      if (r.ts <= read_ts && r.ts > found->ts && k >= r.start && k < r.end) return std::nullopt;
    }
    return found->value;
  }
  std::map<std::string, std::string> Scan(uint64_t read_ts) const {
    std::map<std::string, std::string> out;
    for (const auto& [k, versions] : keys_) {
      if (auto v = Get(k, read_ts)) out[k] = *v;
    }
    return out;
  }
  const std::map<std::string, std::vector<Version>>& keys() const { return keys_; }

 private:
  std::map<std::string, std::vector<Version>> keys_;
  std::vector<RangeTomb> ranges_;
};


class RangeDelModelTest : public RangeDelTest {
 protected:
  void SetUp() override {
    nokv_options_init(&o_);
    o_.value_threshold = 128;
    o_.value_log_segment_bytes = 32 << 10;
    o_.memtable_max_bytes = 64 << 10;  // many flushes
    o_.target_file_bytes = 16 << 10;
    o_.level1_max_bytes = 64 << 10;
    o_.level_size_ratio = 4;
    o_.l0_compaction_trigger = 2;
    Open();
  }
};

// NOKV_RANGE_MODEL_OPS operations per seed (default 4000), NOKV_RANGE_MODEL_SEEDS
// seeds (default 3).
TEST_F(RangeDelModelTest, MatchesAMapWithSnapshots) {
  const size_t ops = EnvSize("NOKV_RANGE_MODEL_OPS", 4000);
  const size_t seeds = EnvSize("NOKV_RANGE_MODEL_SEEDS", 3);
  for (size_t seed = 1; seed <= seeds; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    if (seed > 1) {  // a fresh database per seed
      ASSERT_EQ(nokv_close(db_), NOKV_OK);
      db_ = nullptr;
      std::filesystem::remove_all(dir_.path());
      std::filesystem::create_directories(dir_.path());
      Open();
    }
    std::mt19937_64 rng(seed);
    Model model;
    std::vector<nokv_snapshot*> snaps;
    auto key = [&] { return Key(static_cast<int>(rng() % 300)); };
    auto verify = [&](const nokv_snapshot* s, uint64_t read_ts) {
      for (int i = 0; i < 300; i += 7) {
        ASSERT_EQ(GetAt(Key(i), s), model.Get(Key(i), read_ts)) << Key(i) << " at " << read_ts;
      }
      ASSERT_EQ(Scan(s), model.Scan(read_ts)) << "scan at " << read_ts;
    };
    for (size_t op = 0; op < ops; op++) {
      unsigned r = static_cast<unsigned>(rng() % 100);
      if (r < 55) {
        std::string k = key();
        std::string v = rng() % 4 == 0 ? std::string(200 + rng() % 300, 'a' + rng() % 26)
                                        : "v" + std::to_string(op);
        model.Put(k, Put(k, v), v);
      } else if (r < 63) {
        std::string k = key();
        uint64_t ts = 0;
        ASSERT_EQ(nokv_delete(db_, nullptr, k.data(), k.size(), &ts), NOKV_OK);
        model.Put(k, ts, std::nullopt);
      } else if (r < 70) {
        std::string a = key(), b = key();
        if (a == b) continue;
        if (b < a) std::swap(a, b);
        model.DeleteRange(a, b, DeleteRange(a, b));
      } else if (r < 74) {
        if (snaps.size() < 3) {
          nokv_snapshot* s;
          ASSERT_EQ(nokv_snapshot_create(db_, &s), NOKV_OK);
          snaps.push_back(s);
        }
      } else if (r < 78) {
        if (!snaps.empty()) {
          size_t i = rng() % snaps.size();
          verify(snaps[i], nokv_snapshot_ts(snaps[i]));
          nokv_snapshot_release(db_, snaps[i]);
          snaps.erase(snaps.begin() + static_cast<long>(i));
        }
      } else if (r < 80) {
        ASSERT_EQ(nokv_flush(db_), NOKV_OK) << nokv_errmsg();
      } else if (r < 81) {
        ASSERT_EQ(nokv_compact(db_), NOKV_OK) << nokv_errmsg();
      } else if (r < 82) {
        for (nokv_snapshot* s : snaps) nokv_snapshot_release(db_, s);
        snaps.clear();
        Reopen();
      } else if (r < 85) {
        verify(nullptr, nokv_last_commit_ts(db_));
      }
      if (HasFatalFailure()) return;
    }
    verify(nullptr, nokv_last_commit_ts(db_));
    for (nokv_snapshot* s : snaps) {
      verify(s, nokv_snapshot_ts(s));
      nokv_snapshot_release(db_, s);
    }
    ASSERT_EQ(nokv_compact(db_), NOKV_OK);
    verify(nullptr, nokv_last_commit_ts(db_));
    EXPECT_GT(Stats().range_dropped, 0u);  // the compactions did drop hidden versions
    Reopen();
    verify(nullptr, nokv_last_commit_ts(db_));
  }
}

}  // namespace
