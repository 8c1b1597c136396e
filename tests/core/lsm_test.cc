// The LSM as a whole: flushes, compactions, version GC, pinned versions,
// recovery from the manifest, damaged and missing tables, write stalls.
#include <dirent.h>

#include <chrono>
#include <fstream>
#include <future>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fault_env.h"
#include "nokv/nokv.h"
#include "test_util.h"

namespace {

using nokv_test::Delete;
using nokv_test::FilesWithSuffix;
using nokv_test::Get;
using nokv_test::PollStats;
using nokv_test::Put;
using nokv_test::Stats;
using nokv_test::TempDir;

std::string Key(int i) {
  char buf[32];
  snprintf(buf, sizeof buf, "key%06d", i);
  return buf;
}

class LsmTest : public ::testing::Test {
 protected:
  LsmTest() {
    nokv_test::TinyLsmOptions(&o_);
    o_.compression_start_level = 1;
  }
  ~LsmTest() override { Close(); }
  void Open() { ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK) << nokv_errmsg(); }
  void Close() {
    if (db_ != nullptr) {
      EXPECT_EQ(nokv_close(db_), NOKV_OK);
    }
    db_ = nullptr;
  }
  // n keys of 100-byte values, version `gen` of each.
  void Fill(int n, int gen) {
    for (int i = 0; i < n; i++) {
      ASSERT_EQ(Put(db_, Key(i), Value(i, gen)), NOKV_OK);
    }
  }
  static std::string Value(int i, int gen) {
    return "v" + std::to_string(gen) + "-" + std::to_string(i) + std::string(100, 'x');
  }
  TempDir dir_;
  nokv_options o_;
  nokv_db* db_ = nullptr;
};

TEST_F(LsmTest, DataOutgrowsMemoryAndCompactionKeepsLevelsInShape) {
  Open();
  for (int gen = 0; gen < 3; gen++) Fill(20000, gen);  // ~7 MB of writes
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  nokv_statistics s = Stats(db_);
  EXPECT_GT(s.flushes, 50u);
  EXPECT_GT(s.compactions, 5u);
  EXPECT_LT(s.level_files[0], static_cast<uint64_t>(o_.l0_stop_trigger));
  EXPECT_GT(s.compaction_bytes_written, 0u);
  EXPECT_GT(s.disk_bytes_written, s.user_bytes_written);  // write amplification > 1
  for (int i = 0; i < 20000; i += 7) ASSERT_EQ(Get(db_, Key(i))->data, Value(i, 2)) << i;
  // Reads of absent keys are mostly answered by bloom filters.
  for (int i = 0; i < 2000; i++) EXPECT_FALSE(Get(db_, Key(i * 7) + "-absent"));
  s = Stats(db_);
  EXPECT_GT(s.bloom_negatives, 1000u);
  Close();
  Open();
  for (int i = 1; i < 20000; i += 7) ASSERT_EQ(Get(db_, Key(i))->data, Value(i, 2)) << i;
}

TEST_F(LsmTest, FullCompactionDropsShadowedVersionsAndTombstones) {
  Open();
  Fill(5000, 0);
  Fill(5000, 1);
  for (int i = 0; i < 5000; i += 2) ASSERT_EQ(Delete(db_, Key(i)), NOKV_OK);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  nokv_statistics s = Stats(db_);
  int levels_with_data = 0;
  for (int l = 0; l < NOKV_NUM_LEVELS; l++) levels_with_data += s.level_files[l] > 0;
  EXPECT_EQ(levels_with_data, 1);
  // What is left is one live version of 2,500 keys: about 2,500 x 110 bytes.
  EXPECT_LT(s.table_bytes, 2500u * 110 * 3 / 2);
  for (int i = 0; i < 5000; i++) {
    auto got = Get(db_, Key(i));
    if (i % 2 == 0) {
      ASSERT_FALSE(got) << i;
    } else {
      ASSERT_EQ(got->data, Value(i, 1)) << i;
    }
  }
}

TEST_F(LsmTest, SnapshotKeepsItsVersionsThroughCompaction) {
  Open();
  Fill(3000, 0);
  nokv_snapshot* snap;
  ASSERT_EQ(nokv_snapshot_create(db_, &snap), NOKV_OK);
  Fill(3000, 1);
  for (int i = 0; i < 3000; i += 3) ASSERT_EQ(Delete(db_, Key(i)), NOKV_OK);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  nokv_read_options ro;
  nokv_read_options_init(&ro);
  ro.snapshot = snap;
  for (int i = 0; i < 3000; i++) {
    void* v;
    size_t n;
    ASSERT_EQ(nokv_get(db_, &ro, Key(i).data(), Key(i).size(), &v, &n, nullptr), NOKV_OK) << i;
    EXPECT_EQ(std::string(static_cast<char*>(v), n), Value(i, 0));
    nokv_free(v);
    auto now = Get(db_, Key(i));
    if (i % 3 == 0) {
      EXPECT_FALSE(now);
    } else {
      EXPECT_EQ(now->data, Value(i, 1));
    }
  }
  nokv_snapshot_release(db_, snap);
  uint64_t with_snapshot = Stats(db_).table_bytes;
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  EXPECT_LT(Stats(db_).table_bytes, with_snapshot * 2 / 3);  // old versions gone now
}

TEST_F(LsmTest, IteratorPinsItsTablesWhileCompactionReplacesThem) {
  Open();
  Fill(4000, 0);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db_, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
  nokv_iter_seek_first(it);
  Fill(4000, 1);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);  // replaces every table the iterator reads
  uint64_t deleted_while_pinned = Stats(db_).tables_deleted;
  int n = 0;
  for (; nokv_iter_valid(it); nokv_iter_next(it), n++) {
    size_t kl, vl;
    const char* k = static_cast<const char*>(nokv_iter_key(it, &kl));
    const char* v = static_cast<const char*>(nokv_iter_value(it, &vl));
    ASSERT_EQ(std::string(k, kl), Key(n));
    ASSERT_EQ(std::string(v, vl), Value(n, 0));
  }
  EXPECT_EQ(nokv_iter_status(it), NOKV_OK);
  EXPECT_EQ(n, 4000);
  nokv_iter_close(it);
  // Releasing the last pin hands the replaced tables to the background deleter
  // (the closing thread does not wait for the unlinks); they go once it ran.
  nokv_statistics s = PollStats(db_, [](const nokv_statistics& s) {
    return s.files_pending_delete == 0;
  });
  EXPECT_GT(s.tables_deleted, deleted_while_pinned);
  EXPECT_EQ(FilesWithSuffix(dir_.path(), ".sst").size(), s.tables);
}

// The reader that releases the last pin on replaced tables only queues their
// deletion: with every unlink stalled, closing the iterator returns, and reads
// and writes go on, until the background deleter gets through.
TEST_F(LsmTest, ReleasingTheLastPinDoesNotWaitForUnlinks) {
  nokv_test::FaultEnv fault;
  o_.env = fault.env();
  Open();
  Fill(4000, 0);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db_, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
  Fill(4000, 1);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);  // the iterator pins every replaced table
  fault.HoldRemoves(true);
  auto closed = std::async(std::launch::async, [it] { nokv_iter_close(it); });
  bool returned = closed.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  fault.WaitForHeldRemove();  // the deleter is stuck in an unlink
  EXPECT_TRUE(returned) << "nokv_iter_close waited for an unlink";
  EXPECT_GT(Stats(db_).files_pending_delete, 0u);
  ASSERT_EQ(Put(db_, "during", "x"), NOKV_OK);
  EXPECT_EQ(Get(db_, Key(7))->data, Value(7, 1));
  fault.HoldRemoves(false);
  closed.wait();
  nokv_statistics s = PollStats(db_, [](const nokv_statistics& s) {
    return s.files_pending_delete == 0;
  });
  EXPECT_EQ(FilesWithSuffix(dir_.path(), ".sst").size(), s.tables);
  Close();  // before the env goes
}

// A large compaction is split by key range into parts written by parallel
// threads; every version and tombstone comes out as a single-threaded merge
// would leave it, and the levels stay sorted and disjoint.
TEST_F(LsmTest, SubcompactionsSplitByKeyRangeAndLoseNothing) {
  for (int parts : {1, 8}) {
    SCOPED_TRACE(parts);
    TempDir dir;
    nokv_options o = o_;
    o.max_subcompactions = parts;
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    for (int gen = 0; gen < 3; gen++) {
      for (int i = 0; i < 20000; i++) {
        if (gen == 2 && i % 5 == 0) {
          ASSERT_EQ(nokv_test::Delete(db, Key(i)), NOKV_OK);
        } else {
          ASSERT_EQ(Put(db, Key(i), Value(i, gen)), NOKV_OK);
        }
      }
    }
    ASSERT_EQ(nokv_compact(db), NOKV_OK);
    nokv_statistics s = Stats(db);
    if (parts == 1) {
      EXPECT_EQ(s.subcompactions, 0u);
    } else {
      EXPECT_GT(s.subcompactions, 0u);
    }
    nokv_iter* it;
    ASSERT_EQ(nokv_iter_new(db, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
    int i = 0;
    for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it), i++) {
      while (i % 5 == 0) i++;  // deleted
      size_t kl, vl;
      const char* k = static_cast<const char*>(nokv_iter_key(it, &kl));
      const char* v = static_cast<const char*>(nokv_iter_value(it, &vl));
      ASSERT_EQ(std::string(k, kl), Key(i));
      ASSERT_EQ(std::string(v, vl), Value(i, 2));
    }
    EXPECT_EQ(nokv_iter_status(it), NOKV_OK);
    EXPECT_EQ(i, 20000);
    nokv_iter_close(it);
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
}

TEST_F(LsmTest, MissingTableFailsOpenWithItsName) {
  Open();
  Fill(3000, 0);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  Close();
  auto tables = FilesWithSuffix(dir_.path(), ".sst");
  ASSERT_FALSE(tables.empty());
  ASSERT_EQ(remove(dir_.file(tables[0]).c_str()), 0);
  ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_ECORRUPT);
  db_ = nullptr;
  EXPECT_NE(std::string(nokv_errmsg()).find(tables[0]), std::string::npos) << nokv_errmsg();
  EXPECT_NE(std::string(nokv_errmsg()).find("missing"), std::string::npos) << nokv_errmsg();
}

TEST_F(LsmTest, FlippedByteInATableIsAChecksumErrorNotWrongData) {
  o_.block_cache_bytes = 0;
  Open();
  Fill(2000, 0);
  ASSERT_EQ(nokv_compact(db_), NOKV_OK);
  Close();
  auto tables = FilesWithSuffix(dir_.path(), ".sst");
  ASSERT_FALSE(tables.empty());
  {
    std::fstream f(dir_.file(tables[0]), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(10);
    char c;
    f.read(&c, 1);
    c ^= 0x01;
    f.seekp(10);
    f.write(&c, 1);
  }
  Open();
  int corrupt = 0, ok = 0;
  for (int i = 0; i < 2000; i++) {
    int rc;
    auto got = Get(db_, Key(i), 0, &rc);
    if (rc == NOKV_ECORRUPT) {
      corrupt++;
      EXPECT_NE(std::string(nokv_errmsg()).find("checksum"), std::string::npos);
    } else {
      ASSERT_EQ(rc, NOKV_OK) << i;
      ASSERT_EQ(got->data, Value(i, 0)) << i;  // never wrong data
      ok++;
    }
  }
  EXPECT_GT(corrupt, 0);
  EXPECT_GT(ok, 1000);
  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db_, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
  }
  EXPECT_EQ(nokv_iter_status(it), NOKV_ECORRUPT);
  nokv_iter_close(it);
  EXPECT_GT(Stats(db_).checksum_errors, 0u);
}

TEST_F(LsmTest, DamagedManifestOrDanglingCurrentFailsOpenClearly) {
  o_.manifest_max_bytes = 1 << 20;
  Open();
  for (int gen = 0; gen < 3; gen++) {
    Fill(2000, gen);
    ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  }
  Close();
  std::string current;
  {
    std::ifstream f(dir_.file("CURRENT"));
    std::getline(f, current);
  }
  const std::string manifest = dir_.file(current);
  std::string bytes = nokv_test::ReadFile(manifest);
  ASSERT_GT(bytes.size(), 200u);
  // A flipped byte in the first (snapshot) record, with intact records after it.
  std::string damaged = bytes;
  damaged[20] ^= 0x10;
  nokv_test::WriteFile(manifest, damaged);
  ASSERT_EQ(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_ECORRUPT);
  db_ = nullptr;
  EXPECT_NE(std::string(nokv_errmsg()).find("manifest"), std::string::npos) << nokv_errmsg();
  EXPECT_NE(std::string(nokv_errmsg()).find(current), std::string::npos) << nokv_errmsg();
  // CURRENT naming a manifest that is not there.
  nokv_test::WriteFile(manifest, bytes);
  { std::ofstream(dir_.file("CURRENT"), std::ios::trunc) << "MANIFEST-99999999\n"; }
  ASSERT_NE(nokv_open(dir_.path().c_str(), &o_, &db_), NOKV_OK);
  db_ = nullptr;
  EXPECT_NE(std::string(nokv_errmsg()).find("MANIFEST-99999999"), std::string::npos)
      << nokv_errmsg();
  // Restored, everything is back.
  { std::ofstream(dir_.file("CURRENT"), std::ios::trunc) << current << "\n"; }
  Open();
  for (int i = 0; i < 2000; i += 3) ASSERT_EQ(Get(db_, Key(i))->data, Value(i, 2)) << i;
}

TEST_F(LsmTest, OrphanTablesAndStaleManifestsAreRemovedAtOpen) {
  Open();
  Fill(1000, 0);
  Close();
  { std::ofstream(dir_.file("99999990.sst")) << "half-written table from a crash"; }
  // A manifest CURRENT does not name (a crash before CURRENT moved to it).
  { std::ofstream(dir_.file("MANIFEST-00000000")) << "stale"; }
  o_.disable_auto_compaction = true;  // nothing may write tables while we count them
  Open();
  auto tables = FilesWithSuffix(dir_.path(), ".sst");
  EXPECT_EQ(std::count(tables.begin(), tables.end(), "99999990.sst"), 0);
  EXPECT_EQ(tables.size(), Stats(db_).tables);
  int manifests = 0;
  DIR* d = opendir(dir_.path().c_str());
  while (struct dirent* e = readdir(d)) manifests += std::string(e->d_name).rfind("MANIFEST-", 0) == 0;
  closedir(d);
  EXPECT_EQ(manifests, 1);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(Get(db_, Key(i))->data, Value(i, 0));
}

TEST_F(LsmTest, ManifestIsRewrittenAsASnapshotWhenItGrows) {
  o_.manifest_max_bytes = 4096;
  Open();
  for (int gen = 0; gen < 4; gen++) Fill(5000, gen);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  EXPECT_GT(Stats(db_).manifest_rewrites, 0u);
  Close();
  Open();
  for (int i = 0; i < 5000; i += 3) ASSERT_EQ(Get(db_, Key(i))->data, Value(i, 3));
}

TEST_F(LsmTest, WritersStallWhileFlushesLagAndResumeAfterwards) {
  nokv_test::FaultEnv fault;
  o_.env = fault.env();
  o_.max_immutable_memtables = 1;
  Open();
  fault.HoldTableSyncs(true);
  std::thread writer([&] { Fill(3000, 0); });  // ~350 KB: more than two memtables
  fault.WaitForHeldSync();                     // the first flush is stuck
  // With one memtable sealed and unflushable, the writer must stall, not fail.
  while (Stats(db_).write_stalls == 0) std::this_thread::yield();
  fault.HoldTableSyncs(false);
  writer.join();
  nokv_statistics s = Stats(db_);
  EXPECT_GE(s.write_stalls, 1u);
  EXPECT_GT(s.write_stall_micros, 0u);
  for (int i = 0; i < 3000; i++) ASSERT_EQ(Get(db_, Key(i))->data, Value(i, 0));
  Close();  // before the fault env goes away
}

TEST_F(LsmTest, FailedCompactionStopsWritesAndReopenRecoversEverything) {
  nokv_test::FaultEnv fault;
  o_.env = fault.env();
  Open();
  Fill(3000, 0);
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  fault.FailSyncs(true, ".sst");  // compaction outputs cannot be made durable
  EXPECT_EQ(nokv_compact(db_), NOKV_EIO);
  EXPECT_NE(std::string(nokv_errmsg()).find("writes stopped after a failed compaction"),
            std::string::npos)
      << nokv_errmsg();
  EXPECT_EQ(Put(db_, "more", "x"), NOKV_EIO);
  fault.FailSyncs(false);
  Close();
  EXPECT_FALSE(FilesWithSuffix(dir_.path(), ".sst").empty());
  o_.disable_auto_compaction = true;  // nothing may write tables while we count them
  Open();
  for (int i = 0; i < 3000; i++) ASSERT_EQ(Get(db_, Key(i))->data, Value(i, 0)) << i;
  EXPECT_EQ(FilesWithSuffix(dir_.path(), ".sst").size(), Stats(db_).tables);
  Close();  // before the fault env goes away
}

TEST_F(LsmTest, FailedFlushStopsWritesAndReopenRecoversEverything) {
  nokv_test::FaultEnv fault;
  o_.env = fault.env();
  Open();
  Fill(300, 0);
  fault.FailSyncs(true, ".sst");  // the flush cannot make its table durable
  int rc = NOKV_OK, written = 0;
  for (; written < 5000 && rc == NOKV_OK; written++) rc = Put(db_, Key(written), Value(written, 1));
  EXPECT_EQ(rc, NOKV_EIO);
  EXPECT_NE(std::string(nokv_errmsg()).find("writes stopped after a failed flush"),
            std::string::npos)
      << nokv_errmsg();
  EXPECT_EQ(Put(db_, "more", "x"), NOKV_EIO);
  fault.FailSyncs(false);
  Close();
  Open();
  for (int i = 0; i < written - 1; i++) ASSERT_EQ(Get(db_, Key(i))->data, Value(i, 1)) << i;
  Close();  // before the fault env goes away
}

}  // namespace
