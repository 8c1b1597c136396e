// Durability defects, one test each, plus sweeps that fail every kind of file
// call with many errnos at open and during writes: whatever fails, nothing
// acknowledged is lost and no failed open harms the database.
#include <errno.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <map>
#include <string>
#include <vector>

#include "fault_env.h"
#include "nokv/nokv.h"
#include "test_util.h"

namespace {

using nokv_test::FaultEnv;
using nokv_test::FilesWithSuffix;
using nokv_test::Get;
using nokv_test::Put;
using nokv_test::ReadFile;
using nokv_test::Stats;
using nokv_test::TempDir;
using nokv_test::WriteFile;

std::string Big(const std::string& key, size_t n) {
  std::string v = "value of " + key + ":";
  while (v.size() < n) v += static_cast<char>('a' + v.size() % 23);
  v.resize(n);
  return v;
}

class DurabilityTest : public ::testing::Test {
 protected:
  nokv_options Options(const nokv_env* env) {
    nokv_options o;
    nokv_options_init(&o);
    o.env = env;
    o.value_threshold = 1024;
    return o;
  }
  nokv_db* Open(const nokv_options& o) {
    nokv_db* db = nullptr;
    EXPECT_EQ(nokv_open(dir_.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    return db;
  }
  // The directory's files and contents, to show a failed open changed nothing.
  std::map<std::string, std::string> Files() {
    std::map<std::string, std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
      std::string name = e.path().filename().string();
      if (name != "LOCK") out[name] = ReadFile(e.path().string());
    }
    return out;
  }
  TempDir dir_;
  FaultEnv fault_;
};

// Defect 1: a synced write makes every earlier write durable in both logs, so
// a value-log value written without sync before it survives power loss too.
TEST_F(DurabilityTest, SyncMakesEarlierLargeValuesDurable) {
  nokv_options o = Options(fault_.env());
  nokv_db* db = Open(o);
  ASSERT_EQ(Put(db, "big", Big("big", 4096), /*sync=*/false), NOKV_OK);
  ASSERT_EQ(Put(db, "small", "v", /*sync=*/true), NOKV_OK);
  fault_.PowerOff();
  nokv_close(db);
  fault_.DropUnsynced();
  db = Open(o);
  EXPECT_EQ(Stats(db).wal_records_dangling, 0u);
  ASSERT_TRUE(Get(db, "small"));
  ASSERT_TRUE(Get(db, "big"));
  EXPECT_EQ(Get(db, "big")->data, Big("big", 4096));
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// nokv_sync makes every earlier unsynced write durable, in both logs: what a
// replica relies on before its Raft log may drop the entries it applied.
TEST_F(DurabilityTest, SyncCallMakesEarlierWritesDurable) {
  nokv_options o = Options(fault_.env());
  nokv_db* db = Open(o);
  ASSERT_EQ(Put(db, "big", Big("big", 4096), /*sync=*/false), NOKV_OK);
  ASSERT_EQ(Put(db, "small", "v", /*sync=*/false), NOKV_OK);
  ASSERT_EQ(nokv_sync(db), NOKV_OK);
  ASSERT_EQ(Put(db, "after", "lost", /*sync=*/false), NOKV_OK);
  fault_.PowerOff();
  nokv_close(db);
  fault_.DropUnsynced();
  db = Open(o);
  ASSERT_TRUE(Get(db, "small"));
  ASSERT_TRUE(Get(db, "big"));
  EXPECT_EQ(Get(db, "big")->data, Big("big", 4096));
  EXPECT_FALSE(Get(db, "after"));  // the cut had teeth: the unsynced write after it is gone
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Defect 1: a clean close syncs the value log as well as the WAL.
TEST_F(DurabilityTest, CloseMakesLargeValuesDurable) {
  nokv_options o = Options(fault_.env());
  nokv_db* db = Open(o);
  for (int i = 0; i < 20; i++) {
    std::string k = "big" + std::to_string(i);
    ASSERT_EQ(Put(db, k, Big(k, 3000)), NOKV_OK);
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  fault_.PowerOff();
  fault_.DropUnsynced();
  db = Open(o);
  for (int i = 0; i < 20; i++) {
    std::string k = "big" + std::to_string(i);
    ASSERT_TRUE(Get(db, k)) << k;
    EXPECT_EQ(Get(db, k)->data, Big(k, 3000));
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Defect 1: a process crash leaves a value-log segment exactly full and not
// synced; the reopen starts a new segment and flushes what it replayed into a
// table pointing at the old one. That segment must be durable before the head
// moves past it, or a later power loss loses values a table points at.
TEST_F(DurabilityTest, SegmentLeftFullByACrashIsSyncedAtOpen) {
  nokv_options o = Options(fault_.env());
  const size_t entry = 20 + 4 + 2000;  // entry header + key + value
  o.value_log_segment_bytes = 16 + 3 * entry;
  nokv_db* db = Open(o);
  for (int i = 0; i < 3; i++) {
    std::string k = "k00" + std::to_string(i);
    ASSERT_EQ(Put(db, k, Big(k, 2000)), NOKV_OK);
  }
  fault_.PowerOff();  // kill -9: what was written stays, nothing more happens
  nokv_close(db);
  fault_.PowerOn();
  db = Open(o);  // replays, flushes to L0, starts a new segment
  fault_.PowerOff();
  nokv_close(db);
  fault_.DropUnsynced();
  db = Open(o);
  for (int i = 0; i < 3; i++) {
    std::string k = "k00" + std::to_string(i);
    int rc = NOKV_OK;
    auto v = Get(db, k, 0, &rc);
    ASSERT_TRUE(v) << k << " rc " << rc << " " << nokv_errmsg();
    EXPECT_EQ(v->data, Big(k, 2000));
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Defect 2: only "does not exist" may make CURRENT missing. Any other failure
// to open or read it fails the open with the file and the OS error, and leaves
// every file as it was; the next open finds all the data.
TEST_F(DurabilityTest, FailedReadOfCurrentFailsOpenAndHarmsNothing) {
  nokv_options o = Options(fault_.env());
  nokv_db* db = Open(o);
  for (int i = 0; i < 100; i++) ASSERT_EQ(Put(db, "k" + std::to_string(i), "v"), NOKV_OK);
  ASSERT_EQ(nokv_flush(db), NOKV_OK);
  ASSERT_EQ(Put(db, "unflushed", "v", true), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  for (int err : {EACCES, EIO, EMFILE, ENFILE, ENOMEM, ELOOP, EISDIR, EINTR}) {
    SCOPED_TRACE(strerror(err));
    auto before = Files();
    for (auto op : {FaultEnv::kOpen, FaultEnv::kRead}) {
      fault_.FailCalls(op, err, "/CURRENT", 1);
      ASSERT_NE(nokv_open(dir_.path().c_str(), &o, &db), NOKV_OK);
      std::string msg = nokv_errmsg();
      EXPECT_NE(msg.find("CURRENT"), std::string::npos) << msg;
      EXPECT_NE(msg.find(strerror(err)), std::string::npos) << msg;
      EXPECT_EQ(fault_.injected(), 1);
      fault_.ClearRule();
      EXPECT_EQ(Files(), before) << "a failed open changed the directory";
    }
    db = Open(o);
    EXPECT_GE(Stats(db).tables, 1u);
    for (int i = 0; i < 100; i++) ASSERT_TRUE(Get(db, "k" + std::to_string(i))) << i;
    ASSERT_TRUE(Get(db, "unflushed"));
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
}

// Defect 2: a directory that holds tables, WAL records or value-log entries is
// never initialised as new, even with CURRENT gone; nothing is deleted.
TEST_F(DurabilityTest, MissingCurrentWithDataIsRefused) {
  nokv_options o = Options(nullptr);
  nokv_db* db = Open(o);
  ASSERT_EQ(Put(db, "k", "v", true), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  std::filesystem::remove(dir_.file("CURRENT"));
  auto before = Files();
  ASSERT_EQ(nokv_open(dir_.path().c_str(), &o, &db), NOKV_ECORRUPT);
  EXPECT_NE(std::string(nokv_errmsg()).find("no CURRENT"), std::string::npos) << nokv_errmsg();
  EXPECT_EQ(Files(), before);
}

// What a crash during the very first open leaves (an empty WAL segment, a
// value-log segment with only its header, a manifest naming no table) is no
// database yet: the next open creates one.
TEST_F(DurabilityTest, LeftoversOfAFirstOpenMakeANewDatabase) {
  nokv_options o = Options(nullptr);
  nokv_db* db = Open(o);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  std::filesystem::remove(dir_.file("CURRENT"));
  ASSERT_FALSE(FilesWithSuffix(dir_.path(), ".vlog").empty());
  db = Open(o);
  ASSERT_NE(db, nullptr);
  ASSERT_EQ(Put(db, "k", "v"), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// create_if_missing=false refuses a directory with no database.
TEST_F(DurabilityTest, CreateIfMissingFalseRefusesAnEmptyDirectory) {
  nokv_options o = Options(nullptr);
  o.create_if_missing = false;
  nokv_db* db = nullptr;
  ASSERT_EQ(nokv_open(dir_.path().c_str(), &o, &db), NOKV_EINVAL);
  EXPECT_NE(std::string(nokv_errmsg()).find("create_if_missing"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_.file("CURRENT")));
}

// Defect 3: a manifest append that fails half-way (the header written, the
// payload not) stops the database (EIO) or is retried in a new manifest once
// there is room (ENOSPC); either way no edit is ever appended after the partial
// bytes, and the next open finds every write.
TEST_F(DurabilityTest, FailedManifestAppendLeavesAnOpenableDatabase) {
  for (int err : {EIO, ENOSPC, EACCES}) {
    SCOPED_TRACE(strerror(err));
    TempDir dir;
    FaultEnv fault;
    nokv_options o = Options(fault.env());
    o.value_log_segment_bytes = 16 << 10;
    nokv_db* db = nullptr;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
    for (int i = 0; i < 40; i++) {
      std::string k = "k" + std::to_string(i);
      ASSERT_EQ(Put(db, k, Big(k, 2000)), NOKV_OK);
    }
    ASSERT_EQ(nokv_flush(db), NOKV_OK);
    for (int i = 0; i < 40; i++) {
      std::string k = "k" + std::to_string(i);
      ASSERT_EQ(Put(db, k, Big(k + "'", 2000), true), NOKV_OK);
    }
    // The flush's edit: its 9-byte header goes through, its payload fails.
    fault.FailCalls(FaultEnv::kAppend, err, "MANIFEST", 1, /*skip=*/1);
    int rc = nokv_flush(db);
    EXPECT_EQ(fault.injected(), 1);
    if (err == ENOSPC) {
      // The flush thread retries after a back-off that any background signal
      // may cut short, so the retry (the rule has fired: it succeeds) can beat
      // nokv_flush to the news: then the flush did happen and OK is right.
      EXPECT_TRUE(rc == NOKV_EFULL || rc == NOKV_OK) << rc;
      EXPECT_GE(Stats(db).bg_full_retries, 1u);
    } else {
      EXPECT_NE(rc, NOKV_OK);
    }
    fault.ClearRule();
    if (err == ENOSPC) {
      // Space is back: the flush is retried into a new manifest and all goes on.
      ASSERT_EQ(nokv_flush(db), NOKV_OK) << nokv_errmsg();
      ASSERT_EQ(nokv_compact(db), NOKV_OK) << nokv_errmsg();
      ASSERT_EQ(Put(db, "after", "x", true), NOKV_OK) << nokv_errmsg();
    } else {
      // Every later edit is refused, whoever asks.
      EXPECT_NE(nokv_compact(db), NOKV_OK);
      uint32_t collected = 0;
      EXPECT_NE(nokv_vlog_gc(db, 0.01, &collected), NOKV_OK);
      EXPECT_EQ(collected, 0u);
      EXPECT_NE(Put(db, "after", "x", true), NOKV_OK);
    }
    nokv_close(db);
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    for (int i = 0; i < 40; i++) {
      std::string k = "k" + std::to_string(i);
      auto v = Get(db, k);
      ASSERT_TRUE(v) << k;
      EXPECT_EQ(v->data, Big(k + "'", 2000));
    }
    EXPECT_EQ(Get(db, "after").has_value(), err == ENOSPC);
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
}

// Defect 5: damage in the newest value-log segment with a synced WAL record
// pointing at or past it is lost acknowledged data: refuse, naming the segment
// and offset, and change nothing.
TEST_F(DurabilityTest, ValueLogDamageUnderASyncedRecordIsRefused) {
  nokv_options o = Options(nullptr);
  nokv_db* db = Open(o);
  for (int i = 0; i < 10; i++) {
    std::string k = "k" + std::to_string(i);
    ASSERT_EQ(Put(db, k, Big(k, 2000), /*sync=*/true), NOKV_OK);
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  auto segs = FilesWithSuffix(dir_.path(), ".vlog");
  ASSERT_EQ(segs.size(), 1u);
  std::string data = ReadFile(dir_.file(segs[0]));
  const size_t entry = 20 + 2 + 2000;
  data[16 + 4 * entry + 100] ^= 0x20;  // inside the fifth entry
  WriteFile(dir_.file(segs[0]), data);
  auto before = Files();
  ASSERT_EQ(nokv_open(dir_.path().c_str(), &o, &db), NOKV_ECORRUPT);
  std::string msg = nokv_errmsg();
  EXPECT_NE(msg.find(segs[0]), std::string::npos) << msg;
  EXPECT_NE(msg.find("offset " + std::to_string(16 + 4 * entry)), std::string::npos) << msg;
  EXPECT_EQ(Files(), before) << "a refused open must not modify anything";
}

// The same damage when nothing after it was synced: a power loss may write
// pages back out of order, so this is a torn tail; the values after it go with
// the unsynced WAL records that point at them.
TEST_F(DurabilityTest, ValueLogDamageUnderUnsyncedRecordsIsATornTail) {
  nokv_options o = Options(fault_.env());
  nokv_db* db = Open(o);
  for (int i = 0; i < 10; i++) {
    std::string k = "k" + std::to_string(i);
    ASSERT_EQ(Put(db, k, Big(k, 2000), /*sync=*/i == 2), NOKV_OK);
  }
  fault_.PowerOff();  // kill -9: no clean close vouches for the values
  nokv_close(db);
  fault_.PowerOn();
  auto segs = FilesWithSuffix(dir_.path(), ".vlog");
  std::string data = ReadFile(dir_.file(segs[0]));
  const size_t entry = 20 + 2 + 2000;
  data[16 + 4 * entry + 100] ^= 0x20;
  WriteFile(dir_.file(segs[0]), data);
  db = Open(o);
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(Stats(db).wal_records_dangling, 6u);
  EXPECT_EQ(Stats(db).vlog_torn_bytes, data.size() - (16 + 4 * entry));
  for (int i = 0; i < 10; i++) {
    std::string k = "k" + std::to_string(i);
    EXPECT_EQ(Get(db, k).has_value(), i < 4) << k;
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Defect 6: value-log GC moves values without changing any version, so a
// transaction that read a moved key commits.
TEST_F(DurabilityTest, GcRewritesDoNotConflictWithTransactions) {
  nokv_options o = Options(nullptr);
  o.value_log_segment_bytes = 16 << 10;
  o.disable_auto_gc = true;
  nokv_db* db = Open(o);
  for (int i = 0; i < 40; i++) {
    std::string k = "k" + std::to_string(i);
    ASSERT_EQ(Put(db, k, Big(k, 2000)), NOKV_OK);
  }
  // Half the keys overwritten: old segments become half garbage.
  for (int i = 0; i < 40; i += 2) {
    std::string k = "k" + std::to_string(i);
    ASSERT_EQ(Put(db, k, Big(k + "'", 2000)), NOKV_OK);
  }
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  nokv_txn* txn;
  ASSERT_EQ(nokv_txn_begin(db, 0, &txn), NOKV_OK);
  for (int i = 1; i < 40; i += 2) {
    std::string k = "k" + std::to_string(i);
    void* v;
    size_t n;
    ASSERT_EQ(nokv_txn_get(txn, k.data(), k.size(), &v, &n), NOKV_OK);
    nokv_free(v);
  }
  ASSERT_EQ(nokv_txn_put(txn, "out", 3, "1", 1), NOKV_OK);
  uint32_t collected = 0;
  ASSERT_EQ(nokv_vlog_gc(db, 0.2, &collected), NOKV_OK) << nokv_errmsg();
  ASSERT_GT(collected, 0u);
  ASSERT_GT(Stats(db).gc_bytes_rewritten, 0u);
  EXPECT_EQ(nokv_txn_commit(txn, nullptr, nullptr), NOKV_OK) << nokv_errmsg();
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Value-log GC counts an entry dead when a newer version of its key exists,
// even one no sync has made durable yet. After a power cut that version is
// gone and the entry is the newest again, so GC must make the logs durable
// before it deletes the segment. Here nothing in the segment is live, so GC
// writes no rewrite batch whose sync would hide a missing barrier.
TEST_F(DurabilityTest, GcMakesTheOverwritesThatKilledASegmentDurableFirst) {
  nokv_options o = Options(fault_.env());
  o.value_log_segment_bytes = 16 << 10;
  o.disable_auto_gc = true;
  o.disable_auto_compaction = true;
  o.value_log_gc_idle_ms = 0;
  nokv_db* db = Open(o);
  ASSERT_EQ(Put(db, "k", Big("k", 2000), /*sync=*/true), NOKV_OK);
  for (int i = 0; i < 12; i++) {
    std::string f = "f" + std::to_string(i);
    ASSERT_EQ(Put(db, f, Big(f, 2000), /*sync=*/true), NOKV_OK);
  }
  ASSERT_GE(Stats(db).vlog_segments, 2u);
  for (int i = 0; i < 12; i++) {
    ASSERT_EQ(nokv_test::Delete(db, "f" + std::to_string(i)), NOKV_OK);
  }
  ASSERT_EQ(Put(db, "sync", "x", /*sync=*/true), NOKV_OK);
  ASSERT_EQ(nokv_compact(db), NOKV_OK);  // flushes and reports the dead f values
  ASSERT_EQ(Put(db, "k", "new", /*sync=*/false), NOKV_OK);
  uint32_t collected = 0;
  ASSERT_EQ(nokv_vlog_gc(db, 0.1, &collected), NOKV_OK) << nokv_errmsg();
  ASSERT_GT(collected, 0u);
  EXPECT_EQ(Stats(db).gc_bytes_rewritten, 0u);  // no rewrite batch synced the WAL
  fault_.PowerOff();
  nokv_close(db);
  fault_.DropUnsynced();
  db = Open(o);
  int rc = NOKV_OK;
  auto v = Get(db, "k", 0, &rc);
  ASSERT_TRUE(v) << "rc " << rc << ": " << nokv_errmsg();
  EXPECT_TRUE(v->data == "new" || v->data == Big("k", 2000)) << v->data.substr(0, 20);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Defect 4: a read with no read_ts is served at the latest timestamp and never
// fails for staleness, however much history flushes collect meanwhile.
TEST_F(DurabilityTest, ReadWithoutReadTsIsNeverStale) {
  nokv_options o = Options(nullptr);
  nokv_db* db = Open(o);
  for (int round = 0; round < 50; round++) {
    ASSERT_EQ(Put(db, "k", std::to_string(round)), NOKV_OK);
    uint64_t before = nokv_last_commit_ts(db);
    ASSERT_EQ(nokv_flush(db), NOKV_OK);
    ASSERT_EQ(Put(db, "other", "x"), NOKV_OK);
    ASSERT_EQ(nokv_flush(db), NOKV_OK);
    nokv_read_options ro;
    nokv_read_options_init(&ro);
    uint64_t served = 0;
    ro.served_ts = &served;
    void* v;
    size_t n;
    ASSERT_EQ(nokv_get(db, &ro, "k", 1, &v, &n, nullptr), NOKV_OK) << nokv_errmsg();
    nokv_free(v);
    EXPECT_GT(served, before);
    EXPECT_EQ(served, nokv_last_commit_ts(db));
    // An explicit old timestamp may be stale, and says so.
    ro.read_ts = before - 1;
    int rc = nokv_get(db, &ro, "k", 1, &v, &n, nullptr);
    if (rc == NOKV_OK) nokv_free(v);
    EXPECT_TRUE(rc == NOKV_OK || rc == NOKV_ESTALE || rc == NOKV_ENOTFOUND) << rc;
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A read at an explicit old read_ts after GC deleted the segment its version's
// value was in is stale (ESTALE), not corruption: GC keeps only the newest
// versions' values, and says so by raising the history horizon.
TEST_F(DurabilityTest, ExplicitReadBelowACollectedSegmentIsStale) {
  nokv_options o = Options(nullptr);
  o.value_log_segment_bytes = 16 << 10;
  o.disable_auto_gc = true;
  o.disable_auto_compaction = true;
  nokv_db* db = Open(o);
  ASSERT_EQ(Put(db, "k", Big("k", 2000)), NOKV_OK);
  for (int i = 0; i < 30; i++) {
    std::string k = "f" + std::to_string(i);
    ASSERT_EQ(Put(db, k, Big(k, 2000)), NOKV_OK);
  }
  for (int i = 0; i < 30; i++) ASSERT_EQ(nokv_test::Delete(db, "f" + std::to_string(i)), NOKV_OK);
  // A snapshot keeps k's first version in the tree through the compaction, and
  // the history horizon at its timestamp.
  nokv_snapshot* snap;
  ASSERT_EQ(nokv_snapshot_create(db, &snap), NOKV_OK);
  uint64_t old_ts = nokv_snapshot_ts(snap);
  ASSERT_EQ(Put(db, "k", Big("k2", 2000)), NOKV_OK);
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  uint32_t collected = 0;
  ASSERT_EQ(nokv_vlog_gc(db, 0.1, &collected), NOKV_OK) << nokv_errmsg();
  ASSERT_GT(collected, 0u);
  nokv_snapshot_release(db, snap);  // the collected segment goes now
  int rc = NOKV_OK;
  EXPECT_FALSE(Get(db, "k", old_ts, &rc));
  EXPECT_EQ(rc, NOKV_ESTALE) << nokv_errmsg();
  EXPECT_EQ(Get(db, "k")->data, Big("k2", 2000));
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A full disk refuses the writes it hits (NOKV_EFULL, nothing logged) and the
// database takes writes again once space is freed, without a reopen; flushes and
// compactions that hit it fail, are retried, and succeed once space is back.
TEST_F(DurabilityTest, FullDiskRefusesWritesUntilSpaceIsFreed) {
  nokv_options o = Options(fault_.env());
  o.memtable_max_bytes = 256 << 10;
  nokv_db* db = Open(o);
  ASSERT_EQ(Put(db, "before", "1", true), NOKV_OK);
  fault_.FailCalls(FaultEnv::kAppend, ENOSPC, ".wal", 3);
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(Put(db, "refused" + std::to_string(i), "x"), NOKV_EFULL);
    EXPECT_NE(std::string(nokv_errmsg()).find("disk full"), std::string::npos) << nokv_errmsg();
  }
  ASSERT_EQ(Put(db, "after-wal", "1", true), NOKV_OK) << nokv_errmsg();  // space is back
  fault_.FailCalls(FaultEnv::kAppend, ENOSPC, ".vlog", 2);
  EXPECT_EQ(Put(db, "refused-big", Big("refused-big", 5000)), NOKV_EFULL);
  EXPECT_EQ(Put(db, "refused-big2", Big("refused-big2", 5000), true), NOKV_EFULL);
  ASSERT_EQ(Put(db, "after-vlog", Big("after-vlog", 5000), true), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(Stats(db).writes_refused_full, 5u);
  // A flush that hits it fails and is retried; writes go on meanwhile.
  fault_.FailCalls(FaultEnv::kAppend, ENOSPC, ".sst");
  ASSERT_EQ(Put(db, "in-memtable", "1"), NOKV_OK);
  EXPECT_EQ(nokv_flush(db), NOKV_EFULL);
  EXPECT_NE(std::string(nokv_errmsg()).find("retried"), std::string::npos) << nokv_errmsg();
  ASSERT_EQ(Put(db, "during-full-flush", "1", true), NOKV_OK) << nokv_errmsg();
  fault_.ClearRule();
  ASSERT_EQ(nokv_flush(db), NOKV_OK) << nokv_errmsg();
  EXPECT_GT(Stats(db).bg_full_retries, 0u);
  // A compaction likewise.
  for (int i = 0; i < 200; i++) ASSERT_EQ(Put(db, "c" + std::to_string(i), Big("c", 300)), NOKV_OK);
  ASSERT_EQ(nokv_flush(db), NOKV_OK);
  fault_.FailCalls(FaultEnv::kAppend, ENOSPC, ".sst");
  EXPECT_EQ(nokv_compact(db), NOKV_EFULL);
  ASSERT_EQ(Put(db, "during-full-compaction", "1", true), NOKV_OK) << nokv_errmsg();
  fault_.ClearRule();
  ASSERT_EQ(nokv_compact(db), NOKV_OK) << nokv_errmsg();
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  db = Open(o);
  for (const char* k : {"before", "after-wal", "in-memtable", "during-full-flush",
                        "during-full-compaction"}) {
    EXPECT_TRUE(Get(db, k)) << k;
  }
  EXPECT_EQ(Get(db, "after-vlog")->data, Big("after-vlog", 5000));
  for (const char* k : {"refused0", "refused1", "refused2", "refused-big", "refused-big2"}) {
    EXPECT_FALSE(Get(db, k)) << k;
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A crash while a value-log segment was being created leaves part of its header
// after the newest one: it is removed, and the segment before it, opened as a
// sealed one, takes appends again and serves them.
TEST_F(DurabilityTest, HalfCreatedSegmentAfterTheNewestIsRemoved) {
  nokv_options o = Options(nullptr);
  nokv_db* db = Open(o);
  for (int i = 0; i < 5; i++) {
    std::string k = "a" + std::to_string(i);
    ASSERT_EQ(Put(db, k, Big(k, 3000)), NOKV_OK);
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  auto segs = FilesWithSuffix(dir_.path(), ".vlog");
  std::string newest = segs.back();
  int fid = atoi(newest.c_str());
  char next[32];
  snprintf(next, sizeof next, "%08d.vlog", fid + 1);
  WriteFile(dir_.file(next), ReadFile(dir_.file(newest)).substr(0, 7));
  db = Open(o);
  EXPECT_FALSE(std::filesystem::exists(dir_.file(next)));
  for (int i = 0; i < 5; i++) {
    std::string k = "b" + std::to_string(i);
    ASSERT_EQ(Put(db, k, Big(k, 3000)), NOKV_OK);
  }
  for (const char* p : {"a", "b"}) {
    for (int i = 0; i < 5; i++) {
      std::string k = p + std::to_string(i);
      int rc = NOKV_OK;
      auto v = Get(db, k, 0, &rc);
      ASSERT_TRUE(v) << k << " " << rc << " " << nokv_errmsg();
      EXPECT_EQ(v->data, Big(k, 3000));
    }
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A batch just under the memtable size is taken (the empty memtable grows past
// its target for it) instead of sealing empty memtables forever; the largest
// value the options allow is storable with the defaults.
TEST_F(DurabilityTest, BatchNearTheMemtableSizeIsTakenNotStalledForever) {
  nokv_options o = Options(nullptr);
  o.memtable_max_bytes = 1 << 20;
  o.value_threshold = 0;  // everything in the memtable
  nokv_db* db = Open(o);
  ASSERT_EQ(Put(db, "small", "x"), NOKV_OK);
  std::string v((1 << 20) - 200, 'v');
  ASSERT_EQ(Put(db, "big", v), NOKV_OK) << nokv_errmsg();
  ASSERT_EQ(Put(db, "after", "x"), NOKV_OK);
  EXPECT_EQ(Get(db, "big")->data, v);
  EXPECT_LT(Stats(db).flushes, 5u);
  // Past the limit: refused up front, naming it.
  EXPECT_EQ(Put(db, "too-big", std::string(1 << 20, 'v')), NOKV_EINVAL);
  EXPECT_NE(std::string(nokv_errmsg()).find("memtable_max_bytes"), std::string::npos);
  ASSERT_EQ(nokv_close(db), NOKV_OK);

  // The defaults: a value of max_value_size (64 MiB) goes to the value log and
  // takes a pointer's room in the memtable.
  TempDir dir2;
  nokv_options d;
  nokv_options_init(&d);
  ASSERT_EQ(nokv_open(dir2.path().c_str(), &d, &db), NOKV_OK);
  std::string huge(d.max_value_size, 'h');
  ASSERT_EQ(Put(db, "huge", huge), NOKV_OK) << nokv_errmsg();
  huge[0] = 'i';
  ASSERT_EQ(Put(db, "huge-200", huge.substr(0, huge.size() - 200)), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(Get(db, "huge")->data.size(), d.max_value_size);
  EXPECT_EQ(Get(db, "huge-200")->data[0], 'i');
  EXPECT_EQ(Put(db, "over", std::string(d.max_value_size + 1, 'o')), NOKV_EINVAL);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Closing never waits on a writer stalled for room (here every flush fails for a
// full disk, so no room comes): the writer gets NOKV_ECLOSED and close returns.
TEST_F(DurabilityTest, CloseDoesNotWaitForAStalledWriter) {
  nokv_options o = Options(fault_.env());
  o.memtable_max_bytes = 64 << 10;
  o.max_immutable_memtables = 1;
  nokv_db* db = Open(o);
  fault_.FailCalls(FaultEnv::kAppend, ENOSPC, ".sst");
  std::atomic<int> last{NOKV_OK};
  std::thread writer([&] {
    for (int i = 0;; i++) {
      int rc = Put(db, "k" + std::to_string(i), std::string(200, 'v'));
      if (rc != NOKV_OK) {
        last = rc;
        return;
      }
    }
  });
  // Wait (polling the counter) until the writer is stalled.
  for (int i = 0; i < 100000 && Stats(db).write_stalls == 0; i++) std::this_thread::yield();
  ASSERT_GT(Stats(db).write_stalls, 0u);
  EXPECT_EQ(nokv_close(db), NOKV_OK);
  writer.join();
  EXPECT_EQ(last.load(), NOKV_ECLOSED);
  fault_.ClearRule();
  db = Open(o);  // what the WAL held is all there
  EXPECT_TRUE(Get(db, "k0"));
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Out of file descriptors when a value-log segment is created: the write fails
// NOKV_EFULL saying so (the cleanup's own failure does not replace it), and
// writes work again once descriptors are free.
TEST_F(DurabilityTest, ErrorsKeepTheirCauseThroughCleanup) {
  nokv_options o = Options(fault_.env());
  o.value_log_segment_bytes = 16 << 10;
  nokv_db* db = Open(o);
  fault_.FailCalls(FaultEnv::kOpen, EMFILE, ".vlog", 1);
  int rc = NOKV_OK;
  for (int i = 0; i < 20 && rc == NOKV_OK; i++) {
    std::string k = "k" + std::to_string(i);
    rc = Put(db, k, Big(k, 3000));
  }
  EXPECT_EQ(rc, NOKV_EFULL);
  std::string msg = nokv_errmsg();
  EXPECT_NE(msg.find(strerror(EMFILE)), std::string::npos) << msg;
  EXPECT_EQ(msg.find("remove"), std::string::npos) << msg;
  EXPECT_EQ(fault_.injected(), 1);
  ASSERT_EQ(Put(db, "after", Big("after", 3000), true), NOKV_OK) << nokv_errmsg();
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Open files in /proc/self/fd.
int OpenFds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n++;
  return n;
}

// Value-log segments keep no descriptor once sealed (their mapping serves
// reads), so hundreds of segments cost a handful of descriptors.
TEST_F(DurabilityTest, SealedValueLogSegmentsHoldNoDescriptors) {
  nokv_options o = Options(nullptr);
  o.value_log_segment_bytes = 8 << 10;
  o.disable_auto_gc = true;
  int before = OpenFds();
  nokv_db* db = Open(o);
  for (int i = 0; i < 600; i++) {
    std::string k = "k" + std::to_string(i);
    ASSERT_EQ(Put(db, k, Big(k, 3000)), NOKV_OK);
  }
  EXPECT_GE(Stats(db).vlog_segments, 200u);
  EXPECT_LT(OpenFds() - before, 40);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  db = Open(o);
  EXPECT_LT(OpenFds() - before, 40);
  for (int i = 0; i < 600; i += 37) {
    std::string k = "k" + std::to_string(i);
    ASSERT_EQ(Get(db, k)->data, Big(k, 3000));
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Every kind of file call, failed with each errno at each of its call sites
// during open: the open fails with a message or succeeds, and either way the
// next clean open finds every acknowledged write.
TEST_F(DurabilityTest, AnyFailedCallDuringOpenLosesNothing) {
  nokv_options o = Options(fault_.env());
  o.value_log_segment_bytes = 16 << 10;
  nokv_db* db = Open(o);
  std::map<std::string, std::string> model;
  // Writes until one fails (a background job of a just-opened database may
  // still meet the injected fault, which stops writes); the model keeps what
  // was acknowledged. Returns how many were.
  auto write_some = [&](int round) {
    int acked = 0;
    for (int i = 0; i < 12; i++) {
      std::string k = "k" + std::to_string((round * 7 + i) % 30);
      std::string v = i % 3 == 0 ? Big(k + std::to_string(round), 1500) : "small" + k;
      if (Put(db, k, v, i == 11) != NOKV_OK) {
        EXPECT_NE(std::string(nokv_errmsg()).find("injected"), std::string::npos)
            << nokv_errmsg();
        break;
      }
      model[k] = v;
      acked++;
    }
    return acked;
  };
  ASSERT_EQ(write_some(0), 12);
  ASSERT_EQ(nokv_flush(db), NOKV_OK);
  ASSERT_EQ(write_some(1), 12);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  int opens = 0, failed_opens = 0;
  const FaultEnv::Op ops[] = {FaultEnv::kOpen,     FaultEnv::kRead,     FaultEnv::kAppend,
                              FaultEnv::kSync,     FaultEnv::kRename,   FaultEnv::kRemove,
                              FaultEnv::kTruncate, FaultEnv::kSyncDir,  FaultEnv::kList};
  for (FaultEnv::Op op : ops) {
    for (int err : {EIO, ENOSPC, EACCES, EMFILE, EROFS, ENOENT}) {
      for (int skip = 0;; skip++) {
        fault_.FailCalls(op, err, "", 1, skip);
        int rc = nokv_open(dir_.path().c_str(), &o, &db);
        bool hit = fault_.injected() > 0;
        fault_.ClearRule();
        opens++;
        if (rc == NOKV_OK) {
          // Writes stop after a failure the open survived only if it said so.
          write_some(opens);
          nokv_close(db);
        } else {
          failed_opens++;
          EXPECT_STRNE(nokv_errmsg(), "") << "op " << op << " errno " << err;
        }
        db = Open(o);
        ASSERT_NE(db, nullptr) << "op " << op << " errno " << err << " skip " << skip;
        for (const auto& [k, v] : model) {
          auto got = Get(db, k);
          ASSERT_TRUE(got) << k << " after op " << op << " errno " << err << " skip " << skip;
          ASSERT_EQ(got->data, v) << k;
        }
        ASSERT_EQ(nokv_close(db), NOKV_OK);
        if (!hit) break;  // no call site left
      }
    }
  }
  printf("%d opens with an injected failure, %d of them failed\n", opens, failed_opens);
  EXPECT_GT(failed_opens, 20);
}

}  // namespace
