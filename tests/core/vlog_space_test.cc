// Space reclaimed by value-log GC: a 1 GiB working set of 16 KiB values,
// written and then overwritten three times (each pass writes every key once, in
// a new random order), leaves 4 GiB in the value log; after compaction and GC
// the directory must be back within 1.5x of the live data. Runs in the default
// configuration only (tag "heavy": too much I/O for the sanitizer builds).
// $NOKV_SPACE_MB shrinks the working set.
#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "test_util.h"

using namespace nokv_test;

namespace {

uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

TEST(VlogSpace, OverwritingThreeTimesThenGcReturnsWithinOneAndAHalfOfLive) {
  const char* env = getenv("NOKV_SPACE_MB");
  const uint64_t working_set = (env && *env ? strtoull(env, nullptr, 10) : 1024) << 20;
  const size_t kValue = 16 << 10;
  const int keys = static_cast<int>(working_set / kValue);
  TempDir dir;
  nokv_options o;
  nokv_options_init(&o);
  o.disable_auto_gc = true;  // so the 4 GiB are all there until the GC under test
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  std::mt19937_64 rng(TestSeed());
  std::vector<int> order(keys);
  for (int i = 0; i < keys; i++) order[i] = i;
  std::string value(kValue, '\0');
  uint64_t live = 0;
  for (int pass = 0; pass < 4; pass++) {
    std::shuffle(order.begin(), order.end(), rng);
    for (int i : order) {
      char key[32];
      int kn = snprintf(key, sizeof key, "key%08d", i);
      for (size_t j = 0; j < kValue; j += 8) {
        uint64_t r = rng();
        memcpy(&value[j], &r, 8);
      }
      memcpy(&value[0], &pass, sizeof pass);  // tells the passes apart
      ASSERT_EQ(nokv_put(db, nullptr, key, kn, value.data(), value.size(), nullptr), NOKV_OK);
      if (pass == 3) live += kn + kValue;
    }
  }
  uint64_t before = DirBytes(dir.path());
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  uint32_t collected = 0;
  ASSERT_EQ(nokv_vlog_gc(db, 0, &collected), NOKV_OK) << nokv_errmsg();
  uint64_t after = DirBytes(dir.path());
  nokv_statistics s = Stats(db);
  printf("live %.1f MiB; on disk before GC %.1f MiB, after %.1f MiB (%.2fx live); "
         "%u segments collected (%llu counted in stats), %.1f MiB rewritten, "
         "%.1f MiB reclaimed\n",
         live / 1048576.0, before / 1048576.0, after / 1048576.0, (double)after / (double)live,
         collected, (unsigned long long)s.gc_segments_collected, s.gc_bytes_rewritten / 1048576.0,
         s.gc_bytes_reclaimed / 1048576.0);
  EXPECT_GT(before, 3 * live);
  EXPECT_LE(after, live * 3 / 2);
  // Every key still reads its last pass.
  for (int i = 0; i < keys; i += 97) {
    char key[32];
    snprintf(key, sizeof key, "key%08d", i);
    auto v = Get(db, key);
    ASSERT_TRUE(v.has_value()) << key;
    int pass;
    memcpy(&pass, v->data.data(), sizeof pass);
    EXPECT_EQ(pass, 3) << key;
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

}  // namespace
