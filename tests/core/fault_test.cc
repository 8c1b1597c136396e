// Fault injection through the file layer: failed writes and syncs stop the
// database with a clear error instead of acknowledging what is not logged, and a
// power loss keeps every write that was acknowledged after an fsync.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "fault_env.h"
#include "nokv/nokv.h"
#include "test_util.h"

namespace {

using nokv_test::FaultEnv;
using nokv_test::Get;
using nokv_test::Put;
using nokv_test::TempDir;

class FaultTest : public ::testing::Test {
 protected:
  nokv_db* Open(const nokv_env* env, size_t segment_bytes = 64 << 20) {
    return OpenAt(dir_.path(), env, segment_bytes);
  }
  nokv_db* OpenAt(const std::string& path, const nokv_env* env, size_t segment_bytes = 64 << 20) {
    nokv_options o;
    nokv_options_init(&o);
    o.env = env;
    o.wal_segment_bytes = segment_bytes;
    nokv_db* db = nullptr;
    EXPECT_EQ(nokv_open(path.c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    return db;
  }
  TempDir dir_;
  FaultEnv fault_;
};

TEST_F(FaultTest, FailedLogWriteIsNotAcknowledgedAndStopsWrites) {
  nokv_db* db = Open(fault_.env());
  ASSERT_EQ(Put(db, "before", "1"), NOKV_OK);
  fault_.FailAppendsAfter(0);
  EXPECT_EQ(Put(db, "lost", "1"), NOKV_EIO);
  EXPECT_NE(std::string(nokv_errmsg()).find("injected"), std::string::npos) << nokv_errmsg();
  EXPECT_FALSE(Get(db, "lost"));
  // Sticky: even once the disk recovers, writes wait for a reopen that replays the log.
  fault_.FailAppendsAfter(-1);
  EXPECT_EQ(Put(db, "after", "1"), NOKV_EIO);
  EXPECT_NE(std::string(nokv_errmsg()).find("reopen"), std::string::npos) << nokv_errmsg();
  EXPECT_EQ(Get(db, "before")->data, "1");  // reads keep working
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  db = Open(fault_.env());
  EXPECT_EQ(Get(db, "before")->data, "1");
  EXPECT_FALSE(Get(db, "lost"));
  EXPECT_EQ(Put(db, "after", "1"), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST_F(FaultTest, FailedSyncIsAnErrorForTheSyncWriter) {
  nokv_db* db = Open(fault_.env());
  fault_.FailSyncs(true);
  EXPECT_EQ(Put(db, "k", "v", /*sync=*/true), NOKV_EIO);
  EXPECT_NE(std::string(nokv_errmsg()).find("fdatasync"), std::string::npos) << nokv_errmsg();
  // fsync failures cannot be retried safely (the kernel may have dropped the pages).
  fault_.FailSyncs(false);
  EXPECT_EQ(Put(db, "k2", "v", true), NOKV_EIO);
  // Nor can closing make the log durable, though fsyncs work again: it says
  // so, and writes no sync point vouching for what may be lost.
  EXPECT_EQ(nokv_close(db), NOKV_EIO);
  EXPECT_NE(std::string(nokv_errmsg()).find("an earlier sync failed"), std::string::npos)
      << nokv_errmsg();
  db = Open(nullptr);  // the log replays: nothing acknowledged was lost
  EXPECT_FALSE(Get(db, "k2"));
  EXPECT_EQ(nokv_close(db), NOKV_OK);
}

// nokv_sync (as a replica's background syncer calls it) fsyncs the logs after
// leaving the write queue: writes behind it do not wait for its fsync, and
// what it covered survives a power loss.
TEST_F(FaultTest, WritesGoOnWhileASyncOfTheLogsRuns) {
  // With 4 KiB segments the writes behind it rotate the WAL many times while
  // the marked segment's fsync is held: it is found sealed, and synced.
  for (size_t segment : {size_t(64) << 20, size_t(4096)}) {
    SCOPED_TRACE("segment bytes " + std::to_string(segment));
    TempDir dir;
    nokv_db* db = OpenAt(dir.path(), fault_.env(), segment);
    ASSERT_NE(db, nullptr);
    for (int i = 0; i < 50; i++) ASSERT_EQ(Put(db, "covered" + std::to_string(i), "1"), NOKV_OK);
    fault_.HoldSyncs(".wal");
    auto synced = std::async(std::launch::async, [db] { return nokv_sync(db); });
    fault_.WaitForHeldSync();  // inside the WAL's fsync
    auto writes = std::async(std::launch::async, [db] {
      for (int i = 0; i < 100; i++) {
        if (Put(db, "w" + std::to_string(i), std::string(100, 'v')) != NOKV_OK) return false;
      }
      return true;
    });
    bool went_on = writes.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
    EXPECT_TRUE(went_on) << "writes waited for nokv_sync's fsync";
    EXPECT_EQ(synced.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
    fault_.HoldSyncs("");
    EXPECT_EQ(synced.get(), NOKV_OK) << nokv_errmsg();
    EXPECT_TRUE(writes.get());
    fault_.PowerOff();
    nokv_close(db);
    fault_.DropUnsynced();
    fault_.PowerOn();
    db = OpenAt(dir.path(), nullptr, segment);
    ASSERT_NE(db, nullptr);
    for (int i = 0; i < 50; i++) EXPECT_EQ(Get(db, "covered" + std::to_string(i))->data, "1") << i;
    EXPECT_EQ(nokv_close(db), NOKV_OK);
  }
}

// A sync that fails outside the queue fails every later one: the kernel
// reports a lost write-back once, so a sync writer's fsync right after it may
// succeed with its data gone.
TEST_F(FaultTest, ASyncThatFailedOutsideTheQueueFailsTheSyncWriterAfterIt) {
  const std::string big(64 << 10, 'v');  // in the value log
  for (const char* log : {".wal", ".vlog"}) {
    SCOPED_TRACE(log);
    TempDir dir;
    nokv_db* db = OpenAt(dir.path(), fault_.env());
    ASSERT_NE(db, nullptr);
    ASSERT_EQ(Put(db, "a", big), NOKV_OK);
    fault_.HoldSyncs(log);
    fault_.FailCalls(FaultEnv::kSync, EIO, log, /*times=*/1);
    auto synced = std::async(std::launch::async, [db] { return nokv_sync(db); });
    fault_.WaitForHeldSync();
    auto writer = std::async(std::launch::async, [&] { return Put(db, "b", big, /*sync=*/true); });
    fault_.HoldSyncs("");
    EXPECT_EQ(synced.get(), NOKV_EIO);
    EXPECT_EQ(writer.get(), NOKV_EIO);  // its own fsync would succeed
    EXPECT_EQ(fault_.injected(), 1);
    fault_.ClearRule();
    EXPECT_EQ(nokv_close(db), NOKV_EIO);  // nor can closing vouch for the logs
  }
}

TEST_F(FaultTest, PartialWriteIsATornTailAfterReopen) {
  nokv_db* db = Open(fault_.env());
  ASSERT_EQ(Put(db, "a", "1"), NOKV_OK);
  fault_.FailAppendsAfter(0);
  EXPECT_EQ(Put(db, "b", std::string(1000, 'x')), NOKV_EIO);
  fault_.FailAppendsAfter(-1);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  db = Open(nullptr);
  EXPECT_EQ(Get(db, "a")->data, "1");
  EXPECT_FALSE(Get(db, "b"));
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Power loss at several points: every write acknowledged before the last
// successful sync survives; nothing written after it does (in this simulation
// the disk keeps no unsynced byte, the worst case).
TEST_F(FaultTest, PowerLossKeepsEverySyncedWrite) {
  for (size_t segment : {size_t(64) << 20, size_t(4096)}) {
    SCOPED_TRACE("segment bytes " + std::to_string(segment));
    TempDir dir;
    nokv_options o;
    nokv_options_init(&o);
    o.env = fault_.env();
    o.wal_segment_bytes = segment;
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
    int synced_upto = -1;
    for (int i = 0; i < 300; i++) {
      bool sync = i % 37 == 0;
      ASSERT_EQ(Put(db, "k" + std::to_string(i), std::string(50, 'v'), sync), NOKV_OK);
      if (sync) synced_upto = i;
    }
    fault_.PowerOff();
    ASSERT_EQ(Put(db, "ghost", "v", true), NOKV_OK);  // the disk never got it
    ASSERT_EQ(nokv_close(db), NOKV_OK);
    fault_.DropUnsynced();
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    int present = 0;
    for (int i = 0; i < 300; i++) {
      bool there = Get(db, "k" + std::to_string(i)).has_value();
      if (i <= synced_upto) {
        ASSERT_TRUE(there) << "synced write k" << i << " lost";
      }
      present += there;
    }
    // Segment rotation syncs too, so with small segments more survives.
    EXPECT_GE(present, synced_upto + 1);
    if (segment > 4096) {
      EXPECT_EQ(present, synced_upto + 1);
    }
    EXPECT_FALSE(Get(db, "ghost"));
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
}

// Power loss after flushes and compactions: the tables and manifests they
// created must be reachable (their names made durable) before the manifest or
// CURRENT names them, and every synced write must survive.
TEST_F(FaultTest, PowerLossAfterFlushesAndCompactionsKeepsEverySyncedWrite) {
  TempDir dir;
  nokv_options o;
  nokv_options_init(&o);
  o.env = fault_.env();
  o.memtable_max_bytes = 64 << 10;
  o.level1_max_bytes = 128 << 10;
  o.target_file_bytes = 32 << 10;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  int synced_upto = -1;
  for (int i = 0; i < 4000; i++) {
    bool sync = i % 97 == 0;
    ASSERT_EQ(Put(db, "k" + std::to_string(i), std::string(100, 'v'), sync), NOKV_OK);
    if (sync) synced_upto = i;
    if (i == 2000) {
      ASSERT_EQ(nokv_compact(db), NOKV_OK);
    }
  }
  ASSERT_EQ(nokv_flush(db), NOKV_OK);
  nokv_statistics s;
  nokv_stats(db, &s);
  ASSERT_GT(s.flushes, 5u);
  ASSERT_GT(s.tables, 1u);
  fault_.PowerOff();
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  fault_.DropUnsynced();
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
  for (int i = 0; i <= synced_upto; i++) {
    ASSERT_TRUE(Get(db, "k" + std::to_string(i)).has_value()) << "synced write k" << i << " lost";
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

}  // namespace
