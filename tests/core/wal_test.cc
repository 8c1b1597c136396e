// The write-ahead log: record framing, replay, and the line between a torn tail
// (repaired and reported) and corruption (open fails, naming file and offset).
#include <errno.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fault_env.h"
#include "nokv/nokv.h"
#include "test_util.h"

extern "C" {
#include "util/env.h"
#include "wal/wal.h"
#include "wal/wal_format.h"
}

namespace {

using nokv_test::Get;
using nokv_test::Put;
using nokv_test::ReadFile;
using nokv_test::WriteFile;
using nokv_test::Stats;
using nokv_test::TempDir;

std::string Frame(uint8_t type, const std::string& payload) {
  std::string rec(NK_WAL_HEADER + payload.size(), '\0');
  memcpy(&rec[NK_WAL_HEADER], payload.data(), payload.size());
  nk_wal_encode_header(&rec[0], type, &rec[NK_WAL_HEADER], payload.size());
  return rec;
}

struct Collected {
  std::vector<std::string> payloads;
};

int Collect(void* arg, uint8_t, const char* p, size_t n) {
  static_cast<Collected*>(arg)->payloads.emplace_back(p, n);
  return NOKV_OK;
}

// Ends db the way kill -9 would: no close record reaches the log (a clean
// close syncs everything and writes a sync point, after which damage is never
// a torn tail), but everything written stays.
void Crash(nokv_db* db, nokv_test::FaultEnv& fault) {
  fault.PowerOff();
  nokv_close(db);
  fault.PowerOn();
}

nokv_options WithEnv(nokv_test::FaultEnv& fault) {
  nokv_options o;
  nokv_options_init(&o);
  o.env = fault.env();
  return o;
}

std::vector<std::string> Segments(const std::string& dir) {
  std::vector<std::string> v;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".wal") v.push_back(e.path().string());
  }
  std::sort(v.begin(), v.end());
  return v;
}

TEST(WalFormatTest, ChecksumCoversPayloadLengthAndType) {
  std::string rec = Frame(NK_WAL_BATCH, "hello");
  ASSERT_EQ(rec.size(), NK_WAL_HEADER + 5u);
  uint32_t sum = nk_get_u32(rec.data());
  EXPECT_EQ(nk_get_u32(rec.data() + 4), 5u);
  EXPECT_EQ(rec[8], NK_WAL_BATCH);
  EXPECT_EQ(sum, nk_wal_checksum(NK_WAL_BATCH, "hello", 5));
  EXPECT_NE(sum, nk_wal_checksum(NK_WAL_BATCH + 1, "hello", 5));
  EXPECT_NE(sum, nk_wal_checksum(NK_WAL_BATCH, "hellp", 5));
  EXPECT_NE(sum, nk_wal_checksum(NK_WAL_BATCH, "hell", 4));
}

TEST(WalFormatTest, SegmentNames) {
  char name[32];
  nk_wal_segment_name(42, name);
  EXPECT_STREQ(name, "00000042.wal");
  uint64_t n;
  EXPECT_TRUE(nk_wal_parse_name("00000042.wal", &n));
  EXPECT_EQ(n, 42u);
  EXPECT_TRUE(nk_wal_parse_name("123456789012.wal", &n));
  EXPECT_EQ(n, 123456789012u);
  EXPECT_FALSE(nk_wal_parse_name("LOCK", &n));
  EXPECT_FALSE(nk_wal_parse_name(".wal", &n));
  EXPECT_FALSE(nk_wal_parse_name("12a.wal", &n));
  EXPECT_FALSE(nk_wal_parse_name("00000042.wal.tmp", &n));
}

TEST(WalReplayTest, WrittenRecordsReplayInOrder) {
  TempDir dir;
  nk_wal* w;
  uint64_t next_file = 7;
  ASSERT_EQ(nk_wal_open(nk_env_posix(), dir.path().c_str(), &next_file, 1 << 20, 5, &w), NOKV_OK);
  EXPECT_EQ(next_file, 8u);
  std::vector<std::string> payloads = {"", "a", std::string(100000, 'x'), "last"};
  for (auto& p : payloads) {
    std::string rec = Frame(NK_WAL_BATCH, p);
    ASSERT_EQ(nk_wal_append(w, rec.data(), rec.size()), NOKV_OK);
  }
  ASSERT_EQ(nk_wal_close(w, true), NOKV_OK);
  Collected c;
  nk_wal_replay_stats st{};
  uint64_t numbers[] = {7};
  bool ended = true;
  ASSERT_EQ(nk_wal_replay_segment(nk_env_posix(), dir.path().c_str(), numbers, 1, 0, Collect,
                                  &c, &st, &ended),
            NOKV_OK);
  EXPECT_FALSE(ended);
  // The segment opens with a link to segment 5 (size 0: it is not there; synced).
  std::string link(NK_WAL_LINK_PAYLOAD, '\0');
  link[0] = 5;
  payloads.insert(payloads.begin(), link);
  // The close's sync point comes last, empty.
  payloads.push_back("");
  EXPECT_EQ(c.payloads, payloads);
  EXPECT_EQ(st.records, 4u);  // batches: the link is not one
  EXPECT_EQ(st.torn_tails, 0u);
}

TEST(WalReplayTest, CallbackErrorStopsReplay) {
  TempDir dir;
  WriteFile(dir.file("00000001.wal"), Frame(NK_WAL_BATCH, "a") + Frame(NK_WAL_BATCH, "b"));
  int calls = 0;
  auto fail = [](void* arg, uint8_t, const char*, size_t) {
    ++*static_cast<int*>(arg);
    return static_cast<int>(NOKV_ECORRUPT);
  };
  nk_wal_replay_stats st{};
  uint64_t numbers[] = {1};
  bool ended;
  EXPECT_EQ(nk_wal_replay_segment(nk_env_posix(), dir.path().c_str(), numbers, 1, 0, fail, &calls,
                                  &st, &ended),
            NOKV_ECORRUPT);
  EXPECT_EQ(calls, 1);
}

// Table-driven damage to the newest segment of a database holding keys k0..k9:
// whether it is a torn tail (open succeeds without the damaged record) or
// corruption (open fails).
struct Damage {
  const char* name;
  void (*apply)(std::string& seg, const std::vector<size_t>& record_ends);
  bool torn;
};

const Damage kDamages[] = {
    {"cut inside the last payload",
     [](std::string& s, const std::vector<size_t>&) { s.resize(s.size() - 3); }, true},
    {"cut inside the last header",
     [](std::string& s, const std::vector<size_t>& ends) { s.resize(ends[8] + 4); }, true},
    {"flipped byte in the last record",
     [](std::string& s, const std::vector<size_t>&) { s[s.size() - 2] ^= 0x40; }, true},
    {"zero-filled space after the last record",
     [](std::string& s, const std::vector<size_t>&) { s.append(4096, '\0'); }, false /*intact*/},
    {"last record zeroed",
     [](std::string& s, const std::vector<size_t>& ends) {
       std::fill(s.begin() + static_cast<long>(ends[8]), s.end(), '\0');
     },
     true},
    {"flipped byte in a middle record",
     [](std::string& s, const std::vector<size_t>& ends) { s[ends[4] + 12] ^= 0x01; }, false},
    {"length of a middle record inflated",
     [](std::string& s, const std::vector<size_t>& ends) { s[ends[4] + 5] = 0x10; }, false},
};

class WalDamageTest : public ::testing::TestWithParam<Damage> {};

TEST_P(WalDamageTest, TornTailIsRepairedCorruptionFailsOpen) {
  const Damage& d = GetParam();
  TempDir dir;
  nokv_test::FaultEnv fault;
  nokv_options o = WithEnv(fault);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  std::vector<size_t> ends;
  // Synced: damage with a synced record after it cannot be a torn write.
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(Put(db, "k" + std::to_string(i), "value" + std::to_string(i), /*sync=*/true),
              NOKV_OK);
    ends.push_back(Stats(db).wal_bytes_written);
  }
  Crash(db, fault);
  auto segs = Segments(dir.path());
  ASSERT_EQ(segs.size(), 1u);
  std::string seg = ReadFile(segs[0]);
  ASSERT_EQ(seg.size(), ends.back());
  d.apply(seg, ends);
  WriteFile(segs[0], seg);

  bool corrupt_expected = std::string(d.name).find("middle") != std::string::npos;
  int rc = nokv_open(dir.path().c_str(), nullptr, &db);
  if (corrupt_expected) {
    ASSERT_EQ(rc, NOKV_ECORRUPT) << d.name;
    std::string msg = nokv_errmsg();
    EXPECT_NE(msg.find(segs[0]), std::string::npos) << msg;
    EXPECT_NE(msg.find("offset " + std::to_string(ends[4])), std::string::npos) << msg;
    EXPECT_EQ(ReadFile(segs[0]), seg) << "a failed open must not modify the log";
    return;
  }
  ASSERT_EQ(rc, NOKV_OK) << d.name << ": " << nokv_errmsg();
  nokv_statistics s = Stats(db);
  int survivors = d.torn ? 9 : 10;
  if (std::string(d.name).find("zero-filled") != std::string::npos) {
    EXPECT_EQ(s.torn_tail_truncations, 1u);
    EXPECT_EQ(s.torn_tail_bytes, 4096u);
  } else {
    EXPECT_EQ(s.torn_tail_truncations, 1u) << d.name;
    EXPECT_EQ(s.torn_tail_bytes, seg.size() - ends[8]) << d.name;
  }
  for (int i = 0; i < 10; i++) {
    EXPECT_EQ(Get(db, "k" + std::to_string(i)).has_value(), i < survivors) << d.name << " " << i;
  }
  // The repair is durable and the database keeps working across reopens.
  ASSERT_EQ(Put(db, "after", "repair", true), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(Stats(db).torn_tail_truncations, 0u);
  EXPECT_EQ(Get(db, "after")->data, "repair");
  EXPECT_EQ(Get(db, "k0")->data, "value0");
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

INSTANTIATE_TEST_SUITE_P(Damages, WalDamageTest, ::testing::ValuesIn(kDamages),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (auto& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

TEST(WalDamageTest, DamageInASealedSegmentIsCorruption) {
  TempDir dir;
  nokv_db* db;
  nokv_options o;
  nokv_options_init(&o);
  o.wal_segment_bytes = 4096;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < 60; i++) ASSERT_EQ(Put(db, "k" + std::to_string(i), std::string(100, 'v')), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  auto segs = Segments(dir.path());
  ASSERT_GE(segs.size(), 2u);
  std::string seg = ReadFile(segs[0]);
  seg.resize(seg.size() - 1);  // would be a torn tail in the newest segment
  WriteFile(segs[0], seg);
  // The segments were sealed without a sync, but the clean close synced them
  // all and wrote a sync point after them: damage before it was durable.
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_ECORRUPT);
  std::string msg = nokv_errmsg();
  EXPECT_NE(msg.find(segs[0] + " is corrupt at offset"), std::string::npos) << msg;
  EXPECT_NE(msg.find("durable record follows in " +
                     segs.back().substr(segs.back().rfind('/') + 1)),
            std::string::npos)
      << msg;
  EXPECT_EQ(ReadFile(segs[0]), seg) << "a failed open must not modify the log";
}

// Damage inside the unsynced part of the newest segment, with intact records
// after it that were never synced either: the kernel may write dirty pages back
// in any order, so a power loss can leave exactly this. Nothing after the
// damage was promised durable: it is a torn tail, cut with everything after it.
TEST(WalDamageTest, DamageFollowedOnlyByUnsyncedRecordsIsATornTail) {
  TempDir dir;
  nokv_test::FaultEnv fault;
  nokv_options o = WithEnv(fault);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  std::vector<size_t> ends;
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(Put(db, "k" + std::to_string(i), "value" + std::to_string(i), /*sync=*/i == 3),
              NOKV_OK);
    ends.push_back(Stats(db).wal_bytes_written);
  }
  Crash(db, fault);
  auto segs = Segments(dir.path());
  ASSERT_EQ(segs.size(), 1u);
  std::string seg = ReadFile(segs[0]);
  seg[ends[5] + 12] ^= 0x01;  // record 6: after the last synced one (3)
  WriteFile(segs[0], seg);
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(Stats(db).torn_tail_truncations, 1u);
  EXPECT_EQ(Stats(db).torn_tail_bytes, seg.size() - ends[5]);
  for (int i = 0; i < 10; i++) {
    EXPECT_EQ(Get(db, "k" + std::to_string(i)).has_value(), i <= 5) << i;
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);

  // The same damage before the synced record is corruption.
  TempDir dir2;
  ASSERT_EQ(nokv_open(dir2.path().c_str(), &o, &db), NOKV_OK);
  ends.clear();
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(Put(db, "k" + std::to_string(i), "value" + std::to_string(i), /*sync=*/i == 8),
              NOKV_OK);
    ends.push_back(Stats(db).wal_bytes_written);
  }
  Crash(db, fault);
  segs = Segments(dir2.path());
  seg = ReadFile(segs[0]);
  seg[ends[5] + 12] ^= 0x01;
  WriteFile(segs[0], seg);
  ASSERT_EQ(nokv_open(dir2.path().c_str(), nullptr, &db), NOKV_ECORRUPT);
  std::string msg = nokv_errmsg();
  EXPECT_NE(msg.find("offset " + std::to_string(ends[5])), std::string::npos) << msg;
  EXPECT_NE(msg.find("durable record follows at offset " + std::to_string(ends[7])),
            std::string::npos)
      << msg;
  EXPECT_EQ(ReadFile(segs[0]), seg) << "a failed open must not modify the log";
}

// Each segment links to the one before it, so a missing segment between the
// manifest's log number and the newest is found: the open refuses, naming it,
// instead of replaying around the hole.
TEST(WalDamageTest, MissingSegmentIsCorruption) {
  TempDir dir;
  nokv_db* db;
  nokv_options o;
  nokv_options_init(&o);
  o.wal_segment_bytes = 4096;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < 200; i++) ASSERT_EQ(Put(db, "k" + std::to_string(i), std::string(100, 'v')), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  auto segs = Segments(dir.path());
  ASSERT_GE(segs.size(), 4u);
  std::string gone = segs[2];
  std::string data = ReadFile(gone);
  std::filesystem::remove(gone);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_ECORRUPT);
  std::string msg = nokv_errmsg();
  std::string name = gone.substr(gone.rfind('/') + 1);
  EXPECT_NE(msg.find("WAL segment " + name + " is missing"), std::string::npos) << msg;
  // The first one missing too (its successor links to it, at or above the log number).
  WriteFile(gone, data);
  std::string first_data = ReadFile(segs[0]);
  std::filesystem::remove(segs[0]);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_ECORRUPT);
  EXPECT_NE(std::string(nokv_errmsg()).find("is missing"), std::string::npos) << nokv_errmsg();
  WriteFile(segs[0], first_data);
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
  for (int i = 0; i < 200; i++) ASSERT_TRUE(Get(db, "k" + std::to_string(i))) << i;
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A WAL segment added to an existing database (its number above every other).
void AddSegment(const TempDir& dir, const std::string& data) {
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  WriteFile(dir.file("90000000.wal"), data);
}

TEST(WalDamageTest, UnknownRecordTypeIsCorruption) {
  TempDir dir;
  AddSegment(dir, Frame(9, "whatever") + Frame(NK_WAL_BATCH, "x"));
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_ECORRUPT);
  EXPECT_NE(std::string(nokv_errmsg()).find("unknown record type"), std::string::npos);
}

TEST(WalDamageTest, MalformedBatchWithValidChecksumIsCorruption) {
  TempDir dir;
  std::string batch(12, '\0');
  batch[0] = 1;   // commit_ts 1
  batch[8] = 3;   // claims 3 operations, has none
  AddSegment(dir, Frame(NK_WAL_BATCH, batch));
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_ECORRUPT);
  EXPECT_NE(std::string(nokv_errmsg()).find("malformed batch"), std::string::npos)
      << nokv_errmsg();
}


// ---- segments sealed without a sync ----

// Options over the fault env with WAL segments rotated every 4 KiB.
nokv_options SmallSegments(nokv_test::FaultEnv& fault) {
  nokv_options o = WithEnv(fault);
  o.wal_segment_bytes = 4096;
  return o;
}

// Writes k0..k<n-1> (100-byte values, unsynced but for `synced`) across 4 KiB
// segments of a database that then dies as kill -9 would. Returns the
// segments, oldest first.
std::vector<std::string> WriteAcrossSegments(const TempDir& dir, int n, int synced) {
  nokv_test::FaultEnv fault;
  nokv_options o = SmallSegments(fault);
  nokv_db* db;
  EXPECT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < n; i++) {
    EXPECT_EQ(Put(db, "k" + std::to_string(i), std::string(100, 'v'), i == synced), NOKV_OK);
  }
  Crash(db, fault);
  return Segments(dir.path());
}

// Cuts the last 50 bytes of the segment at path (its last record, half
// written, as a power loss leaves it); returns what is left.
std::string TearLastRecord(const std::string& path) {
  std::string torn = ReadFile(path);
  torn.resize(torn.size() - 50);
  WriteFile(path, torn);
  return torn;
}

// Where the whole records at the start of a segment end.
size_t WholeRecordsEnd(const std::string& seg) {
  size_t off = 0;
  while (seg.size() - off >= NK_WAL_HEADER &&
         seg.size() - off - NK_WAL_HEADER >= nk_get_u32(seg.data() + off + 4)) {
    off += NK_WAL_HEADER + nk_get_u32(seg.data() + off + 4);
  }
  return off;
}

// Rotation syncs nothing: writes that did not ask for a sync never wait on one.
TEST(WalSealTest, UnsyncedWritesNeverFsync) {
  TempDir dir;
  nokv_test::FaultEnv fault;
  nokv_options o = SmallSegments(fault);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  int before = fault.sync_calls();
  for (int i = 0; i < 200; i++) ASSERT_EQ(Put(db, "k" + std::to_string(i), std::string(100, 'v')), NOKV_OK);
  EXPECT_GE(Segments(dir.path()).size(), 5u);
  EXPECT_EQ(fault.sync_calls(), before);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A synced write makes every earlier write durable, in the segments sealed
// without a sync too (and their names): a power loss right after it keeps all.
TEST(WalSealTest, SyncedWriteMakesSealedSegmentsDurable) {
  TempDir dir;
  nokv_test::FaultEnv fault;
  nokv_options o = SmallSegments(fault);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < 100; i++) {
    ASSERT_EQ(Put(db, "k" + std::to_string(i), std::string(100, 'v'), i == 99), NOKV_OK);
  }
  fault.PowerOff();
  nokv_close(db);
  fault.DropUnsynced();
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
  for (int i = 0; i < 100; i++) EXPECT_TRUE(Get(db, "k" + std::to_string(i))) << i;
  EXPECT_EQ(Stats(db).torn_tail_truncations, 0u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// A power loss may leave a segment sealed without a sync short while a later
// segment's pages reached the disk. Nothing after the hole was synced, so the
// log ends there: the open keeps the writes before it, cuts the later segments
// back to their links, and never replays a write past the hole.
TEST(WalSealTest, TearInASegmentSealedUnsyncedEndsTheLog) {
  TempDir dir;
  auto segs = WriteAcrossSegments(dir, 150, /*synced=*/-1);
  ASSERT_GE(segs.size(), 4u);
  std::string torn = TearLastRecord(segs[1]);
  uint64_t later = 0;  // what the later segments hold past their links
  for (size_t i = 2; i < segs.size(); i++) {
    later += std::filesystem::file_size(segs[i]) - NK_WAL_LINK_RECORD;
  }
  ASSERT_GT(later, 0u);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(Stats(db).torn_tail_truncations, 1u);
  // The half record, and every later segment back to its link.
  EXPECT_EQ(Stats(db).torn_tail_bytes, later + (torn.size() - WholeRecordsEnd(torn)));
  int present = 0;
  while (present < 150 && Get(db, "k" + std::to_string(present))) present++;
  EXPECT_GT(present, 0);
  EXPECT_LT(present, 150);
  for (int i = present; i < 150; i++) EXPECT_FALSE(Get(db, "k" + std::to_string(i))) << i;
  ASSERT_EQ(Put(db, "after", "x", true), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(Get(db, "after")->data, "x");
  EXPECT_FALSE(Get(db, "k" + std::to_string(present)));
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// The same hole with a synced write in a later segment: that sync synced the
// damaged segment first, so the damage was durable: corruption, files untouched.
TEST(WalSealTest, TearBeforeALaterSyncedWriteIsCorruption) {
  TempDir dir;
  auto segs = WriteAcrossSegments(dir, 150, /*synced=*/140);
  ASSERT_GE(segs.size(), 4u);
  std::string torn = TearLastRecord(segs[1]);
  std::string newest = ReadFile(segs.back());
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_ECORRUPT);
  std::string msg = nokv_errmsg();
  EXPECT_NE(msg.find(segs[1] + " is corrupt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("durable record follows in 0"), std::string::npos) << msg;
  EXPECT_EQ(ReadFile(segs[1]), torn);
  EXPECT_EQ(ReadFile(segs.back()), newest);
}

// A sealed segment that lost whole records at its end (cut at a record
// boundary, as a page never written back leaves it) is found by the size its
// successor's link records.
TEST(WalSealTest, SealedSegmentShorterThanItsLinkSaysIsTorn) {
  TempDir dir;
  auto segs = WriteAcrossSegments(dir, 150, /*synced=*/-1);
  ASSERT_GE(segs.size(), 4u);
  std::string seg = ReadFile(segs[1]);
  // Cut back to the end of its third record.
  size_t off = 0;
  for (int r = 0; r < 3; r++) off += NK_WAL_HEADER + nk_get_u32(seg.data() + off + 4);
  ASSERT_LT(off, seg.size());
  seg.resize(off);
  WriteFile(segs[1], seg);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(Stats(db).torn_tail_truncations, 1u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// The open that ends the log at such a tear writes: it cuts the later segments
// and the torn one, and syncs each. Every file call it makes failing (with
// EIO or ENOSPC, at each call site in turn), or the power going off at each of
// its syncs, must leave a database the next open recovers to the same writes.
TEST(WalSealTest, EndingTheLogSurvivesFailedCallsAndPowerLoss) {
  // The writes a clean recovery keeps: k0..k<expect-1>.
  int expect = 0;
  {
    TempDir dir;
    auto segs = WriteAcrossSegments(dir, 150, /*synced=*/-1);
    TearLastRecord(segs[1]);
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK) << nokv_errmsg();
    while (expect < 150 && Get(db, "k" + std::to_string(expect))) expect++;
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
  ASSERT_GT(expect, 0);
  ASSERT_LT(expect, 150);
  auto recovers_the_same = [&](const TempDir& dir, const std::string& what) {
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK) << what << ": " << nokv_errmsg();
    for (int i = 0; i < 150; i++) {
      ASSERT_EQ(Get(db, "k" + std::to_string(i)).has_value(), i < expect) << what << ", k" << i;
    }
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  };
  int failed_opens = 0;
  for (auto op : {nokv_test::FaultEnv::kOpen, nokv_test::FaultEnv::kRead,
                  nokv_test::FaultEnv::kTruncate, nokv_test::FaultEnv::kSync}) {
    for (int err : {EIO, ENOSPC}) {
      for (int skip = 0; skip < 6; skip++) {
        TempDir dir;
        auto segs = WriteAcrossSegments(dir, 150, /*synced=*/-1);
        TearLastRecord(segs[1]);
        nokv_test::FaultEnv fault;
        nokv_options o = WithEnv(fault);
        fault.FailCalls(op, err, ".wal", 1, skip);
        nokv_db* db = nullptr;
        int rc = nokv_open(dir.path().c_str(), &o, &db);
        std::string what = "op " + std::to_string(op) + " errno " + std::to_string(err) +
                           " skip " + std::to_string(skip);
        if (rc == NOKV_OK) {
          nokv_close(db);
        } else {
          failed_opens++;
          EXPECT_NE(std::string(nokv_errmsg()).find("injected"), std::string::npos)
              << what << ": " << nokv_errmsg();
        }
        recovers_the_same(dir, what);
      }
    }
  }
  EXPECT_GT(failed_opens, 0);
  int cut = 0;
  for (int k = 1;; k++) {
    TempDir dir;
    auto segs = WriteAcrossSegments(dir, 150, /*synced=*/-1);
    TearLastRecord(segs[1]);
    nokv_test::FaultEnv fault;
    nokv_options o = WithEnv(fault);
    fault.PowerOffAtSync(k);
    nokv_db* db = nullptr;
    if (nokv_open(dir.path().c_str(), &o, &db) == NOKV_OK) nokv_close(db);
    bool reached = fault.powered_off();
    fault.DropUnsynced();
    recovers_the_same(dir, "power cut at sync " + std::to_string(k));
    if (!reached) break;  // the open and close made fewer syncs than k
    cut++;
  }
  printf("%d failed opens; power cut at %d sync points of the recovering open\n", failed_opens,
         cut);
  EXPECT_GT(cut, 3);
}

}  // namespace
