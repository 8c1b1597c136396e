// Many writers and readers on one database (run under ThreadSanitizer in CI).
// Group commit must keep each writer's order, stamp batches atomically and never
// let a reader see a later write without the earlier ones.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "nokv/nokv.h"
#include "test_util.h"

namespace {

using nokv_test::Get;
using nokv_test::Put;
using nokv_test::Stats;
using nokv_test::TempDir;

std::string KeyOf(int writer, int i) {
  char k[32];
  snprintf(k, sizeof k, "w%d/%06d", writer, i);
  return k;
}

// Writers append batches in order; readers check, at snapshots, that each
// writer's visible keys form a prefix and every visible batch is whole. With lsm
// set, memtables are tiny and a compactor thread runs full compactions, so reads
// race with flushes, compactions and version changes.
void WritersAndReaders(const nokv_options* o, bool lsm) {
  TempDir dir;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), o, &db), NOKV_OK);
  const std::string value(lsm ? 200 : 1, 'v');
  const int kWriters = 4, kPerWriter = 1500;
  std::atomic<int> writers_left{kWriters};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; w++) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; i++) {
        // A batch of two keys: readers must see both or neither.
        nokv_batch* b;
        ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
        std::string k = KeyOf(w, i), shadow = "shadow/" + k;
        nokv_batch_put(b, k.data(), k.size(), value.data(), value.size());
        nokv_batch_put(b, shadow.data(), shadow.size(), value.data(), value.size());
        nokv_write_options wo{};
        wo.sync = i % 100 == 0;
        ASSERT_EQ(nokv_write(db, &wo, b, nullptr), NOKV_OK);
        nokv_batch_free(b);
      }
      writers_left--;
    });
  }
  if (lsm) {
    // Automatic compactions (two threads) run all along; a full manual
    // compaction now and then makes them wait for it.
    threads.emplace_back([&] {
      for (int round = 0; writers_left.load() > 0; round++) {
        if (round % 8 == 0) {
          ASSERT_EQ(nokv_compact(db), NOKV_OK) << nokv_errmsg();
        }
        ASSERT_EQ(nokv_flush(db), NOKV_OK) << nokv_errmsg();
      }
    });
  }
  for (int r = 0; r < 2; r++) {
    threads.emplace_back([&, r] {
      int rounds = 0;
      while (writers_left.load() > 0 || rounds < 3) {
        rounds++;
        nokv_snapshot* snap;
        ASSERT_EQ(nokv_snapshot_create(db, &snap), NOKV_OK);
        nokv_read_options ro{};
        ro.snapshot = snap;
        // Each writer's keys visible at a snapshot form a prefix 0..n-1.
        std::string start = "w" + std::to_string(r);
        nokv_iter* it;
        ASSERT_EQ(nokv_iter_new(db, &ro, start.data(), start.size(), nullptr, 0, &it), 0);
        int n = 0;
        for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
          size_t kl;
          const char* kp = static_cast<const char*>(nokv_iter_key(it, &kl));
          std::string k(kp, kl);
          if (k.compare(0, start.size() + 1, start + "/") != 0) break;
          ASSERT_EQ(k, KeyOf(r, n));
          n++;
        }
        nokv_iter_close(it);
        // ... and the shadow key of every visible batch is visible too.
        for (int i = 0; i < n; i += 97) {
          void* v;
          size_t vl;
          std::string shadow = "shadow/" + KeyOf(r, i);
          ASSERT_EQ(nokv_get(db, &ro, shadow.data(), shadow.size(), &v, &vl, nullptr), NOKV_OK);
          nokv_free(v);
        }
        nokv_snapshot_release(db, snap);
      }
    });
  }
  for (auto& t : threads) t.join();
  nokv_statistics s = Stats(db);
  EXPECT_EQ(s.batches, static_cast<uint64_t>(kWriters * kPerWriter));
  EXPECT_EQ(s.puts, static_cast<uint64_t>(2 * kWriters * kPerWriter));
  EXPECT_LE(s.write_groups, s.batches);
  printf("batches %llu in %llu write groups\n", (unsigned long long)s.batches,
         (unsigned long long)s.write_groups);
  if (lsm) {
    EXPECT_GT(s.flushes, 10u);
    EXPECT_GT(s.compactions + s.trivial_moves, 0u);
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), o, &db), NOKV_OK);
  for (int w = 0; w < kWriters; w++) {
    for (int i = 0; i < kPerWriter; i += 50) ASSERT_TRUE(Get(db, KeyOf(w, i))) << w << " " << i;
    ASSERT_TRUE(Get(db, KeyOf(w, kPerWriter - 1))) << w;
  }
  if (!lsm) {
    EXPECT_EQ(Stats(db).recovered_records, static_cast<uint64_t>(kWriters * kPerWriter));
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(ConcurrentTest, WritersAndReadersAgreeOnOrder) { WritersAndReaders(nullptr, false); }

TEST(ConcurrentTest, ReadsStayConsistentAcrossFlushesAndCompactions) {
  nokv_options o;
  nokv_test::TinyLsmOptions(&o);
  o.block_cache_bytes = 128 << 10;
  o.l0_compaction_trigger = 2;
  WritersAndReaders(&o, true);
}

TEST(ConcurrentTest, CloseWaitsForQueuedWriters) {
  TempDir dir;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; w++) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < 200; i++) {
        if (Put(db, KeyOf(w, i), "v", true) == NOKV_OK) ok++;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK);
  EXPECT_EQ(ok.load(), 800);
  EXPECT_EQ(Stats(db).recovered_records, 800u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

}  // namespace
