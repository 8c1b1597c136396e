// Bearer-token access control for the server's calls (--auth_token_file).
//
// The file holds the accepted tokens, one per line (blank lines and lines
// starting with '#' are skipped), so a token can be rotated by adding the new
// one, moving clients over, then removing the old. A call is let through when
// its `authorization` metadata is `Bearer <token>` for one of them; the
// comparison takes the same time whatever the header holds, so its duration
// tells an attacker nothing about how much of a guess was right. The file is
// looked at again at most once a second (its inode, size and modification time)
// and re-read when they change; a re-read that finds no token keeps the tokens
// in force, since locking every client out is never what a rotation means.
#ifndef NOKV_SERVICE_AUTH_H
#define NOKV_SERVICE_AUTH_H

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

namespace nokv::service {

class TokenAuth {
 public:
  // Reads the tokens in path. Null (and *error) if it cannot be read or has none.
  static std::unique_ptr<TokenAuth> Load(const std::string& path, std::string* error);

  // OK, or UNAUTHENTICATED when the call carries no accepted token.
  grpc::Status Check(const grpc::ServerContextBase* ctx);

  // One accepted token (the file's first), for this server's own calls to the
  // other nodes of its cluster, which share the file.
  std::string AnyToken() {
    std::shared_ptr<const Tokens> t = Current();
    return t == nullptr || t->empty() ? "" : t->front();
  }

  // The number of times the file was read (the first load included).
  uint64_t loads() const { return loads_.load(std::memory_order_relaxed); }

 private:
  using Tokens = std::vector<std::string>;
  struct FileId {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileId& o) const {
      return dev == o.dev && ino == o.ino && size == o.size && mtime_ns == o.mtime_ns;
    }
  };

  explicit TokenAuth(std::string path) : path_(std::move(path)) {}
  static FileId IdOf(const struct stat& st);
  bool Read(std::shared_ptr<const Tokens>* out, FileId* id, std::string* error);
  void Look();  // re-reads the file if it changed
  std::shared_ptr<const Tokens> Current();

  const std::string path_;
  std::atomic<int64_t> next_look_ns_{0};
  std::atomic<uint64_t> loads_{0};
  std::mutex mu_;  // serializes Look (id_); tokens_ is read and swapped atomically
  std::shared_ptr<const Tokens> tokens_;
  FileId id_;
};

}  // namespace nokv::service

#endif  // NOKV_SERVICE_AUTH_H
