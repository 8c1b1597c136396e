#include "service/state_transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <utility>
#include <vector>

#include "nokv/v1/kv.grpc.pb.h"

namespace nokv::service {

namespace fs = std::filesystem;

namespace {

constexpr size_t kChunkBytes = 1 << 20;
constexpr char kComplete[] = "FETCH-COMPLETE";  // written last, once every file is synced

std::string Errno(const std::string& what) { return what + ": " + strerror(errno); }

// fsync of a file or directory by path; empty if fine.
std::string SyncPath(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open " + path);
  int rc = fsync(fd);
  close(fd);
  return rc == 0 ? "" : Errno("fsync " + path);
}

// rename, then the directory holding `to` synced; empty if fine.
std::string Rename(const std::string& from, const std::string& to) {
  if (rename(from.c_str(), to.c_str()) != 0) return Errno("rename " + from + " to " + to);
  return SyncPath(fs::path(to).parent_path().string());
}

}  // namespace

std::string FetchedStateDir(const std::string& raft_dir) { return raft_dir + "/fetched"; }

grpc::Status ServeState(nokv_db* db, const std::string& scratch_dir, grpc::ServerContext* ctx,
                        grpc::ServerWriter<nokv::v1::StateChunk>* out) {
  static std::atomic<uint64_t> serial{0};
  std::error_code ec;
  fs::create_directories(scratch_dir, ec);
  const std::string dir = scratch_dir + "/outgoing-" + std::to_string(getpid()) + "-" +
                          std::to_string(serial.fetch_add(1));
  fs::remove_all(dir, ec);
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(dir, e);
    }
  } cleanup{dir};
  if (int rc = nokv_checkpoint(db, dir.c_str(), nullptr); rc != NOKV_OK) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        std::string("checkpoint for a replica: ") + nokv_errmsg());
  }
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) files.push_back(e.path().filename().string());
  }
  if (ec) return grpc::Status(grpc::StatusCode::INTERNAL, "listing " + dir + ": " + ec.message());
  std::vector<char> buf(kChunkBytes);
  for (const std::string& name : files) {
    const std::string path = dir + "/" + name;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return grpc::Status(grpc::StatusCode::INTERNAL, Errno("open " + path));
    struct stat st;
    fstat(fd, &st);
    uint64_t size = static_cast<uint64_t>(st.st_size), off = 0;
    do {  // an empty file is one empty chunk
      ssize_t n = pread(fd, buf.data(), buf.size(), static_cast<off_t>(off));
      if (n < 0 || (n == 0 && off < size)) {
        close(fd);
        return grpc::Status(grpc::StatusCode::INTERNAL, Errno("read " + path));
      }
      nokv::v1::StateChunk c;
      c.set_file(name);
      c.set_offset(off);
      c.set_data(buf.data(), static_cast<size_t>(n));
      c.set_xxh3(XXH3_64bits(buf.data(), static_cast<size_t>(n)));
      c.set_file_size(size);
      if (ctx->IsCancelled() || !out->Write(c)) {
        close(fd);
        return grpc::Status(grpc::StatusCode::CANCELLED, "the replica went away");
      }
      off += static_cast<uint64_t>(n);
    } while (off < size);
    close(fd);
  }
  return grpc::Status::OK;
}

StateFetcher::StateFetcher(std::string raft_dir, std::string token,
                           std::function<void()> installed)
    : raft_dir_(std::move(raft_dir)), token_(std::move(token)), installed_(std::move(installed)) {}

StateFetcher::~StateFetcher() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    if (call_ != nullptr) call_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void StateFetcher::Hook(void* ctx, const nokv_repl_snapshot_info* info) {
  auto* f = static_cast<StateFetcher*>(ctx);
  std::lock_guard<std::mutex> l(f->mu_);
  if (f->running_ || f->complete_ || f->stopping_) return;
  if (info->origin_client[0] == '\0') {
    fprintf(stderr, "nokv-server: a snapshot from node %llu names no address to fetch from\n",
            static_cast<unsigned long long>(info->origin_id));
    return;
  }
  if (f->thread_.joinable()) f->thread_.join();  // the last, failed fetch
  f->running_ = true;
  f->thread_ = std::thread(&StateFetcher::Run, f, std::string(info->origin_client),
                           info->origin_id);
}

void StateFetcher::Run(std::string origin, uint64_t origin_id) {
  fprintf(stderr, "nokv-server: behind the log the leader kept: fetching node %llu's state from %s\n",
          static_cast<unsigned long long>(origin_id), origin.c_str());
  const std::string partial = raft_dir_ + "/fetching";
  std::error_code ec;
  fs::remove_all(partial, ec);
  std::string error = Receive(origin, partial);
  if (error.empty()) error = SyncPath(partial);
  if (error.empty()) {
    FILE* f = fopen((partial + "/" + kComplete).c_str(), "w");
    if (f == nullptr || fclose(f) != 0) error = Errno("marking " + partial + " complete");
  }
  if (error.empty()) error = SyncPath(partial + "/" + kComplete);
  if (error.empty()) {
    fs::remove_all(FetchedStateDir(raft_dir_), ec);
    error = Rename(partial, FetchedStateDir(raft_dir_));
  }
  bool done;
  {
    std::lock_guard<std::mutex> l(mu_);
    complete_ = error.empty();
    done = complete_ && !stopping_;
  }
  if (!error.empty()) {
    fprintf(stderr, "nokv-server: fetching the state failed (retried with the next snapshot): %s\n",
            error.c_str());
    fs::remove_all(partial, ec);
  } else {
    fprintf(stderr, "nokv-server: fetched node %llu's state; restarting on it\n",
            static_cast<unsigned long long>(origin_id));
    if (done) installed_();
  }
  std::lock_guard<std::mutex> l(mu_);
  running_ = false;
  idle_.notify_all();
}

bool StateFetcher::WaitIdle() {
  std::unique_lock<std::mutex> l(mu_);
  idle_.wait(l, [this] { return !running_; });
  return complete_;
}

std::string StateFetcher::Receive(const std::string& origin, const std::string& dir) {
  std::error_code ec;
  if (!fs::create_directories(dir, ec) && ec) return "creating " + dir + ": " + ec.message();
  auto stub = nokv::v1::KV::NewStub(grpc::CreateChannel(origin, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return "stopping";
    call_ = &ctx;
  }
  struct File {
    int fd = -1;
    uint64_t size = 0, received = 0;
  };
  std::map<std::string, File> files;
  std::string error;
  std::unique_ptr<grpc::ClientReader<nokv::v1::StateChunk>> reader =
      stub->FetchState(&ctx, nokv::v1::FetchStateRequest());
  nokv::v1::StateChunk c;
  while (error.empty() && reader->Read(&c)) {
    const std::string& name = c.file();
    if (name.empty() || name.find('/') != std::string::npos || name[0] == '.' ||
        name == kComplete) {
      error = "a chunk names a bad file: '" + name + "'";
      break;
    }
    if (XXH3_64bits(c.data().data(), c.data().size()) != c.xxh3()) {
      error = "checksum mismatch in " + name + " at offset " + std::to_string(c.offset());
      break;
    }
    File& f = files[name];
    if (f.fd < 0) {
      f.fd = open((dir + "/" + name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (f.fd < 0) {
        error = Errno("create " + dir + "/" + name);
        break;
      }
      f.size = c.file_size();
    }
    if (c.offset() != f.received || c.file_size() != f.size ||
        c.offset() + c.data().size() > f.size) {
      error = "chunk out of order or past the end of " + name;
      break;
    }
    if (pwrite(f.fd, c.data().data(), c.data().size(), static_cast<off_t>(c.offset())) !=
        static_cast<ssize_t>(c.data().size())) {
      error = Errno("write " + dir + "/" + name);
      break;
    }
    f.received += c.data().size();
  }
  if (!error.empty()) ctx.TryCancel();
  grpc::Status s = reader->Finish();
  {
    std::lock_guard<std::mutex> l(mu_);
    call_ = nullptr;
  }
  if (error.empty() && !s.ok()) error = "FetchState from " + origin + ": " + s.error_message();
  if (error.empty() && files.empty()) error = "FetchState from " + origin + " sent no file";
  for (auto& [name, f] : files) {
    if (error.empty() && f.received != f.size) {
      error = name + " arrived short: " + std::to_string(f.received) + " of " +
              std::to_string(f.size) + " bytes";
    }
    if (error.empty() && fsync(f.fd) != 0) error = Errno("fsync " + dir + "/" + name);
    close(f.fd);
  }
  return error;
}

std::string InstallFetchedState(const std::string& raft_dir, const std::string& engine_dir,
                                bool* installed) {
  *installed = false;
  const std::string fetched = FetchedStateDir(raft_dir), old = raft_dir + "/replaced";
  std::error_code ec;
  // Resumes wherever a crash stopped it: fetched (complete) and the engine,
  // then fetched alone, then the engine with the mark still in it.
  if (fs::exists(fetched + "/" + kComplete, ec)) {
    if (fs::exists(engine_dir, ec)) {
      fs::remove_all(old, ec);
      if (std::string e = Rename(engine_dir, old); !e.empty()) return e;
    }
    if (std::string e = Rename(fetched, engine_dir); !e.empty()) return e;
    *installed = true;
  }
  if (fs::exists(engine_dir + "/" + kComplete, ec)) {
    if (unlink((engine_dir + "/" + kComplete).c_str()) != 0) {
      return Errno("remove " + engine_dir + "/" + kComplete);
    }
    if (std::string e = SyncPath(engine_dir); !e.empty()) return e;
    *installed = true;
  }
  fs::remove_all(old, ec);  // the engine it replaced: behind the state now installed
  if (ec) return "removing " + old + ": " + ec.message();
  return "";
}

}  // namespace nokv::service
