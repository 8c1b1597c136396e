// The value log: separation of large values, reads through pointers, segment
// rotation, recovery (torn tails, lost values, power loss) and corruption.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "db/batch_internal.h"
#include "fault_env.h"
#include "wal/wal_format.h"
#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "test_util.h"

using namespace nokv_test;

namespace {

std::string Key(int i) {
  char b[32];
  snprintf(b, sizeof b, "key-%06d", i);
  return b;
}

// A value of n bytes that names its key and version, so a misplaced read shows.
std::string BigValue(int i, size_t n, int version = 0) {
  std::string v = "value of " + Key(i) + " v" + std::to_string(version) + ":";
  while (v.size() < n) v += static_cast<char>('a' + (v.size() * 7 + i + version) % 26);
  v.resize(n);
  return v;
}

nokv_options VlogOptions() {
  nokv_options o;
  nokv_options_init(&o);
  o.value_threshold = 512;
  return o;
}

// Every key in [0, n) reads back as BigValue(i, size, version).
void ExpectAllVersion(nokv_db* db, int n, size_t size, int version) {
  for (int i = 0; i < n; i++) {
    auto v = Get(db, Key(i));
    ASSERT_TRUE(v.has_value()) << Key(i);
    ASSERT_EQ(v->data, BigValue(i, size, version)) << Key(i);
  }
}

// Every key in [0, n) reads back as BigValue(i, size).
void ExpectAll(nokv_db* db, int n, size_t size) { ExpectAllVersion(db, n, size, 0); }

// Puts BigValue(i, size, version) for every key in [from, to); the first
// failure's code, or NOKV_OK.
int PutRange(nokv_db* db, int from, int to, size_t size, int version = 0) {
  for (int i = from; i < to; i++) {
    if (int rc = Put(db, Key(i), BigValue(i, size, version)); rc != NOKV_OK) return rc;
  }
  return NOKV_OK;
}

TEST(Vlog, LargeValuesLiveInTheLogAndReadBackEverywhere) {
  TempDir dir;
  nokv_options o = VlogOptions();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < 200; i++) {
    ASSERT_EQ(Put(db, Key(i), BigValue(i, i % 2 ? 4096 : 100)), NOKV_OK);
  }
  nokv_statistics s = Stats(db);
  // 100 large values in the log; the WAL carries only pointers for them.
  EXPECT_GE(s.vlog_bytes, 100u * 4096);
  EXPECT_LT(s.wal_bytes_written, 100u * 4096 / 4);
  auto check = [&] {
    for (int i = 0; i < 200; i++) {
      auto v = Get(db, Key(i));
      ASSERT_TRUE(v.has_value());
      ASSERT_EQ(v->data, BigValue(i, i % 2 ? 4096 : 100));
    }
    nokv_iter* it;
    ASSERT_EQ(nokv_iter_new(db, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
    int i = 0;
    for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it), i++) {
      size_t kn, vn;
      const char* k = static_cast<const char*>(nokv_iter_key(it, &kn));
      const char* v = static_cast<const char*>(nokv_iter_value(it, &vn));
      ASSERT_EQ(std::string(k, kn), Key(i));
      ASSERT_EQ(std::string(v, vn), BigValue(i, i % 2 ? 4096 : 100));
    }
    EXPECT_EQ(nokv_iter_status(it), NOKV_OK);
    EXPECT_EQ(i, 200);
    nokv_iter_close(it);
  };
  check();  // from the memtable
  ASSERT_EQ(nokv_flush(db), NOKV_OK);
  check();  // from an L0 table
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  check();  // after compaction
  EXPECT_GT(Stats(db).vlog_reads, 0u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  check();  // after reopening
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(Vlog, ThresholdZeroKeepsValuesInline) {
  TempDir dir;
  nokv_options o = VlogOptions();
  o.value_threshold = 0;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 20, 8192), NOKV_OK);
  EXPECT_LT(Stats(db).vlog_bytes, 1024u);
  ExpectAll(db, 20, 8192);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  // Reopened with separation on, old inline values and new pointers mix.
  o.value_threshold = 512;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 20, 40, 8192), NOKV_OK);
  EXPECT_GE(Stats(db).vlog_bytes, 20u * 8192);
  ExpectAll(db, 40, 8192);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(Vlog, SegmentsRotateAtTheirSize) {
  TempDir dir;
  nokv_options o = VlogOptions();
  o.value_log_segment_bytes = 64 << 10;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 300, 4000), NOKV_OK);
  auto segs = FilesWithSuffix(dir.path(), ".vlog");
  EXPECT_GE(segs.size(), 300u * 4000 / (64 << 10));
  for (const auto& name : segs) {
    EXPECT_LE(std::filesystem::file_size(dir.file(name)), 64u << 10) << name;
  }
  EXPECT_EQ(Stats(db).vlog_segments, segs.size());
  ExpectAll(db, 300, 4000);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ExpectAll(db, 300, 4000);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(Vlog, FlushRecordsTheHeadSoReopenValidatesOnlyTheTail) {
  TempDir dir;
  nokv_options o = VlogOptions();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 100, 4096), NOKV_OK);
  ASSERT_EQ(nokv_flush(db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 100, 110, 4096), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  nokv_statistics s = Stats(db);
  // The 10 unflushed values were validated (at reopen, the previous close left
  // them past the head); the 100 flushed ones were not.
  EXPECT_GE(s.vlog_validated_bytes, 10u * 4096);
  EXPECT_LT(s.vlog_validated_bytes, 50u * 4096);
  EXPECT_EQ(s.vlog_torn_bytes, 0u);
  ExpectAll(db, 110, 4096);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(Vlog, TornTailIsCutAndReported) {
  TempDir dir;
  nokv_options o = VlogOptions();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 20, 2048), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  auto segs = FilesWithSuffix(dir.path(), ".vlog");
  ASSERT_FALSE(segs.empty());
  std::string path = dir.file(segs.back());
  uintmax_t before = std::filesystem::file_size(path);
  // A crash in the middle of an append: half an entry header and some value.
  std::string garbage(1000, '\x5a');
  std::ofstream(path, std::ios::binary | std::ios::app).write(garbage.data(), garbage.size());
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  EXPECT_EQ(Stats(db).vlog_torn_bytes, garbage.size());
  EXPECT_EQ(std::filesystem::file_size(path), before);
  ExpectAll(db, 20, 2048);
  // Appends continue after the cut.
  ASSERT_EQ(PutRange(db, 20, 30, 2048), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  EXPECT_EQ(Stats(db).vlog_torn_bytes, 0u);
  ExpectAll(db, 30, 2048);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(Vlog, WalRecordsWhoseValuesWereLostAreDroppedNotLeftDangling) {
  TempDir dir;
  FaultEnv fault;
  nokv_options o = VlogOptions();
  o.env = fault.env();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 20, 2048), NOKV_OK);
  fault.PowerOff();  // kill -9: no clean close vouches for the values
  nokv_close(db);
  fault.PowerOn();
  // The WAL reached the disk but the last three values did not (no sync, then
  // power loss): cut them from the segment.
  auto segs = FilesWithSuffix(dir.path(), ".vlog");
  std::string path = dir.file(segs.back());
  uintmax_t size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 3 * (2048 + 20 + 10) + 5);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  nokv_statistics s = Stats(db);
  EXPECT_EQ(s.wal_records_dangling, 3u);
  EXPECT_GT(s.vlog_torn_bytes, 0u);
  ExpectAll(db, 17, 2048);
  for (int i = 17; i < 20; i++) EXPECT_FALSE(Get(db, Key(i)).has_value()) << Key(i);
  // Writes go on after the cut and survive another reopen.
  ASSERT_EQ(Put(db, Key(17), BigValue(17, 2048)), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  EXPECT_EQ(Get(db, Key(17))->data, BigValue(17, 2048));
  EXPECT_FALSE(Get(db, Key(18)).has_value());
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(Vlog, FlippedByteInAValueFailsThatKeyOnly) {
  TempDir dir;
  nokv_options o = VlogOptions();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 50, 4096), NOKV_OK);
  ASSERT_EQ(nokv_flush(db), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  auto segs = FilesWithSuffix(dir.path(), ".vlog");
  std::string path = dir.file(segs.front());
  std::string data = ReadFile(path);
  std::string victim = BigValue(10, 4096);
  size_t at = data.find(victim);
  ASSERT_NE(at, std::string::npos);
  data[at + 2000] ^= 0x01;
  WriteFile(path, data);

  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  int rc = NOKV_OK;
  EXPECT_FALSE(Get(db, Key(10), 0, &rc).has_value());
  EXPECT_EQ(rc, NOKV_ECORRUPT);
  EXPECT_NE(std::string(nokv_errmsg()).find("checksum"), std::string::npos) << nokv_errmsg();
  for (int i = 0; i < 50; i++) {
    if (i != 10) {
      ASSERT_EQ(Get(db, Key(i))->data, BigValue(i, 4096)) << Key(i);
    }
  }
  // A scan stops at the damaged key with the error, after the keys before it.
  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
  int seen = 0;
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) seen++;
  EXPECT_EQ(seen, 10);
  EXPECT_EQ(nokv_iter_status(it), NOKV_ECORRUPT);
  nokv_iter_close(it);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A clean close synced every value and said so with a sync point: damage
// found in any segment after it is corruption, never a torn tail.
TEST(Vlog, DamagedEntryAfterACleanCloseFailsOpen) {
  for (bool newest : {false, true}) {
    SCOPED_TRACE(newest ? "newest segment" : "an older segment");
    TempDir dir;
    nokv_options o = VlogOptions();
    o.value_log_segment_bytes = 32 << 10;
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
    ASSERT_EQ(PutRange(db, 0, 40, 4096), NOKV_OK);
    ASSERT_EQ(nokv_close(db), NOKV_OK);  // nothing flushed: every segment is past the head
    auto segs = FilesWithSuffix(dir.path(), ".vlog");
    ASSERT_GE(segs.size(), 3u);
    std::string seg = newest ? segs.back() : segs[1];
    std::string data = ReadFile(dir.file(seg));
    ASSERT_GT(data.size(), 16u + 4096u);
    data[16 + 100] ^= 0x40;  // inside the first entry
    WriteFile(dir.file(seg), data);
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_ECORRUPT);
    EXPECT_NE(std::string(nokv_errmsg()).find(seg), std::string::npos) << nokv_errmsg();
    EXPECT_NE(std::string(nokv_errmsg()).find("clean close"), std::string::npos) << nokv_errmsg();
  }
}

TEST(Vlog, SyncedLargeWritesSurvivePowerLoss) {
  TempDir dir;
  FaultEnv fenv;
  nokv_options o = VlogOptions();
  o.env = fenv.env();
  o.value_log_segment_bytes = 64 << 10;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < 60; i++) {
    ASSERT_EQ(Put(db, Key(i), BigValue(i, 3000), /*sync=*/true), NOKV_OK);
    if (i == 30) {
      ASSERT_EQ(nokv_flush(db), NOKV_OK);
    }
  }
  fenv.PowerOff();
  for (int i = 60; i < 80; i++) Put(db, Key(i), BigValue(i, 3000));  // may be lost
  nokv_close(db);
  fenv.DropUnsynced();
  FaultEnv fresh;
  o.env = fresh.env();
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ExpectAll(db, 60, 3000);
  for (int i = 60; i < 80; i++) {
    int rc = NOKV_OK;
    auto v = Get(db, Key(i), 0, &rc);
    EXPECT_TRUE(rc == NOKV_OK || rc == NOKV_ENOTFOUND) << rc;
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(Vlog, FailedValueLogWriteStopsWritesAndReopenRecovers) {
  TempDir dir;
  FaultEnv fenv;
  nokv_options o = VlogOptions();
  o.env = fenv.env();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 10, 4096), NOKV_OK);
  fenv.FailAppendsAfter(100);
  EXPECT_NE(Put(db, Key(10), BigValue(10, 4096)), NOKV_OK);
  EXPECT_NE(Put(db, Key(11), BigValue(11, 10)), NOKV_OK);  // stopped
  fenv.FailAppendsAfter(-1);
  nokv_close(db);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ExpectAll(db, 10, 4096);
  EXPECT_FALSE(Get(db, Key(10)).has_value());
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Options for GC tests: small segments so a few hundred values span many.
nokv_options GcOptions() {
  nokv_options o = VlogOptions();
  o.value_log_segment_bytes = 64 << 10;
  o.disable_auto_gc = true;
  return o;
}

TEST(VlogGc, CollectsDeadSegmentsAndKeepsEveryLiveValue) {
  TempDir dir;
  nokv_options o = GcOptions();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  const int n = 300;
  for (int round = 0; round < 3; round++) {
    // Keys below 200 are overwritten each round; the rest keep round 0.
    ASSERT_EQ(PutRange(db, 0, round == 0 ? n : 200, 4000, round), NOKV_OK);
  }
  for (int i = 250; i < 260; i++) ASSERT_EQ(Delete(db, Key(i)), NOKV_OK);
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  nokv_statistics before = Stats(db);
  EXPECT_GT(before.vlog_garbage_bytes, 200u * 2 * 4000 * 9 / 10);
  size_t files_before = FilesWithSuffix(dir.path(), ".vlog").size();

  uint32_t collected = 0;
  ASSERT_EQ(nokv_vlog_gc(db, 0.5, &collected), NOKV_OK) << nokv_errmsg();
  EXPECT_GT(collected, 0u);
  nokv_statistics after = Stats(db);
  EXPECT_EQ(after.gc_segments_collected, collected);
  EXPECT_GT(after.gc_bytes_reclaimed, 0u);
  EXPECT_LT(after.vlog_bytes, before.vlog_bytes);
  EXPECT_LT(FilesWithSuffix(dir.path(), ".vlog").size(), files_before);
  // Live data: 290 values of ~4 KiB. What is left is within 1.5x of that.
  EXPECT_LT(after.vlog_bytes, 290u * 4040 * 3 / 2);

  auto check = [&] {
    for (int i = 0; i < n; i++) {
      auto v = Get(db, Key(i));
      if (i >= 250 && i < 260) {
        EXPECT_FALSE(v.has_value()) << Key(i);
        continue;
      }
      ASSERT_TRUE(v.has_value()) << Key(i);
      ASSERT_EQ(v->data, BigValue(i, 4000, i < 200 ? 2 : 0)) << Key(i);
    }
  };
  check();
  // A second pass finds nothing more to do.
  ASSERT_EQ(nokv_vlog_gc(db, 0.5, &collected), NOKV_OK);
  EXPECT_EQ(collected, 0u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  check();
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  check();
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(VlogGc, RetiredSegmentStaysUntilReadersThatMightNeedItAreGone) {
  TempDir dir;
  nokv_options o = GcOptions();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 100, 4000), NOKV_OK);
  for (int i = 0; i < 100; i += 2) ASSERT_EQ(Put(db, Key(i), BigValue(i, 4000, 1)), NOKV_OK);
  ASSERT_EQ(nokv_compact(db), NOKV_OK);

  // An iterator and a snapshot taken now read pointers into the old segments.
  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
  nokv_snapshot* snap;
  ASSERT_EQ(nokv_snapshot_create(db, &snap), NOKV_OK);
  auto files = FilesWithSuffix(dir.path(), ".vlog");

  uint32_t collected = 0;
  ASSERT_EQ(nokv_vlog_gc(db, 0.3, &collected), NOKV_OK) << nokv_errmsg();
  ASSERT_GT(collected, 0u);
  EXPECT_EQ(Stats(db).gc_bytes_reclaimed, 0u);           // nothing deleted yet
  for (const auto& f : files) EXPECT_TRUE(std::filesystem::exists(dir.file(f))) << f;
  int i = 0;
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it), i++) {
    size_t vn;
    const char* v = static_cast<const char*>(nokv_iter_value(it, &vn));
    ASSERT_EQ(std::string(v, vn), BigValue(i, 4000, i % 2 == 0 ? 1 : 0)) << i;
  }
  ASSERT_EQ(nokv_iter_status(it), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(i, 100);
  nokv_iter_close(it);
  EXPECT_EQ(Stats(db).gc_bytes_reclaimed, 0u);  // the snapshot still pins them

  nokv_read_options ro;
  nokv_read_options_init(&ro);
  ro.snapshot = snap;
  for (int k = 0; k < 100; k++) {
    void* v;
    size_t vn;
    ASSERT_EQ(nokv_get(db, &ro, Key(k).data(), Key(k).size(), &v, &vn, nullptr), NOKV_OK)
        << nokv_errmsg();
    EXPECT_EQ(std::string(static_cast<char*>(v), vn), BigValue(k, 4000, k % 2 == 0 ? 1 : 0));
    nokv_free(v);
  }
  nokv_snapshot_release(db, snap);
  // The release queued the files; the background deleter removes them.
  nokv_statistics after = PollStats(db, [](const nokv_statistics& s) {
    return s.files_pending_delete == 0;
  });
  EXPECT_GT(after.gc_bytes_reclaimed, 0u);
  size_t gone = 0;
  for (const auto& f : files) gone += !std::filesystem::exists(dir.file(f));
  EXPECT_EQ(gone, collected);
  for (int k = 0; k < 100; k++) {
    ASSERT_EQ(Get(db, Key(k))->data, BigValue(k, 4000, k % 2 == 0 ? 1 : 0));
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(VlogGc, KeepsCommitTimestampsAndOldSnapshotsOfMovedValues) {
  TempDir dir;
  nokv_options o = GcOptions();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  std::vector<uint64_t> ts(60);
  for (int i = 0; i < 60; i++) ASSERT_EQ(Put(db, Key(i), BigValue(i, 4000), false, &ts[i]), NOKV_OK);
  for (int i = 0; i < 60; i += 3) ASSERT_EQ(Delete(db, Key(i)), NOKV_OK);
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  uint32_t collected = 0;
  ASSERT_EQ(nokv_vlog_gc(db, 0.2, &collected), NOKV_OK);
  ASSERT_GT(collected, 0u);
  EXPECT_GT(Stats(db).gc_bytes_rewritten, 0u);
  for (int i = 0; i < 60; i++) {
    auto v = Get(db, Key(i));
    if (i % 3 == 0) {
      EXPECT_FALSE(v.has_value()) << Key(i);  // GC did not bring deleted keys back
    } else {
      ASSERT_TRUE(v.has_value()) << Key(i);
      EXPECT_EQ(v->data, BigValue(i, 4000));
      EXPECT_EQ(v->commit_ts, ts[i]) << "GC must not change a version's timestamp";
    }
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(VlogGc, BackgroundGcRunsAfterCompactionReportsGarbage) {
  TempDir dir;
  nokv_options o = GcOptions();
  o.disable_auto_gc = false;
  o.value_log_gc_bytes_per_sec = 0;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int round = 0; round < 4; round++) {
    ASSERT_EQ(PutRange(db, 0, 100, 4000, round), NOKV_OK);
  }
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  // Collections run in the background, woken by the compaction's report: wait
  // (polling the stats) for the first, with no call asking for one. Then a
  // synchronous pass, which takes the GC lock after any background one is done.
  uint64_t background =
      PollStats(db, [](const nokv_statistics& s) { return s.gc_segments_collected > 0; })
          .gc_segments_collected;
  uint32_t collected = 0;
  ASSERT_EQ(nokv_vlog_gc(db, 0.99, &collected), NOKV_OK);
  nokv_statistics s = Stats(db);
  EXPECT_GT(s.gc_runs, 0u);
  EXPECT_GT(background, 0u);
  EXPECT_GE(s.gc_segments_collected, background + collected);  // background may go on too
  ExpectAllVersion(db, 100, 4000, 3);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Overwritten values on a database that then goes idle: nothing compacts, so
// no dead byte is ever reported, yet the space comes back without a call: the
// idle check flushes, measures each sealed segment and collects the dead ones.
TEST(VlogGc, IdleDatabaseMeasuresAndReclaimsOverwrittenValues) {
  TempDir dir;
  nokv_options o = GcOptions();
  o.disable_auto_gc = false;
  o.value_log_gc_bytes_per_sec = 0;
  o.value_log_gc_idle_ms = 50;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  const int n = 100;
  const size_t size = 4000;
  for (int round = 0; round < 3; round++) ASSERT_EQ(PutRange(db, 0, n, size, round), NOKV_OK);
  nokv_statistics s = Stats(db);
  EXPECT_EQ(s.compactions, 0u);
  EXPECT_EQ(s.vlog_garbage_bytes, 0u);  // nothing told the log what died
  EXPECT_GT(s.vlog_bytes, 3u * n * size);
  // Live: one version of each value, plus a segment's worth (the active one).
  const uint64_t bound = 3 * n * (size + 64) / 2 + o.value_log_segment_bytes;
  s = PollStats(db, [bound](const nokv_statistics& st) { return st.vlog_bytes <= bound; });
  EXPECT_LE(s.vlog_bytes, bound);
  EXPECT_GE(s.gc_idle_checks, 1u);
  EXPECT_GT(s.gc_segments_measured, 0u);
  EXPECT_GT(s.gc_segments_collected, 0u);
  ExpectAllVersion(db, n, size, 2);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ExpectAllVersion(db, n, size, 2);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Under a steady stream of writes the idle check never runs.
TEST(VlogGc, NoIdleCheckWhileWritesKeepComing) {
  TempDir dir;
  nokv_options o = GcOptions();
  o.disable_auto_gc = false;
  o.value_log_gc_idle_ms = 500;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < 300; i++) {
    ASSERT_EQ(Put(db, Key(i % 50), BigValue(i % 50, 1000, i)), NOKV_OK);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the load's pace
  }
  EXPECT_EQ(Stats(db).gc_idle_checks, 0u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(Vlog, ScansReadAheadWhenValuesAreCold) {
  TempDir dir;
  nokv_options o = VlogOptions();
  o.scan_prefetch_micros = 0;  // treat every value as cold
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 500, 4096), NOKV_OK);
  for (int i = 0; i < 500; i += 5) ASSERT_EQ(Put(db, Key(i), BigValue(i, 100, 1)), NOKV_OK);
  ASSERT_EQ(nokv_flush(db), NOKV_OK);
  for (int i = 0; i < 500; i += 7) ASSERT_EQ(Put(db, Key(i), BigValue(i, 4096, 2)), NOKV_OK);

  auto expected = [](int i) {
    return i % 7 == 0 ? BigValue(i, 4096, 2) : i % 5 == 0 ? BigValue(i, 100, 1) : BigValue(i, 4096);
  };
  // A bounded scan: [key-000100, key-000200).
  uint64_t before = Stats(db).vlog_prefetches;
  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db, nullptr, Key(100).data(), Key(100).size(), Key(200).data(),
                          Key(200).size(), &it),
            NOKV_OK);
  int i = 100;
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it), i++) {
    size_t vn;
    const char* v = static_cast<const char*>(nokv_iter_value(it, &vn));
    ASSERT_EQ(std::string(v, vn), expected(i)) << i;
  }
  ASSERT_EQ(nokv_iter_status(it), NOKV_OK);
  EXPECT_EQ(i, 200);
  nokv_iter_close(it);
  uint64_t hinted = Stats(db).vlog_prefetches - before;
  // The values in the range that live in the log were written in two runs in
  // key order (the first load, then the overwrites of every 7th key), so they
  // are hinted a run at a time: a few calls, not one per value.
  int in_log = 0;
  for (int k = 100; k < 200; k++) in_log += !(k % 5 == 0 && k % 7 != 0);
  EXPECT_GE(hinted, 2u);
  EXPECT_LT(hinted, static_cast<uint64_t>(in_log) / 4);

  // Seeks restart it; values stay right.
  ASSERT_EQ(nokv_iter_new(db, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
  for (int target : {400, 3, 250}) {
    nokv_iter_seek(it, Key(target).data(), Key(target).size());
    for (int k = target; k < target + 30 && nokv_iter_valid(it); k++, nokv_iter_next(it)) {
      size_t vn;
      const char* v = static_cast<const char*>(nokv_iter_value(it, &vn));
      ASSERT_EQ(std::string(v, vn), expected(k)) << k;
    }
  }
  ASSERT_EQ(nokv_iter_status(it), NOKV_OK);
  nokv_iter_close(it);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A value reference (an in-memory address, used only between nokv_put and the
// write leader) must never be trusted from disk: a WAL record holding one is
// corruption, reported at open, not followed.
TEST(Vlog, WalRecordWithAnInMemoryValueReferenceIsCorruption) {
  TempDir dir;
  nokv_options o = VlogOptions();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(Put(db, "a", "1"), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);

  struct nokv_batch b;
  char buf[512];
  nk_batch_init_inline(&b, buf, sizeof buf);
  static const char value[4096] = {0};
  ASSERT_EQ(nk_batch_put_ref(&b, "k", 1, value, sizeof value), NOKV_OK);
  std::string record(NK_WAL_HEADER + b.len, '\0');
  memcpy(&record[NK_WAL_HEADER], b.rep, b.len);
  nk_put_u64(&record[NK_WAL_HEADER], 1000);  // a commit timestamp past everything
  nk_wal_encode_header(&record[0], NK_WAL_BATCH, &record[NK_WAL_HEADER], b.len);
  nk_batch_release(&b);
  auto segs = FilesWithSuffix(dir.path(), ".wal");
  ASSERT_FALSE(segs.empty());
  std::ofstream(dir.file(segs.back()), std::ios::binary | std::ios::app)
      .write(record.data(), static_cast<std::streamsize>(record.size()));
  EXPECT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_ECORRUPT);
  EXPECT_NE(std::string(nokv_errmsg()).find("reference"), std::string::npos) << nokv_errmsg();
}

// GC reads a whole segment before retiring it; a damaged one is left in place
// (its live values may be unreadable, not garbage), the others are still
// collected, and the call reports the damage.
TEST(VlogGc, DamagedSegmentIsSkippedAndReported) {
  TempDir dir;
  nokv_options o = GcOptions();
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int round = 0; round < 3; round++) {
    ASSERT_EQ(PutRange(db, 0, 100, 4000, round), NOKV_OK);
  }
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  auto segs = FilesWithSuffix(dir.path(), ".vlog");
  ASSERT_GE(segs.size(), 4u);
  std::string damaged = dir.file(segs[0]);  // sealed, all garbage by now
  std::string data = ReadFile(damaged);
  data[data.size() / 2] ^= 0x20;
  WriteFile(damaged, data);

  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  uint32_t collected = 0;
  EXPECT_EQ(nokv_vlog_gc(db, 0.5, &collected), NOKV_ECORRUPT);
  EXPECT_NE(std::string(nokv_errmsg()).find(segs[0]), std::string::npos) << nokv_errmsg();
  EXPECT_GT(collected, 0u);
  EXPECT_TRUE(std::filesystem::exists(damaged));
  ExpectAllVersion(db, 100, 4000, 2);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// The flush thread makes the value log durable before its table is logged.
// That fsync must not stall writers: a write that asked for no sync goes on
// while it runs (a stalled disk here), values in the value log included.
TEST(VlogDurability, FlushSyncOfTheValueLogDoesNotStallWriters) {
  TempDir dir;
  FaultEnv fault;
  nokv_options o;
  nokv_options_init(&o);
  o.env = fault.env();
  o.value_threshold = 1024;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(Put(db, Key(1), BigValue(1, 4000)), NOKV_OK);
  fault.HoldSyncs(".vlog");
  std::thread flusher([db] { EXPECT_EQ(nokv_flush(db), NOKV_OK); });
  fault.WaitForHeldSync();  // the flush is inside the value log's fsync
  auto put = std::async(std::launch::async, [db] { return Put(db, Key(2), BigValue(2, 4000)); });
  bool returned = put.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  fault.HoldSyncs("");
  flusher.join();
  EXPECT_TRUE(returned) << "a write waited for the flush thread's fsync";
  EXPECT_EQ(put.get(), NOKV_OK);
  EXPECT_EQ(Get(db, Key(2))->data, BigValue(2, 4000));
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A full segment is sealed without an fsync: writes that fill several
// segments complete while every fsync of the value log is held.
TEST(VlogDurability, SegmentSwitchSyncsNothing) {
  TempDir dir;
  FaultEnv fault;
  nokv_options o = VlogOptions();
  o.env = fault.env();
  o.value_log_segment_bytes = 16 << 10;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  fault.HoldSyncs(".vlog");
  auto puts = std::async(std::launch::async, [db] { return PutRange(db, 0, 40, 3000); });
  bool returned = puts.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  fault.HoldSyncs("");
  EXPECT_TRUE(returned) << "a write that switched segments waited for an fsync";
  EXPECT_EQ(puts.get(), NOKV_OK);
  EXPECT_GE(Stats(db).vlog_segments, 6u);
  ExpectAll(db, 40, 3000);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// The segments sealed unsynced become durable with the next synced write, in
// order, with their names: power loss right after it keeps every value.
TEST(VlogDurability, SyncedWriteMakesSealedSegmentsDurable) {
  TempDir dir;
  FaultEnv fault;
  nokv_options o = VlogOptions();
  o.env = fault.env();
  o.value_log_segment_bytes = 16 << 10;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 30, 3000), NOKV_OK);  // about six segments, none synced
  ASSERT_EQ(Put(db, Key(30), BigValue(30, 3000), /*sync=*/true), NOKV_OK);
  fault.PowerOff();
  nokv_close(db);
  fault.DropUnsynced();
  FaultEnv fresh;
  o.env = fresh.env();
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
  ExpectAll(db, 31, 3000);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Power lost after unsynced writes across segment switches, with the WAL's
// pages on disk but not the value log's (pages go out in any order) and the
// new segments' names made durable by some directory sync: the sealed
// segments are empty or torn, and later ones exist. The open keeps every
// synced write and a prefix of the rest, cuts the damage, and writes go on
// and survive the next reopen.
// Options with 16 KiB value-log segments over env (a FaultEnv's, or NULL).
nokv_options SmallSegments(const nokv_env* env) {
  nokv_options o = VlogOptions();
  o.env = env;
  o.value_log_segment_bytes = 16 << 10;
  return o;
}

// Leaves dir as a power loss can after unsynced writes across segment
// switches: keys 0..20 synced, 21..59 not; the WAL's pages on disk, the value
// log's not, the new segments' names durable (some directory sync), so the
// sealed segments are empty or (torn) the first of them half there.
void LoseSealedSegments(const TempDir& dir, bool torn) {
  FaultEnv fault;
  nokv_options o = SmallSegments(fault.env());
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(PutRange(db, 0, 20, 3000), NOKV_OK);
  ASSERT_EQ(Put(db, Key(20), BigValue(20, 3000), /*sync=*/true), NOKV_OK);
  ASSERT_EQ(PutRange(db, 21, 60, 3000), NOKV_OK);  // about eight more segments
  fault.PowerOff();
  nokv_close(db);
  std::map<std::string, std::string> before;
  for (const auto& name : FilesWithSuffix(dir.path(), ".wal")) before[name] = ReadFile(dir.file(name));
  for (const auto& name : FilesWithSuffix(dir.path(), ".vlog")) before[name] = ReadFile(dir.file(name));
  fault.DropUnsynced();
  bool first = true;
  for (const auto& [name, data] : before) {
    bool wal = name.size() > 4 && name.compare(name.size() - 4, 4, ".wal") == 0;
    if (wal) {
      WriteFile(dir.file(name), data);
    } else if (!std::filesystem::exists(dir.file(name))) {
      WriteFile(dir.file(name), torn && first ? data.substr(0, data.size() / 2) : "");
      first = false;
    }
  }
  ASSERT_FALSE(first) << "no segment was lost: the test shows nothing";
}

TEST(VlogDurability, PowerLossAcrossUnsyncedSwitchesKeepsAPrefix) {
  for (bool torn : {false, true}) {
    SCOPED_TRACE(torn ? "first lost segment torn" : "lost segments empty");
    TempDir dir;
    LoseSealedSegments(dir, torn);
    nokv_options o = SmallSegments(nullptr);
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    ExpectAll(db, 21, 3000);
    EXPECT_GT(Stats(db).wal_records_dangling, 0u);
    bool gap = false;
    for (int i = 21; i < 60; i++) {
      int rc = NOKV_OK;
      auto v = Get(db, Key(i), 0, &rc);
      ASSERT_TRUE(rc == NOKV_OK || rc == NOKV_ENOTFOUND) << rc << " " << nokv_errmsg();
      if (!v) gap = true;
      ASSERT_TRUE(!v || (!gap && v->data == BigValue(i, 3000))) << Key(i);
    }
    EXPECT_TRUE(gap);
    ASSERT_EQ(PutRange(db, 60, 80, 3000, 1), NOKV_OK);
    ASSERT_EQ(nokv_close(db), NOKV_OK);
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    ExpectAll(db, 21, 3000);
    for (int i = 60; i < 80; i++) EXPECT_EQ(Get(db, Key(i))->data, BigValue(i, 3000, 1));
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
}

// The open that ends the value log at a lost sealed segment (cuts a torn
// tail, removes headerless segments), with each of its value-log file calls
// failing (open, read, truncate, sync, remove; EIO and ENOSPC; six call sites
// each) and the power going off at each of its syncs: the next clean open
// recovers the same writes.
TEST(VlogDurability, EndingTheValueLogSurvivesFailedCallsAndPowerLoss) {
  auto kept = [](const TempDir& dir, const std::string& what) {
    nokv_options o = SmallSegments(nullptr);
    nokv_db* db;
    EXPECT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << what << ": " << nokv_errmsg();
    if (::testing::Test::HasFailure()) return -1;
    int n = 0;
    while (n < 60 && Get(db, Key(n))) n++;
    for (int i = n; i < 60; i++) EXPECT_FALSE(Get(db, Key(i)).has_value()) << what << ", " << Key(i);
    EXPECT_EQ(nokv_close(db), NOKV_OK);
    return n;
  };
  int expect;
  {
    TempDir dir;
    LoseSealedSegments(dir, true);
    expect = kept(dir, "clean");
  }
  ASSERT_GE(expect, 21);
  ASSERT_LT(expect, 60);
  int failed_opens = 0;
  for (auto op : {FaultEnv::kOpen, FaultEnv::kRead, FaultEnv::kTruncate, FaultEnv::kSync,
                  FaultEnv::kRemove}) {
    for (int err : {EIO, ENOSPC}) {
      for (int skip = 0; skip < 6; skip++) {
        TempDir dir;
        LoseSealedSegments(dir, true);
        FaultEnv fault;
        nokv_options o = SmallSegments(fault.env());
        fault.FailCalls(op, err, ".vlog", 1, skip);
        nokv_db* db = nullptr;
        std::string what = "op " + std::to_string(op) + " errno " + std::to_string(err) +
                           " skip " + std::to_string(skip);
        if (nokv_open(dir.path().c_str(), &o, &db) == NOKV_OK) {
          nokv_close(db);
        } else {
          failed_opens++;
          EXPECT_NE(std::string(nokv_errmsg()).find("injected"), std::string::npos)
              << what << ": " << nokv_errmsg();
        }
        ASSERT_EQ(kept(dir, what), expect) << what;
      }
    }
  }
  EXPECT_GT(failed_opens, 0);
  int cuts = 0;
  for (int k = 1;; k++) {
    TempDir dir;
    LoseSealedSegments(dir, true);
    FaultEnv fault;
    nokv_options o = SmallSegments(fault.env());
    fault.PowerOffAtSync(k);
    nokv_db* db = nullptr;
    if (nokv_open(dir.path().c_str(), &o, &db) == NOKV_OK) nokv_close(db);
    bool reached = fault.powered_off();
    fault.DropUnsynced();
    if (!reached) break;
    cuts++;
    ASSERT_EQ(kept(dir, "power off at sync " + std::to_string(k)), expect);
  }
  EXPECT_GT(cuts, 2);
}

}  // namespace
