// nokv-remote — the `nokv` subcommands that talk to a running server over gRPC.
// `nokv stats --addr HOST:PORT ...` runs it (the engine's CLI is C and has no
// gRPC client; like git's subcommands, it hands the call to this program,
// installed next to it).
//
//   nokv-remote stats --addr HOST:PORT [--json] [--watch SECONDS] [--hot N]
//                     [--tls_ca_file F [--tls_cert_file F --tls_key_file F]] [--token_file F]
//   nokv-remote cluster status|add|remove|transfer --addr HOST:PORT [--id N]
//                     [--raft_address HOST:PORT] [--json] (and the same TLS and token options)
//
// With --tls_ca_file the call goes over TLS, the server verified against that CA
// bundle; --tls_cert_file and --tls_key_file add the client's certificate (mTLS).
// --token_file (or $NOKV_TOKEN) sends `authorization: Bearer <its first token>`.
//
// cluster: a cluster's members and Raft state (status, from Stats), or a
// membership change through the Cluster RPC, then the group after it.
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

// What every subcommand needs to reach a server.
struct Conn {
  std::string addr, ca_file, cert_file, key_file, token_file;
};

// Takes the connection option at argv[*i] (and its value); false if it is not one.
bool ConnOption(int argc, char** argv, int* i, Conn* c) {
  std::string a = argv[*i];
  std::string* dst = a == "--addr"            ? &c->addr
                     : a == "--tls_ca_file"   ? &c->ca_file
                     : a == "--tls_cert_file" ? &c->cert_file
                     : a == "--tls_key_file"  ? &c->key_file
                     : a == "--token_file"    ? &c->token_file
                                              : nullptr;
  if (dst == nullptr || *i + 1 >= argc) return false;
  *dst = argv[++*i];
  return true;
}

bool ConnComplete(const Conn& c) {
  return !c.addr.empty() && c.cert_file.empty() == c.key_file.empty() &&
         (c.cert_file.empty() || !c.ca_file.empty());
}

// A stub for c.addr and the bearer token to send (empty: none); null if the
// credentials cannot be read (a message is printed).
std::unique_ptr<nokv::v1::KV::Stub> Connect(const Conn& c, std::string* token) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!c.ca_file.empty()) {
    grpc::SslCredentialsOptions o;
    if (!ReadFile(c.ca_file, &o.pem_root_certs)) return nullptr;
    if (!c.cert_file.empty() &&
        (!ReadFile(c.cert_file, &o.pem_cert_chain) || !ReadFile(c.key_file, &o.pem_private_key))) {
      return nullptr;
    }
    creds = grpc::SslCredentials(o);
  }
  token->clear();
  if (!c.token_file.empty()) {
    std::string text;
    if (!ReadFile(c.token_file, &text)) return nullptr;
    std::vector<std::string> tokens = nokv::service::ParseTokens(text);
    if (!tokens.empty()) *token = tokens.front();
    if (token->empty()) {
      std::fprintf(stderr, "nokv: %s holds no token\n", c.token_file.c_str());
      return nullptr;
    }
  } else if (const char* env = std::getenv("NOKV_TOKEN"); env != nullptr && *env != 0) {
    *token = env;
  }
  return nokv::v1::KV::NewStub(grpc::CreateChannel(c.addr, creds));
}

void Prepare(grpc::ClientContext* ctx, const std::string& token, int seconds) {
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

bool PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok()) return false;
  std::printf("%s\n", out.c_str());
  return true;
}

int Stats(int argc, char** argv) {
  Conn conn;
  bool json = false;
  double watch = 0;
  long hot = 16;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    if (ConnOption(argc, argv, &i, &conn)) {
      continue;
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
  if (!ConnComplete(conn)) return Usage();
  std::string token;
  auto stub = Connect(conn, &token);
  if (stub == nullptr) return 1;
  for (;;) {
    grpc::ClientContext ctx;
    Prepare(&ctx, token, 10);
    nokv::v1::StatsRequest req;
    req.set_hot_keys(static_cast<uint32_t>(hot));
    nokv::v1::StatsResponse resp;
    grpc::Status s = stub->Stats(&ctx, req, &resp);
    if (!s.ok()) {
      std::fprintf(stderr, "nokv: Stats from %s failed: %s (%d)\n", conn.addr.c_str(),
                   s.error_message().c_str(), static_cast<int>(s.error_code()));
      return 1;
    }
    if (json) {
      if (!PrintJson(resp)) return 1;
    } else {
      if (watch > 0) std::printf("\x1b[H\x1b[2J");  // like top: redraw in place
      PrintText(conn.addr, resp);
    }
    std::fflush(stdout);
    if (watch <= 0) return 0;
    std::this_thread::sleep_for(std::chrono::duration<double>(watch));  // the refresh interval
  }
}

void PrintCluster(const nokv::v1::ClusterStatus& c) {
  std::printf("node %llu: %s, term %llu\n", static_cast<unsigned long long>(c.node_id()),
              c.state().c_str(), static_cast<unsigned long long>(c.term()));
  if (c.leader_id() != 0) {
    std::printf("leader: node %llu%s%s\n", static_cast<unsigned long long>(c.leader_id()),
                c.leader_address().empty() ? "" : " at ", c.leader_address().c_str());
  } else {
    std::printf("leader: none known\n");
  }
  std::printf("log: commit %llu, applied %llu, last %llu\n",
              static_cast<unsigned long long>(c.commit_index()),
              static_cast<unsigned long long>(c.applied_index()),
              static_cast<unsigned long long>(c.last_index()));
  if (c.state() == "leader") {
    std::printf("reads: lease %s; %llu under it, %llu through the log\n",
                c.lease_remaining_ms() > 0 ? "held" : "not held",
                static_cast<unsigned long long>(c.lease_reads()),
                static_cast<unsigned long long>(c.barrier_reads()));
  }
  std::printf("members:\n  %-6s %-28s %-8s %s\n", "id", "raft address", "role",
              c.state() == "leader" ? "match index" : "");
  for (const auto& m : c.members()) {
    std::string match = c.state() == "leader" ? std::to_string(m.match_index()) : "";
    std::printf("  %-6llu %-28s %-8s %s\n", static_cast<unsigned long long>(m.id()),
                m.raft_address().c_str(), m.role().c_str(), match.c_str());
  }
}

int ClusterUsage() {
  std::fprintf(stderr,
               "usage: nokv cluster status --addr HOST:PORT [--json]\n"
               "       nokv cluster add --id N --raft_address HOST:PORT --addr HOST:PORT\n"
               "       nokv cluster remove --id N --addr HOST:PORT\n"
               "       nokv cluster transfer [--id N] --addr HOST:PORT\n"
               "  (and the connection options of nokv stats)\n");
  return 2;
}

int Cluster(int argc, char** argv) {
  if (argc < 3) return ClusterUsage();
  const std::string what = argv[2];
  Conn conn;
  bool json = false;
  uint64_t id = 0;
  std::string raft_address;
  for (int i = 3; i < argc; i++) {
    std::string a = argv[i];
    if (ConnOption(argc, argv, &i, &conn)) {
      continue;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--id" && i + 1 < argc) {
      char* end = nullptr;
      id = std::strtoull(argv[++i], &end, 10);
      if (*end != '\0') return ClusterUsage();
    } else if (a == "--raft_address" && i + 1 < argc) {
      raft_address = argv[++i];
    } else {
      return ClusterUsage();
    }
  }
  nokv::v1::ClusterRequest req;
  if (what == "add" && id != 0 && !raft_address.empty()) {
    req.mutable_add()->set_id(id);
    req.mutable_add()->set_raft_address(raft_address);
  } else if (what == "remove" && id != 0) {
    req.set_remove(id);
  } else if (what == "transfer") {
    req.set_transfer(id);
  } else if (what != "status") {
    return ClusterUsage();
  }
  if (!ConnComplete(conn)) return ClusterUsage();
  std::string token;
  auto stub = Connect(conn, &token);
  if (stub == nullptr) return 1;
  grpc::ClientContext ctx;
  nokv::v1::ClusterStatus status;
  grpc::Status s;
  if (what == "status") {
    Prepare(&ctx, token, 10);
    nokv::v1::StatsResponse resp;
    s = stub->Stats(&ctx, nokv::v1::StatsRequest(), &resp);
    if (s.ok() && !resp.has_cluster()) {
      std::fprintf(stderr, "nokv: %s is a single server, not in a cluster\n", conn.addr.c_str());
      return 1;
    }
    status = resp.cluster();
  } else {
    Prepare(&ctx, token, 120);  // adding waits for the node to catch up
    nokv::v1::ClusterResponse resp;
    s = stub->Cluster(&ctx, req, &resp);
    status = resp.status();
  }
  if (!s.ok()) {
    std::fprintf(stderr, "nokv: cluster %s through %s failed: %s (%d)\n", what.c_str(),
                 conn.addr.c_str(), s.error_message().c_str(), static_cast<int>(s.error_code()));
    return 1;
  }
  if (json) return PrintJson(status) ? 0 : 1;
  PrintCluster(status);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "stats") == 0) return Stats(argc, argv);
  if (argc >= 2 && std::strcmp(argv[1], "cluster") == 0) return Cluster(argc, argv);
  return Usage();
}
