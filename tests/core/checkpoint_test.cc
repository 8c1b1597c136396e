// nokv_checkpoint: a consistent, openable copy of a live database at one
// commit timestamp, taken while writers keep writing.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <algorithm>
#include <map>
#include <optional>
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
using State = std::map<std::string, std::string>;

State ReadAll(nokv_db* db, uint64_t read_ts) {
  nokv_read_options ro;
  nokv_read_options_init(&ro);
  ro.read_ts = read_ts;
  nokv_iter* it;
  EXPECT_EQ(nokv_iter_new(db, &ro, "", 0, nullptr, 0, &it), NOKV_OK) << nokv_errmsg();
  State out;
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
    size_t kl, vl;
    const char* k = static_cast<const char*>(nokv_iter_key(it, &kl));
    const char* v = static_cast<const char*>(nokv_iter_value(it, &vl));
    out.emplace(std::string(k, kl), std::string(v, vl));
  }
  EXPECT_EQ(nokv_iter_status(it), NOKV_OK) << nokv_errmsg();
  nokv_iter_close(it);
  return out;
}

nokv_options Options() {
  nokv_options o;
  nokv_test::TinyLsmOptions(&o);
  o.value_threshold = 256;
  o.value_log_segment_bytes = 32 << 10;
  o.value_log_gc_ratio = 0.3;
  o.value_log_gc_bytes_per_sec = 0;
  return o;
}

// Writers overwrite and delete keys (values on both sides of the value-log
// threshold) while GC and compactions run and checkpoints are taken. Every write
// is logged with its commit timestamp; once the writers stop, each copy must
// open and hold exactly the newest logged write at or below its timestamp for
// every key.
TEST(CheckpointTest, CopiesEqualTheSourceAtTheirTimestampDuringWrites) {
  TempDir dir, backups;
  nokv_options o = Options();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  struct Write {
    uint64_t ts;
    std::string key;
    std::optional<std::string> value;
  };
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> written{0};
  std::vector<std::vector<Write>> logs(2);
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; w++) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop.load(); i++) {
        std::string k = "k" + std::to_string((i * 7 + w) % 400);
        uint64_t ts = 0;
        if (i % 9 == 0) {
          ASSERT_EQ(nokv_test::Delete(db, k, &ts), NOKV_OK);
          logs[w].push_back({ts, k, std::nullopt});
        } else {
          std::string v = std::to_string(i) + ":" + std::string(i % 3 == 0 ? 700 : 30, 'a' + w);
          ASSERT_EQ(Put(db, k, v, i % 50 == 0, &ts), NOKV_OK);
          logs[w].push_back({ts, k, v});
        }
        written++;
      }
    });
  }
  std::thread gc([&] {
    while (!stop.load()) {
      uint32_t n;
      ASSERT_EQ(nokv_vlog_gc(db, 0.2, &n), NOKV_OK) << nokv_errmsg();
      ASSERT_EQ(nokv_compact(db), NOKV_OK);
    }
  });
  std::vector<std::pair<std::string, uint64_t>> copies;
  for (int round = 0; round < 4; round++) {
    // Each copy after another 2,000 writes.
    uint64_t target = written.load() + 2000;
    while (written.load() < target && !HasFailure()) std::this_thread::yield();
    std::string copy = backups.file("c" + std::to_string(round));
    uint64_t ts = 0;
    ASSERT_EQ(nokv_checkpoint(db, copy.c_str(), &ts), NOKV_OK) << nokv_errmsg();
    copies.emplace_back(copy, ts);
  }
  stop = true;
  for (auto& t : writers) t.join();
  gc.join();
  std::vector<Write> all;
  for (auto& l : logs) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end(), [](const Write& a, const Write& b) { return a.ts < b.ts; });
  for (const auto& [copy, ts] : copies) {
    State want;
    for (const Write& w : all) {
      if (w.ts > ts) break;
      if (w.value) {
        want[w.key] = *w.value;
      } else {
        want.erase(w.key);
      }
    }
    nokv_db* c;
    nokv_options co = Options();
    ASSERT_EQ(nokv_open(copy.c_str(), &co, &c), NOKV_OK) << nokv_errmsg();
    EXPECT_EQ(nokv_last_commit_ts(c), ts);
    State got = ReadAll(c, 0);
    EXPECT_GT(got.size(), 0u);
    EXPECT_EQ(got.size(), want.size()) << copy;
    EXPECT_TRUE(got == want) << copy;
    // The copy is a database of its own.
    ASSERT_EQ(Put(c, "only-in-copy", "x", true), NOKV_OK);
    ASSERT_EQ(nokv_close(c), NOKV_OK);
    EXPECT_FALSE(Get(db, "only-in-copy"));
  }
  printf("%zu writes, copies at", all.size());
  for (const auto& c : copies) printf(" %llu", static_cast<unsigned long long>(c.second));
  printf("\n");
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Tables and sealed segments are hard links (same inode), and the source can
// delete its files (compaction, GC) without harming the copy.
TEST(CheckpointTest, ImmutableFilesAreLinkedAndOutliveTheSource) {
  TempDir dir, backups;
  nokv_options o = Options();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < 3000; i++) {
    ASSERT_EQ(Put(db, "k" + std::to_string(i % 500), std::string(i % 2 ? 600 : 20, 'v')), NOKV_OK);
  }
  std::string copy = backups.file("c");
  ASSERT_EQ(nokv_checkpoint(db, copy.c_str(), nullptr), NOKV_OK) << nokv_errmsg();
  int linked = 0;
  for (const auto& e : std::filesystem::directory_iterator(copy)) {
    if (std::filesystem::hard_link_count(e.path()) > 1) linked++;
  }
  EXPECT_GT(linked, 0);
  State want = ReadAll(db, 0);
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  uint32_t n;
  ASSERT_EQ(nokv_vlog_gc(db, 0.1, &n), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  std::filesystem::remove_all(dir.path());
  nokv_db* c;
  ASSERT_EQ(nokv_open(copy.c_str(), &o, &c), NOKV_OK) << nokv_errmsg();
  EXPECT_TRUE(ReadAll(c, 0) == want);
  ASSERT_EQ(nokv_close(c), NOKV_OK);
  // A directory that is not empty is refused.
  ASSERT_EQ(nokv_open(backups.file("d").c_str(), &o, &db), NOKV_OK);
  EXPECT_EQ(nokv_checkpoint(db, copy.c_str(), nullptr), NOKV_EINVAL);
  EXPECT_NE(std::string(nokv_errmsg()).find("not empty"), std::string::npos);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

}  // namespace
