// Crash recovery with a real process: a child writes with sync=true from several
// threads and is killed with SIGKILL at a random moment, over and over on the
// same data directory. After every kill, every key the child acknowledged must
// be present with its value. Rounds: $NOKV_CRASH_ROUNDS (default 20).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "nokv/nokv.h"
#include "tests/core/test_util.h"
#include "tests/crash/crash_value.h"

namespace {

// Kill rounds per test: $NOKV_CRASH_ROUNDS, or 20.
int CrashRounds() {
  const char* env = getenv("NOKV_CRASH_ROUNDS");
  return env != nullptr ? atoi(env) : 20;
}

std::string WriterPath() {
  return std::string(getenv("TEST_SRCDIR")) + "/" + getenv("TEST_WORKSPACE") +
         "/tests/crash/crash_writer";
}

// Runs the writer until it has acknowledged `acks` keys, kills it, and returns
// every key it acknowledged (including lines already in the pipe).
std::vector<std::string> RunAndKill(const std::string& dir, int round, int acks,
                                    std::mt19937_64& rng, const char* mode = nullptr) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    std::string r = std::to_string(round);
    execl(WriterPath().c_str(), "crash_writer", dir.c_str(), "4", r.c_str(), mode, nullptr);
    _exit(127);
  }
  close(fds[1]);
  std::vector<std::string> keys;
  std::string buf;
  char chunk[4096];
  bool killed = false;
  for (;;) {
    ssize_t n = read(fds[0], chunk, sizeof chunk);
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t pos;
    while ((pos = buf.find('\n')) != std::string::npos) {
      keys.push_back(buf.substr(0, pos));
      buf.erase(0, pos + 1);
    }
    if (!killed && static_cast<int>(keys.size()) >= acks) {
      // Kill at a random moment within the next few writes.
      std::uniform_int_distribution<int> spin(0, 20000);
      for (volatile int i = spin(rng); i > 0; i--) {
      }
      kill(pid, SIGKILL);
      killed = true;  // keep draining: lines in the pipe were acknowledged
    }
  }
  close(fds[0]);
  int status;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "writer exited on its own with status " << status;
  return keys;
}

// Every acknowledged key must be there with the value the writer stored.
void ExpectAllPresent(nokv_db* db, const std::vector<std::string>& keys, int round) {
  for (const auto& k : keys) {
    char want[CRASH_VALUE_MAX];
    size_t wlen;
    crash_value_of(k.c_str(), want, &wlen);
    auto got = nokv_test::Get(db, k);
    ASSERT_TRUE(got) << "round " << round << ": acknowledged key " << k << " lost";
    ASSERT_EQ(got->data, std::string(want, wlen)) << k;
  }
}

TEST(CrashTest, SigkillLosesNoAcknowledgedSyncWrite) {
  int rounds = CrashRounds();
  std::mt19937_64 rng(nokv_test::TestSeed());
  nokv_test::TempDir dir;
  size_t total = 0;
  for (int round = 0; round < rounds; round++) {
    int acks = std::uniform_int_distribution<int>(1, 300)(rng);
    std::vector<std::string> keys = RunAndKill(dir.path(), round, acks, rng);
    ASSERT_GE(keys.size(), static_cast<size_t>(acks));
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), nullptr, &db), NOKV_OK) << nokv_errmsg();
    ExpectAllPresent(db, keys, round);
    if (::testing::Test::HasFatalFailure()) return;
    nokv_statistics s;
    nokv_stats(db, &s);
    total += keys.size();
    printf("round %d: %zu acknowledged, %llu records replayed, %llu torn tails\n", round,
           keys.size(), (unsigned long long)s.recovered_records,
           (unsigned long long)s.torn_tail_truncations);
    // Each open flushes what it replayed, so the next open replays only the
    // records written since: at least this round's acknowledged ones.
    ASSERT_GE(s.recovered_records, keys.size());
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
}

// Kills land in the middle of flushes and compactions (the writer compacts
// continuously with tiny memtables and levels). Acknowledged writes must survive,
// and whatever a kill left half-written must be gone once the database has been
// reopened and compacted.
TEST(CrashTest, SigkillDuringFlushAndCompactionLosesNothing) {
  int rounds = CrashRounds();
  std::mt19937_64 rng(nokv_test::TestSeed() + 1);
  nokv_test::TempDir dir;
  nokv_options o;
  crash_options(&o, true);
  std::vector<std::string> all;
  uint64_t orphans = 0;
  for (int round = 0; round < rounds; round++) {
    int acks = std::uniform_int_distribution<int>(200, 1500)(rng);
    std::vector<std::string> keys = RunAndKill(dir.path(), round, acks, rng, "lsm");
    ASSERT_GE(keys.size(), static_cast<size_t>(acks));
    all.insert(all.end(), keys.begin(), keys.end());
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    ExpectAllPresent(db, all, round);
    if (::testing::Test::HasFatalFailure()) return;
    nokv_statistics s;
    nokv_stats(db, &s);
    orphans += s.orphan_tables_removed;
    printf("round %d: %zu acknowledged, %llu tables, %llu orphan tables removed at open\n", round,
           keys.size(), (unsigned long long)s.tables,
           (unsigned long long)s.orphan_tables_removed);
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
  printf("%zu keys over %d rounds; %llu orphan tables cleaned up\n", all.size(), rounds,
         (unsigned long long)orphans);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
  ASSERT_EQ(nokv_compact(db), NOKV_OK);
  nokv_statistics s;
  nokv_stats(db, &s);
  EXPECT_EQ(nokv_test::FilesWithSuffix(dir.path(), ".sst").size(), s.tables);
  EXPECT_EQ(nokv_test::FilesWithSuffix(dir.path(), ".wal").size(), 1u);
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

// Value-log mode: the last acknowledged sequence number of each key, from the
// writer's "<key> <seq>" lines.
std::map<std::string, long> LastAcked(const std::vector<std::string>& lines) {
  std::map<std::string, long> last;
  for (const auto& l : lines) {
    size_t sp = l.find(' ');
    long seq = std::stol(l.substr(sp + 1));
    auto& v = last[l.substr(0, sp)];
    if (seq > v) v = seq;
  }
  return last;
}

// Every key holds a whole value written for it, no older than its last
// acknowledged write, and a full scan reads every value (no dangling pointer).
void ExpectVlogState(nokv_db* db, const std::map<std::string, long>& acked, int round) {
  for (const auto& [key, seq] : acked) {
    int rc = NOKV_OK;
    auto got = nokv_test::Get(db, key, 0, &rc);
    ASSERT_TRUE(got) << "round " << round << ": " << key << " lost (rc " << rc << ": "
                     << nokv_errmsg() << ")";
    size_t a = got->data.find('#'), b = got->data.find('#', a + 1);
    ASSERT_EQ(got->data.substr(0, a), key);
    long have = std::stol(got->data.substr(a + 1, b - a - 1));
    ASSERT_GE(have, seq) << "round " << round << ": " << key << " went back to an older write";
    char want[CRASH_VLOG_VALUE_MAX];
    size_t wlen = crash_vlog_value_of(key.c_str(), have, want);
    ASSERT_EQ(got->data, std::string(want, wlen)) << key;
  }
  nokv_iter* it;
  ASSERT_EQ(nokv_iter_new(db, nullptr, "", 0, nullptr, 0, &it), NOKV_OK);
  size_t n = 0;
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) n++;
  EXPECT_EQ(nokv_iter_status(it), NOKV_OK) << "round " << round << ": " << nokv_errmsg();
  EXPECT_GE(n, acked.size());
  nokv_iter_close(it);
}

std::set<std::string> VlogFiles(const std::string& dir) {
  auto v = nokv_test::FilesWithSuffix(dir, ".vlog");
  return std::set<std::string>(v.begin(), v.end());
}

// Kills land in value-log appends and in GC rewrites (the writer overwrites a
// small key space with large values while compacting and collecting back to
// back).
TEST(CrashTest, SigkillDuringValueLogAppendsAndGcLosesNothing) {
  int rounds = CrashRounds();
  std::mt19937_64 rng(nokv_test::TestSeed() + 2);
  nokv_test::TempDir dir;
  nokv_options o;
  crash_vlog_options(&o);
  std::map<std::string, long> acked;
  uint64_t collected = 0;
  for (int round = 0; round < rounds; round++) {
    int acks = std::uniform_int_distribution<int>(100, 1500)(rng);
    auto lines = RunAndKill(dir.path(), round, acks, rng, "vlog");
    ASSERT_GE(lines.size(), static_cast<size_t>(acks));
    for (const auto& [k, seq] : LastAcked(lines)) acked[k] = seq;
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    ExpectVlogState(db, acked, round);
    if (::testing::Test::HasFatalFailure()) return;
    nokv_statistics s;
    nokv_stats(db, &s);
    printf("round %d: %zu acknowledged, %llu value log segments, %llu bytes validated, "
           "%llu torn bytes cut, %llu dangling WAL records dropped\n",
           round, lines.size(), (unsigned long long)s.vlog_segments,
           (unsigned long long)s.vlog_validated_bytes, (unsigned long long)s.vlog_torn_bytes,
           (unsigned long long)s.wal_records_dangling);
    EXPECT_EQ(s.wal_records_dangling, 0u) << "synced writes must never lose their values";
    uint32_t n = 0;
    ASSERT_EQ(nokv_vlog_gc(db, 0.1, &n), NOKV_OK) << nokv_errmsg();
    collected += n;
    ExpectVlogState(db, acked, round);
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
  printf("%zu keys; %llu segments collected after reopens\n", acked.size(),
         (unsigned long long)collected);
}

// The writer kills itself the moment GC deletes a value-log segment: after the
// manifest retired it, before the file is gone. Reopen must delete it and lose
// nothing.
TEST(CrashTest, SigkillRightBeforeSegmentDeletion) {
  int rounds = CrashRounds() / 2;
  std::mt19937_64 rng(nokv_test::TestSeed() + 3);
  nokv_test::TempDir dir;
  nokv_options o;
  crash_vlog_options(&o);
  o.disable_auto_gc = true;  // what goes at open is the open's doing alone
  std::map<std::string, long> acked;
  int self_killed = 0;
  for (int round = 0; round < rounds; round++) {
    // No kill from here unless the writer gets this far without deleting one.
    auto lines = RunAndKill(dir.path(), round, 50000, rng, "vlog-delete");
    bool by_itself = lines.size() < 50000;
    self_killed += by_itself;
    for (const auto& [k, seq] : LastAcked(lines)) acked[k] = seq;
    std::set<std::string> before = VlogFiles(dir.path());
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    std::set<std::string> after = VlogFiles(dir.path());
    size_t removed = 0;
    for (const auto& f : before) removed += after.count(f) == 0;
    printf("round %d: %zu acknowledged, killed %s, %zu retired segments removed at open\n",
           round, lines.size(), by_itself ? "at a segment deletion" : "by the test", removed);
    if (by_itself) {
      EXPECT_GE(removed, 1u) << "the retired segment must go at reopen";
    }
    ExpectVlogState(db, acked, round);
    if (::testing::Test::HasFatalFailure()) return;
    nokv_statistics s;
    nokv_stats(db, &s);
    EXPECT_EQ(s.vlog_segments, after.size());
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
  EXPECT_GT(self_killed, 0);
}

// Transactions: SIGKILL while 4 threads commit bank transfers (synced), each
// with a marker key recording what it moved. After every reopen each
// acknowledged transfer is there (its marker), and every account holds exactly
// its starting balance plus the transfers whose markers survived: a
// transaction is wholly present or wholly absent, never half applied.
TEST(CrashTest, SigkillWhileTransactionsCommitKeepsThemAtomic) {
  int rounds = CrashRounds();
  std::mt19937_64 rng(nokv_test::TestSeed() + 4);
  nokv_test::TempDir dir;
  nokv_options o;
  crash_options(&o, true);
  std::vector<std::string> acked;
  for (int round = 0; round < rounds; round++) {
    int acks = std::uniform_int_distribution<int>(20, 400)(rng);
    auto lines = RunAndKill(dir.path(), round, acks, rng, "txn");
    ASSERT_GE(lines.size(), static_cast<size_t>(acks));
    acked.insert(acked.end(), lines.begin(), lines.end());
    nokv_db* db;
    ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK) << nokv_errmsg();
    for (const auto& m : acked) {
      ASSERT_TRUE(nokv_test::Get(db, m).has_value()) << "round " << round << ": " << m << " lost";
    }
    std::vector<long> expect(CRASH_ACCOUNTS, CRASH_START);
    size_t markers = 0;
    nokv_iter* it;
    ASSERT_EQ(nokv_iter_new_prefix(db, nullptr, "m/", 2, &it), NOKV_OK);
    for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
      size_t n;
      const char* v = static_cast<const char*>(nokv_iter_value(it, &n));
      int from = -1, to = -1;
      long amount = 0;
      ASSERT_EQ(sscanf(std::string(v, n).c_str(), "%d %d %ld", &from, &to, &amount), 3);
      ASSERT_TRUE(from >= 0 && from < CRASH_ACCOUNTS && to >= 0 && to < CRASH_ACCOUNTS);
      expect[from] -= amount;
      expect[to] += amount;
      markers++;
    }
    ASSERT_EQ(nokv_iter_status(it), NOKV_OK) << nokv_errmsg();
    nokv_iter_close(it);
    long total = 0;
    for (int i = 0; i < CRASH_ACCOUNTS; i++) {
      char k[16];
      crash_account_key(i, k);
      auto v = nokv_test::Get(db, k);
      ASSERT_TRUE(v.has_value()) << k;
      EXPECT_EQ(std::stol(v->data), expect[i]) << "round " << round << ": " << k;
      total += std::stol(v->data);
    }
    printf("round %d: %zu transfers acknowledged, %zu committed in all, total %ld\n", round,
           lines.size(), markers, total);
    ASSERT_EQ(total, static_cast<long>(CRASH_ACCOUNTS) * CRASH_START) << "round " << round;
    ASSERT_EQ(nokv_close(db), NOKV_OK);
  }
}

}  // namespace
