// Watches (nokv/watch.h): every commit touching the range, in commit order, one
// group per batch or transaction, canonical within a group; recent commits from
// the change ring, older ones replayed from the LSM (memtables and tables)
// within the history kept, NOKV_ESTALE below it; a watch that falls behind the
// ring catches up from the LSM; previous values; resuming after a reopen; and
// 100 watches of random ranges against concurrent writers, each seeing exactly
// the committed sequence of its range.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "test_util.h"

using namespace nokv_test;

namespace {

// One event, owned: "P key=value", "D key", "R start..end".
struct Ev {
  std::string text;
  std::optional<std::string> prev;
  bool operator==(const Ev& o) const { return text == o.text && prev == o.prev; }
};
struct Group {
  uint64_t ts;
  std::vector<Ev> events;
  bool operator==(const Group& o) const { return ts == o.ts && events == o.events; }
};

std::string S(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

Group ToGroup(uint64_t ts, const nokv_event* ev, size_t n) {
  Group g{ts, {}};
  for (size_t i = 0; i < n; i++) {
    const nokv_event& e = ev[i];
    Ev x;
    if (e.type == NOKV_EVENT_PUT) {
      x.text = "P " + S(e.key, e.klen) + "=" + (e.value ? S(e.value, e.vlen) : "");
    } else if (e.type == NOKV_EVENT_DELETE) {
      x.text = "D " + S(e.key, e.klen);
    } else {
      x.text = "R " + S(e.key, e.klen) + ".." + S(e.end, e.end_len);
    }
    if (e.has_prev) x.prev = S(e.prev_value, e.prev_vlen);
    g.events.push_back(std::move(x));
  }
  return g;
}

std::ostream& operator<<(std::ostream& os, const Group& g) {
  os << "{" << g.ts << ":";
  for (const Ev& e : g.events) os << " [" << e.text << (e.prev ? " prev=" + *e.prev : "") << "]";
  return os << "}";
}

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nokv_options_init(&o_);
    o_.value_threshold = 256;
    Open();
  }
  void TearDown() override {
    for (nokv_watch* w : watches_) nokv_watch_close(w);
    if (db_ != nullptr) {
      EXPECT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
    }
  }
  void Open() { ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK) << nokv_errmsg(); }
  void Reopen() {
    for (nokv_watch* w : watches_) nokv_watch_close(w);
    watches_.clear();
    ASSERT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
    db_ = nullptr;
    Open();
  }
  nokv_watch* Watch(const std::string& a, const std::string& b, uint64_t start_ts = 0,
                    bool prev = false, int* rc_out = nullptr) {
    nokv_watch_options o;
    nokv_watch_options_init(&o);
    o.start = a.data();
    o.start_len = a.size();
    o.end = b.data();
    o.end_len = b.size();
    o.start_ts = start_ts;
    o.prev_values = prev;
    nokv_watch* w = nullptr;
    int rc = nokv_watch_open(db_, &o, &w);
    if (rc_out != nullptr) *rc_out = rc;
    if (rc == NOKV_OK) watches_.push_back(w);
    return w;
  }
  std::optional<Group> Next(nokv_watch* w, int timeout_ms = 2000, int* rc_out = nullptr) {
    uint64_t ts;
    const nokv_event* ev;
    size_t n;
    int rc = nokv_watch_next(w, timeout_ms, &ts, &ev, &n);
    if (rc_out != nullptr) *rc_out = rc;
    if (rc != NOKV_OK) return std::nullopt;
    return ToGroup(ts, ev, n);
  }
  // The next group, or a group naming the error (ts 0) so that a comparison fails.
  Group Must(nokv_watch* w) {
    int rc;
    auto g = Next(w, 2000, &rc);
    if (g) return *g;
    return Group{0, {{"error " + std::to_string(rc) + ": " + nokv_errmsg(), {}}}};
  }
  uint64_t Put(const std::string& k, const std::string& v) {
    uint64_t ts = 0;
    EXPECT_EQ(nokv_put(db_, nullptr, k.data(), k.size(), v.data(), v.size(), &ts), NOKV_OK);
    return ts;
  }

  TempDir dir_;
  nokv_options o_;
  nokv_db* db_ = nullptr;
  std::vector<nokv_watch*> watches_;
};

TEST_F(WatchTest, DeliversEachCommitInTheRangeAsOneGroup) {
  Put("a1", "before");  // before the watch: not delivered
  nokv_watch* w = Watch("a", "b");
  uint64_t t1 = Put("a1", "x");
  Put("zz", "outside");
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "a3", 2, "3", 1), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "a2", 2, "2", 1), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "a3", 2, "33", 2), NOKV_OK);  // the last op on a key wins
  ASSERT_EQ(nokv_batch_delete(b, "a1", 2), NOKV_OK);
  ASSERT_EQ(nokv_batch_delete_range(b, "0", 1, "a2", 2), NOKV_OK);  // clipped to [a, a2)
  ASSERT_EQ(nokv_batch_put(b, "c", 1, "outside", 7), NOKV_OK);
  uint64_t t2;
  ASSERT_EQ(nokv_write(db_, nullptr, b, &t2), NOKV_OK);
  nokv_batch_free(b);
  std::string big(5000, 'v');  // in the value log
  uint64_t t3 = Put("a9", big);
  EXPECT_EQ(Must(w), (Group{t1, {{"P a1=x", {}}}}));
  EXPECT_EQ(Must(w), (Group{t2, {{"R a..a2", {}}, {"D a1", {}}, {"P a2=2", {}}, {"P a3=33", {}}}}));
  EXPECT_EQ(Must(w), (Group{t3, {{"P a9=" + big, {}}}}));
  int rc;
  EXPECT_FALSE(Next(w, 50, &rc).has_value());
  EXPECT_EQ(rc, NOKV_ETIMEDOUT);
}

TEST_F(WatchTest, KeysOnlyAndExpiry) {
  nokv_watch_options o;
  nokv_watch_options_init(&o);
  o.keys_only = true;  // the whole key space
  nokv_watch* w;
  ASSERT_EQ(nokv_watch_open(db_, &o, &w), NOKV_OK);
  watches_.push_back(w);
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put_ttl(b, "t", 1, "value", 5, 60000), NOKV_OK);
  uint64_t ts;
  ASSERT_EQ(nokv_write(db_, nullptr, b, &ts), NOKV_OK);
  nokv_batch_free(b);
  uint64_t got;
  const nokv_event* ev;
  size_t n;
  ASSERT_EQ(nokv_watch_next(w, 2000, &got, &ev, &n), NOKV_OK);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(got, ts);
  EXPECT_EQ(ev[0].type, NOKV_EVENT_PUT);
  EXPECT_EQ(ev[0].value, nullptr);
  EXPECT_GT(ev[0].expires_at_ms, nokv_wall_clock_ms());
}

TEST_F(WatchTest, InterruptWakesAWaitingWatch) {
  nokv_watch* w = Watch("a", "b");
  std::atomic<int> rc{0};
  std::thread t([&] {
    int r;
    Next(w, -1, &r);
    rc = r;
  });
  nokv_watch_interrupt(w);
  t.join();
  EXPECT_EQ(rc.load(), NOKV_ECANCELED);
  uint64_t ts = Put("a", "1");  // still usable
  EXPECT_EQ(Must(w).ts, ts);
}

TEST_F(WatchTest, OlderCommitsAreReplayedFromMemtablesAndTables) {
  o_.history_retention_commits = 1000;
  Reopen();
  std::vector<Group> want;
  for (int i = 0; i < 30; i++) {
    std::string k = "k" + std::to_string(i % 7), v = "v" + std::to_string(i);
    if (i % 5 == 4) v = std::string(600, 'a' + i % 26);  // in the value log
    want.push_back({Put(k, v), {{"P " + k + "=" + v, {}}}});
    if (i == 10) ASSERT_EQ(nokv_flush(db_), NOKV_OK);
    if (i == 20) ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  }
  uint64_t td;
  ASSERT_EQ(nokv_delete(db_, nullptr, "k3", 2, &td), NOKV_OK);
  want.push_back({td, {{"D k3", {}}}});
  ASSERT_EQ(nokv_delete_range(db_, nullptr, "k5", 2, "k9", 2, &td), NOKV_OK);
  want.push_back({td, {{"R k5..k9", {}}}});
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  nokv_watch* w = Watch("k", "l", want[0].ts);
  for (const Group& g : want) EXPECT_EQ(Must(w), g);
  uint64_t after = Put("k1", "live");  // then from the ring
  EXPECT_EQ(Must(w), (Group{after, {{"P k1=live", {}}}}));
}

TEST_F(WatchTest, AStartBelowTheHistoryKeptIsRefused) {
  uint64_t t = Put("a", "1");
  Put("a", "2");
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);  // no retention: the horizon moves up
  int rc;
  EXPECT_EQ(Watch("a", "b", t, false, &rc), nullptr);
  EXPECT_EQ(rc, NOKV_ESTALE);
  uint64_t oldest = nokv_watch_oldest_ts(db_);
  EXPECT_GT(oldest, t);
  nokv_watch* w = Watch("a", "b", oldest, false, &rc);
  ASSERT_NE(w, nullptr) << nokv_errmsg();
  uint64_t t3 = Put("a", "3");
  EXPECT_EQ(Must(w).ts, t3);
}

TEST_F(WatchTest, PreviousValues) {
  Put("p", "old");
  nokv_watch* w = Watch("p", "q", 0, true);
  uint64_t t1 = Put("p", "new");
  uint64_t t2 = Put("p2", "first");
  uint64_t t3;
  ASSERT_EQ(nokv_delete(db_, nullptr, "p", 1, &t3), NOKV_OK);
  EXPECT_EQ(Must(w), (Group{t1, {{"P p=new", std::string("old")}}}));
  EXPECT_EQ(Must(w), (Group{t2, {{"P p2=first", std::nullopt}}}));
  EXPECT_EQ(Must(w), (Group{t3, {{"D p", std::string("new")}}}));
}

TEST_F(WatchTest, AWatchBehindTheRingCatchesUpFromTheLsm) {
  o_.watch_ring_bytes = 64 << 10;
  o_.history_retention_commits = 100000;
  Reopen();
  nokv_watch* w = Watch("", "\xff");
  std::vector<uint64_t> want;
  std::string v(1000, 'x');
  for (int i = 0; i < 1000; i++) want.push_back(Put("key" + std::to_string(i % 100), v));
  // 1 MB written: the ring kept the last 64 KiB; the rest comes from the LSM.
  for (uint64_t ts : want) {
    auto g = Next(w);
    ASSERT_TRUE(g.has_value()) << nokv_errmsg();
    ASSERT_EQ(g->ts, ts);
  }
}

TEST_F(WatchTest, ResumesAfterAReopenFromTheLastCommitSeen) {
  o_.history_retention_commits = 100000;
  Reopen();
  nokv_watch* w = Watch("r", "s");
  std::vector<uint64_t> want;
  for (int i = 0; i < 50; i++) want.push_back(Put("r" + std::to_string(i), "v"));
  uint64_t seen = 0;
  for (int i = 0; i < 20; i++) seen = Must(w).ts;  // the client saw 20, then the server went down
  Reopen();  // flushes at close, replays and flushes at open
  nokv_watch* again = Watch("r", "s", seen + 1);
  ASSERT_NE(again, nullptr) << nokv_errmsg();
  for (size_t i = 20; i < want.size(); i++) EXPECT_EQ(Must(again).ts, want[i]);
  int rc;
  EXPECT_FALSE(Next(again, 20, &rc).has_value());
  EXPECT_EQ(rc, NOKV_ETIMEDOUT);
}


// NOKV_WATCH_COMMITS commits (default 2000) from 4 writers, 100 watches.
TEST_F(WatchTest, HundredWatchesSeeExactlyTheCommittedSequence) {
  o_.watch_ring_bytes = 256 << 10;  // small: some watches fall behind and replay
  o_.history_retention_commits = 1u << 30;
  o_.memtable_max_bytes = 256 << 10;
  Reopen();
  const size_t commits = EnvSize("NOKV_WATCH_COMMITS", 2000);
  const int writers = 4, nwatch = 100;
  auto key = [](uint64_t i) {
    char b[8];
    snprintf(b, sizeof b, "%03d", static_cast<int>(i % 1000));
    return std::string(b);
  };
  // Writers log what they committed: ts -> ops (as a watch of everything sees them).
  std::mutex mu;
  std::map<uint64_t, std::vector<std::tuple<int, std::string, std::string>>> log;  // kind,key,val/end
  struct W {
    nokv_watch* w;
    std::string a, b;
    std::vector<Group> got;
    uint64_t last = 0;  // the last commit it must see (0: none); set before `known`
  };
  std::vector<W> ws(nwatch);
  std::mt19937_64 rng(7);
  for (W& x : ws) {
    x.a = key(rng() % 1000);
    x.b = key(rng() % 1000);
    if (x.b < x.a) std::swap(x.a, x.b);
    if (x.a == x.b) x.b = x.a + "~";
    x.w = Watch(x.a, x.b);
    ASSERT_NE(x.w, nullptr);
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < writers; t++) {
    threads.emplace_back([&, t] {
      std::mt19937_64 r(100 + t);
      for (size_t i; (i = next++) < commits;) {
        nokv_batch* b;
        nokv_batch_new(&b);
        std::vector<std::tuple<int, std::string, std::string>> ops;
        int n = 1 + r() % 4;
        for (int j = 0; j < n; j++) {
          std::string k = key(r()), v = "v" + std::to_string(i) + "." + std::to_string(j);
          unsigned what = r() % 20;
          if (what == 0) {
            std::string e = key(r());
            if (e < k) std::swap(k, e);
            if (k == e) continue;
            nokv_batch_delete_range(b, k.data(), k.size(), e.data(), e.size());
            ops.emplace_back(2, k, e);
          } else if (what < 4) {
            nokv_batch_delete(b, k.data(), k.size());
            ops.emplace_back(1, k, "");
          } else {
            nokv_batch_put(b, k.data(), k.size(), v.data(), v.size());
            ops.emplace_back(0, k, v);
          }
        }
        uint64_t ts;
        if (nokv_write(db_, nullptr, b, &ts) == NOKV_OK && !ops.empty()) {
          std::lock_guard<std::mutex> g(mu);
          log[ts] = ops;
        }
        nokv_batch_free(b);
      }
    });
  }
  // Once the writers are done, each watch learns the last commit it must see,
  // and stops when it has (a quiet spell proves nothing: a watch that fell
  // behind may still be replaying).
  std::atomic<bool> known{false};
  for (W& x : ws) {
    threads.emplace_back([&x, this, &known] {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      for (;;) {
        int rc;
        auto g = Next(x.w, 100, &rc);
        if (g) {
          x.got.push_back(*g);
        } else if (rc != NOKV_ETIMEDOUT) {
          ADD_FAILURE() << "watch: " << rc;
          return;
        }
        if (known.load(std::memory_order_acquire) &&
            (x.last == 0 || (!x.got.empty() && x.got.back().ts >= x.last))) {
          return;
        }
        if (std::chrono::steady_clock::now() > deadline) {
          ADD_FAILURE() << "watch [" << x.a << ", " << x.b << ") never saw commit " << x.last;
          return;
        }
      }
    });
  }
  for (int t = 0; t < writers; t++) threads[t].join();
  // What each watch should see, from the writers' log.
  auto want_of = [&log](const W& x) {
    std::vector<Group> want;
    for (const auto& [ts, ops] : log) {
      std::map<std::string, std::string> points;  // key -> event (the last op wins)
      std::vector<std::string> ranges;
      for (const auto& [kind, k, v] : ops) {
        if (kind == 2) {
          std::string a = std::max(k, x.a), b = std::min(v, x.b);
          if (a < b) ranges.push_back("R " + a + ".." + b);
        } else if (k >= x.a && k < x.b) {
          points[k] = kind == 0 ? "P " + k + "=" + v : "D " + k;
        }
      }
      if (points.empty() && ranges.empty()) continue;
      std::sort(ranges.begin(), ranges.end());
      Group g{ts, {}};
      for (auto& r : ranges) g.events.push_back({r, {}});
      for (auto& [k, e] : points) g.events.push_back({e, {}});
      want.push_back(std::move(g));
    }
    return want;
  };
  std::vector<std::vector<Group>> wants;
  for (W& x : ws) {
    wants.push_back(want_of(x));
    x.last = wants.back().empty() ? 0 : wants.back().back().ts;
  }
  known.store(true, std::memory_order_release);
  for (size_t t = writers; t < threads.size(); t++) threads[t].join();
  size_t total = 0;
  for (size_t w = 0; w < ws.size(); w++) {
    const W& x = ws[w];
    const std::vector<Group>& want = wants[w];
    ASSERT_EQ(x.got.size(), want.size()) << "watch [" << x.a << ", " << x.b << ")";
    for (size_t i = 0; i < want.size(); i++) {
      ASSERT_EQ(x.got[i], want[i]) << "watch [" << x.a << ", " << x.b << ") group " << i;
    }
    total += want.size();
  }
  EXPECT_GT(total, commits);  // the ranges overlap: most commits reach several watches
}

}  // namespace
