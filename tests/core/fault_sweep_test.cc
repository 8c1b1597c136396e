// Sweeps of the file layer's failures over a whole workload (puts on both sides
// of the value-log threshold, a quarter of them expiring a day later so their
// own kinds go through the WAL, the value log, tables and recovery, deletes,
// batches, synced and not, flushes,
// compactions, value-log GC, idle checks and nokv_sync), written one nokv_write at a time
// or as windows of nokv_write_async calls that commit together in groups:
//  - the power goes off at every sync point in turn (every byte not fsync'ed is
//    lost, names not made durable vanish): after the reopen every write is there
//    that a sync acknowledged, directly or by coming before one, and the
//    database holds exactly what some prefix of the writes left;
//  - every kind of file call fails with each of several errnos at successive
//    call sites: the workload stops or goes on with clear errors, and a clean
//    reopen finds every acknowledged write.
// $NOKV_SWEEP_OPS sizes the workload (default 160).
#include <errno.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "db/gc_internal.h"
#include "fault_env.h"
#include "nokv/nokv.h"
#include "test_util.h"

namespace {

using nokv_test::FaultEnv;
using nokv_test::TempDir;

int SweepOps() {
  const char* env = getenv("NOKV_SWEEP_OPS");
  return env != nullptr && *env ? atoi(env) : 160;
}

// How the workload reaches the engine.
enum class Path {
  kWrite,       // one nokv_write at a time
  kAsyncIdle,   // windows of nokv_write_async calls in flight together, and idle checks
};

nokv_options Options(const nokv_env* env, Path path) {
  nokv_options o;
  nokv_test::TinyLsmOptions(&o);
  o.env = env;
  o.value_threshold = 512;
  o.value_log_segment_bytes = 16 << 10;
  o.value_log_gc_ratio = 0.3;
  o.value_log_gc_bytes_per_sec = 0;
  o.wal_segment_bytes = 16 << 10;
  o.value_log_gc_idle_ms = 0;  // idle checks run where the workload says
  // With idle checks, GC runs only where the workload says too (explicit GC
  // and the checks): whether a check finds a sealed segment to measure then
  // depends on the workload alone, not on how far background GC got first
  // (under ASan it had once collected every candidate before each check).
  o.disable_auto_gc = path == Path::kAsyncIdle;
  return o;
}

// One operation's writes: key -> value (nullopt: delete). Values name the op.
// A few also delete a range of keys [first, second) (the batch's own writes
// survive it: they share its timestamp).
using Writes = std::vector<std::pair<std::string, std::optional<std::string>>>;
struct Op {
  Writes writes;
  std::vector<std::pair<std::string, std::string>> ranges;
  bool sync;
};

constexpr int kKeys = 60;

// What op leaves in each key it touches: the keys of the workload's universe
// its ranges delete, unless its own writes (the last to a key wins) set them.
Writes Effects(const Op& op) {
  std::map<std::string, std::optional<std::string>> last;
  for (const auto& [a, b] : op.ranges) {
    for (int j = 0; j < kKeys; j++) {
      std::string key = "k" + std::to_string(j);
      if (key >= a && key < b) last[key] = std::nullopt;
    }
  }
  for (const auto& [k, v] : op.writes) last[k] = v;
  return Writes(last.begin(), last.end());
}

std::vector<Op> Workload(uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  std::vector<Op> ops;
  for (int i = 0; i < n; i++) {
    Op op;
    op.sync = rng() % 5 == 0;
    int keys = rng() % 6 == 0 ? 2 + rng() % 4 : 1;
    if (rng() % 32 == 0) {  /* rare: a range holds a third of the keys on average */
      std::string a = "k" + std::to_string(rng() % kKeys), b = "k" + std::to_string(rng() % kKeys);
      if (b < a) std::swap(a, b);
      if (a != b) op.ranges.emplace_back(a, b);
    }
    for (int k = 0; k < keys; k++) {
      std::string key = "k" + std::to_string(rng() % kKeys);
      if (rng() % 8 == 0) {
        op.writes.emplace_back(key, std::nullopt);
      } else {
        std::string v = std::to_string(i) + ":" + key + ":";
        v.resize(rng() % 3 == 0 ? 600 + rng() % 1500 : 20 + rng() % 60, 'a' + i % 26);
        op.writes.emplace_back(key, v);
      }
    }
    ops.push_back(std::move(op));
  }
  return ops;
}

nokv_batch* Batch(const Op& op) {
  nokv_batch* b;
  if (nokv_batch_new(&b) != NOKV_OK) return nullptr;
  for (const auto& [first, end] : op.ranges) {
    nokv_batch_delete_range(b, first.data(), first.size(), end.data(), end.size());
  }
  for (const auto& [k, v] : op.writes) {
    if (v && v->size() % 4 == 0) {  // expiring, but not within the test
      nokv_batch_put_ttl(b, k.data(), k.size(), v->data(), v->size(), 24 * 3600 * 1000);
    } else if (v) {
      nokv_batch_put(b, k.data(), k.size(), v->data(), v->size());
    } else {
      nokv_batch_delete(b, k.data(), k.size());
    }
  }
  return b;
}

// What a run left: ops [0, acked) were acknowledged, ops [0, durable) were made
// durable by a synced acknowledgement before the power went off, and ops
// [acked, begun) may or may not have been applied.
struct Outcome {
  int acked = 0;
  int durable = 0;
  int begun = 0;
};

// A flush, compaction, GC or idle check after some ops.
void Maintain(nokv_db* db, size_t i, Path path) {
  if (i % 40 == 39) nokv_flush(db);
  if (i % 90 == 89) nokv_compact(db);
  if (i % 70 == 69) nokv_vlog_gc(db, 0.2, nullptr);
  if (path == Path::kAsyncIdle && i % 25 == 24) nk_db_idle_check(db);
}

Outcome RunOneByOne(nokv_db* db, const std::vector<Op>& ops, FaultEnv* fault, Path path) {
  Outcome out;
  for (size_t i = 0; i < ops.size(); i++) {
    Maintain(db, i, path);
    // A replica's background sync: it marks the logs in the write queue and
    // fsyncs them after leaving it. Once it returns, ops [0, i) are durable.
    if (i % 30 == 29 && nokv_sync(db) == NOKV_OK && !fault->powered_off()) {
      out.durable = std::max(out.durable, static_cast<int>(i));
    }
    nokv_batch* b = Batch(ops[i]);
    nokv_write_options wo{};
    wo.sync = ops[i].sync;
    int rc = b == nullptr ? NOKV_ENOMEM : nokv_write(db, &wo, b, nullptr);
    nokv_batch_free(b);
    out.begun = static_cast<int>(i) + 1;
    if (rc != NOKV_OK) return out;
    out.acked = static_cast<int>(i) + 1;
    if (ops[i].sync && !fault->powered_off()) out.durable = out.acked;
  }
  return out;
}

// Ops go out in windows of kWindow async writes; flushes, compactions and GC
// run while a window is in flight. A window's completions are awaited before
// the next; the run stops after the first window with a failure.
Outcome RunAsync(nokv_db* db, const std::vector<Op>& ops, FaultEnv* fault, Path path) {
  constexpr size_t kWindow = 6;
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;
    std::vector<int> rc;
    std::vector<bool> synced;  // acknowledged as synced while the power was on
    FaultEnv* fault;
  } done;
  done.rc.assign(ops.size(), NOKV_OK);
  done.synced.assign(ops.size(), false);
  done.fault = fault;
  struct Slot {
    Done* done;
    size_t i;
    bool sync;
  };
  std::vector<Slot> slots(ops.size());
  std::vector<nokv_batch*> batches(ops.size(), nullptr);
  auto on_done = [](void* arg, int rc, uint64_t, const char*) {
    Slot* s = static_cast<Slot*>(arg);
    bool on = !s->done->fault->powered_off();
    std::lock_guard<std::mutex> l(s->done->mu);
    s->done->rc[s->i] = rc;
    s->done->synced[s->i] = rc == NOKV_OK && s->sync && on;
    if (--s->done->left == 0) s->done->cv.notify_all();
  };
  Outcome out;
  size_t first_failed = ops.size();
  for (size_t start = 0; start < ops.size() && first_failed == ops.size(); start += kWindow) {
    size_t end = std::min(ops.size(), start + kWindow);
    for (size_t i = start; i < end; i++) {
      batches[i] = Batch(ops[i]);
      slots[i] = Slot{&done, i, ops[i].sync};
      nokv_write_options wo{};
      wo.sync = ops[i].sync;
      {
        std::lock_guard<std::mutex> l(done.mu);
        done.left++;
      }
      int rc = batches[i] == nullptr ? NOKV_ENOMEM
                                     : nokv_write_async(db, &wo, batches[i], on_done, &slots[i]);
      out.begun = static_cast<int>(i) + 1;
      if (rc != NOKV_OK) {
        std::lock_guard<std::mutex> l(done.mu);
        done.left--;
        done.rc[i] = rc;
        break;
      }
      Maintain(db, i, path);
    }
    std::unique_lock<std::mutex> l(done.mu);
    done.cv.wait(l, [&] { return done.left == 0; });
    for (size_t i = start; i < end; i++) {
      if (done.rc[i] != NOKV_OK && first_failed == ops.size()) first_failed = i;
    }
  }
  for (nokv_batch* b : batches) nokv_batch_free(b);
  out.acked = static_cast<int>(first_failed);
  for (size_t i = 0; i < first_failed; i++) {
    if (done.synced[i]) out.durable = static_cast<int>(i) + 1;
  }
  return out;
}

Outcome RunWorkload(nokv_db* db, const std::vector<Op>& ops, FaultEnv* fault, Path path) {
  return path == Path::kWrite ? RunOneByOne(db, ops, fault, path)
                              : RunAsync(db, ops, fault, path);
}

// Every key must hold the value of the newest write to it among ops [0, durable)
// or of a later one among [durable, acked_or_begun).
::testing::AssertionResult Holds(nokv_db* db, const std::vector<Op>& ops, int durable,
                                 int upto) {
  std::map<std::string, std::vector<std::pair<int, std::optional<std::string>>>> hist;
  for (int i = 0; i < upto && i < static_cast<int>(ops.size()); i++) {
    for (const auto& [k, v] : Effects(ops[i])) hist[k].emplace_back(i, v);
  }
  for (const auto& [k, h] : hist) {
    int rc = NOKV_OK;
    auto got = nokv_test::Get(db, k, 0, &rc);
    if (rc != NOKV_OK && rc != NOKV_ENOTFOUND) {
      return ::testing::AssertionFailure() << k << ": " << nokv_errmsg();
    }
    std::optional<std::string> actual = got ? std::optional<std::string>(got->data) : std::nullopt;
    // Allowed: the newest write before `durable` (or absence if none), or any
    // write after it.
    std::vector<std::optional<std::string>> allowed;
    std::optional<std::string> base;  // before any write: absent
    for (const auto& [i, v] : h) {
      if (i < durable) {
        base = v;
      } else {
        allowed.push_back(v);
      }
    }
    allowed.push_back(base);
    bool ok = false;
    for (const auto& a : allowed) ok = ok || a == actual;
    if (!ok) {
      return ::testing::AssertionFailure()
             << k << " holds " << (actual ? actual->substr(0, 12) : "nothing")
             << ", durable through op " << durable;
    }
  }
  return ::testing::AssertionSuccess();
}

// Stronger, for a power cut (where no write fails): the database holds exactly
// the result of ops [0, k) for some k in [durable, upto]. A replay that went on
// past a hole in the log (a torn segment followed by intact later ones) would
// leave a state no prefix gives.
::testing::AssertionResult HoldsAPrefix(nokv_db* db, const std::vector<Op>& ops, int durable,
                                        int upto) {
  upto = std::min(upto, static_cast<int>(ops.size()));
  std::map<std::string, std::optional<std::string>> actual;
  for (int i = 0; i < upto; i++) {
    for (const auto& [k, v] : Effects(ops[i])) {
      if (actual.count(k)) continue;
      int rc = NOKV_OK;
      auto got = nokv_test::Get(db, k, 0, &rc);
      if (rc != NOKV_OK && rc != NOKV_ENOTFOUND) {
        return ::testing::AssertionFailure() << k << ": " << nokv_errmsg();
      }
      actual[k] = got ? std::optional<std::string>(got->data) : std::nullopt;
    }
  }
  std::map<std::string, std::optional<std::string>> state;  // after ops [0, k)
  for (const auto& [k, v] : actual) state[k] = std::nullopt;
  for (int k = 0; k <= upto; k++) {
    if (k >= durable && state == actual) return ::testing::AssertionSuccess();
    if (k < upto) {
      for (const auto& [key, v] : Effects(ops[k])) state[key] = v;
    }
  }
  return ::testing::AssertionFailure()
         << "the keys hold no prefix of ops [0, k) for k in [" << durable << ", " << upto << "]";
}

class FaultSweepTest : public ::testing::TestWithParam<Path> {};

TEST_P(FaultSweepTest, PowerLossAtEverySyncPointKeepsEverySyncedWrite) {
  std::vector<Op> ops = Workload(nokv_test::TestSeed(), SweepOps());
  int points = 0;
  {
    TempDir dir;
    FaultEnv fault;
    nokv_options o = Options(fault.env(), GetParam());
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
    ASSERT_EQ(RunWorkload(db, ops, &fault, GetParam()).acked, static_cast<int>(ops.size()));
    nokv_statistics st = nokv_test::Stats(db);
    printf("gc: %llu segments collected; idle checks: %llu, %llu segments measured\n",
           (unsigned long long)st.gc_segments_collected, (unsigned long long)st.gc_idle_checks,
           (unsigned long long)st.gc_segments_measured);
    EXPECT_GT(st.gc_segments_collected, 0u);
    if (GetParam() == Path::kAsyncIdle) {
      EXPECT_GT(st.gc_segments_measured, 0u);
    }
    ASSERT_EQ(nokv_close(db), NOKV_OK);
    points = fault.sync_calls();
  }
  ASSERT_GT(points, 20);
  int checked = 0;
  for (int k = 1; k <= points; k++) {
    TempDir dir;
    FaultEnv fault;
    nokv_options o = Options(fault.env(), GetParam());
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
    fault.PowerOffAtSync(k - fault.sync_calls());
    if (fault.powered_off()) {  // the open itself used it up
      nokv_close(db);
      continue;
    }
    Outcome run = RunWorkload(db, ops, &fault, GetParam());
    nokv_close(db);
    fault.DropUnsynced();
    FaultEnv fresh;
    nokv_options ro = Options(fresh.env(), GetParam());
    ASSERT_EQ(nokv_open(dir.path().c_str(), &ro, &db), NOKV_OK)
        << "power cut at sync " << k << ": " << nokv_errmsg();
    ASSERT_TRUE(Holds(db, ops, run.durable, run.begun)) << "power cut at sync " << k;
    ASSERT_TRUE(HoldsAPrefix(db, ops, run.durable, run.begun)) << "power cut at sync " << k;
    ASSERT_EQ(nokv_close(db), NOKV_OK);
    checked++;
  }
  printf("power cut at %d of %d sync points\n", checked, points);
  EXPECT_GT(checked, points / 2);
}

TEST_P(FaultSweepTest, AnyFailedCallDuringWritesLosesNothingAcknowledged) {
  std::vector<Op> ops = Workload(nokv_test::TestSeed(), SweepOps() / 2);
  const FaultEnv::Op kinds[] = {FaultEnv::kOpen,   FaultEnv::kRead,     FaultEnv::kAppend,
                                FaultEnv::kSync,   FaultEnv::kRename,   FaultEnv::kRemove,
                                FaultEnv::kSyncDir, FaultEnv::kTruncate, FaultEnv::kList};
  int runs = 0, stopped = 0;
  for (FaultEnv::Op kind : kinds) {
    for (int err : {EIO, ENOSPC, EACCES, EMFILE}) {
      for (int skip = 0; skip < 64; skip += 7) {
        TempDir dir;
        FaultEnv fault;
        nokv_options o = Options(fault.env(), GetParam());
        nokv_db* db;
        ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
        fault.FailCalls(kind, err, "", 1, skip);
        Outcome run = RunWorkload(db, ops, &fault, GetParam());
        bool hit = fault.injected() > 0;
        fault.ClearRule();
        nokv_close(db);
        runs++;
        stopped += run.acked < static_cast<int>(ops.size());
        ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK)
            << "call " << kind << " errno " << err << " skip " << skip << ": " << nokv_errmsg();
        // Without a power cut every acknowledged write survives.
        ASSERT_TRUE(Holds(db, ops, run.acked, run.begun))
            << "call " << kind << " errno " << err << " skip " << skip;
        ASSERT_EQ(nokv_close(db), NOKV_OK);
        if (!hit) break;
      }
    }
  }
  printf("%d runs with a failed call, %d stopped writing\n", runs, stopped);
  EXPECT_GT(stopped, 0);
}

INSTANTIATE_TEST_SUITE_P(Paths, FaultSweepTest,
                         ::testing::Values(Path::kWrite, Path::kAsyncIdle),
                         [](const ::testing::TestParamInfo<Path>& p) {
                           return p.param == Path::kWrite ? "Write" : "AsyncWithIdleChecks";
                         });

}  // namespace
