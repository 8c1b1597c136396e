// nokv_write_at (a batch at a given commit timestamp, for a replicated log) and
// nokv_batch_data / nokv_batch_from_data (a batch as bytes and back).
#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "test_util.h"

using namespace nokv_test;

namespace {

class WriteAtTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override {
    if (db_ != nullptr) {
      EXPECT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
    }
  }
  void Open() {
    nokv_options o;
    nokv_options_init(&o);
    ASSERT_EQ(nokv_open(dir_.path().c_str(), &o, &db_), NOKV_OK) << nokv_errmsg();
  }
  int WriteAt(const std::string& k, uint64_t ts) {
    nokv_batch* b;
    EXPECT_EQ(nokv_batch_new(&b), NOKV_OK);
    EXPECT_EQ(nokv_batch_put(b, k.data(), k.size(), "v", 1), NOKV_OK);
    int rc = nokv_write_at(db_, nullptr, b, ts);
    nokv_batch_free(b);
    return rc;
  }
  TempDir dir_;
  nokv_db* db_ = nullptr;
};

TEST_F(WriteAtTest, CommitsAtTheTimestampGivenAndOnlyAboveTheLastOne) {
  ASSERT_EQ(WriteAt("a", 1000), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(nokv_last_commit_ts(db_), 1000u);
  EXPECT_EQ(Get(db_, "a")->commit_ts, 1000u);
  uint64_t ts;
  ASSERT_EQ(nokv_put(db_, nullptr, "b", 1, "v", 1, &ts), NOKV_OK);
  EXPECT_EQ(ts, 1001u);  // the engine's own writes take the next ones
  EXPECT_EQ(WriteAt("c", 1001), NOKV_EINVAL);
  EXPECT_EQ(WriteAt("c", 500), NOKV_EINVAL);
  EXPECT_EQ(WriteAt("c", 0), NOKV_EINVAL);
  EXPECT_FALSE(Get(db_, "c").has_value());
  ASSERT_EQ(WriteAt("c", 5000), NOKV_OK);
  ASSERT_EQ(nokv_close(db_), NOKV_OK);
  db_ = nullptr;
  Open();  // from the WAL
  EXPECT_EQ(nokv_last_commit_ts(db_), 5000u);
  EXPECT_EQ(Get(db_, "c")->commit_ts, 5000u);
  EXPECT_EQ(Get(db_, "a")->commit_ts, 1000u);
}

TEST_F(WriteAtTest, ConditionalAndAsyncWritesTakeTheTimestampAsked) {
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "k", 1, "1", 1), NOKV_OK);
  nokv_write_options wo;
  nokv_write_options_init(&wo);
  wo.commit_ts = 7000;
  nokv_condition c = {};
  c.op = NOKV_COND_ABSENT;
  c.key = "k";
  c.klen = 1;
  uint64_t ts = 0;
  nokv_cond_result r;
  ASSERT_EQ(nokv_write_if(db_, &wo, &c, 1, b, &ts, &r), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(ts, 7000u);
  EXPECT_EQ(nokv_write_if(db_, &wo, &c, 1, b, &ts, &r), NOKV_ECONDITION);  // judged first
  c.op = NOKV_COND_PRESENT;
  EXPECT_EQ(nokv_write_if(db_, &wo, &c, 1, b, &ts, &r), NOKV_EINVAL);  // 7000 is taken
  struct Done {
    std::atomic<bool> done{false};
    int rc = -1;
    uint64_t ts = 0;
  } d;
  wo.commit_ts = 9000;
  ASSERT_EQ(nokv_write_async(
                db_, &wo, b,
                [](void* arg, int rc, uint64_t ts, const char*) {
                  auto* x = static_cast<Done*>(arg);
                  x->rc = rc;
                  x->ts = ts;
                  x->done = true;
                },
                &d),
            NOKV_OK);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!d.done.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();  // the completion runs on the commit thread
  }
  ASSERT_TRUE(d.done.load());
  EXPECT_EQ(d.rc, NOKV_OK);
  EXPECT_EQ(d.ts, 9000u);
  nokv_batch_free(b);
}

TEST_F(WriteAtTest, ABatchAsBytesAndBack) {
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "p", 1, "value", 5), NOKV_OK);
  ASSERT_EQ(nokv_batch_put_ttl(b, "t", 1, "ttl", 3, 60000), NOKV_OK);
  std::string big(5000, 'x');  // a value-log value
  ASSERT_EQ(nokv_batch_put(b, "v", 1, big.data(), big.size()), NOKV_OK);
  ASSERT_EQ(nokv_batch_delete(b, "d", 1), NOKV_OK);
  ASSERT_EQ(nokv_batch_delete_range(b, "r0", 2, "r9", 2), NOKV_OK);
  size_t n;
  const void* data = nokv_batch_data(b, &n);
  std::string bytes(static_cast<const char*>(data), n);
  nokv_batch_free(b);
  ASSERT_EQ(nokv_put(db_, nullptr, "r5", 2, "old", 3, nullptr), NOKV_OK);
  ASSERT_EQ(nokv_put(db_, nullptr, "d", 1, "old", 3, nullptr), NOKV_OK);
  nokv_batch* copy;
  ASSERT_EQ(nokv_batch_from_data(bytes.data(), bytes.size(), &copy), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(nokv_batch_count(copy), 5u);
  ASSERT_EQ(nokv_write(db_, nullptr, copy, nullptr), NOKV_OK);
  nokv_batch_free(copy);
  EXPECT_EQ(Get(db_, "p")->data, "value");
  EXPECT_EQ(Get(db_, "t")->data, "ttl");
  EXPECT_EQ(Get(db_, "v")->data, big);
  EXPECT_FALSE(Get(db_, "d").has_value());
  EXPECT_FALSE(Get(db_, "r5").has_value());
  // Damaged bytes are refused, not applied.
  for (size_t cut : {size_t{0}, size_t{5}, bytes.size() - 1}) {
    EXPECT_EQ(nokv_batch_from_data(bytes.data(), cut, &copy), NOKV_ECORRUPT) << cut;
  }
  std::string bad = bytes;
  bad[12] = 0x7f;  // the first op's kind
  EXPECT_EQ(nokv_batch_from_data(bad.data(), bad.size(), &copy), NOKV_ECORRUPT);
}

}  // namespace
