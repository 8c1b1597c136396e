// The nokv command on real data directories: what `nokv vlog` and `nokv
// manifest` print, and `nokv vlog --verify` finding a damaged value.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "nokv/nokv.h"
#include "test_util.h"

using namespace nokv_test;

namespace {

struct Result {
  int status;
  std::string out;
};

Result RunCli(const std::string& args) {
  std::string bin = std::string(getenv("TEST_SRCDIR")) + "/" + getenv("TEST_WORKSPACE") +
                    "/core/cli/nokv";
  FILE* p = popen((bin + " " + args + " 2>&1").c_str(), "r");
  Result r{-1, ""};
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// A database with three 64 KiB segments' worth of 4 KiB values, half overwritten
// and compacted, so the value log has sealed segments with garbage.
void Fill(const std::string& path) {
  nokv_options o;
  nokv_options_init(&o);
  o.value_log_segment_bytes = 64 << 10;
  o.disable_auto_gc = true;
  nokv_db* db;
  ASSERT_EQ(nokv_open(path.c_str(), &o, &db), NOKV_OK);
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 40; i++) {
      if (round == 1 && i % 2) continue;
      std::string v(4096, static_cast<char>('a' + round));
      ASSERT_EQ(Put(db, "key" + std::to_string(i), v), NOKV_OK);
    }
  }
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

TEST(Cli, VlogListsSegmentsWithGarbageAndHead) {
  TempDir dir;
  Fill(dir.path());
  Result r = RunCli("vlog " + dir.path());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("head: segment"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("00000001.vlog"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sealed"), std::string::npos) << r.out;
  // 20 values were overwritten: compaction reported their bytes as garbage.
  size_t at = r.out.rfind(" garbage (");
  ASSERT_NE(at, std::string::npos) << r.out;
  size_t start = r.out.rfind(", ", at) + 2;
  EXPECT_GE(std::stoull(r.out.substr(start, at - start)), 20u * 4096) << r.out;

  Result v = RunCli("vlog " + dir.path() + " --verify");
  ASSERT_EQ(v.status, 0) << v.out;
  EXPECT_NE(v.out.find("60 entries checked: all checksums match"), std::string::npos) << v.out;
}

TEST(Cli, VerifyFindsAFlippedByte) {
  TempDir dir;
  Fill(dir.path());
  std::string path = dir.file("00000002.vlog");
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good());
  f.seekg(5000);
  char c;
  f.read(&c, 1);
  c ^= 0x10;
  f.seekp(5000);
  f.write(&c, 1);
  f.close();
  Result r = RunCli("vlog " + dir.path() + " --verify");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("DAMAGED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checksum"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("DAMAGE FOUND"), std::string::npos) << r.out;
}

// `nokv stats DIR` agrees with what the engine reports for the same directory,
// and its --json output parses (Python's json module) to the same figures.
TEST(Cli, StatsAgreesWithTheEngineAndParsesAsJson) {
  TempDir dir;
  Fill(dir.path());
  nokv_options o;
  nokv_options_init(&o);
  o.disable_auto_gc = true;
  o.disable_auto_compaction = true;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  ASSERT_EQ(Put(db, "unflushed", std::string(8192, 'u')), NOKV_OK);  // a WAL record to replay
  nokv_statistics s;
  ASSERT_EQ(nokv_stats(db, &s), NOKV_OK);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  ASSERT_GT(s.tables, 0u);

  Result r = RunCli("stats " + dir.path());
  ASSERT_EQ(r.status, 0) << r.out;
  // The unflushed write's timestamp is in the WAL only.
  EXPECT_NE(r.out.find("last commit ts    " + std::to_string(s.last_commit_ts - 1) + " in tables"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  total           "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::to_string(s.table_bytes)), std::string::npos) << r.out;

  std::string json_path = dir.file("stats.json");
  r = RunCli("stats " + dir.path() + " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  {
    std::ofstream(json_path) << r.out;
  }
  std::string py =
      "/usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); "
      "print(d[\"tables\"][\"files\"], d[\"tables\"][\"bytes\"], "
      "sum(l[\"files\"] for l in d[\"levels\"]), d[\"last_commit_ts_in_tables\"], "
      "d[\"value_log\"][\"segments\"], d[\"value_log\"][\"garbage_bytes\"], "
      "d[\"value_log\"][\"bytes_past_head\"], d[\"wal\"][\"segments_to_replay\"], "
      "d[\"wal\"][\"bytes_to_replay\"])' " +
      json_path;
  FILE* p = popen(py.c_str(), "r");
  ASSERT_NE(p, nullptr);
  unsigned long long tables, bytes, level_sum, last_ts, segs, garbage, past_head, wal_segs,
      wal_bytes;
  int got = fscanf(p, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &tables, &bytes, &level_sum,
                   &last_ts, &segs, &garbage, &past_head, &wal_segs, &wal_bytes);
  ASSERT_EQ(pclose(p), 0) << r.out;
  ASSERT_EQ(got, 9) << r.out;
  EXPECT_EQ(tables, s.tables);
  EXPECT_EQ(level_sum, s.tables);
  EXPECT_EQ(bytes, s.table_bytes);
  EXPECT_EQ(last_ts, s.last_commit_ts - 1);
  EXPECT_EQ(segs, FilesWithSuffix(dir.path(), ".vlog").size());
  EXPECT_GT(garbage, 0u);       // half the values were overwritten and compacted
  EXPECT_GE(past_head, 8192u);  // the unflushed value
  EXPECT_GE(wal_segs, 1u);
  EXPECT_GT(wal_bytes, 0u);
}

TEST(Cli, ManifestListsTables) {
  TempDir dir;
  Fill(dir.path());
  Result r = RunCli("manifest " + dir.path());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("value log head  segment"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(".sst"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[key0 .. key9]"), std::string::npos) << r.out;
}

TEST(Cli, ManifestListsRangeTombstones) {
  TempDir dir;
  {
    nokv_options o;
    nokv_options_init(&o);
    o.disable_auto_compaction = true;  // the tombstone stays until compacted
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
    ASSERT_EQ(nokv_put(db, nullptr, "key5", 4, "v", 1, nullptr), NOKV_OK);
    ASSERT_EQ(nokv_flush(db), NOKV_OK);
    uint64_t ts;
    ASSERT_EQ(nokv_delete_range(db, nullptr, "key0", 4, "key9", 4, &ts), NOKV_OK);
    ASSERT_EQ(nokv_flush(db), NOKV_OK);
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
  Result r = RunCli("manifest " + dir.path());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("range tombstones: 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[key0 .. key9)"), std::string::npos) << r.out;
}

TEST(Cli, UsageAndMissingDirectory) {
  EXPECT_EQ(RunCli("").status, 2);
  EXPECT_EQ(RunCli("vlog").status, 2);
  TempDir dir;
  Result r = RunCli("vlog " + dir.path());
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("no database"), std::string::npos) << r.out;
}

TEST(Cli, CheckpointCopiesTheDatabase) {
  TempDir dir, dst;
  Fill(dir.path());
  std::string copy = dst.file("copy");
  Result r = RunCli("checkpoint " + dir.path() + " " + copy);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("at commit timestamp"), std::string::npos) << r.out;
  nokv_db* db;
  ASSERT_EQ(nokv_open(copy.c_str(), nullptr, &db), NOKV_OK) << nokv_errmsg();
  EXPECT_EQ(Get(db, "key1")->data, std::string(4096, 'a'));
  EXPECT_EQ(Get(db, "key2")->data, std::string(4096, 'b'));
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  r = RunCli("checkpoint " + dst.file("nothing-here") + " " + dst.file("x"));
  EXPECT_EQ(r.status, 1) << r.out;
}

TEST(Cli, CompactCollectsTheValueLog) {
  TempDir dir;
  Fill(dir.path());
  Result r = RunCli("compact " + dir.path());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("compacted " + dir.path()), std::string::npos) << r.out;
  size_t at = r.out.find(" segments collected)");
  ASSERT_NE(at, std::string::npos) << r.out;
  size_t start = r.out.rfind('(', at) + 1;
  EXPECT_GE(std::stoul(r.out.substr(start, at - start)), 1u) << r.out;
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK) << nokv_errmsg();
  for (int i = 0; i < 40; i++) {
    EXPECT_EQ(Get(db, "key" + std::to_string(i))->data, std::string(4096, i % 2 ? 'a' : 'b'));
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
  EXPECT_EQ(RunCli("compact " + dir.file("missing")).status, 1);
}

}  // namespace
