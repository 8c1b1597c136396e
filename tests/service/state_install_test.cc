// Installing a state fetched from the cluster (service/state_transfer.h) at
// every point a crash can leave it: each step is a rename, and the next start
// resumes it; a fetch that never completed is never installed, and the engine
// it would have replaced stays.
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "service/state_transfer.h"
#include "tests/core/test_util.h"

namespace {

namespace fs = std::filesystem;
using nokv::service::FetchedStateDir;
using nokv::service::InstallFetchedState;

void Write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string Read(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

class StateInstallTest : public ::testing::Test {
 protected:
  std::string raft() { return dir_.path() + "/raft"; }
  std::string engine() { return dir_.path() + "/engine"; }
  std::string fetched() { return FetchedStateDir(raft()); }
  // A fetch that completed: its state (CURRENT holding text), marked complete.
  void CompleteFetch(const std::string& text) {
    Write(fetched() + "/CURRENT", text);
    Write(fetched() + "/FETCH-COMPLETE", "");
  }
  bool Install() {
    bool installed = false;
    std::string e = InstallFetchedState(raft(), engine(), &installed);
    EXPECT_EQ(e, "");
    return installed;
  }
  nokv_test::TempDir dir_;
};

TEST_F(StateInstallTest, NothingFetchedLeavesTheEngine) {
  Write(engine() + "/CURRENT", "old");
  EXPECT_FALSE(Install());
  EXPECT_EQ(Read(engine() + "/CURRENT"), "old");
}

TEST_F(StateInstallTest, AFetchNotMarkedCompleteIsNeverInstalled) {
  Write(engine() + "/CURRENT", "old");
  Write(fetched() + "/CURRENT", "new");  // no FETCH-COMPLETE: cut short
  EXPECT_FALSE(Install());
  EXPECT_EQ(Read(engine() + "/CURRENT"), "old");
  EXPECT_TRUE(fs::exists(fetched() + "/CURRENT"));  // left for the next fetch to replace
}

TEST_F(StateInstallTest, ACompleteFetchReplacesTheEngine) {
  Write(engine() + "/CURRENT", "old");
  CompleteFetch("new");
  EXPECT_TRUE(Install());
  EXPECT_EQ(Read(engine() + "/CURRENT"), "new");
  EXPECT_FALSE(fs::exists(engine() + "/FETCH-COMPLETE"));
  EXPECT_FALSE(fs::exists(fetched()));
  EXPECT_FALSE(fs::exists(raft() + "/replaced"));
  EXPECT_FALSE(Install());  // done: a second start changes nothing
  EXPECT_EQ(Read(engine() + "/CURRENT"), "new");
}

// A crash after the old engine was renamed aside: the fetched state goes in.
TEST_F(StateInstallTest, ResumesAfterTheOldEngineWasMovedAside) {
  Write(raft() + "/replaced/CURRENT", "old");
  CompleteFetch("new");
  EXPECT_TRUE(Install());
  EXPECT_EQ(Read(engine() + "/CURRENT"), "new");
  EXPECT_FALSE(fs::exists(raft() + "/replaced"));
}

// A crash after the fetched state was renamed in, before its mark went.
TEST_F(StateInstallTest, ResumesAfterTheFetchedStateWasMovedIn) {
  Write(raft() + "/replaced/CURRENT", "old");
  Write(engine() + "/CURRENT", "new");
  Write(engine() + "/FETCH-COMPLETE", "");
  EXPECT_TRUE(Install());
  EXPECT_EQ(Read(engine() + "/CURRENT"), "new");
  EXPECT_FALSE(fs::exists(engine() + "/FETCH-COMPLETE"));
  EXPECT_FALSE(fs::exists(raft() + "/replaced"));
}

}  // namespace
