// The hot-key tracker: accuracy on a skewed stream, silence on a uniform one,
// decay, bounded memory, concurrency, and nokv_hot_keys through a database.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gtest/gtest.h"
#include "hot/hot.h"
#include "nokv/nokv.h"
#include "test_util.h"
#include "util/checksum.h"

using namespace nokv_test;

namespace {

std::atomic<uint64_t> fake_now{1000};
uint64_t FakeNow() { return fake_now.load(); }

std::string KeyOf(uint64_t i) {
  char b[32];
  snprintf(b, sizeof b, "user%010llu", static_cast<unsigned long long>(i));
  return b;
}

// YCSB's zipfian generator (Gray et al.), theta 0.99, ranks in [0, n).
class Zipf {
 public:
  explicit Zipf(uint64_t n) : n_(n) {
    for (uint64_t i = 1; i <= n; i++) zetan_ += 1.0 / std::pow(static_cast<double>(i), kTheta);
    double zeta2 = 1.0 + std::pow(0.5, kTheta);
    alpha_ = 1.0 / (1.0 - kTheta);
    eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n), 1.0 - kTheta)) / (1.0 - zeta2 / zetan_);
    half_pow_ = 1.0 + std::pow(0.5, kTheta);
  }
  uint64_t Next(uint64_t* rng) {
    double u = static_cast<double>(Mix(rng) >> 11) / 9007199254740992.0;
    double uz = u * zetan_;
    if (uz < 1.0) return 0;
    if (uz < half_pow_) return 1;
    auto r = static_cast<uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return r < n_ ? r : n_ - 1;
  }
  static uint64_t Mix(uint64_t* s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  static constexpr double kTheta = 0.99;
  uint64_t n_;
  double zetan_ = 0, alpha_ = 0, eta_ = 0, half_pow_ = 0;
};

class HotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_now = 1000;
    nk_hot_options o = {2u << 20, FakeNow};
    h_ = nk_hot_new(&o);
    ASSERT_NE(h_, nullptr);
  }
  void TearDown() override { nk_hot_free(h_); }

  // A read of key as the database counts it: one in NK_HOT_SAMPLE.
  void Read(const std::string& k) {
    if (nk_hot_sampled()) {
      nk_hot_touch(h_, NOKV_HOT_READS, k.data(), k.size(), nk_hash64(k.data(), k.size()),
                   NK_HOT_SAMPLE);
    }
  }
  std::vector<nokv_hot_key> Top(size_t n, uint64_t min_count = 1) {
    std::vector<nokv_hot_key> out(n);
    size_t count = 0;
    EXPECT_EQ(nk_hot_top(h_, NOKV_HOT_READS, n, min_count, out.data(), &count), NOKV_OK);
    out.resize(count);
    return out;
  }
  nk_hot* h_ = nullptr;
};

// The accuracy tests below stream millions of reads on one thread: ThreadSanitizer
// has nothing to find there (the concurrent tests further down are its job), and
// they took 27-33 s under it; they run in the other configurations.
#if defined(__SANITIZE_THREAD__)
#define SKIP_UNDER_TSAN() GTEST_SKIP() << "single-threaded: nothing for ThreadSanitizer"
#else
#define SKIP_UNDER_TSAN() (void)0
#endif

// 5,000,000 zipfian(0.99) reads over 1,000,000 keys within one window: at
// least 15 of the reported top 16 are the exact top 16, each count within 10%.
TEST_F(HotTest, ZipfianTopSixteenIsExactWithinTenPercent) {
  SKIP_UNDER_TSAN();
  const uint64_t keys = 1000000, reads = 5000000;
  Zipf z(keys);
  uint64_t rng = 42;
  std::vector<uint32_t> exact(keys, 0);
  for (uint64_t i = 0; i < reads; i++) {
    uint64_t r = z.Next(&rng);
    exact[r]++;
    Read(KeyOf(r));
  }
  std::vector<uint64_t> order(keys);
  for (uint64_t i = 0; i < keys; i++) order[i] = i;
  std::partial_sort(order.begin(), order.begin() + 16, order.end(),
                    [&](uint64_t a, uint64_t b) { return exact[a] > exact[b]; });
  std::unordered_map<std::string, uint64_t> top16;
  for (int i = 0; i < 16; i++) top16[KeyOf(order[i])] = exact[order[i]];
  auto got = Top(16);
  ASSERT_EQ(got.size(), 16u);
  int hits = 0;
  double worst = 0;
  for (const auto& k : got) {
    std::string key(k.key, k.klen);
    auto it = top16.find(key);
    if (it == top16.end()) continue;
    hits++;
    double want = static_cast<double>(it->second);
    EXPECT_NEAR(k.per_sec, want, 0.10 * want) << key;  // one window: count == rate
    worst = std::max(worst, std::abs(k.per_sec - want) / want);
  }
  std::printf("top 16: %d of the exact top 16; largest count error %.2f%%\n", hits,
              100 * worst);
  EXPECT_GE(hits, 15);
  nk_hot_stats s;
  nk_hot_get_stats(h_, &s);
  EXPECT_EQ(s.samples[NOKV_HOT_READS], reads / NK_HOT_SAMPLE);
  EXPECT_LE(s.bytes, 2u << 20);  // whatever the key count
}

// A uniform stream over 1,000,000 keys (500,000 reads a second for 10 s) has
// no key at 100 reads a second, nor near it.
TEST_F(HotTest, UniformStreamHasNoHotKey) {
  SKIP_UNDER_TSAN();
  uint64_t rng = 7;
  for (int ms = 0; ms < 10000; ms++) {
    for (int i = 0; i < 500; i++) Read(KeyOf(Zipf::Mix(&rng) % 1000000));
    fake_now++;
  }
  EXPECT_TRUE(Top(16, 100).empty());
  ASSERT_EQ(Top(1).size(), 1u);  // candidates exist; none is near the threshold
}

// Counts are over the last window: a key that stops being read fades within
// two windows and another takes its place.
TEST_F(HotTest, ACooledKeyFadesAndANewOneTakesOver) {
  for (int i = 0; i < 80000; i++) Read("old");
  auto top = Top(1);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(std::string(top[0].key, top[0].klen), "old");
  EXPECT_NEAR(top[0].per_sec, 80000, 800);
  fake_now += NK_HOT_WINDOW_MS + NK_HOT_WINDOW_MS / 2;  // half of it still counts
  top = Top(1);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_NEAR(top[0].per_sec, 40000, 800);
  for (int i = 0; i < 40000; i++) Read("new");
  fake_now += NK_HOT_WINDOW_MS;  // "old" is two windows back now
  top = Top(2);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(std::string(top[0].key, top[0].klen), "new");
  EXPECT_NEAR(top[0].per_sec, 20000, 800);
  fake_now += 3 * NK_HOT_WINDOW_MS;
  EXPECT_TRUE(Top(2).empty());
}

// Keys longer than NOKV_HOT_KEY_MAX are reported by their start, with their
// whole length.
TEST_F(HotTest, LongKeysAreCutNotLost) {
  std::string big(5000, 'k');
  big[0] = 'B';
  for (int i = 0; i < 8000; i++) Read(big);
  auto top = Top(1);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].klen, big.size());
  EXPECT_EQ(std::string(top[0].key, NOKV_HOT_KEY_MAX), big.substr(0, NOKV_HOT_KEY_MAX));
}

// Readers and writers at once, under ThreadSanitizer in CI: the hottest key
// stays on top while threads race on its counters and on the candidates.
TEST_F(HotTest, ConcurrentTouchesAndQueries) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([this, t] {
      Zipf z(10000);
      uint64_t rng = 100 + t;
      for (int i = 0; i < 200000; i++) {
        std::string k = KeyOf(z.Next(&rng));
        nk_hot_touch(h_, t % 2 ? NOKV_HOT_WRITES : NOKV_HOT_READS, k.data(), k.size(),
                     nk_hash64(k.data(), k.size()), NK_HOT_SAMPLE);
        if (i % 50000 == 0) fake_now += 300;  // windows turn while they count
      }
    });
  }
  std::thread q([&] {
    while (!stop.load()) Top(16);
  });
  for (auto& t : threads) t.join();
  stop = true;
  q.join();
  for (nokv_hot_kind kind : {NOKV_HOT_READS, NOKV_HOT_WRITES}) {
    std::vector<nokv_hot_key> out(1);
    size_t n = 0;
    ASSERT_EQ(nk_hot_top(h_, kind, 1, 1, out.data(), &n), NOKV_OK);
    ASSERT_EQ(n, 1u);
    EXPECT_EQ(std::string(out[0].key, out[0].klen), KeyOf(0));
  }
}

// Through a database: Gets, iterator seeks and writes are counted; tracking
// off reports nothing. (The database's clock is the real one: the test keeps
// its counts well above the 100-a-second threshold however windows fall.)
TEST(HotKeysDb, ReadsSeeksAndWritesAreCounted) {
  TempDir dir;
  nokv_options o;
  nokv_options_init(&o);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < 96; i++) ASSERT_EQ(Put(db, KeyOf(i), "v"), NOKV_OK);
  for (int i = 0; i < 3000; i++) ASSERT_EQ(Put(db, "written", std::to_string(i)), NOKV_OK);
  for (int i = 0; i < 2000; i++) ASSERT_TRUE(Get(db, KeyOf(7)).has_value());
  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db, nullptr, nullptr, 0, nullptr, 0, &it), NOKV_OK);
  std::string from = KeyOf(50);
  for (int i = 0; i < 800; i++) nokv_iter_seek(it, from.data(), from.size());
  nokv_iter_close(it);

  nokv_hot_key out[4];
  size_t n = 0;
  ASSERT_EQ(nokv_hot_keys(db, NOKV_HOT_READS, 4, out, &n), NOKV_OK);
  ASSERT_EQ(n, 2u);
  EXPECT_EQ(std::string(out[0].key, out[0].klen), KeyOf(7));
  EXPECT_EQ(std::string(out[1].key, out[1].klen), KeyOf(50));
  EXPECT_GT(out[0].per_sec, out[1].per_sec);
  ASSERT_EQ(nokv_hot_keys(db, NOKV_HOT_WRITES, 4, out, &n), NOKV_OK);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(std::string(out[0].key, out[0].klen), "written");
  EXPECT_EQ(nokv_hot_keys(db, static_cast<nokv_hot_kind>(9), 4, out, &n), NOKV_EINVAL);
  nokv_statistics s;
  ASSERT_EQ(nokv_stats(db, &s), NOKV_OK);
  EXPECT_EQ(s.hot_reads_sampled, (2000 + 800) / NK_HOT_SAMPLE);
  EXPECT_EQ(s.hot_writes_sampled, (96 + 3000) / NK_HOT_SAMPLE);
  EXPECT_GE(s.hot_read_candidates, 2u);
  EXPECT_GT(s.hot_tracker_bytes, 0u);
  EXPECT_LE(s.hot_tracker_bytes, o.hot_key_tracker_bytes);
  ASSERT_EQ(nokv_close(db), NOKV_OK);

  o.hot_key_tracking = false;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < 2000; i++) ASSERT_TRUE(Get(db, KeyOf(7)).has_value());
  ASSERT_EQ(nokv_hot_keys(db, NOKV_HOT_READS, 4, out, &n), NOKV_OK);
  EXPECT_EQ(n, 0u);
  ASSERT_EQ(nokv_stats(db, &s), NOKV_OK);
  EXPECT_EQ(s.hot_reads_sampled, 0u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// hot_write_limit: past the limit a key's writes fail with NOKV_EHOTKEY and
// write nothing (a batch holding it too, a transaction's commit too); other
// keys go on; once the window turns the key is writable again.
TEST(HotKeysDb, WritesPastTheLimitAreRefusedUntilTheKeyCools) {
  TempDir dir;
  nokv_options o;
  nokv_options_init(&o);
  o.hot_write_limit = 50;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  fake_now = 1000;
  nk_hot_set_clock(nk_db_hot(db), FakeNow);
  int accepted = 0, refused = 0;
  for (int i = 0; i < 200; i++) {
    int rc = Put(db, "hot", std::to_string(i));
    if (rc == NOKV_OK) {
      accepted++;
    } else {
      ASSERT_EQ(rc, NOKV_EHOTKEY);
      refused++;
    }
  }
  EXPECT_EQ(accepted, 50);
  EXPECT_EQ(refused, 150);
  EXPECT_NE(std::string(nokv_errmsg()).find("\"hot\""), std::string::npos) << nokv_errmsg();
  EXPECT_NE(std::string(nokv_errmsg()).find("hot_write_limit (50"), std::string::npos);
  EXPECT_EQ(Get(db, "hot")->data, "49");  // the refused writes wrote nothing
  // Other keys are not held back; a batch with the hot key is refused whole.
  EXPECT_EQ(Put(db, "cool", "1"), NOKV_OK);
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "other", 5, "x", 1), NOKV_OK);
  ASSERT_EQ(nokv_batch_put(b, "hot", 3, "batch", 5), NOKV_OK);
  EXPECT_EQ(nokv_write(db, nullptr, b, nullptr), NOKV_EHOTKEY);
  nokv_batch_free(b);
  EXPECT_FALSE(Get(db, "other").has_value());
  nokv_txn* txn;
  ASSERT_EQ(nokv_txn_begin(db, 0, &txn), NOKV_OK);
  ASSERT_EQ(nokv_txn_put(txn, "hot", 3, "txn", 3), NOKV_OK);
  EXPECT_EQ(nokv_txn_commit(txn, nullptr, nullptr), NOKV_EHOTKEY);
  EXPECT_EQ(Get(db, "hot")->data, "49");
  nokv_statistics s;
  ASSERT_EQ(nokv_stats(db, &s), NOKV_OK);
  EXPECT_EQ(s.hot_writes_throttled, 152u);
  // Two windows later the key has cooled.
  fake_now += 2 * NK_HOT_WINDOW_MS;
  EXPECT_EQ(Put(db, "hot", "again"), NOKV_OK);
  EXPECT_EQ(Get(db, "hot")->data, "again");
  ASSERT_EQ(nokv_close(db), NOKV_OK);

  o.hot_key_tracking = false;
  EXPECT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_EINVAL);
}

// The hot-read cache against a model: a few hot keys overwritten, deleted and
// read at the latest timestamp, at snapshots and in transactions; every read
// gives what the versions say, and the cache did serve reads.
TEST(HotReadCache, NeverReturnsWhatTheLsmWouldNot) {
  TempDir dir;
  nokv_options o;
  nokv_options_init(&o);
  o.hot_key_min_rate = 1;  // every key read twice is hot
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  // key -> versions (commit ts, value; "" with deleted = a deletion)
  struct Version {
    uint64_t ts;
    bool deleted;
    std::string value;
  };
  std::map<std::string, std::vector<Version>> model;
  auto visible = [&](const std::string& k, uint64_t ts) -> std::optional<std::string> {
    std::optional<std::string> v;
    for (const auto& ver : model[k]) {
      if (ver.ts <= ts) v = ver.deleted ? std::nullopt : std::optional<std::string>(ver.value);
    }
    return v;
  };
  std::vector<std::pair<nokv_snapshot*, uint64_t>> snaps;
  uint64_t rng = 99;
  for (int step = 0; step < 20000; step++) {
    std::string k = "hot" + std::to_string(Zipf::Mix(&rng) % 6);
    int dice = static_cast<int>(Zipf::Mix(&rng) % 100);
    if (dice < 10) {
      std::string v = "v" + std::to_string(step) + std::string(Zipf::Mix(&rng) % 3000, 'x');
      uint64_t ts = 0;
      ASSERT_EQ(nokv_put(db, nullptr, k.data(), k.size(), v.data(), v.size(), &ts), NOKV_OK);
      model[k].push_back({ts, false, v});
    } else if (dice < 13) {
      uint64_t ts = 0;
      nokv_batch* b;
      ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
      ASSERT_EQ(nokv_batch_delete(b, k.data(), k.size()), NOKV_OK);
      ASSERT_EQ(nokv_write(db, nullptr, b, &ts), NOKV_OK);
      nokv_batch_free(b);
      model[k].push_back({ts, true, ""});
    } else if (dice < 15) {
      nokv_txn* t;
      ASSERT_EQ(nokv_txn_begin(db, 0, &t), NOKV_OK);
      std::string v = "txn" + std::to_string(step);
      ASSERT_EQ(nokv_txn_put(t, k.data(), k.size(), v.data(), v.size()), NOKV_OK);
      uint64_t ts = 0;
      ASSERT_EQ(nokv_txn_commit(t, nullptr, &ts), NOKV_OK);
      model[k].push_back({ts, false, v});
    } else if (dice < 17 && snaps.size() < 8) {
      nokv_snapshot* sn;
      ASSERT_EQ(nokv_snapshot_create(db, &sn), NOKV_OK);
      snaps.push_back({sn, nokv_snapshot_ts(sn)});
    } else if (dice < 25 && !snaps.empty()) {
      auto [sn, ts] = snaps[Zipf::Mix(&rng) % snaps.size()];
      nokv_read_options ro;
      nokv_read_options_init(&ro);
      ro.snapshot = sn;
      void* v = nullptr;
      size_t n = 0;
      int rc = nokv_get(db, &ro, k.data(), k.size(), &v, &n, nullptr);
      auto want = visible(k, ts);
      ASSERT_EQ(rc == NOKV_OK, want.has_value()) << k << " at snapshot " << ts << " step " << step;
      if (rc == NOKV_OK) {
        ASSERT_EQ(std::string(static_cast<char*>(v), n), *want) << k;
      }
      nokv_free(v);
    } else if (dice < 28) {
      nokv_txn* t;
      ASSERT_EQ(nokv_txn_begin(db, 0, &t), NOKV_OK);
      void* v = nullptr;
      size_t n = 0;
      int rc = nokv_txn_get(t, k.data(), k.size(), &v, &n);
      auto want = visible(k, nokv_txn_read_ts(t));
      ASSERT_EQ(rc == NOKV_OK, want.has_value()) << k << " in a transaction, step " << step;
      if (rc == NOKV_OK) {
        ASSERT_EQ(std::string(static_cast<char*>(v), n), *want) << k;
      }
      nokv_free(v);
      nokv_txn_discard(t);
    } else {
      void* v = nullptr;
      size_t n = 0;
      uint64_t ts = 0;
      int rc = nokv_get(db, nullptr, k.data(), k.size(), &v, &n, &ts);
      auto want = visible(k, UINT64_MAX);
      ASSERT_EQ(rc == NOKV_OK, want.has_value()) << k << " step " << step;
      if (rc == NOKV_OK) {
        ASSERT_EQ(std::string(static_cast<char*>(v), n), *want) << k << " step " << step;
        ASSERT_EQ(ts, model[k].back().ts);
      }
      nokv_free(v);
    }
    if (step % 5000 == 4999) {
      ASSERT_EQ(nokv_flush(db), NOKV_OK);
    }  // values move to tables
    if (step % 7 == 0 && !snaps.empty() && Zipf::Mix(&rng) % 4 == 0) {
      nokv_snapshot_release(db, snaps.back().first);
      snaps.pop_back();
    }
  }
  for (auto& [sn, ts] : snaps) nokv_snapshot_release(db, sn);
  nokv_statistics s;
  ASSERT_EQ(nokv_stats(db, &s), NOKV_OK);
  EXPECT_GT(s.hot_cache_fills, 100u);
  EXPECT_GT(s.hot_cache_hits, 1000u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Readers never see a value older than one acknowledged before they began,
// while a writer overwrites a hot key and readers fill and hit the cache
// (ThreadSanitizer runs it too).
TEST(HotReadCache, ConcurrentReadsNeverGoBack) {
  TempDir dir;
  nokv_options o;
  nokv_options_init(&o);
  o.hot_key_min_rate = 1;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(Put(db, "counter", "0"), NOKV_OK);
  std::atomic<long> acked{0}, reads{0};
  std::atomic<bool> stop{false}, bad{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; t++) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        long floor = acked.load();
        auto v = Get(db, "counter");
        if (!v || std::stol(v->data) < floor) bad = true;
        reads++;
      }
    });
  }
  for (long i = 1; i <= 3000; i++) {
    ASSERT_EQ(Put(db, "counter", std::to_string(i)), NOKV_OK);
    acked = i;
    if (i % 100 == 0) {  // a pause in the writes: readers fill and hit meanwhile
      long before = reads.load();
      while (reads.load() < before + 200) std::this_thread::yield();
    }
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_FALSE(bad.load()) << "a read returned a value older than an acknowledged write";
  EXPECT_EQ(Get(db, "counter")->data, "3000");
  nokv_statistics s;
  ASSERT_EQ(nokv_stats(db, &s), NOKV_OK);
  EXPECT_GT(s.hot_cache_hits, 0u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

}  // namespace
