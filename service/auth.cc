#include "service/auth.h"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

#include "service/token_file.h"

namespace nokv::service {

namespace {

constexpr int64_t kLookEveryNs = 1'000'000'000;
constexpr char kScheme[] = "Bearer ";

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Whether a equals b, in a time that depends only on b's length (the secret is
// a, the guess b): every byte of b is compared, against a repeated if shorter.
bool SameBytes(const std::string& a, std::string_view b) {
  if (a.empty()) return false;
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); i++) {
    diff |= static_cast<unsigned char>(a[i % a.size()] ^ b[i]);
  }
  return diff == 0;
}

}  // namespace

TokenAuth::FileId TokenAuth::IdOf(const struct stat& st) {
  FileId id;
  id.dev = st.st_dev;
  id.ino = st.st_ino;
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  return id;
}

bool TokenAuth::Read(std::shared_ptr<const Tokens>* out, FileId* id, std::string* error) {
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    *error = path_ + ": " + std::strerror(errno);
    return false;
  }
  std::ifstream in(path_);
  if (!in) {
    *error = path_ + ": cannot be read";
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    *error = path_ + ": read error";
    return false;
  }
  auto tokens = std::make_shared<Tokens>(ParseTokens(text.str()));
  if (tokens->empty()) {
    *error = path_ + ": holds no token";
    return false;
  }
  *id = IdOf(st);
  *out = std::move(tokens);
  loads_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

std::unique_ptr<TokenAuth> TokenAuth::Load(const std::string& path, std::string* error) {
  std::unique_ptr<TokenAuth> auth(new TokenAuth(path));
  if (!auth->Read(&auth->tokens_, &auth->id_, error)) return nullptr;
  auth->next_look_ns_ = NowNs() + kLookEveryNs;
  return auth;
}

void TokenAuth::Look() {
  std::lock_guard<std::mutex> l(mu_);
  struct stat st;
  FileId seen;
  if (stat(path_.c_str(), &st) == 0) seen = IdOf(st);
  if (seen == id_) return;
  std::shared_ptr<const Tokens> fresh;
  FileId id;
  std::string error;
  if (Read(&fresh, &id, &error)) {
    fprintf(stderr, "nokv-server: reloaded %zu tokens from %s\n", fresh->size(), path_.c_str());
    std::atomic_store(&tokens_, std::move(fresh));
    id_ = id;
  } else {
    id_ = seen;  // complain once per change, not once a second
    fprintf(stderr, "nokv-server: keeping the tokens in force: %s\n", error.c_str());
  }
}

std::shared_ptr<const TokenAuth::Tokens> TokenAuth::Current() {
  int64_t now = NowNs();
  int64_t next = next_look_ns_.load(std::memory_order_relaxed);
  // One caller a second looks at the file; the rest take the tokens in force.
  if (now >= next && next_look_ns_.compare_exchange_strong(next, now + kLookEveryNs)) Look();
  return std::atomic_load(&tokens_);
}

grpc::Status TokenAuth::Check(const grpc::ServerContextBase* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing `authorization: Bearer <token>` metadata");
  }
  std::string_view header(it->second.data(), it->second.size());
  constexpr size_t n = sizeof(kScheme) - 1;
  if (header.size() < n || header.substr(0, n) != kScheme) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization metadata is not `Bearer <token>`");
  }
  std::string_view given = header.substr(n);
  std::shared_ptr<const Tokens> tokens = Current();
  bool ok = false;
  for (const std::string& t : *tokens) ok |= SameBytes(t, given);  // no early exit
  if (!ok) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid token");
  return grpc::Status::OK;
}

}  // namespace nokv::service
