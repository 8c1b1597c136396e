// nokv_write_async: writes no thread waits for. Each completes exactly once
// with what nokv_write would have returned; many in flight commit together in
// groups; they mix with blocking writers; a failed log write reaches every
// completion with its message; close runs every queued completion.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fault_env.h"
#include "nokv/nokv.h"
#include "test_util.h"

namespace {

using nokv_test::FaultEnv;
using nokv_test::Get;
using nokv_test::Put;
using nokv_test::Stats;
using nokv_test::TempDir;

// Writes in flight and what their completions reported.
class Pending {
 public:
  struct Write {
    Pending* owner;
    nokv_batch* batch = nullptr;
    std::string key;
    int rc = -1000;
    uint64_t ts = 0;
    std::string msg;
    int calls = 0;
  };

  ~Pending() {
    for (auto& w : writes_) nokv_batch_free(w->batch);
  }

  // Queues a put of key = value; returns nokv_write_async's result.
  int Submit(nokv_db* db, const std::string& key, const std::string& value, bool sync) {
    auto w = std::make_unique<Write>();
    w->owner = this;
    w->key = key;
    EXPECT_EQ(nokv_batch_new(&w->batch), NOKV_OK);
    EXPECT_EQ(nokv_batch_put(w->batch, key.data(), key.size(), value.data(), value.size()),
              NOKV_OK);
    nokv_write_options wo{};
    wo.sync = sync;
    Write* raw = w.get();
    {
      std::lock_guard<std::mutex> l(mu_);
      writes_.push_back(std::move(w));
      submitted_++;
    }
    int rc = nokv_write_async(db, &wo, raw->batch, &Pending::Done, raw);
    if (rc != NOKV_OK) {
      std::lock_guard<std::mutex> l(mu_);
      submitted_--;
    }
    return rc;
  }

  void AwaitAll() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return completed_ == submitted_; });
  }

  std::vector<std::unique_ptr<Write>>& writes() { return writes_; }

 private:
  static void Done(void* arg, int rc, uint64_t ts, const char* msg) {
    auto* w = static_cast<Write*>(arg);
    Pending* p = w->owner;
    std::lock_guard<std::mutex> l(p->mu_);
    w->rc = rc;
    w->ts = ts;
    w->msg = msg;
    w->calls++;
    p->completed_++;
    p->cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  size_t submitted_ = 0, completed_ = 0;
  std::vector<std::unique_ptr<Write>> writes_;
};

class AsyncWriteTest : public ::testing::Test {
 protected:
  void Open(const nokv_env* env = nullptr) {
    nokv_options o;
    nokv_options_init(&o);
    o.env = env;
    ASSERT_EQ(nokv_open(dir_.path().c_str(), &o, &db_), NOKV_OK) << nokv_errmsg();
  }
  void TearDown() override {
    if (db_ != nullptr) {
      ASSERT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
    }
  }
  TempDir dir_;
  nokv_db* db_ = nullptr;
};

TEST_F(AsyncWriteTest, EveryWriteCompletesOnceAndManyShareAGroup) {
  Open();
  nokv_statistics before = Stats(db_);
  Pending p;
  constexpr int kWrites = 2000;
  for (int i = 0; i < kWrites; i++) {
    // Every tenth synced; values on both sides of the value-log threshold.
    std::string v(i % 3 == 0 ? 2000 : 20, static_cast<char>('a' + i % 26));
    ASSERT_EQ(p.Submit(db_, "k" + std::to_string(i), v, i % 10 == 0), NOKV_OK) << nokv_errmsg();
  }
  p.AwaitAll();
  std::set<uint64_t> stamps;
  for (auto& w : p.writes()) {
    EXPECT_EQ(w->calls, 1) << w->key;
    EXPECT_EQ(w->rc, NOKV_OK) << w->key << ": " << w->msg;
    EXPECT_EQ(w->msg, "");
    EXPECT_TRUE(stamps.insert(w->ts).second) << "timestamp " << w->ts << " given twice";
    auto got = Get(db_, w->key);
    ASSERT_TRUE(got.has_value()) << w->key;
    EXPECT_EQ(got->commit_ts, w->ts);
  }
  nokv_statistics after = Stats(db_);
  EXPECT_EQ(after.puts - before.puts, static_cast<uint64_t>(kWrites));
  // Queued faster than one group commits, they share groups.
  EXPECT_LT(after.write_groups - before.write_groups, static_cast<uint64_t>(kWrites) / 4);
}

TEST_F(AsyncWriteTest, MixesWithBlockingWriters) {
  Open();
  Pending p;
  constexpr int kThreads = 4, kEach = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; i++) {
        std::string k = "b" + std::to_string(t) + "-" + std::to_string(i);
        ASSERT_EQ(Put(db_, k, k, i % 7 == 0), NOKV_OK) << nokv_errmsg();
      }
    });
  }
  for (int i = 0; i < kThreads * kEach; i++) {
    std::string k = "a" + std::to_string(i);
    ASSERT_EQ(p.Submit(db_, k, k, i % 5 == 0), NOKV_OK) << nokv_errmsg();
  }
  for (auto& t : threads) t.join();
  p.AwaitAll();
  for (auto& w : p.writes()) {
    EXPECT_EQ(w->calls, 1);
    EXPECT_EQ(w->rc, NOKV_OK) << w->msg;
    EXPECT_TRUE(Get(db_, w->key).has_value()) << w->key;
  }
  for (int t = 0; t < kThreads; t++) {
    for (int i = 0; i < kEach; i++) {
      std::string k = "b" + std::to_string(t) + "-" + std::to_string(i);
      EXPECT_TRUE(Get(db_, k).has_value()) << k;
    }
  }
}

TEST_F(AsyncWriteTest, RefusedUpFrontNeverCompletes) {
  Open();
  Pending p;
  EXPECT_EQ(p.Submit(db_, "", "v", false), NOKV_EINVAL);  // an empty key
  EXPECT_EQ(nokv_write_async(db_, nullptr, nullptr, nullptr, nullptr), NOKV_EINVAL);
  p.AwaitAll();
  EXPECT_EQ(p.writes()[0]->calls, 0);
}

TEST_F(AsyncWriteTest, FailedLogWriteReachesEveryCompletionWithItsCause) {
  FaultEnv fault;
  Open(fault.env());
  ASSERT_EQ(Put(db_, "before", "v", true), NOKV_OK);
  fault.FailCalls(FaultEnv::kSync, EIO, ".wal");
  Pending p;
  for (int i = 0; i < 50; i++) {
    int rc = p.Submit(db_, "f" + std::to_string(i), "v", true);
    ASSERT_TRUE(rc == NOKV_OK || rc == NOKV_EIO) << rc;
  }
  p.AwaitAll();
  int failed = 0;
  for (auto& w : p.writes()) {
    if (w->calls == 0) continue;  // refused at once: writes stopped before it
    EXPECT_EQ(w->calls, 1);
    EXPECT_EQ(w->rc, NOKV_EIO) << w->key;
    EXPECT_NE(w->msg.find(strerror(EIO)), std::string::npos) << w->msg;
    failed++;
  }
  EXPECT_GE(failed, 1);
  fault.ClearRule();
  nokv_close(db_);  // before fault goes: it fails with the stored error, and frees db
  db_ = nullptr;
}

TEST_F(AsyncWriteTest, CloseRunsEveryQueuedCompletion) {
  Open();
  auto p = std::make_unique<Pending>();
  for (int i = 0; i < 500; i++) {
    ASSERT_EQ(p->Submit(db_, "c" + std::to_string(i), std::string(100, 'c'), i % 2 == 0),
              NOKV_OK);
  }
  ASSERT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
  db_ = nullptr;
  p->AwaitAll();  // close returned: every completion has run
  // Those whose group had not begun fail NOKV_ECLOSED, as blocking writers do.
  for (auto& w : p->writes()) {
    EXPECT_EQ(w->calls, 1);
    EXPECT_TRUE(w->rc == NOKV_OK || w->rc == NOKV_ECLOSED) << w->rc << " " << w->msg;
  }
  // What was acknowledged is there after a reopen.
  Open();
  for (auto& w : p->writes()) {
    if (w->rc == NOKV_OK) {
      EXPECT_TRUE(Get(db_, w->key).has_value()) << w->key;
    }
  }
}

}  // namespace
