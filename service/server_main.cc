// nokv-server: the NoKV-C engine over gRPC.
//
// Opens (creating if needed) the database in --data_dir, serves nokv.v1.KV,
// grpc.health.v1.Health and server reflection on --listen, and on SIGTERM or
// SIGINT shuts down gracefully: health turns NOT_SERVING, new calls are refused,
// in-flight calls get --shutdown_grace_seconds to finish, then the engine is
// closed cleanly (its log synced).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "nokv/nokv.h"
#include "repl/identity.h"
#include "repl/node.h"
#include "service/auth.h"
#include "service/kv_service.h"
#include "service/metrics.h"
#include "service/state_transfer.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "address to serve on: HOST:PORT (port 0: pick a free one) or unix:PATH");
ABSL_FLAG(std::string, data_dir, "./nokv-data", "database directory (created if missing)");
ABSL_FLAG(bool, sync, false, "fsync the log before acknowledging every write");
ABSL_FLAG(uint64_t, max_key_bytes, 65536, "largest key accepted (at most 65536)");
ABSL_FLAG(uint64_t, max_value_bytes, 64 << 20, "largest value accepted");
ABSL_FLAG(uint64_t, memtable_bytes, 64 << 20, "a memtable is flushed to an L0 table at this size");
ABSL_FLAG(uint64_t, block_cache_bytes, 64 << 20, "shared LRU cache of table data blocks");
ABSL_FLAG(uint64_t, value_threshold, 1024,
          "values of at least this many bytes go to the value log (0: none)");
ABSL_FLAG(uint64_t, vlog_segment_bytes, 256 << 20, "value log segment size");
ABSL_FLAG(double, vlog_gc_ratio, 0.5, "garbage share at which a value log segment is collected");
ABSL_FLAG(uint32_t, vlog_gc_idle_ms, 10000,
          "after this long with no write, measure the value log's garbage and collect it (0: never)");
ABSL_FLAG(uint64_t, scan_chunk_bytes, 256 << 10,
          "key+value bytes per Scan response message, once the client keeps up");
ABSL_FLAG(uint64_t, scan_first_chunk_bytes, 4 << 10,
          "key+value bytes in a Scan's first message; each one the client takes doubles the next");
ABSL_FLAG(uint64_t, scan_buffer_bytes, 64 << 20,
          "key+value bytes all Scans may hold in messages clients have not taken; past it a "
          "Scan waits");
ABSL_FLAG(uint32_t, txn_idle_timeout_ms, 30000,
          "roll back a transaction whose stream is idle this long (DEADLINE_EXCEEDED)");
ABSL_FLAG(uint64_t, max_txns, 1024, "open Txn streams allowed (more: RESOURCE_EXHAUSTED)");
ABSL_FLAG(uint64_t, txn_conflict_bytes, 64 << 20,
          "memory for conflict checks; transactions older than what it holds are ABORTED");
ABSL_FLAG(uint32_t, txn_max_reads, 1000000,
          "keys a transaction tracks one by one; past it, any later write conflicts");
ABSL_FLAG(bool, hot_key_tracking, true, "track hot keys (Stats lists them; docs/hot_keys.md)");
ABSL_FLAG(uint32_t, hot_key_min_rate, 100, "accesses a second from which a key is listed as hot");
ABSL_FLAG(uint32_t, hot_write_limit, 0,
          "writes of one key accepted a second; more fail with RESOURCE_EXHAUSTED (0: no limit)");
ABSL_FLAG(uint64_t, hot_read_cache_bytes, 4 << 20,
          "cache of hot keys' newest values, so their Gets skip the LSM (0: off)");
ABSL_FLAG(std::string, metrics_listen, "",
          "serve Prometheus metrics on http://ADDR/metrics, e.g. 0.0.0.0:9090 (empty: off)");
ABSL_FLAG(int, stream_workers, 8, "threads running Scan and Txn streams' engine calls");
ABSL_FLAG(int, shutdown_grace_seconds, 10, "how long in-flight calls may run after SIGTERM");
ABSL_FLAG(std::string, backup_dir, "",
          "directory the Checkpoint RPC writes copies into (empty: Checkpoint is refused)");
ABSL_FLAG(uint64_t, max_scans, 1024, "open Scan streams allowed (more: RESOURCE_EXHAUSTED)");
ABSL_FLAG(uint32_t, scan_idle_timeout_ms, 30000,
          "a Scan whose client has not taken its next message for this long is cancelled");
ABSL_FLAG(uint32_t, max_stream_lifetime_ms, 600000,
          "Scan and Txn streams end after this long (0: no limit); each pins a snapshot");
ABSL_FLAG(std::string, tls_cert_file, "",
          "serve TLS with this certificate chain (PEM; with --tls_key_file; reloaded on change)");
ABSL_FLAG(std::string, tls_key_file, "", "the TLS certificate's private key (PEM)");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "require client certificates signed by these CAs (PEM): mTLS");
ABSL_FLAG(uint32_t, tls_reload_seconds, 10, "how often the TLS files are checked for changes");
ABSL_FLAG(std::string, health_listen, "",
          "also answer grpc.health.v1 Check, alone and in plaintext, on this address (for "
          "Kubernetes gRPC probes, which speak no TLS), e.g. 0.0.0.0:50052");
ABSL_FLAG(std::string, auth_token_file, "",
          "KV calls need `authorization: Bearer <token>` with a token from this file, one per "
          "line (reloaded on change); else UNAUTHENTICATED. Health checking stays open");
ABSL_FLAG(bool, auth_reflection, false, "server reflection needs the token too");
ABSL_FLAG(uint64_t, history_retention_commits, 100000,
          "versions of the last this many commits are kept, so Watch (and reads at a "
          "read_ts) can reach that far back, across restarts too (in a cluster: log "
          "entries, at least the 65536 transactions are judged within)");
ABSL_FLAG(uint64_t, watch_ring_bytes, 16 << 20,
          "memory for recent commits that watches read (older ones are replayed from disk)");
ABSL_FLAG(uint64_t, max_watches, 4096, "open Watch streams allowed (more: RESOURCE_EXHAUSTED)");
ABSL_FLAG(uint32_t, watch_send_timeout_ms, 30000,
          "a Watch whose client takes no message for this long is ended");
ABSL_FLAG(uint64_t, node_id, 0,
          "cluster mode: this node's id in its Raft group (docs/replication.md); 0: a single "
          "server");
ABSL_FLAG(bool, node_id_from_hostname, false,
          "cluster mode: this node's id is the ordinal its host name ends with, plus 1 (a "
          "StatefulSet's pod nokv-0 is node 1), instead of --node_id");
ABSL_FLAG(std::string, raft_listen, "",
          "cluster mode: this node's Raft address HOST:PORT, as its peers dial it");
ABSL_FLAG(std::string, raft_bind, "",
          "cluster mode: where to listen for Raft traffic, if not --raft_listen (e.g. "
          "0.0.0.0:7001)");
ABSL_FLAG(std::string, peers, "",
          "cluster mode: the group's first members, ID=HOST:PORT,... (Raft addresses, this "
          "node among them); a node whose DATA_DIR/raft is empty starts the group with them");
ABSL_FLAG(bool, join, false,
          "cluster mode: start with no members and wait to be added to a running group");
ABSL_FLAG(std::string, advertise, "",
          "cluster mode: the address clients dial for this node, which it announces when it "
          "leads (default: --listen, with the port bound)");
ABSL_FLAG(uint32_t, election_timeout_ms, 1000,
          "cluster mode: a follower that hears from no leader for 1-2x this starts an election");
ABSL_FLAG(bool, forward, true,
          "cluster mode: a node that does not lead forwards calls (and pipes Scan and Txn "
          "streams) to the leader; off (and always with TLS): it answers UNAVAILABLE naming "
          "the leader in trailing metadata nokv-leader");
ABSL_FLAG(uint32_t, entries_in_flight, 4,
          "cluster mode: log entries a leader has proposed and not yet applied, at most; "
          "writes that arrive while the pipeline is full go into the next entry together");
ABSL_FLAG(uint32_t, heartbeat_ms, 100, "cluster mode: how often a leader sends heartbeats");
ABSL_FLAG(bool, read_lease, true,
          "cluster mode: the leader serves linearizable reads under a lease its followers renew "
          "(UDP on the Raft port; assumes clocks' rates within 1% of each other, see "
          "docs/replication.md); off: every such read waits for a barrier through the log");
ABSL_FLAG(bool, recover_as_sole_voter, false,
          "cluster mode, with no server running on --data_dir: rewrite this node's Raft state "
          "so that it is the group's only voter, then exit (after a majority is lost for good; "
          "run once, on the survivor with the longest log; docs/replication.md)");
ABSL_FLAG(uint32_t, snapshot_entries, 65536,
          "cluster mode: take a snapshot (the engine synced; the Raft log before it dropped) "
          "every this many log entries");
ABSL_FLAG(uint32_t, snapshot_trailing, 8192,
          "cluster mode: log entries kept behind a snapshot, so that a replica this far behind "
          "catches up from the log rather than by fetching the whole state");
ABSL_FLAG(uint64_t, txn_buffer_bytes, uint64_t{1} << 30,
          "keys+values all open transactions may buffer; a write past it ends its Txn "
          "RESOURCE_EXHAUSTED");

namespace {

// Signals are turned into a byte on a pipe (the only async-signal-safe way to
// hand them to a thread), so it does not matter which thread receives them,
// including threads gRPC starts before main().
int signal_pipe[2];

void OnSignal(int sig) {
  unsigned char b = static_cast<unsigned char>(sig);
  ssize_t ignored = write(signal_pipe[1], &b, 1);
  (void)ignored;
}

// This node's id: --node_id, or with --node_id_from_hostname the ordinal its
// host name ends with, plus 1 (0: a single server; *error set if the host name
// has no ordinal).
uint64_t NodeId(std::string* error) {
  if (!absl::GetFlag(FLAGS_node_id_from_hostname)) return absl::GetFlag(FLAGS_node_id);
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  const char* dash = strrchr(host, '-');
  char* end = nullptr;
  unsigned long long ordinal = dash == nullptr ? 0 : strtoull(dash + 1, &end, 10);
  if (dash == nullptr || end == dash + 1 || *end != '\0') {
    *error = std::string("--node_id_from_hostname: host name '") + host +
             "' does not end with -ORDINAL";
    return 0;
  }
  return ordinal + 1;
}

// Parses --peers: ID=HOST:PORT,... into out; empty if fine, else what is wrong.
std::string ParsePeers(const std::string& spec, std::vector<std::pair<uint64_t, std::string>>* out) {
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t comma = spec.find(',', pos);
    std::string item = spec.substr(pos, comma == std::string::npos ? std::string::npos
                                                                     : comma - pos);
    pos = comma == std::string::npos ? spec.size() : comma + 1;
    size_t eq = item.find('=');
    char* end = nullptr;
    uint64_t id = eq == std::string::npos ? 0 : strtoull(item.c_str(), &end, 10);
    if (id == 0 || end != item.c_str() + eq || eq + 1 >= item.size()) {
      return "--peers: '" + item + "' is not ID=HOST:PORT (ID a positive number)";
    }
    for (const auto& p : *out) {
      if (p.first == id) return "--peers: id " + std::to_string(id) + " appears twice";
    }
    out->emplace_back(id, item.substr(eq + 1));
  }
  return "";
}

// Starts this server's replica of its Raft group, from the cluster flags; null
// (and *error says why) if they are wrong or it cannot start.
nokv_repl_node* StartNode(nokv_db* db, const std::string& data_dir, const std::string& listen,
                          nokv::service::StateFetcher* fetcher, std::string* note,
                          std::string* error) {
  const uint64_t id = NodeId(error);
  const std::string raft_listen = absl::GetFlag(FLAGS_raft_listen);
  const bool join = absl::GetFlag(FLAGS_join);
  std::vector<std::pair<uint64_t, std::string>> peers;
  if (raft_listen.empty()) {
    *error = "--node_id needs --raft_listen (this node's Raft address)";
    return nullptr;
  }
  if (std::string e = ParsePeers(absl::GetFlag(FLAGS_peers), &peers); !e.empty()) {
    *error = e;
    return nullptr;
  }
  if (join != peers.empty()) {
    *error = "--node_id needs either --peers (the group's first members) or --join";
    return nullptr;
  }
  bool listed = false;
  for (const auto& p : peers) {
    if (p.first != id) continue;
    if (p.second != raft_listen) {
      *error = "--peers gives node " + std::to_string(id) + " the address " + p.second +
               ", not its --raft_listen " + raft_listen;
      return nullptr;
    }
    listed = true;
  }
  if (!join && !listed) {
    *error = "--peers must list this node (" + std::to_string(id) + "=" + raft_listen + ")";
    return nullptr;
  }
  std::string advertise = absl::GetFlag(FLAGS_advertise);
  if (advertise.empty()) {
    if (listen.rfind("unix:", 0) == 0 || listen.substr(listen.rfind(':') + 1) == "0") {
      *error = "cluster mode needs --advertise (the address clients dial for this node) when "
               "--listen has no fixed TCP port";
      return nullptr;
    }
    advertise = listen;
  }
  std::vector<nokv_repl_peer> cpeers;
  for (const auto& p : peers) cpeers.push_back({p.first, p.second.c_str()});
  const std::string dir = data_dir + "/raft";
  if (!nokv_raft_state_exists(dir.c_str()) && nokv_last_commit_ts(db) != 0) {
    // Its writes are in no replica's log: serving them would diverge.
    *error = data_dir + "/engine holds data but this node has no Raft state: a node joins a "
             "group empty, and gets the group's data from it";
    return nullptr;
  }
  const std::string bind = absl::GetFlag(FLAGS_raft_bind);
  nokv_repl_options o = {};
  o.id = id;
  o.address = raft_listen.c_str();
  o.bind_address = bind.empty() ? nullptr : bind.c_str();
  o.client_address = advertise.c_str();
  o.dir = dir.c_str();
  o.peers = cpeers.data();
  o.n_peers = cpeers.size();
  o.election_timeout_ms = absl::GetFlag(FLAGS_election_timeout_ms);
  o.heartbeat_ms = absl::GetFlag(FLAGS_heartbeat_ms);
  o.no_read_lease = !absl::GetFlag(FLAGS_read_lease);
  o.entries_in_flight = absl::GetFlag(FLAGS_entries_in_flight);
  o.snapshot_entries = absl::GetFlag(FLAGS_snapshot_entries);
  o.snapshot_trailing = absl::GetFlag(FLAGS_snapshot_trailing);
  o.fetch = &nokv::service::StateFetcher::Hook;
  o.fetch_ctx = fetcher;
  char err[1024] = "";
  nokv_repl_node* node = nullptr;
  if (nokv_repl_node_start(db, &o, &node, err, sizeof err) != NOKV_OK) {
    *error = std::string("cannot start the Raft node: ") + err;
    return nullptr;
  }
  *note = ", node " + std::to_string(id) + " of a Raft group (raft on " + raft_listen +
          ", state in " + dir + ")";
  return node;
}

// Written to the signal pipe when a fetched state waits to be installed: the
// server stops and starts again on it (state_transfer.h).
constexpr unsigned char kRestart = 'R';
constexpr int kServeAgain = -1;

void RequestRestart() {
  unsigned char b = kRestart;
  ssize_t ignored = write(signal_pipe[1], &b, 1);
  (void)ignored;
}

int WaitForSignal() {
  unsigned char b = 0;
  while (read(signal_pipe[0], &b, 1) < 0) {
  }
  return b;
}


// Opens the engine and serves it until a signal (0: stopped cleanly, 1: an
// error), or until a state fetched from the cluster waits to replace the
// engine (kServeAgain: installed first thing by the next call).
int Serve() {
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  std::string id_error;
  const bool cluster = NodeId(&id_error) != 0;
  if (!id_error.empty()) {
    fprintf(stderr, "nokv-server: %s\n", id_error.c_str());
    return 1;
  }
  // In a cluster the engine has a directory of its own beside the Raft
  // state, so that a state fetched from the group can replace it whole.
  const std::string raft_dir = data_dir + "/raft";
  const std::string engine_dir = cluster ? data_dir + "/engine" : data_dir;
  if (cluster) {
    bool installed = false;
    std::error_code ec;
    std::filesystem::create_directories(raft_dir, ec);
    if (std::string e = nokv::service::InstallFetchedState(raft_dir, engine_dir, &installed);
        !e.empty()) {
      fprintf(stderr, "nokv-server: installing the state fetched from the cluster: %s\n",
              e.c_str());
      return 1;
    }
    if (installed) fprintf(stderr, "nokv-server: installed the state fetched from the cluster\n");
  }
  nokv_options opts;
  nokv_options_init(&opts);
  opts.max_key_size = absl::GetFlag(FLAGS_max_key_bytes);
  opts.max_value_size = absl::GetFlag(FLAGS_max_value_bytes);
  opts.memtable_max_bytes = absl::GetFlag(FLAGS_memtable_bytes);
  opts.block_cache_bytes = absl::GetFlag(FLAGS_block_cache_bytes);
  opts.value_threshold = absl::GetFlag(FLAGS_value_threshold);
  opts.value_log_segment_bytes = absl::GetFlag(FLAGS_vlog_segment_bytes);
  opts.value_log_gc_ratio = absl::GetFlag(FLAGS_vlog_gc_ratio);
  opts.value_log_gc_idle_ms = absl::GetFlag(FLAGS_vlog_gc_idle_ms);
  opts.max_txn_conflict_bytes = absl::GetFlag(FLAGS_txn_conflict_bytes);
  opts.history_retention_commits = absl::GetFlag(FLAGS_history_retention_commits);
  if (cluster) {
    // A commit is a log entry, NOKV_REPL_TS_SHIFT timestamps wide, and the
    // history must cover the window transactions are judged in (repl/fsm.h).
    uint64_t commits = std::max<uint64_t>(opts.history_retention_commits, NOKV_REPL_TXN_WINDOW);
    opts.history_retention_commits = std::min<uint64_t>(commits, UINT64_MAX >> NOKV_REPL_TS_SHIFT)
                                     << NOKV_REPL_TS_SHIFT;
  }
  opts.watch_ring_bytes = absl::GetFlag(FLAGS_watch_ring_bytes);
  opts.max_txn_reads = absl::GetFlag(FLAGS_txn_max_reads);
  opts.hot_key_tracking = absl::GetFlag(FLAGS_hot_key_tracking);
  opts.hot_key_min_rate = absl::GetFlag(FLAGS_hot_key_min_rate);
  opts.hot_write_limit = absl::GetFlag(FLAGS_hot_write_limit);
  opts.hot_read_cache_bytes = absl::GetFlag(FLAGS_hot_read_cache_bytes);
  nokv_db* db = nullptr;
  if (int rc = nokv_open(engine_dir.c_str(), &opts, &db); rc != NOKV_OK) {
    fprintf(stderr, "nokv-server: cannot open %s: %s (%s)\n", engine_dir.c_str(), nokv_errmsg(),
            nokv_strerror(rc));
    return 1;
  }
  nokv_statistics st;
  nokv_stats(db, &st);
  if (st.torn_tail_truncations > 0) {
    fprintf(stderr, "nokv-server: repaired a torn log tail (%llu bytes cut)\n",
            static_cast<unsigned long long>(st.torn_tail_bytes));
  }

  nokv::service::ServerConfig config;
  config.listen = absl::GetFlag(FLAGS_listen);
  config.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  config.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  config.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  config.tls_reload_seconds = absl::GetFlag(FLAGS_tls_reload_seconds);
  config.health_listen = absl::GetFlag(FLAGS_health_listen);
  config.auth_reflection = absl::GetFlag(FLAGS_auth_reflection);
  std::unique_ptr<nokv::service::TokenAuth> auth;
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file); !path.empty()) {
    std::string error;
    auth = nokv::service::TokenAuth::Load(path, &error);
    if (auth == nullptr) {
      fprintf(stderr, "nokv-server: --auth_token_file: %s\n", error.c_str());
      nokv_close(db);
      return 1;
    }
    config.service.auth = auth.get();
  }
  if (std::string e = nokv::service::CheckServerConfig(config); !e.empty()) {
    fprintf(stderr, "nokv-server: %s\n", e.c_str());
    nokv_close(db);
    return 1;
  }
  config.max_message_bytes = opts.max_value_size + opts.max_key_size + (1 << 20);
  config.service.force_sync = absl::GetFlag(FLAGS_sync);
  config.service.scan_chunk_bytes = absl::GetFlag(FLAGS_scan_chunk_bytes);
  config.service.scan_first_chunk_bytes = absl::GetFlag(FLAGS_scan_first_chunk_bytes);
  config.service.scan_buffer_bytes = absl::GetFlag(FLAGS_scan_buffer_bytes);
  config.service.data_dir = data_dir;
  config.service.txn_idle_timeout_ms = absl::GetFlag(FLAGS_txn_idle_timeout_ms);
  config.service.max_txns = absl::GetFlag(FLAGS_max_txns);
  config.service.stream_workers = absl::GetFlag(FLAGS_stream_workers);
  config.service.max_scans = absl::GetFlag(FLAGS_max_scans);
  config.service.scan_idle_timeout_ms = absl::GetFlag(FLAGS_scan_idle_timeout_ms);
  config.service.max_stream_lifetime_ms = absl::GetFlag(FLAGS_max_stream_lifetime_ms);
  config.service.txn_buffer_bytes = absl::GetFlag(FLAGS_txn_buffer_bytes);
  config.service.watch.max_watches = absl::GetFlag(FLAGS_max_watches);
  config.service.watch.send_timeout_ms = absl::GetFlag(FLAGS_watch_send_timeout_ms);
  config.service.backup_dir = absl::GetFlag(FLAGS_backup_dir);
  nokv::service::RpcMetrics rpc_metrics;
  const std::string metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  if (!metrics_listen.empty()) config.rpc_metrics = &rpc_metrics;
  // Cluster mode: the node starts before the service, so that no call ever
  // reaches the engine around the group's log.
  nokv_repl_node* node = nullptr;
  std::string cluster_note;
  std::string token = auth == nullptr ? "" : auth->AnyToken();
  // Declared before the node, which calls it: destroyed after the node stops.
  nokv::service::StateFetcher fetcher(raft_dir, token, RequestRestart);
  if (cluster) {
    std::string error;
    node = StartNode(db, data_dir, config.listen, &fetcher, &cluster_note, &error);
    if (node == nullptr && fetcher.WaitIdle()) {
      // The snapshot libraft stored last is ahead of the engine (a newer one
      // arrived while the state was being fetched): starting fetched the state
      // anew, which holds it; start again on that.
      nokv_close(db);
      return WaitForSignal() == kRestart ? kServeAgain : 0;
    }
    if (node == nullptr) {
      fprintf(stderr, "nokv-server: %s\n", error.c_str());
      nokv_close(db);
      return 1;
    }
    config.service.repl = node;
    config.service.raft_dir = raft_dir;
    // Forwarding dials the leader in plaintext: with TLS, clients are redirected.
    config.service.forward = absl::GetFlag(FLAGS_forward) && config.tls_cert_file.empty();
  }
  nokv::service::KvService service(db, config.service);
  int port = 0;
  std::unique_ptr<nokv::service::Server> server =
      nokv::service::StartServer(config, &service, &port);
  if (server == nullptr) {
    fprintf(stderr, "nokv-server: cannot listen on %s\n", config.listen.c_str());
    service.StopWatches();
    nokv_repl_node_stop(node);
    nokv_close(db);
    return 1;
  }
  std::unique_ptr<nokv::service::MetricsServer> metrics;
  if (!metrics_listen.empty()) {
    std::string bound;
    metrics = nokv::service::MetricsServer::Start(metrics_listen, db, &rpc_metrics, &bound, node);
    if (metrics == nullptr) {
      server->Shutdown();
      server.reset();
      service.StopWatches();
      nokv_repl_node_stop(node);
      nokv_close(db);
      return 1;
    }
    printf("nokv-server metrics on http://%s/metrics\n", bound.c_str());
  }
  std::string where = config.listen;
  if (where.rfind("unix:", 0) != 0) {
    where = where.substr(0, where.rfind(':')) + ":" + std::to_string(port);
  }
  const char* security = config.tls_cert_file.empty()        ? ""
                         : config.tls_client_ca_file.empty() ? ", TLS"
                                                             : ", mTLS";
  printf("nokv-server listening on %s, data in %s (%llu records recovered)%s%s%s\n",
         where.c_str(), data_dir.c_str(), static_cast<unsigned long long>(st.recovered_records),
         security, auth == nullptr ? "" : ", bearer tokens required", cluster_note.c_str());
  fflush(stdout);

  bool restart = false;
  std::thread waiter([&] {
    int sig = WaitForSignal();
    restart = sig == kRestart;
    fprintf(stderr, "nokv-server: %s, shutting down\n",
            restart ? "restarting on the state fetched" : sig == SIGTERM ? "SIGTERM" : "SIGINT");
    server->SetServing(false);
    auto grace = std::chrono::seconds(restart ? 1 : absl::GetFlag(FLAGS_shutdown_grace_seconds));
    // Open transactions get the grace period to commit; then the service ends
    // them itself (UNAVAILABLE, rolled back), and the server cancels whatever
    // else is left a moment later.
    service.EndTxnsAt(std::chrono::steady_clock::now() + grace);
    service.EndWatches();  // they never end by themselves
    server->Shutdown(std::chrono::system_clock::now() + grace + std::chrono::seconds(1));
  });
  server->Wait();
  waiter.join();
  server.reset();
  service.StopWatches();
  metrics.reset();  /* it reads the engine's counters, and the node's state */
  nokv_repl_node_stop(node);  // every call that waited on it has ended
  int rc = nokv_close(db);
  if (rc != NOKV_OK) {
    fprintf(stderr, "nokv-server: close: %s\n", nokv_errmsg());
    return 1;
  }
  if (restart) return kServeAgain;
  fprintf(stderr, "nokv-server: stopped cleanly\n");
  return 0;
}

}  // namespace

// --recover_as_sole_voter: the survivor of a lost majority made the only voter.
int RecoverAsSoleVoter() {
  std::string error;
  const uint64_t id = NodeId(&error);
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  const std::string raft_listen = absl::GetFlag(FLAGS_raft_listen);
  if (id == 0 || raft_listen.empty()) {
    fprintf(stderr, "nokv-server: --recover_as_sole_voter needs --node_id and --raft_listen%s%s\n",
            error.empty() ? "" : ": ", error.c_str());
    return 2;
  }
  // Holding the engine's lock: no server runs on this directory meanwhile.
  const std::string engine_dir = data_dir + "/engine";
  nokv_options opts;
  nokv_options_init(&opts);
  opts.create_if_missing = false;
  nokv_db* db = nullptr;
  if (nokv_open(engine_dir.c_str(), &opts, &db) != NOKV_OK) {
    fprintf(stderr, "nokv-server: cannot open %s: %s\n", engine_dir.c_str(), nokv_errmsg());
    return 1;
  }
  char err[512] = "";
  int rc = nokv_repl_recover((data_dir + "/raft").c_str(), id, raft_listen.c_str(), err, sizeof err);
  nokv_close(db);
  if (rc != NOKV_OK) {
    fprintf(stderr, "nokv-server: cannot recover: %s\n", err);
    return 1;
  }
  printf("node %llu is now the only voter of its group; start it as before, then add the "
         "others back empty (--join, nokv cluster add)\n",
         static_cast<unsigned long long>(id));
  return 0;
}

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Serves a NoKV-C database over gRPC (nokv.v1.KV).");
  absl::ParseCommandLine(argc, argv);
  // gRPC locks with absl::Mutex, whose deadlock detection (on in Debian's
  // build) tracks every lock order in a graph: about 3% of the server's CPU
  // per call, for a debugging aid.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (absl::GetFlag(FLAGS_recover_as_sole_voter)) return RecoverAsSoleVoter();

  if (pipe(signal_pipe) != 0) {
    perror("nokv-server: pipe");
    return 1;
  }
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  int rc;
  while ((rc = Serve()) == kServeAgain) {
  }
  return rc;
}
