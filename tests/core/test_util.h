// Helpers shared by the engine tests: scratch directories and small wrappers
// that turn the C API's out-parameters into values.
#ifndef NOKV_TESTS_CORE_TEST_UTIL_H
#define NOKV_TESTS_CORE_TEST_UTIL_H

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nokv/nokv.h"

namespace nokv_test {

// A fresh directory under the test's scratch space, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TEST_TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/nokv-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    if (p == nullptr) abort();
    path_ = p;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct Value {
  std::string data;
  uint64_t commit_ts;
};

// Get as an optional; aborts the test on errors other than not-found.
inline std::optional<Value> Get(nokv_db* db, const std::string& key, uint64_t read_ts = 0,
                                int* rc_out = nullptr) {
  nokv_read_options ro;
  nokv_read_options_init(&ro);
  ro.read_ts = read_ts;
  void* v = nullptr;
  size_t n = 0;
  uint64_t ts = 0;
  int rc = nokv_get(db, &ro, key.data(), key.size(), &v, &n, &ts);
  if (rc_out) *rc_out = rc;
  if (rc != NOKV_OK) return std::nullopt;
  Value out{std::string(static_cast<char*>(v), n), ts};
  nokv_free(v);
  return out;
}

// The value of key at snap (nullptr: now); with expires, also its expiry (0:
// none). Aborts the test on errors other than not-found.
inline std::optional<std::string> GetAt(nokv_db* db, const std::string& key,
                                        const nokv_snapshot* snap = nullptr,
                                        uint64_t* expires = nullptr) {
  nokv_read_options ro;
  nokv_read_options_init(&ro);
  ro.snapshot = snap;
  uint64_t e = 99;
  ro.expires_at_ms = &e;
  void* v;
  size_t n;
  int rc = nokv_get(db, &ro, key.data(), key.size(), &v, &n, nullptr);
  if (rc == NOKV_ENOTFOUND) return std::nullopt;
  EXPECT_EQ(rc, NOKV_OK) << nokv_errmsg();
  if (rc != NOKV_OK) return std::nullopt;
  std::string s(static_cast<char*>(v), n);
  nokv_free(v);
  if (expires != nullptr) *expires = e;
  return s;
}

// Every key an iterator at snap (nullptr: now) shows, with its value, in order.
inline std::vector<std::pair<std::string, std::string>> ScanAt(nokv_db* db,
                                                               const nokv_snapshot* snap = nullptr) {
  nokv_read_options ro;
  nokv_read_options_init(&ro);
  ro.snapshot = snap;
  nokv_iter* it;
  EXPECT_EQ(nokv_iter_new(db, &ro, "", 0, nullptr, 0, &it), NOKV_OK);
  std::vector<std::pair<std::string, std::string>> out;
  for (nokv_iter_seek_first(it); nokv_iter_valid(it); nokv_iter_next(it)) {
    size_t kn, vn;
    const char* k = static_cast<const char*>(nokv_iter_key(it, &kn));
    const char* v = static_cast<const char*>(nokv_iter_value(it, &vn));
    out.emplace_back(std::string(k, kn), std::string(v, vn));
  }
  EXPECT_EQ(nokv_iter_status(it), NOKV_OK);
  nokv_iter_close(it);
  return out;
}

inline int Put(nokv_db* db, const std::string& k, const std::string& v, bool sync = false,
               uint64_t* ts = nullptr) {
  nokv_write_options wo{};
  wo.sync = sync;
  return nokv_put(db, &wo, k.data(), k.size(), v.data(), v.size(), ts);
}

inline int Delete(nokv_db* db, const std::string& k, uint64_t* ts = nullptr) {
  return nokv_delete(db, nullptr, k.data(), k.size(), ts);
}

inline nokv_statistics Stats(nokv_db* db) {
  nokv_statistics s;
  nokv_stats(db, &s);
  return s;
}

// The stats once done(stats) holds, polling them (background work has no
// other signal), or the last ones read after 60 s.
inline nokv_statistics PollStats(nokv_db* db,
                                 const std::function<bool(const nokv_statistics&)>& done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  nokv_statistics s = Stats(db);
  while (!done(s) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling the stats
    s = Stats(db);
  }
  return s;
}

// Defaults shrunk so that flushes, L0 merges, leveled compactions and trivial
// moves all happen within a few megabytes of writes.
inline void TinyLsmOptions(nokv_options* o) {
  nokv_options_init(o);
  o->memtable_max_bytes = 64 << 10;
  o->level1_max_bytes = 256 << 10;
  o->target_file_bytes = 64 << 10;
  o->block_size = 1024;
}

// A whole file's bytes ("" if it cannot be read).
inline std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Replaces path's contents with data.
inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Names of the files in dir ending in suffix, sorted.
inline std::vector<std::string> FilesWithSuffix(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(n);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A randomized or soak test's size: $name if set, else dflt.
inline size_t EnvSize(const char* name, size_t dflt) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? strtoull(v, nullptr, 10) : dflt;
}

// The seed of a randomized test: $NOKV_TEST_SEED if set, else random. Printed so
// a failure can be replayed.
inline uint64_t TestSeed() {
  const char* env = getenv("NOKV_TEST_SEED");
  uint64_t seed = (env && *env) ? strtoull(env, nullptr, 10) : std::random_device{}();
  printf("NOKV_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed));
  fflush(stdout);
  return seed;
}

}  // namespace nokv_test

#endif  // NOKV_TESTS_CORE_TEST_UTIL_H
