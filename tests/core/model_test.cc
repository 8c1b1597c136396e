// Randomized model check: the same random puts (some with a TTL), deletes,
// batches, gets, scans and snapshot reads run against the engine and against
// std::map, with reopens in the middle. The wall clock is the test's: it moves
// one millisecond per operation, so TTLs expire during the run, under live
// snapshots and across flushes and compactions. The seed is printed (replay
// with NOKV_TEST_SEED=<seed>).
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "nokv/nokv.h"
#include "test_util.h"
#include "util/clock.h"

namespace {

using nokv_test::Get;
using nokv_test::TempDir;
using Model = std::map<std::string, std::string>;
// Every key's newest value and its expiry (0: never), whatever the time.
using Versions = std::map<std::string, std::pair<std::string, uint64_t>>;

struct Snap {
  nokv_snapshot* snap;
  Model model;  // what it sees: the versions alive when it was taken
};

uint64_t model_now_ms = 1'700'000'000'000;
uint64_t ModelClock() { return model_now_ms; }

// The keys in [start, end) (end empty: unbounded) alive at now_ms.
Model VisibleRange(const Versions& versions, uint64_t now_ms, const std::string& start,
                   const std::string& end) {
  Model out;
  for (auto it = versions.lower_bound(start);
       it != versions.end() && (end.empty() || it->first < end); ++it) {
    if (it->second.second == 0 || it->second.second > now_ms) {
      out.emplace_hint(out.end(), it->first, it->second.first);
    }
  }
  return out;
}

// The keys alive at now_ms.
Model Visible(const Versions& versions, uint64_t now_ms) {
  Model out;
  for (const auto& [k, ve] : versions) {
    if (ve.second == 0 || ve.second > now_ms) out.emplace_hint(out.end(), k, ve.first);
  }
  return out;
}

class ModelTest : public ::testing::Test {
 public:
  std::mt19937_64 rng_{nokv_test::TestSeed()};
  TempDir dir_;
  nokv_db* db_ = nullptr;

  uint64_t Uniform(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  uint64_t keyspace_ = 400;
  int large_pct_ = 10;   // puts with a value of up to 5000 bytes (else up to 40)
  bool gc_ = false;      // also run value-log GC between operations
  std::string Key() {
    // Skewed so some keys collect many versions; some keys share prefixes.
    uint64_t k = Uniform(4) == 0 ? Uniform(8) : Uniform(keyspace_);
    return "key" + std::to_string(k) + (k % 3 == 0 ? "/sub" : "");
  }
  std::string ValueOf(size_t n) {
    std::string v(n, '\0');
    for (auto& c : v) c = static_cast<char>(Uniform(256));
    return v;
  }

  Model ScanAll(const nokv_read_options* ro, const std::string& start, const std::string& end) {
    nokv_iter* it;
    EXPECT_EQ(nokv_iter_new(db_, ro, start.data(), start.size(), end.data(), end.size(), &it), 0);
    Model out;
    for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
      size_t kl, vl;
      const void* k = nokv_iter_key(it, &kl);
      const void* v = nokv_iter_value(it, &vl);
      out.emplace(std::string(static_cast<const char*>(k), kl),
                  std::string(static_cast<const char*>(v), vl));
    }
    EXPECT_EQ(nokv_iter_status(it), NOKV_OK) << nokv_errmsg();
    nokv_iter_close(it);
    return out;
  }

  static Model Range(const Model& m, const std::string& start, const std::string& end) {
    Model out;
    for (auto it = m.lower_bound(start); it != m.end() && (end.empty() || it->first < end); ++it) {
      out.insert(*it);
    }
    return out;
  }
};

// Operations of the LSM runs: $NOKV_MODEL_OPS, else a size that keeps the test
// well inside its timeout under the sanitizers (`bazel/workflow.sh soak` runs
// millions).
int ModelOps() {
  const char* env = getenv("NOKV_MODEL_OPS");
  return env != nullptr && *env ? atoi(env) : 300000;
}

// One randomized run: kOps operations; with lsm set, also forced flushes and
// full compactions between them, and scans kept narrow (the key space is large).
void RunModel(ModelTest* t, const nokv_options* opts, int ops, bool lsm);

TEST_F(ModelTest, RandomOperationsMatchAMap) { RunModel(this, nullptr, 30000, false); }

// The LSM path: tiny memtables and level targets so that flushes, tiered L0
// merges, leveled compactions and trivial moves all happen many times.
TEST_F(ModelTest, RandomOperationsOverFlushesAndCompactionsMatchAMap) {
  int ops = ModelOps();
  keyspace_ = 20000;
  nokv_options o;
  nokv_test::TinyLsmOptions(&o);
  o.compression_start_level = 1;
  o.block_cache_bytes = 256 << 10;
  o.max_open_files = 16;
  RunModel(this, &o, ops, true);
}

// The value log: most values are separated, segments are small, and GC runs
// (on demand, with random ratios, and in the background) between operations,
// under live snapshots and across reopens.
TEST_F(ModelTest, RandomOperationsWithValueLogGcMatchAMap) {
  int ops = ModelOps() / 8;
  keyspace_ = 3000;
  large_pct_ = 50;
  gc_ = true;
  nokv_options o;
  nokv_test::TinyLsmOptions(&o);
  o.value_threshold = 256;
  o.value_log_segment_bytes = 64 << 10;
  o.value_log_gc_ratio = 0.3;
  o.value_log_gc_bytes_per_sec = 0;
  RunModel(this, &o, ops, true);
}

void RunModel(ModelTest* t, const nokv_options* opts, int kOps, bool lsm) {
  auto& db_ = t->db_;
  auto Uniform = [t](uint64_t n) { return t->Uniform(n); };
  auto Key = [t] { return t->Key(); };
  auto ValueOf = [t](size_t n) { return t->ValueOf(n); };
  auto ScanAll = [t](const nokv_read_options* ro, const std::string& a, const std::string& b) {
    return t->ScanAll(ro, a, b);
  };
  const std::string path = t->dir_.path();
  nk_wall_clock_override = ModelClock;
  struct Restore {
    ~Restore() { nk_wall_clock_override = nullptr; }
  } restore;
  ASSERT_EQ(nokv_open(path.c_str(), opts, &db_), NOKV_OK);
  Versions versions;
  auto model = [&] { return Visible(versions, model_now_ms); };
  std::vector<Snap> snaps;
  uint64_t ttl_puts = 0;
  uint64_t gc_collected = 0;
  for (int op = 0; op < kOps; op++) {
    model_now_ms++;
    uint64_t dice = Uniform(100);
    if (lsm && Uniform(2000) == 0) {
      ASSERT_EQ(Uniform(4) == 0 ? nokv_compact(db_) : nokv_flush(db_), NOKV_OK) << nokv_errmsg();
      continue;
    }
    if (t->gc_ && Uniform(1000) == 0) {
      uint32_t collected = 0;
      ASSERT_EQ(nokv_vlog_gc(db_, 0.05 + 0.1 * static_cast<double>(Uniform(9)), &collected),
                NOKV_OK)
          << nokv_errmsg();
      gc_collected += collected;
      continue;
    }
    if (dice < 40) {
      std::string k = Key();
      std::string v = ValueOf(static_cast<int>(Uniform(100)) < t->large_pct_ ? Uniform(5000)
                                                                               : Uniform(40));
      if (Uniform(8) == 0) {  // expires within a few thousand operations
        uint64_t ttl = 1 + Uniform(3000);
        nokv_batch* b;
        ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
        ASSERT_EQ(nokv_batch_put_ttl(b, k.data(), k.size(), v.data(), v.size(), ttl), NOKV_OK);
        ASSERT_EQ(nokv_write(db_, nullptr, b, nullptr), NOKV_OK);
        nokv_batch_free(b);
        versions[k] = {v, model_now_ms + ttl};
        ttl_puts++;
      } else {
        ASSERT_EQ(nokv_test::Put(db_, k, v, Uniform(50) == 0), NOKV_OK);
        versions[k] = {v, 0};
      }
    } else if (dice < 50) {
      std::string k = Key();
      ASSERT_EQ(nokv_test::Delete(db_, k), NOKV_OK);
      versions.erase(k);
    } else if (dice < 55) {
      nokv_batch* b;
      ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
      std::vector<std::pair<std::string, std::optional<std::string>>> staged;
      for (uint64_t i = 0, n = 1 + Uniform(20); i < n; i++) {
        std::string k = Key();
        if (Uniform(4) == 0) {
          nokv_batch_delete(b, k.data(), k.size());
          staged.emplace_back(k, std::nullopt);
        } else {
          std::string v = ValueOf(Uniform(30));
          nokv_batch_put(b, k.data(), k.size(), v.data(), v.size());
          staged.emplace_back(k, v);
        }
      }
      ASSERT_EQ(nokv_write(db_, nullptr, b, nullptr), NOKV_OK);
      nokv_batch_free(b);
      for (auto& [k, v] : staged) {
        if (v) {
          versions[k] = {*v, 0};
        } else {
          versions.erase(k);
        }
      }
    } else if (dice < 80) {
      std::string k = Key();
      int rc = NOKV_OK;
      auto got = Get(db_, k, 0, &rc);
      auto ve = versions.find(k);
      bool alive = ve != versions.end() &&
                   (ve->second.second == 0 || ve->second.second > model_now_ms);
      auto want = alive ? std::optional<std::string>(ve->second.first) : std::nullopt;
      ASSERT_EQ(got.has_value(), want.has_value())
          << "op " << op << " key " << k << " rc " << rc << " " << nokv_errmsg();
      if (got) {
        ASSERT_EQ(got->data, *want) << "op " << op << " key " << k;
      }
    } else if (dice < 88) {
      std::string a = Key(), b = Uniform(5) == 0 ? "" : Key();
      if (!b.empty() && b < a) std::swap(a, b);
      if (lsm && Uniform(1000) != 0) b = a + "0";  // a and a/sub only
      ASSERT_EQ(ScanAll(nullptr, a, b), VisibleRange(versions, model_now_ms, a, b)) << "op " << op;
    } else if (dice < 90 && snaps.size() < 4 && (!lsm || Uniform(200) == 0)) {
      Snap s;
      ASSERT_EQ(nokv_snapshot_create(db_, &s.snap), NOKV_OK);
      s.model = model();  // the snapshot judges expiry at this time, forever
      snaps.push_back(std::move(s));
    } else if (dice < 95 && !snaps.empty()) {
      Snap& s = snaps[Uniform(snaps.size())];
      nokv_read_options ro{};
      ro.snapshot = s.snap;
      if (lsm && Uniform(500) != 0) {
        std::string a = Key(), b = a + "0";
        ASSERT_EQ(ScanAll(&ro, a, b), ModelTest::Range(s.model, a, b)) << "snapshot at op " << op;
      } else {
        ASSERT_EQ(ScanAll(&ro, "", ""), s.model) << "snapshot at op " << op;
      }
    } else if (dice < 97 && !snaps.empty()) {
      nokv_snapshot_release(db_, snaps.back().snap);
      snaps.pop_back();
    } else if (dice == 99 && Uniform(lsm ? 500 : 10) == 0) {
      for (auto& s : snaps) nokv_snapshot_release(db_, s.snap);
      snaps.clear();
      ASSERT_EQ(nokv_close(db_), NOKV_OK);
      ASSERT_EQ(nokv_open(path.c_str(), opts, &db_), NOKV_OK) << nokv_errmsg();
      ASSERT_EQ(ScanAll(nullptr, "", ""), model()) << "after reopen at op " << op;
    }
  }
  for (auto& s : snaps) nokv_snapshot_release(db_, s.snap);
  ASSERT_EQ(ScanAll(nullptr, "", ""), model());
  EXPECT_GT(ttl_puts, 0u);
  if (lsm) {  // expired versions met flushes and compactions
    ASSERT_EQ(nokv_compact(db_), NOKV_OK);
    ASSERT_EQ(ScanAll(nullptr, "", ""), model());
    printf("TTL puts: %llu; expired versions dropped: %llu\n",
           static_cast<unsigned long long>(ttl_puts),
           static_cast<unsigned long long>(nokv_test::Stats(db_).ttl_expired));
  }
  if (t->gc_) {
    printf("value log segments collected on demand: %llu\n",
           static_cast<unsigned long long>(gc_collected));
    EXPECT_GT(gc_collected, 0u);
  }
  ASSERT_EQ(nokv_close(db_), NOKV_OK);
  ASSERT_EQ(nokv_open(path.c_str(), opts, &db_), NOKV_OK);
  ASSERT_EQ(ScanAll(nullptr, "", ""), model());
  ASSERT_EQ(nokv_close(db_), NOKV_OK);
}

}  // namespace
