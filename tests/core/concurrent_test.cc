// Many writers and readers on one database (run under ThreadSanitizer in CI).
// Group commit must keep each writer's order, stamp batches atomically and never
// let a reader see a later write without the earlier ones.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
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

std::string KeyOf(int writer, int i) {
  char k[32];
  snprintf(k, sizeof k, "w%d/%06d", writer, i);
  return k;
}

// Writers append batches in order; readers check, at snapshots, that each
// writer's visible keys form a prefix and every visible batch is whole. With lsm
// set, memtables are tiny and a compactor thread runs full compactions, so reads
// race with flushes, compactions and version changes.
void WritersAndReaders(const nokv_options* o, bool lsm) {
  TempDir dir;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), o, &db), NOKV_OK);
  const std::string value(lsm ? 200 : 1, 'v');
  const int kWriters = 4, kPerWriter = 1500;
  std::atomic<int> writers_left{kWriters};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; w++) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; i++) {
        // A batch of two keys: readers must see both or neither.
        nokv_batch* b;
        ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
        std::string k = KeyOf(w, i), shadow = "shadow/" + k;
        nokv_batch_put(b, k.data(), k.size(), value.data(), value.size());
        nokv_batch_put(b, shadow.data(), shadow.size(), value.data(), value.size());
        nokv_write_options wo{};
        wo.sync = i % 100 == 0;
        ASSERT_EQ(nokv_write(db, &wo, b, nullptr), NOKV_OK);
        nokv_batch_free(b);
      }
      writers_left--;
    });
  }
  if (lsm) {
    // Automatic compactions (two threads) run all along; a full manual
    // compaction now and then makes them wait for it.
    threads.emplace_back([&] {
      for (int round = 0; writers_left.load() > 0; round++) {
        if (round % 8 == 0) {
          ASSERT_EQ(nokv_compact(db), NOKV_OK) << nokv_errmsg();
        }
        ASSERT_EQ(nokv_flush(db), NOKV_OK) << nokv_errmsg();
      }
    });
  }
  for (int r = 0; r < 2; r++) {
    threads.emplace_back([&, r] {
      int rounds = 0;
      while (writers_left.load() > 0 || rounds < 3) {
        rounds++;
        nokv_snapshot* snap;
        ASSERT_EQ(nokv_snapshot_create(db, &snap), NOKV_OK);
        nokv_read_options ro{};
        ro.snapshot = snap;
        // Each writer's keys visible at a snapshot form a prefix 0..n-1.
        std::string start = "w" + std::to_string(r);
        nokv_iter* it;
        ASSERT_EQ(nokv_iter_new(db, &ro, start.data(), start.size(), nullptr, 0, &it), 0);
        int n = 0;
        for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
          size_t kl;
          const char* kp = static_cast<const char*>(nokv_iter_key(it, &kl));
          std::string k(kp, kl);
          if (k.compare(0, start.size() + 1, start + "/") != 0) break;
          ASSERT_EQ(k, KeyOf(r, n));
          n++;
        }
        nokv_iter_close(it);
        // ... and the shadow key of every visible batch is visible too.
        for (int i = 0; i < n; i += 97) {
          void* v;
          size_t vl;
          std::string shadow = "shadow/" + KeyOf(r, i);
          ASSERT_EQ(nokv_get(db, &ro, shadow.data(), shadow.size(), &v, &vl, nullptr), NOKV_OK);
          nokv_free(v);
        }
        nokv_snapshot_release(db, snap);
      }
    });
  }
  for (auto& t : threads) t.join();
  nokv_statistics s = Stats(db);
  EXPECT_EQ(s.batches, static_cast<uint64_t>(kWriters * kPerWriter));
  EXPECT_EQ(s.puts, static_cast<uint64_t>(2 * kWriters * kPerWriter));
  EXPECT_LE(s.write_groups, s.batches);
  printf("batches %llu in %llu write groups\n", (unsigned long long)s.batches,
         (unsigned long long)s.write_groups);
  if (lsm) {
    EXPECT_GT(s.flushes, 10u);
    EXPECT_GT(s.compactions + s.trivial_moves, 0u);
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), o, &db), NOKV_OK);
  for (int w = 0; w < kWriters; w++) {
    for (int i = 0; i < kPerWriter; i += 50) ASSERT_TRUE(Get(db, KeyOf(w, i))) << w << " " << i;
    ASSERT_TRUE(Get(db, KeyOf(w, kPerWriter - 1))) << w;
  }
  if (!lsm) {
    EXPECT_EQ(Stats(db).recovered_records, static_cast<uint64_t>(kWriters * kPerWriter));
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(ConcurrentTest, WritersAndReadersAgreeOnOrder) { WritersAndReaders(nullptr, false); }

TEST(ConcurrentTest, ReadsStayConsistentAcrossFlushesAndCompactions) {
  nokv_options o;
  nokv_test::TinyLsmOptions(&o);
  o.block_cache_bytes = 128 << 10;
  o.l0_compaction_trigger = 2;
  WritersAndReaders(&o, true);
}

// Value-log GC moves values while writers overwrite the same keys and readers
// (plain reads, scans and snapshots) follow pointers: no read may fail or see a
// value that is not the key's own, and every key ends with its last write. A GC
// rewrite must never bring back a value that a racing write replaced.
TEST(ConcurrentTest, ValueLogGcRacesWritersAndReaders) {
  TempDir dir;
  nokv_options o;
  nokv_test::TinyLsmOptions(&o);
  o.value_threshold = 100;
  o.value_log_segment_bytes = 32 << 10;
  o.value_log_gc_ratio = 0.2;
  o.value_log_gc_bytes_per_sec = 0;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  const int kWriters = 3, kKeys = 150, kRounds = 12;
  auto value = [](int w, int k, int round) {
    std::string v = KeyOf(w, k) + "#" + std::to_string(round) + "#";
    v.resize(300, static_cast<char>('a' + round % 26));
    return v;
  };
  auto owner_ok = [](const std::string& key, const std::string& v) {
    return v.compare(0, key.size() + 1, key + "#") == 0;
  };
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; w++) {
    threads.emplace_back([&, w] {
      for (int r = 0; r < kRounds; r++) {
        for (int k = 0; k < kKeys; k++) {
          if (Put(db, KeyOf(w, k), value(w, k, r)) != NOKV_OK) failures++;
        }
      }
    });
  }
  threads.emplace_back([&] {  // collector
    while (!stop.load()) {
      uint32_t n;
      if (nokv_vlog_gc(db, 0.2, &n) != NOKV_OK) failures++;
      if (nokv_compact(db) != NOKV_OK) failures++;
    }
  });
  threads.emplace_back([&] {  // reader
    // A key's round, read at the latest timestamp, never goes back: a GC
    // rewrite that raced a newer write (and a flush of it) would show here.
    std::vector<int> last_round(kKeys, -1);
    while (!stop.load()) {
      nokv_snapshot* snap;
      if (nokv_snapshot_create(db, &snap) != NOKV_OK) {
        failures++;
        continue;
      }
      nokv_read_options ro;
      nokv_read_options_init(&ro);
      ro.snapshot = snap;
      nokv_iter* it;
      if (nokv_iter_new(db, &ro, "", 0, nullptr, 0, &it) != NOKV_OK) {
        failures++;
      } else {
        for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
          size_t kn, vn;
          const char* k = static_cast<const char*>(nokv_iter_key(it, &kn));
          const char* v = static_cast<const char*>(nokv_iter_value(it, &vn));
          if (!owner_ok(std::string(k, kn), std::string(v, vn))) failures++;
        }
        if (nokv_iter_status(it) != NOKV_OK) failures++;
        nokv_iter_close(it);
      }
      for (int k = 0; k < kKeys; k += 7) {
        int rc = NOKV_OK;
        auto got = Get(db, KeyOf(k % kWriters, k), 0, &rc);
        if (rc != NOKV_OK && rc != NOKV_ENOTFOUND) failures++;
        if (got && !owner_ok(KeyOf(k % kWriters, k), got->data)) failures++;
        if (got) {
          int round = atoi(got->data.c_str() + KeyOf(k % kWriters, k).size() + 1);
          if (round < last_round[k]) failures++;
          last_round[k] = round;
        }
      }
      nokv_snapshot_release(db, snap);
    }
  });
  for (int w = 0; w < kWriters; w++) threads[w].join();
  stop = true;
  for (size_t i = kWriters; i < threads.size(); i++) threads[i].join();
  EXPECT_EQ(failures.load(), 0) << nokv_errmsg();
  uint32_t n;
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  ASSERT_EQ(nokv_vlog_gc(db, 0.2, &n), NOKV_OK);
  nokv_statistics st = Stats(db);
  printf("gc: %llu segments collected, %llu bytes rewritten\n",
         static_cast<unsigned long long>(st.gc_segments_collected),
         static_cast<unsigned long long>(st.gc_bytes_rewritten));
  EXPECT_GT(st.gc_segments_collected, 0u);
  for (int w = 0; w < kWriters; w++) {
    for (int k = 0; k < kKeys; k++) {
      auto got = Get(db, KeyOf(w, k));
      ASSERT_TRUE(got.has_value()) << KeyOf(w, k);
      ASSERT_EQ(got->data, value(w, k, kRounds - 1)) << KeyOf(w, k);
    }
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// The bank: accounts whose total must never change. Transfer threads move
// random amounts between random accounts in transactions, retrying on
// conflict, for a fixed time ($NOKV_BANK_MS, default 1500 ms); auditors sum
// every account while they run, one in read-only transactions and one at plain
// snapshots. Every audit and the final state must see the same total, and every
// transfer eventually commits.
TEST(ConcurrentTest, BankTransfersKeepTheTotal) {
  TempDir dir;
  nokv_options o;
  nokv_test::TinyLsmOptions(&o);  // flushes and compactions race the transfers too
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  const int kAccounts = 8, kThreads = 4, kStart = 1000;
  const char* env_ms = getenv("NOKV_BANK_MS");
  const auto run_for = std::chrono::milliseconds(env_ms != nullptr ? atoi(env_ms) : 1500);
  auto acct = [](int i) { return "acct" + std::to_string(100 + i); };
  for (int i = 0; i < kAccounts; i++) ASSERT_EQ(Put(db, acct(i), std::to_string(kStart)), NOKV_OK);
  auto read = [](nokv_txn* t, const std::string& k, int* out) {
    void* v;
    size_t n;
    if (nokv_txn_get(t, k.data(), k.size(), &v, &n) != NOKV_OK) return false;
    *out = std::stoi(std::string(static_cast<char*>(v), n));
    nokv_free(v);
    return true;
  };
  // Sums the accounts through it; -1 if the iterator fails.
  auto sum = [](nokv_iter* it) {
    int total = 0;
    for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
      size_t n;
      const char* v = static_cast<const char*>(nokv_iter_value(it, &n));
      total += std::stoi(std::string(v, n));
    }
    int rc = nokv_iter_status(it);
    nokv_iter_close(it);
    return rc == NOKV_OK ? total : -1;
  };
  std::atomic<int> failures{0}, conflicts{0}, transfers{0}, audits{0}, bad_audits{0};
  std::atomic<bool> stop{false};
  const auto deadline = std::chrono::steady_clock::now() + run_for;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      uint64_t x = 88172645463325252ull + t;
      auto rnd = [&x] { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; };
      while (std::chrono::steady_clock::now() < deadline) {
        int from = static_cast<int>(rnd() % kAccounts), to = static_cast<int>(rnd() % kAccounts);
        int amount = static_cast<int>(rnd() % 50);
        for (;;) {  // until it commits: a transfer is never given up
          nokv_txn* txn;
          if (nokv_txn_begin(db, 0, &txn) != NOKV_OK) { failures++; return; }
          int a = 0, b = 0;
          if (!read(txn, acct(from), &a) || !read(txn, acct(to), &b)) {
            failures++;
            nokv_txn_discard(txn);
            return;
          }
          std::string na = std::to_string(a - amount), nb = std::to_string(b + amount);
          if (from != to) {
            nokv_txn_put(txn, acct(from).data(), acct(from).size(), na.data(), na.size());
            nokv_txn_put(txn, acct(to).data(), acct(to).size(), nb.data(), nb.size());
          }
          int rc = nokv_txn_commit(txn, nullptr, nullptr);
          if (rc == NOKV_OK) break;
          if (rc != NOKV_ECONFLICT) { failures++; return; }
          conflicts++;
        }
        transfers++;
      }
    });
  }
  auto audit = [&](int total) {
    audits++;
    if (total != kAccounts * kStart) bad_audits++;
  };
  std::thread txn_auditor([&] {
    while (!stop.load()) {
      nokv_txn* txn;
      nokv_iter* it;
      if (nokv_txn_begin(db, NOKV_TXN_READ_ONLY, &txn) != NOKV_OK) { failures++; return; }
      if (nokv_txn_iter_new(txn, "acct", 4, "acct~", 5, &it) == NOKV_OK) {
        audit(sum(it));
      } else {
        failures++;
      }
      nokv_txn_discard(txn);
    }
  });
  std::thread snapshot_auditor([&] {
    while (!stop.load()) {
      nokv_snapshot* snap;
      nokv_iter* it;
      if (nokv_snapshot_create(db, &snap) != NOKV_OK) { failures++; return; }
      nokv_read_options ro = {};
      ro.snapshot = snap;
      if (nokv_iter_new(db, &ro, "acct", 4, "acct~", 5, &it) == NOKV_OK) {
        audit(sum(it));
      } else {
        failures++;
      }
      nokv_snapshot_release(db, snap);
    }
  });
  std::thread compactor([&] {
    while (!stop.load()) {
      if (nokv_compact(db) != NOKV_OK) failures++;
    }
  });
  for (auto& th : threads) th.join();
  stop = true;
  txn_auditor.join();
  snapshot_auditor.join();
  compactor.join();
  EXPECT_EQ(failures.load(), 0) << nokv_errmsg();
  EXPECT_EQ(bad_audits.load(), 0) << "of " << audits.load() << " audits";
  printf("%d transfers in %lld ms, %d conflicts retried, %d audits\n", transfers.load(),
         static_cast<long long>(run_for.count()), conflicts.load(), audits.load());
  EXPECT_GT(transfers.load(), 0);
  EXPECT_GT(audits.load(), 0);
  int total = 0;
  for (int i = 0; i < kAccounts; i++) total += std::stoi(Get(db, acct(i))->data);
  EXPECT_EQ(total, kAccounts * kStart);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(ConcurrentTest, CloseWaitsForQueuedWriters) {
  TempDir dir;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; w++) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < 200; i++) {
        if (Put(db, KeyOf(w, i), "v", true) == NOKV_OK) ok++;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK);
  EXPECT_EQ(ok.load(), 800);
  EXPECT_EQ(Stats(db).recovered_records, 800u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

}  // namespace
