// A file layer that wraps the POSIX one to inject the faults real disks have:
// failing writes, failing fsyncs, and power loss (every byte not fsync'ed is
// gone). Modelled on LevelDB's FaultInjectionTestEnv.
#ifndef NOKV_TESTS_CORE_FAULT_ENV_H
#define NOKV_TESTS_CORE_FAULT_ENV_H

#include <filesystem>
#include <map>
#include <set>
#include <condition_variable>
#include <mutex>
#include <string>

extern "C" {
#include "util/env.h"
#include "util/error.h"
}

namespace nokv_test {

class FaultEnv {
 public:
  FaultEnv() {
    env_ = *nk_env_posix();
    env_.state = this;
    env_.open_append = OpenAppend;
    env_.append = Append;
    env_.sync = Sync;
    env_.close = Close;
    env_.read_at = ReadAt;
    env_.size = Size;
    env_.truncate = Truncate;
    env_.open_read = OpenRead;
    env_.lock = Lock;
    env_.sync_dir = SyncDir;
    env_.remove = Remove;
    env_.rename = Rename;
    env_.list_dir = ListDir;
  }
  const nokv_env* env() const { return &env_; }

  // The kinds of file call a rule can fail.
  enum Op { kOpen, kRead, kAppend, kSync, kRename, kRemove, kTruncate, kSyncDir, kList, kLock };
  // Fails calls of kind op on paths containing `match` ("" matches every path)
  // with errno err, as the operating system would (the engine sees what a real
  // failure gives it): the first `skip` matching calls succeed, then `times`
  // fail (-1: all from then on). One rule at a time; ClearRule() ends it.
  void FailCalls(Op op, int err, const std::string& match = "", int times = -1, int skip = 0) {
    std::lock_guard<std::mutex> l(mu_);
    rule_ = Rule{true, op, err, match, times, skip, 0};
  }
  void ClearRule() {
    std::lock_guard<std::mutex> l(mu_);
    rule_.active = false;
  }
  // Calls the current rule failed.
  int injected() {
    std::lock_guard<std::mutex> l(mu_);
    return rule_.failed;
  }

  // Appends fail once this many more bytes have been written (-1: never).
  void FailAppendsAfter(long long bytes) { std::lock_guard<std::mutex> l(mu_); append_budget_ = bytes; }
  // Syncs fail (only of files whose name ends in suffix, if given).
  void FailSyncs(bool fail, const std::string& suffix = "") {
    std::lock_guard<std::mutex> l(mu_);
    fail_syncs_ = fail;
    fail_suffix_ = suffix;
  }
  // From now on writes and syncs vanish, as in a machine that lost power.
  void PowerOff() { std::lock_guard<std::mutex> l(mu_); powered_off_ = true; }
  // The power goes off just before the n-th sync from now (of a file or a
  // directory), which then does not happen.
  void PowerOffAtSync(int n) {
    std::lock_guard<std::mutex> l(mu_);
    power_off_at_ = n;
  }
  bool powered_off() {
    std::lock_guard<std::mutex> l(mu_);
    return powered_off_;
  }
  // Syncs (of files and directories) seen so far.
  int sync_calls() {
    std::lock_guard<std::mutex> l(mu_);
    return sync_calls_;
  }
  // Back on without losing anything: PowerOff, closing the database, then
  // PowerOn is a process crash (kill -9): what was written stays, synced or not,
  // and what was not synced can still be lost by a later DropUnsynced.
  void PowerOn() { std::lock_guard<std::mutex> l(mu_); powered_off_ = false; }
  // After PowerOff and closing the database: files whose names no directory sync
  // made durable are gone; every other file is cut to what was synced.
  void DropUnsynced() {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& path : unsynced_names_) {
      nk_env_posix()->remove(nk_env_posix(), path.c_str());
      synced_.erase(path);
    }
    unsynced_names_.clear();
    for (auto& [path, synced] : synced_) nk_env_posix()->truncate(nk_env_posix(), path.c_str(), synced);
    powered_off_ = false;
  }
  int syncs() const { return syncs_; }
  // While held, an fsync of a table file (*.sst) blocks until released, as on a
  // disk that has stalled under a flush.
  void HoldTableSyncs(bool hold) { HoldSyncs(hold ? ".sst" : ""); }
  // The same for files whose name ends in suffix ("" releases).
  void HoldSyncs(const std::string& suffix) {
    std::lock_guard<std::mutex> l(mu_);
    hold_syncs_of_ = suffix;
    cv_.notify_all();
  }
  // Waits until some fsync is being held.
  void WaitForHeldSync() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return held_ > 0; });
  }
  // While held, removing a table or value-log segment blocks until released,
  // as an unlink that frees a large file's extents can.
  void HoldRemoves(bool hold) {
    std::lock_guard<std::mutex> l(mu_);
    hold_removes_ = hold;
    cv_.notify_all();
  }
  // Waits until some remove is being held.
  void WaitForHeldRemove() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return held_removes_ > 0; });
  }

 private:
  struct Rule {
    bool active = false;
    Op op = kOpen;
    int err = 0;
    std::string match;
    int times = -1;
    int skip = 0;
    int failed = 0;
  };
  // Does the rule fail this call? Sets the engine's error as the POSIX layer
  // would and returns its code in *rc. REQUIRES: mu_ held.
  bool Injected(Op op, const std::string& path, int* rc) {
    Rule& r = rule_;
    if (!r.active || r.op != op || path.find(r.match) == std::string::npos) return false;
    if (r.skip > 0) {
      r.skip--;
      return false;
    }
    if (r.times == 0) return false;
    if (r.times > 0) r.times--;
    r.failed++;
    static const char* const kNames[] = {"open",   "read",     "write",      "fdatasync", "rename",
                                         "remove", "truncate", "fsync directory", "list directory",
                                         "lock"};
    *rc = nk_err_errno(r.err, "%s %s (injected)", kNames[op], path.c_str());
    return true;
  }
  // Counts a sync; true if the power is off (or goes off now, before it).
  // REQUIRES: mu_ held.
  bool PowerCutNow() {
    if (powered_off_) return true;
    sync_calls_++;
    if (power_off_at_ > 0 && --power_off_at_ == 0) powered_off_ = true;
    return powered_off_;
  }
  // Checks the rule for one call. Returns true (with *rc) if it fails.
  bool Check(Op op, const std::string& path, int* rc) {
    std::lock_guard<std::mutex> l(mu_);
    return Injected(op, path, rc);
  }
  struct File {
    nk_file base;
    nk_file* inner;
    std::string path;
    FaultEnv* owner;
  };
  static FaultEnv* Self(const nokv_env* e) { return static_cast<FaultEnv*>(e->state); }
  static File* F(nk_file* f) { return reinterpret_cast<File*>(f); }
  static nk_file* Inner(nk_file* f) { return F(f)->inner; }

  static int OpenAppend(const nokv_env* e, const char* path, bool truncate, nk_file** out) {
    int injected;
    if (Self(e)->Check(kOpen, path, &injected)) return injected;
    nk_file* inner;
    const nokv_env* posix = nk_env_posix();
    bool existed = std::filesystem::exists(path);
    int rc = posix->open_append(posix, path, truncate, &inner);
    if (rc != NOKV_OK) return rc;
    FaultEnv* self = Self(e);
    {
      std::lock_guard<std::mutex> l(self->mu_);
      uint64_t size = 0;
      posix->size(inner, &size);
      if (truncate || !self->synced_.count(path)) self->synced_[path] = truncate ? 0 : size;
      if (!existed) self->unsynced_names_.insert(path);
    }
    *out = &(new File{{e}, inner, path, self})->base;
    return NOKV_OK;
  }
  static int OpenRead(const nokv_env* e, const char* path, nk_file** out) {
    int injected;
    if (Self(e)->Check(kOpen, path, &injected)) return injected;
    nk_file* inner;
    int rc = nk_env_posix()->open_read(nk_env_posix(), path, &inner);
    if (rc != NOKV_OK) return rc;
    *out = &(new File{{e}, inner, path, Self(e)})->base;
    return NOKV_OK;
  }
  static int Lock(const nokv_env* e, const char* path, nk_file** out) {
    int injected;
    if (Self(e)->Check(kLock, path, &injected)) return injected;
    nk_file* inner;
    int rc = nk_env_posix()->lock(nk_env_posix(), path, &inner);
    if (rc != NOKV_OK) return rc;
    *out = &(new File{{e}, inner, path, Self(e)})->base;
    return NOKV_OK;
  }
  static int Append(nk_file* f, const void* data, size_t n) {
    FaultEnv* self = F(f)->owner;
    {
      std::lock_guard<std::mutex> l(self->mu_);
      if (self->powered_off_) return NOKV_OK;
      int injected;
      if (self->Injected(kAppend, F(f)->path, &injected)) return injected;
      if (self->append_budget_ >= 0) {
        if (static_cast<long long>(n) > self->append_budget_) {
          return nk_err(NOKV_EIO, "write %s: injected I/O error", F(f)->path.c_str());
        }
        self->append_budget_ -= static_cast<long long>(n);
      }
    }
    return nk_env_posix()->append(Inner(f), data, n);
  }
  static int Sync(nk_file* f) {
    FaultEnv* self = F(f)->owner;
    std::unique_lock<std::mutex> l(self->mu_);
    const std::string& p = F(f)->path;
    const std::string& hold = self->hold_syncs_of_;
    if (!hold.empty() && p.size() > hold.size() &&
        p.compare(p.size() - hold.size(), hold.size(), hold) == 0) {
      self->held_++;
      self->cv_.notify_all();
      self->cv_.wait(l, [self] { return self->hold_syncs_of_.empty(); });
      self->held_--;
    }
    if (self->PowerCutNow()) return NOKV_OK;
    int injected;
    if (self->Injected(kSync, p, &injected)) return injected;
    const std::string& sfx = self->fail_suffix_;
    if (self->fail_syncs_ &&
        (sfx.empty() || (p.size() >= sfx.size() && p.compare(p.size() - sfx.size(), sfx.size(), sfx) == 0))) {
      return nk_err(NOKV_EIO, "fdatasync %s: injected I/O error", p.c_str());
    }
    // What was appended before the fsync began is durable after it; bytes
    // appended meanwhile (another thread's) may not be.
    uint64_t size = 0;
    nk_env_posix()->size(Inner(f), &size);
    int rc = nk_env_posix()->sync(Inner(f));
    if (rc == NOKV_OK) self->synced_[F(f)->path] = size;
    self->syncs_++;
    return rc;
  }
  // Names created in dir become durable (unless the power is already off).
  static int SyncDir(const nokv_env* e, const char* dir) {
    FaultEnv* self = Self(e);
    std::lock_guard<std::mutex> l(self->mu_);
    if (self->PowerCutNow()) return NOKV_OK;
    int injected;
    if (self->Injected(kSyncDir, dir, &injected)) return injected;
    std::string prefix = std::string(dir) + "/";
    for (auto it = self->unsynced_names_.begin(); it != self->unsynced_names_.end();) {
      if (it->compare(0, prefix.size(), prefix) == 0 &&
          it->find('/', prefix.size()) == std::string::npos) {
        it = self->unsynced_names_.erase(it);
      } else {
        ++it;
      }
    }
    return nk_env_posix()->sync_dir(nk_env_posix(), dir);
  }
  // A machine without power deletes and renames nothing either.
  static int Remove(const nokv_env* e, const char* path) {
    FaultEnv* self = Self(e);
    {
      std::unique_lock<std::mutex> l(self->mu_);
      std::string p = path;
      bool data = (p.size() > 4 && p.compare(p.size() - 4, 4, ".sst") == 0) ||
                  (p.size() > 5 && p.compare(p.size() - 5, 5, ".vlog") == 0);
      if (data && self->hold_removes_) {
        self->held_removes_++;
        self->cv_.notify_all();
        self->cv_.wait(l, [self] { return !self->hold_removes_; });
        self->held_removes_--;
      }
      if (self->powered_off_) return NOKV_OK;
      int injected;
      if (self->Injected(kRemove, path, &injected)) return injected;
      self->unsynced_names_.erase(path);
      self->synced_.erase(path);
    }
    return nk_env_posix()->remove(nk_env_posix(), path);
  }
  static int Rename(const nokv_env* e, const char* from, const char* to) {
    FaultEnv* self = Self(e);
    std::lock_guard<std::mutex> l(self->mu_);
    if (self->powered_off_) return NOKV_OK;
    int injected;
    if (self->Injected(kRename, from, &injected)) return injected;
    bool replaces = std::filesystem::exists(to);
    int rc = nk_env_posix()->rename(nk_env_posix(), from, to);
    if (rc == NOKV_OK) {
      // A new name is lost with the power until its directory is synced; a
      // rename over an existing name leaves either file there, and we keep the
      // new one (the engine must cope with both).
      if (self->unsynced_names_.erase(from) && !replaces) self->unsynced_names_.insert(to);
      auto it = self->synced_.find(from);
      if (it != self->synced_.end()) {
        self->synced_[to] = it->second;
        self->synced_.erase(from);
      }
    }
    return rc;
  }
  static int ListDir(const nokv_env* e, const char* path, char*** names, size_t* n) {
    int injected;
    if (Self(e)->Check(kList, path, &injected)) return injected;
    return nk_env_posix()->list_dir(nk_env_posix(), path, names, n);
  }
  static int Close(nk_file* f) {
    int rc = nk_env_posix()->close(Inner(f));
    delete F(f);
    return rc;
  }
  static int ReadAt(nk_file* f, uint64_t off, void* buf, size_t n, size_t* got) {
    int injected;
    if (F(f)->owner->Check(kRead, F(f)->path, &injected)) return injected;
    return nk_env_posix()->read_at(Inner(f), off, buf, n, got);
  }
  static int Size(nk_file* f, uint64_t* out) { return nk_env_posix()->size(Inner(f), out); }
  static int Truncate(const nokv_env* e, const char* path, uint64_t size) {
    FaultEnv* self = Self(e);
    std::lock_guard<std::mutex> l(self->mu_);
    if (self->powered_off_) return NOKV_OK;
    int injected;
    if (self->Injected(kTruncate, path, &injected)) return injected;
    int rc = nk_env_posix()->truncate(nk_env_posix(), path, size);
    auto it = self->synced_.find(path);
    if (it != self->synced_.end() && it->second > size) it->second = size;
    return rc;
  }

  nokv_env env_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string hold_syncs_of_;  // fsyncs of files ending so block ("": none)
  int held_ = 0;
  bool hold_removes_ = false;
  int held_removes_ = 0;
  long long append_budget_ = -1;
  bool fail_syncs_ = false;
  std::string fail_suffix_;
  bool powered_off_ = false;
  int syncs_ = 0;
  Rule rule_;
  int power_off_at_ = 0;
  int sync_calls_ = 0;
  std::map<std::string, uint64_t> synced_;
  std::set<std::string> unsynced_names_;  // created since the last sync of their directory
};

}  // namespace nokv_test

#endif  // NOKV_TESTS_CORE_FAULT_ENV_H
