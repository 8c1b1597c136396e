// nokv_repair: a database that refuses to open is rebuilt from what its files
// still hold; the originals move to lost/, nothing is deleted, and no older
// value resurfaces in place of a lost one.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>

#include "nokv/nokv.h"
#include "test_util.h"

namespace {

using nokv_test::FilesWithSuffix;
using nokv_test::Get;
using nokv_test::Put;
using nokv_test::ReadFile;
using nokv_test::TempDir;
using nokv_test::WriteFile;

std::string Val(int i, int version, size_t n) {
  std::string v = std::to_string(i) + "v" + std::to_string(version) + ":";
  v.resize(n, static_cast<char>('a' + (i + version) % 26));
  return v;
}
std::string Key(int i) { return "key" + std::to_string(1000 + i); }

class RepairTest : public ::testing::Test {
 protected:
  // 300 keys written twice (the second time half of them large, in the value
  // log), a flush between, then unflushed writes in the WAL.
  void Fill() {
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir_.path().c_str(), nullptr, &db), NOKV_OK);
    for (int i = 0; i < 300; i++) ASSERT_EQ(Put(db, Key(i), Val(i, 1, 100)), NOKV_OK);
    ASSERT_EQ(nokv_flush(db), NOKV_OK);
    for (int i = 0; i < 300; i++) {
      ASSERT_EQ(Put(db, Key(i), Val(i, 2, i % 2 ? 3000 : 50), /*sync=*/true), NOKV_OK);
    }
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
  nokv_repair_report Repair() {
    nokv_repair_report r;
    EXPECT_EQ(nokv_repair(dir_.path().c_str(), nullptr, &r), NOKV_OK) << nokv_errmsg();
    return r;
  }
  nokv_db* Open() {
    nokv_db* db = nullptr;
    EXPECT_EQ(nokv_open(dir_.path().c_str(), nullptr, &db), NOKV_OK) << nokv_errmsg();
    return db;
  }
  TempDir dir_;
};

TEST_F(RepairTest, MissingCurrentIsRebuiltFromTablesAndWal) {
  Fill();
  std::filesystem::remove(dir_.file("CURRENT"));
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir_.path().c_str(), nullptr, &db), NOKV_ECORRUPT);
  nokv_repair_report r = Repair();
  EXPECT_GE(r.tables_verified, 1u);
  EXPECT_EQ(r.wal_records, 300u);
  EXPECT_EQ(r.values_lost, 0u);
  EXPECT_GT(r.files_moved, 0u);
  db = Open();
  for (int i = 0; i < 300; i++) ASSERT_EQ(Get(db, Key(i))->data, Val(i, 2, i % 2 ? 3000 : 50)) << i;
  ASSERT_EQ(Put(db, "after", "repair", true), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  EXPECT_FALSE(FilesWithSuffix(dir_.file("lost"), ".sst").empty());
  EXPECT_FALSE(FilesWithSuffix(dir_.file("lost"), ".wal").empty());
}

// WAL damage with synced records after it refuses the open; repair steps over
// the damaged record and keeps everything on both sides.
TEST_F(RepairTest, WalDamageIsSteppedOver) {
  Fill();
  auto wals = FilesWithSuffix(dir_.path(), ".wal");
  std::string wal = dir_.file(wals.back());
  std::string data = ReadFile(wal);
  data[data.size() / 2] ^= 0x10;
  WriteFile(wal, data);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir_.path().c_str(), nullptr, &db), NOKV_ECORRUPT);
  nokv_repair_report r = Repair();
  EXPECT_GE(r.wal_records, 298u);
  EXPECT_GT(r.wal_bytes_skipped, 0u);
  db = Open();
  int current = 0, older = 0;
  for (int i = 0; i < 300; i++) {
    auto v = Get(db, Key(i));
    ASSERT_TRUE(v) << i;
    if (v->data == Val(i, 2, i % 2 ? 3000 : 50)) {
      current++;
    } else {
      ASSERT_EQ(v->data, Val(i, 1, 100)) << i;  // the damaged record's key: its flushed value
      older++;
    }
  }
  EXPECT_GE(current, 298);
  EXPECT_LE(older, 2);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A value-log entry damaged under a synced record: the version whose value is
// lost becomes a deletion (the key reads as absent, not as its older value);
// every other key is whole.
TEST_F(RepairTest, LostValueIsADeletionNotAnOlderValue) {
  Fill();
  auto segs = FilesWithSuffix(dir_.path(), ".vlog");
  std::string seg = dir_.file(segs.front());
  std::string data = ReadFile(seg);
  data[16 + 100] ^= 0x01;  // inside the first entry
  WriteFile(seg, data);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir_.path().c_str(), nullptr, &db), NOKV_ECORRUPT);
  nokv_repair_report r = Repair();
  EXPECT_EQ(r.values_lost, 1u);
  db = Open();
  int absent = 0;
  for (int i = 0; i < 300; i++) {
    auto v = Get(db, Key(i));
    if (!v) {
      absent++;
      continue;
    }
    ASSERT_EQ(v->data, Val(i, 2, i % 2 ? 3000 : 50)) << i;
  }
  EXPECT_EQ(absent, 1);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  // The damaged segment stays where it is: other values live in it.
  EXPECT_TRUE(std::filesystem::exists(seg));
}

// A damaged table block: its readable entries are salvaged, the file moves to
// lost/, and a second repair of the repaired database changes nothing.
TEST_F(RepairTest, DamagedTableIsSalvagedAndRepairIsRepeatable) {
  Fill();
  nokv_db* db = Open();  // flushes the WAL's writes into a second table
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  auto tables = FilesWithSuffix(dir_.path(), ".sst");
  ASSERT_GE(tables.size(), 2u);
  std::string t = dir_.file(tables.front());
  std::string data = ReadFile(t);
  data[data.size() / 3] ^= 0x01;
  WriteFile(t, data);
  nokv_repair_report r = Repair();
  EXPECT_EQ(r.tables_damaged, 1u);
  EXPECT_GE(r.tables_verified, 1u);
  db = Open();
  for (int i = 0; i < 300; i++) {  // the newer table is whole: every newest value is there
    ASSERT_EQ(Get(db, Key(i))->data, Val(i, 2, i % 2 ? 3000 : 50)) << i;
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  EXPECT_TRUE(std::filesystem::exists(dir_.file("lost/" + tables.front())));
  nokv_repair_report again = Repair();
  EXPECT_EQ(again.tables_damaged, 0u);
  EXPECT_EQ(again.values_lost, 0u);
  db = Open();
  EXPECT_EQ(Get(db, Key(7))->data, Val(7, 2, 3000));
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

}  // namespace
