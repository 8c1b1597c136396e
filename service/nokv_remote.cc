// nokv-remote — the `nokv` subcommands that talk to a running server over gRPC.
// `nokv stats --addr HOST:PORT ...` runs it (the engine's CLI is C and has no
// gRPC client; like git's subcommands, it hands the call to this program,
// installed next to it).
//
//   nokv-remote stats --addr HOST:PORT [--json] [--watch SECONDS] [--hot N]
//                     [--tls_ca_file F [--tls_cert_file F --tls_key_file F]] [--token_file F]
//
// With --tls_ca_file the call goes over TLS, the server verified against that CA
// bundle; --tls_cert_file and --tls_key_file add the client's certificate (mTLS).
// --token_file (or $NOKV_TOKEN) sends `authorization: Bearer <its first token>`.
//
// Prints the server's Stats: grouped and aligned, or (--json) the StatsResponse
// in protobuf's JSON mapping, one object per line. --watch refreshes every
// SECONDS until interrupted, like top. Exit status: 0 ok, 1 the call failed,
// 2 usage.
#include <grpcpp/grpcpp.h>
#include <google/protobuf/util/json_util.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "nokv/v1/kv.grpc.pb.h"
#include "service/token_file.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: nokv stats --addr HOST:PORT [--json] [--watch SECONDS] [--hot N]\n"
               "                  [--tls_ca_file F [--tls_cert_file F --tls_key_file F]]"
               " [--token_file F]\n");
  return 2;
}

// The content of path, or false (and a message) if it cannot be read.
bool ReadFile(const std::string& path, std::string* out) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "nokv: %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, n);
  bool ok = !std::ferror(f);
  std::fclose(f);
  if (!ok) std::fprintf(stderr, "nokv: %s: read error\n", path.c_str());
  return ok;
}

uint64_t Counter(const nokv::v1::StatsResponse& r, const std::string& name) {
  auto it = r.counters().find(name);
  return it == r.counters().end() ? 0 : it->second;
}

std::string Printable(const std::string& key, uint64_t size) {
  std::string out;
  for (unsigned char c : key) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  if (size > key.size()) out += "... (" + std::to_string(size) + " bytes)";
  return out;
}

void Line(const char* label, const std::string& value) {
  std::printf("  %-26s %s\n", label, value.c_str());
}

std::string N(uint64_t v) { return std::to_string(v); }

std::string Ratio(uint64_t part, uint64_t whole) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f%%", whole ? 100.0 * static_cast<double>(part) / whole : 0.0);
  return b;
}

void PrintHot(const char* title, const google::protobuf::RepeatedPtrField<nokv::v1::HotKey>& keys) {
  std::printf("%s\n", title);
  if (keys.empty()) std::printf("  (none at the hot threshold)\n");
  for (const auto& k : keys) {
    std::printf("  %12.0f/s  %s\n", k.per_sec(), Printable(k.key(), k.key_size()).c_str());
  }
}

void PrintText(const std::string& addr, const nokv::v1::StatsResponse& r) {
  auto c = [&](const char* name) { return Counter(r, name); };
  std::printf("server %s, data directory %s, last commit ts %llu\n\n", addr.c_str(),
              r.data_dir().c_str(), static_cast<unsigned long long>(r.last_commit_ts()));
  std::printf("writes\n");
  Line("puts / deletes", N(c("puts")) + " / " + N(c("deletes")));
  Line("batches / write groups", N(c("batches")) + " / " + N(c("write_groups")));
  Line("WAL syncs", N(c("wal_syncs")));
  Line("stalls / slowdowns", N(c("write_stalls")) + " (" + N(c("write_stall_micros") / 1000) +
                                 " ms) / " + N(c("write_slowdowns")));
  Line("refused: disk full / hot", N(c("writes_refused_full")) + " / " + N(c("hot_writes_throttled")));
  std::printf("reads\n");
  Line("gets / hits", N(c("gets")) + " / " + N(c("get_hits")));
  Line("iterators", N(c("iterators_created")));
  Line("hot-read cache hits", N(c("hot_cache_hits")) + " (" + N(c("hot_cache_bytes")) + " bytes cached)");
  Line("block cache hits", Ratio(c("block_cache_hits"), c("block_cache_hits") + c("block_cache_misses")));
  char probes[32];
  std::snprintf(probes, sizeof probes, "%.2f",
                c("gets") ? static_cast<double>(c("get_table_probes")) / c("gets") : 0.0);
  Line("table probes per get", probes);
  std::printf("memtable, flush and compaction\n");
  Line("memtable", N(c("memtable_bytes")) + " of " + N(c("memtable_limit_bytes")) + " bytes, " +
                       N(c("immutable_memtables")) + " waiting for flush");
  Line("flushes / compactions", N(c("flushes")) + " / " + N(c("compactions")));
  Line("pending compaction", N(c("pending_compaction_bytes")) + " bytes");
  std::string levels;
  for (int l = 0; l < 7; l++) {
    levels += (l ? " " : "") + N(Counter(r, "level" + std::to_string(l) + "_files"));
  }
  Line("tables per level L0..L6", levels);
  Line("tables", N(c("tables")) + ", " + N(c("table_bytes")) + " bytes");
  std::printf("value log\n");
  Line("segments", N(c("vlog_segments")) + ", " + N(c("vlog_bytes")) + " bytes");
  Line("garbage (known)", N(c("vlog_garbage_bytes")) + " bytes (" +
                              Ratio(c("vlog_garbage_bytes"), c("vlog_bytes")) + ")");
  Line("GC collected / reclaimed", N(c("gc_segments_collected")) + " segments / " +
                                       N(c("gc_bytes_reclaimed")) + " bytes");
  std::printf("WAL\n");
  Line("segments", N(c("wal_segments")) + ", " + N(c("wal_segment_bytes")) + " bytes");
  std::printf("transactions\n");
  Line("open / commits / conflicts", N(c("txns_active")) + " / " + N(c("txn_commits")) + " / " +
                                         N(c("txn_conflicts")));
  Line("streams: scans / txns / watches open",
       N(c("scans_open")) + " / " + N(c("txns_open")) + " / " + N(c("watches_open")));
  Line("watch events sent", N(c("watch_events_sent")));
  Line("conditional writes / failed", N(c("cond_writes")) + " / " + N(c("cond_failures")));
  Line("expired versions dropped", N(c("ttl_expired")));
  Line("range deletes / tombstones kept / versions dropped",
       N(c("range_deletes")) + " / " + N(c("range_tombstones")) + " / " + N(c("range_dropped")));
  std::printf("\n");
  PrintHot("hot keys, read", r.hot_read_keys());
  PrintHot("hot keys, written", r.hot_write_keys());
}

int Stats(int argc, char** argv) {
  std::string addr;
  bool json = false;
  double watch = 0;
  long hot = 16;
  std::string ca_file, cert_file, key_file, token_file;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--addr" && i + 1 < argc) {
      addr = argv[++i];
    } else if (a == "--tls_ca_file" && i + 1 < argc) {
      ca_file = argv[++i];
    } else if (a == "--tls_cert_file" && i + 1 < argc) {
      cert_file = argv[++i];
    } else if (a == "--tls_key_file" && i + 1 < argc) {
      key_file = argv[++i];
    } else if (a == "--token_file" && i + 1 < argc) {
      token_file = argv[++i];
    } else if (a == "--json") {
      json = true;
    } else if (a == "--watch" && i + 1 < argc) {
      watch = std::atof(argv[++i]);
      if (watch <= 0) return Usage();
    } else if (a == "--hot" && i + 1 < argc) {
      hot = std::atol(argv[++i]);
      if (hot < 1 || hot > 256) return Usage();
    } else {
      return Usage();
    }
  }
  if (addr.empty() || cert_file.empty() != key_file.empty() ||
      (!cert_file.empty() && ca_file.empty())) {
    return Usage();
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!ca_file.empty()) {
    grpc::SslCredentialsOptions o;
    if (!ReadFile(ca_file, &o.pem_root_certs)) return 1;
    if (!cert_file.empty() &&
        (!ReadFile(cert_file, &o.pem_cert_chain) || !ReadFile(key_file, &o.pem_private_key))) {
      return 1;
    }
    creds = grpc::SslCredentials(o);
  }
  std::string token;
  if (!token_file.empty()) {
    std::string text;
    if (!ReadFile(token_file, &text)) return 1;
    std::vector<std::string> tokens = nokv::service::ParseTokens(text);
    if (!tokens.empty()) token = tokens.front();
    if (token.empty()) {
      std::fprintf(stderr, "nokv: %s holds no token\n", token_file.c_str());
      return 1;
    }
  } else if (const char* env = std::getenv("NOKV_TOKEN"); env != nullptr && *env != 0) {
    token = env;
  }
  auto stub = nokv::v1::KV::NewStub(grpc::CreateChannel(addr, creds));
  for (;;) {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    nokv::v1::StatsRequest req;
    req.set_hot_keys(static_cast<uint32_t>(hot));
    nokv::v1::StatsResponse resp;
    grpc::Status s = stub->Stats(&ctx, req, &resp);
    if (!s.ok()) {
      std::fprintf(stderr, "nokv: Stats from %s failed: %s (%d)\n", addr.c_str(),
                   s.error_message().c_str(), static_cast<int>(s.error_code()));
      return 1;
    }
    if (json) {
      std::string out;
      google::protobuf::util::JsonPrintOptions o;
      o.preserve_proto_field_names = true;
      if (!google::protobuf::util::MessageToJsonString(resp, &out, o).ok()) return 1;
      std::printf("%s\n", out.c_str());
    } else {
      if (watch > 0) std::printf("\x1b[H\x1b[2J");  // like top: redraw in place
      PrintText(addr, resp);
    }
    std::fflush(stdout);
    if (watch <= 0) return 0;
    std::this_thread::sleep_for(std::chrono::duration<double>(watch));  // the refresh interval
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "stats") == 0) return Stats(argc, argv);
  return Usage();
}
