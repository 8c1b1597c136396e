// The skiplist memtable: version order, point lookups at timestamps, in-place
// replacement within one commit timestamp, and lock-free readers racing a writer.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "memtable/memtable.h"
#include "util/checksum.h"
#include "nokv/status.h"
#include "util/arena.h"
}

namespace {

std::vector<std::pair<std::string, uint64_t>> Dump(const nk_memtable* mt) {
  std::vector<std::pair<std::string, uint64_t>> out;
  nk_sl_iter it;
  nk_sl_iter_init(&it, nk_memtable_index(mt));
  for (nk_sl_iter_seek_first(&it); nk_sl_iter_valid(&it); nk_sl_iter_next(&it)) {
    nk_entry e;
    nk_entry_decode(nk_sl_iter_entry(&it), &e);
    out.emplace_back(std::string(e.key, e.klen), e.ts);
  }
  return out;
}

TEST(ArenaTest, AlignsAndAccounts) {
  nk_arena* a = nk_arena_new(4096, nullptr);
  size_t before = nk_arena_usage(a);
  for (size_t n : {1, 3, 8, 17, 100, 2000, 5000}) {
    void* p = nk_arena_alloc(a, n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 8, 0u) << n;
    memset(p, 0xab, n);
  }
  EXPECT_GE(nk_arena_usage(a), before + 5000 + 4096);
  nk_arena_free(a);
}

TEST(MemtableTest, OrdersByKeyThenNewestVersionFirst) {
  nk_memtable* mt = nk_memtable_new(0, nullptr);
  ASSERT_EQ(nk_memtable_add(mt, 5, NK_KIND_VALUE, "b", 1, "b5", 2), NOKV_OK);
  ASSERT_EQ(nk_memtable_add(mt, 9, NK_KIND_VALUE, "b", 1, "b9", 2), NOKV_OK);
  ASSERT_EQ(nk_memtable_add(mt, 7, NK_KIND_DELETE, "b", 1, nullptr, 0), NOKV_OK);
  ASSERT_EQ(nk_memtable_add(mt, 1, NK_KIND_VALUE, "ab", 2, "x", 1), NOKV_OK);
  ASSERT_EQ(nk_memtable_add(mt, 2, NK_KIND_VALUE, "a", 1, "x", 1), NOKV_OK);
  ASSERT_EQ(nk_memtable_add(mt, 3, NK_KIND_VALUE, "c", 1, "x", 1), NOKV_OK);
  using V = std::vector<std::pair<std::string, uint64_t>>;
  EXPECT_EQ(Dump(mt), (V{{"a", 2}, {"ab", 1}, {"b", 9}, {"b", 7}, {"b", 5}, {"c", 3}}));

  nk_entry e;
  EXPECT_FALSE(nk_memtable_get(mt, "b", 1, nk_hash64("b", 1), 4, &e));
  ASSERT_TRUE(nk_memtable_get(mt, "b", 1, nk_hash64("b", 1), 5, &e));
  EXPECT_EQ(std::string(e.val, e.vlen), "b5");
  ASSERT_TRUE(nk_memtable_get(mt, "b", 1, nk_hash64("b", 1), 8, &e));
  EXPECT_EQ(e.kind, NK_KIND_DELETE);
  EXPECT_EQ(e.ts, 7u);
  ASSERT_TRUE(nk_memtable_get(mt, "b", 1, nk_hash64("b", 1), 100, &e));
  EXPECT_EQ(std::string(e.val, e.vlen), "b9");
  EXPECT_FALSE(nk_memtable_get(mt, "bb", 2, nk_hash64("bb", 2), 100, &e));
  EXPECT_FALSE(nk_memtable_get(mt, "", 0, nk_hash64("", 0), 100, &e));
  EXPECT_EQ(nk_memtable_entries(mt), 6u);
  nk_memtable_free(mt);
}

TEST(MemtableTest, SameKeyAndTimestampReplacesTheEntry) {
  nk_memtable* mt = nk_memtable_new(0, nullptr);
  ASSERT_EQ(nk_memtable_add(mt, 4, NK_KIND_VALUE, "k", 1, "first", 5), NOKV_OK);
  ASSERT_EQ(nk_memtable_add(mt, 4, NK_KIND_DELETE, "k", 1, nullptr, 0), NOKV_OK);
  ASSERT_EQ(Dump(mt).size(), 1u);
  nk_entry e;
  ASSERT_TRUE(nk_memtable_get(mt, "k", 1, nk_hash64("k", 1), 4, &e));
  EXPECT_EQ(e.kind, NK_KIND_DELETE);
  nk_memtable_free(mt);
}

TEST(MemtableTest, CostBoundsTheArenaGrowth) {
  nk_memtable* mt = nk_memtable_new(0, nullptr);
  size_t before = nk_memtable_usage(mt), cost = 0;
  for (int i = 0; i < 10000; i++) {
    std::string k = "key" + std::to_string(i);
    cost += nk_memtable_cost(k.size(), 100);
    ASSERT_EQ(nk_memtable_add(mt, 1 + i, NK_KIND_VALUE, k.data(), k.size(), std::string(100, 'v').data(), 100), 0);
  }
  // Usage counts whole blocks, so it may lead the cost by at most one block.
  EXPECT_LE(nk_memtable_usage(mt), before + cost + (256 << 10));
  nk_memtable_free(mt);
}

// One writer inserts ascending keys while readers scan: every scan must be
// sorted and see a prefix of the inserted keys (nothing half-linked).
TEST(MemtableConcurrencyTest, ReadersRaceOneWriter) {
  nk_memtable* mt = nk_memtable_new(0, nullptr);
  const int kKeys = 20000;
  std::atomic<bool> done{false};
  std::atomic<int> scans{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; r++) {
    readers.emplace_back([&] {
      while (!done.load()) {
        auto d = Dump(mt);
        for (size_t i = 1; i < d.size(); i++) ASSERT_LT(d[i - 1].first, d[i].first);
        for (size_t i = 0; i < d.size(); i++) {
          char want[32];
          snprintf(want, sizeof want, "k%08zu", i);
          ASSERT_EQ(d[i].first, want);
        }
        scans++;
      }
    });
  }
  for (int i = 0; i < kKeys; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%08d", i);
    ASSERT_EQ(nk_memtable_add(mt, 1 + i, NK_KIND_VALUE, k, 9, "v", 1), NOKV_OK);
  }
  while (scans.load() < 4) std::this_thread::yield();
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(Dump(mt).size(), static_cast<size_t>(kKeys));
  nk_memtable_free(mt);
}

}  // namespace
