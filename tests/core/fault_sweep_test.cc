// Sweeps of the file layer's failures over a whole workload (puts on both sides
// of the value-log threshold, deletes, batches, synced and not, flushes,
// compactions and value-log GC):
//  - the power goes off at every sync point in turn (every byte not fsync'ed is
//    lost, names not made durable vanish): after the reopen every write is there
//    that a sync acknowledged, directly or by coming before one;
//  - every kind of file call fails with each of several errnos at successive
//    call sites: the workload stops or goes on with clear errors, and a clean
//    reopen finds every acknowledged write.
// $NOKV_SWEEP_OPS sizes the workload (default 160).
#include <errno.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

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

nokv_options Options(const nokv_env* env) {
  nokv_options o;
  nokv_test::TinyLsmOptions(&o);
  o.env = env;
  o.value_threshold = 512;
  o.value_log_segment_bytes = 16 << 10;
  o.value_log_gc_ratio = 0.3;
  o.value_log_gc_bytes_per_sec = 0;
  o.wal_segment_bytes = 16 << 10;
  return o;
}

// One operation's writes: key -> value (nullopt: delete). Values name the op.
struct Op {
  std::vector<std::pair<std::string, std::optional<std::string>>> writes;
  bool sync;
};

std::vector<Op> Workload(uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  std::vector<Op> ops;
  for (int i = 0; i < n; i++) {
    Op op;
    op.sync = rng() % 5 == 0;
    int keys = rng() % 6 == 0 ? 2 + rng() % 4 : 1;
    for (int k = 0; k < keys; k++) {
      std::string key = "k" + std::to_string(rng() % 60);
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

int Apply(nokv_db* db, const Op& op) {
  nokv_batch* b;
  if (int rc = nokv_batch_new(&b); rc != NOKV_OK) return rc;
  for (const auto& [k, v] : op.writes) {
    if (v) {
      nokv_batch_put(b, k.data(), k.size(), v->data(), v->size());
    } else {
      nokv_batch_delete(b, k.data(), k.size());
    }
  }
  nokv_write_options wo{};
  wo.sync = op.sync;
  int rc = nokv_write(db, &wo, b, nullptr);
  nokv_batch_free(b);
  return rc;
}

// Runs ops[i] with a flush, compaction or GC every few; stops at the first
// failed write. Returns how many were acknowledged, and in *durable how many
// had been made durable by a synced acknowledgement before the power went off.
int RunWorkload(nokv_db* db, const std::vector<Op>& ops, FaultEnv* fault, int* durable) {
  *durable = 0;
  for (size_t i = 0; i < ops.size(); i++) {
    if (i % 40 == 39) nokv_flush(db);
    if (i % 90 == 89) nokv_compact(db);
    if (i % 70 == 69) nokv_vlog_gc(db, 0.2, nullptr);
    if (Apply(db, ops[i]) != NOKV_OK) return static_cast<int>(i);
    if (ops[i].sync && !fault->powered_off()) *durable = static_cast<int>(i) + 1;
  }
  return static_cast<int>(ops.size());
}

// Every key must hold the value of the newest write to it among ops [0, durable)
// or of a later one among [durable, acked_or_begun).
::testing::AssertionResult Holds(nokv_db* db, const std::vector<Op>& ops, int durable,
                                 int upto) {
  std::map<std::string, std::vector<std::pair<int, std::optional<std::string>>>> hist;
  for (int i = 0; i < upto && i < static_cast<int>(ops.size()); i++) {
    for (const auto& [k, v] : ops[i].writes) hist[k].emplace_back(i, v);
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

TEST(FaultSweepTest, PowerLossAtEverySyncPointKeepsEverySyncedWrite) {
  std::vector<Op> ops = Workload(nokv_test::TestSeed(), SweepOps());
  int points = 0;
  {
    TempDir dir;
    FaultEnv fault;
    nokv_options o = Options(fault.env());
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
    int durable;
    ASSERT_EQ(RunWorkload(db, ops, &fault, &durable), static_cast<int>(ops.size()));
    ASSERT_EQ(nokv_close(db), NOKV_OK);
    points = fault.sync_calls();
  }
  ASSERT_GT(points, 20);
  int checked = 0;
  for (int k = 1; k <= points; k++) {
    TempDir dir;
    FaultEnv fault;
    nokv_options o = Options(fault.env());
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
    fault.PowerOffAtSync(k - fault.sync_calls());
    if (fault.powered_off()) {  // the open itself used it up
      nokv_close(db);
      continue;
    }
    int durable = 0;
    int acked = RunWorkload(db, ops, &fault, &durable);
    nokv_close(db);
    fault.DropUnsynced();
    FaultEnv fresh;
    nokv_options ro = Options(fresh.env());
    ASSERT_EQ(nokv_open(dir.path().c_str(), &ro, &db), NOKV_OK)
        << "power cut at sync " << k << ": " << nokv_errmsg();
    ASSERT_TRUE(Holds(db, ops, durable, acked + 1)) << "power cut at sync " << k;
    ASSERT_EQ(nokv_close(db), NOKV_OK);
    checked++;
  }
  printf("power cut at %d of %d sync points\n", checked, points);
  EXPECT_GT(checked, points / 2);
}

TEST(FaultSweepTest, AnyFailedCallDuringWritesLosesNothingAcknowledged) {
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
        nokv_options o = Options(fault.env());
        nokv_db* db;
        ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
        fault.FailCalls(kind, err, "", 1, skip);
        int durable;
        int acked = RunWorkload(db, ops, &fault, &durable);
        bool hit = fault.injected() > 0;
        fault.ClearRule();
        nokv_close(db);
        runs++;
        stopped += acked < static_cast<int>(ops.size());
        ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK)
            << "call " << kind << " errno " << err << " skip " << skip << ": " << nokv_errmsg();
        // Without a power cut every acknowledged write survives.
        ASSERT_TRUE(Holds(db, ops, acked, acked + 1))
            << "call " << kind << " errno " << err << " skip " << skip;
        ASSERT_EQ(nokv_close(db), NOKV_OK);
        if (!hit) break;
      }
    }
  }
  printf("%d runs with a failed call, %d stopped writing\n", runs, stopped);
  EXPECT_GT(stopped, 0);
}

}  // namespace
