#include "service/metrics.h"

#include <dirent.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace nokv::service {

// ---- gRPC requests ----

void RpcMetrics::Record(const std::string& method, int code, double seconds) {
  std::lock_guard<std::mutex> l(mu_);
  Method& m = methods_[method];
  m.by_code[code]++;
  m.count++;
  m.sum += seconds;
  for (size_t i = 0; i < kBuckets.size(); i++) {
    if (seconds <= kBuckets[i]) {
      m.buckets[i]++;
      break;
    }
  }
}

namespace {

const char* CodeName(int code) {
  static const char* const kNames[] = {
      "OK",          "CANCELLED",         "UNKNOWN",        "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",   "ALREADY_EXISTS", "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",        "UNAVAILABLE",    "DATA_LOSS",
      "UNAUTHENTICATED"};
  return code >= 0 && code < 17 ? kNames[code] : "UNKNOWN";
}

void Append(std::string* out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void Append(std::string* out, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) out->append(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
}

// "/nokv.v1.KV/Get" -> service "nokv.v1.KV", method "Get".
void SplitMethod(const std::string& full, std::string* service, std::string* method) {
  size_t slash = full.rfind('/');
  *service = slash == std::string::npos || slash == 0 ? "" : full.substr(1, slash - 1);
  *method = slash == std::string::npos ? full : full.substr(slash + 1);
}

}  // namespace

void RpcMetrics::Render(std::string* out) {
  std::lock_guard<std::mutex> l(mu_);
  out->append("# HELP grpc_server_handled_total RPCs completed on the server, by method and status code.\n");
  out->append("# TYPE grpc_server_handled_total counter\n");
  for (const auto& [name, m] : methods_) {
    std::string service, method;
    SplitMethod(name, &service, &method);
    for (const auto& [code, n] : m.by_code) {
      Append(out, "grpc_server_handled_total{grpc_service=\"%s\",grpc_method=\"%s\",grpc_code=\"%s\"} %llu\n",
             service.c_str(), method.c_str(), CodeName(code), static_cast<unsigned long long>(n));
    }
  }
  out->append("# HELP grpc_server_handling_seconds Time from a call's start to its status being sent (a stream's whole life).\n");
  out->append("# TYPE grpc_server_handling_seconds histogram\n");
  for (const auto& [name, m] : methods_) {
    std::string service, method;
    SplitMethod(name, &service, &method);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kBuckets.size(); i++) {
      cumulative += m.buckets[i];
      Append(out, "grpc_server_handling_seconds_bucket{grpc_service=\"%s\",grpc_method=\"%s\",le=\"%g\"} %llu\n",
             service.c_str(), method.c_str(), kBuckets[i], static_cast<unsigned long long>(cumulative));
    }
    Append(out, "grpc_server_handling_seconds_bucket{grpc_service=\"%s\",grpc_method=\"%s\",le=\"+Inf\"} %llu\n",
           service.c_str(), method.c_str(), static_cast<unsigned long long>(m.count));
    Append(out, "grpc_server_handling_seconds_sum{grpc_service=\"%s\",grpc_method=\"%s\"} %.9f\n",
           service.c_str(), method.c_str(), m.sum);
    Append(out, "grpc_server_handling_seconds_count{grpc_service=\"%s\",grpc_method=\"%s\"} %llu\n",
           service.c_str(), method.c_str(), static_cast<unsigned long long>(m.count));
  }
}

namespace {

using Clock = std::chrono::steady_clock;

// One per call: notes when it began, and its status and duration when the
// status is sent.
class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(RpcMetrics* metrics, const char* method)
      : metrics_(metrics), method_(method != nullptr ? method : ""), start_(Clock::now()) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
      metrics_->Record(method_, static_cast<int>(methods->GetSendStatus().error_code()), seconds);
    }
    methods->Proceed();
  }

 private:
  RpcMetrics* metrics_;
  std::string method_;
  Clock::time_point start_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_, info->method());
  }

 private:
  RpcMetrics* metrics_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewMetricsInterceptorFactory(
    RpcMetrics* metrics) {
  return std::make_unique<MetricsInterceptorFactory>(metrics);
}

// ---- the engine and the process ----

namespace {

// The engine's counters: name, kind, help. Gauges go up and down; counters
// only grow (and end in _total on the page). Keep in step with nokv/stats.h.
struct EngineMetric {
  const char* name;
  bool gauge;
  const char* help;
  uint64_t (*get)(const nokv_statistics&);
};

#define NOKV_GAUGE(n, h) {#n, true, h, [](const nokv_statistics& s) { return static_cast<uint64_t>(s.n); }}
#define NOKV_COUNTER(n, h) {#n, false, h, [](const nokv_statistics& s) { return static_cast<uint64_t>(s.n); }}

const EngineMetric kEngine[] = {
    NOKV_GAUGE(last_commit_ts, "Newest commit timestamp visible to readers."),
    NOKV_GAUGE(live_snapshots, "Snapshots open."),
    NOKV_GAUGE(txns_active, "Read-write transactions open."),
    NOKV_COUNTER(txn_commits, "Transactions committed."),
    NOKV_COUNTER(txn_conflicts, "Commits refused for a conflict."),
    NOKV_COUNTER(cond_writes, "Conditional writes applied (every condition held)."),
    NOKV_COUNTER(cond_failures, "Conditional writes refused: a condition did not hold."),
    NOKV_COUNTER(ttl_expired, "Expired versions (TTL) that flushes and compactions dropped."),
    NOKV_COUNTER(range_deletes, "Range deletions written."),
    NOKV_GAUGE(range_tombstones, "Range tombstones kept, in memtables and the manifest."),
    NOKV_COUNTER(range_dropped, "Versions flushes and compactions dropped under a range tombstone."),
    NOKV_COUNTER(cond_rejudged,
                 "Conditional writes judged again after a write to one of their keys."),
    NOKV_GAUGE(txn_tracked_keys, "Keys whose last commit is kept for conflict checks."),
    NOKV_GAUGE(memtable_entries, "Entries in the memtable."),
    NOKV_GAUGE(memtable_bytes, "Arena bytes of the memtable."),
    NOKV_GAUGE(immutable_memtables, "Sealed memtables waiting for flush."),
    NOKV_COUNTER(puts, "Keys put."),
    NOKV_COUNTER(deletes, "Keys deleted."),
    NOKV_COUNTER(batches, "Write calls that succeeded."),
    NOKV_COUNTER(write_groups, "WAL appends (write groups)."),
    NOKV_COUNTER(wal_syncs, "WAL fsyncs."),
    NOKV_COUNTER(wal_bytes_written, "Bytes appended to the WAL."),
    NOKV_GAUGE(wal_segments, "Live WAL segment files."),
    NOKV_GAUGE(wal_segment_bytes, "Bytes in live WAL segment files."),
    NOKV_COUNTER(user_bytes_written, "Key and value bytes of puts and deletes."),
    NOKV_COUNTER(write_stalls, "Writes that waited for a flush or compaction."),
    NOKV_COUNTER(write_stall_micros, "Microseconds writes spent stalled."),
    NOKV_COUNTER(write_slowdowns, "Writes delayed 1 ms because L0 or compaction debt grew."),
    NOKV_COUNTER(writes_refused_full, "Writes refused for a full disk."),
    NOKV_COUNTER(hot_writes_throttled, "Writes refused by hot_write_limit."),
    NOKV_COUNTER(flushes, "Memtables flushed to L0."),
    NOKV_COUNTER(flush_bytes_written, "Bytes written by flushes."),
    NOKV_COUNTER(compactions, "Compactions run."),
    NOKV_COUNTER(trivial_moves, "Tables moved down a level without rewriting."),
    NOKV_COUNTER(subcompactions, "Key-range parts of split compactions."),
    NOKV_COUNTER(compaction_bytes_read, "Bytes read by compactions."),
    NOKV_COUNTER(compaction_bytes_written, "Bytes written by compactions."),
    NOKV_GAUGE(pending_compaction_bytes, "Bytes over the level targets."),
    NOKV_GAUGE(tables, "Live tables."),
    NOKV_GAUGE(table_bytes, "Bytes in live tables."),
    NOKV_GAUGE(files_pending_delete, "Obsolete files queued for deletion."),
    NOKV_COUNTER(disk_bytes_written, "Bytes written to disk (WAL, value log, flushes, compactions)."),
    NOKV_COUNTER(get_table_probes, "Tables probed by point reads."),
    NOKV_COUNTER(block_cache_hits, "Block cache hits."),
    NOKV_COUNTER(block_cache_misses, "Block cache misses."),
    NOKV_GAUGE(block_cache_bytes, "Bytes held by the block cache."),
    NOKV_COUNTER(block_reads, "Data blocks read from disk."),
    NOKV_COUNTER(bloom_negatives, "Table reads the bloom filters saved."),
    NOKV_COUNTER(checksum_errors, "Checksum mismatches found on disk."),
    NOKV_GAUGE(vlog_segments, "Live value-log segments."),
    NOKV_GAUGE(vlog_bytes, "Bytes in live value-log segments."),
    NOKV_GAUGE(vlog_garbage_bytes, "Value-log bytes known dead."),
    NOKV_COUNTER(vlog_bytes_written, "Bytes appended to the value log."),
    NOKV_COUNTER(vlog_reads, "Values read from the value log."),
    NOKV_COUNTER(gc_segments_collected, "Value-log segments GC rewrote and retired."),
    NOKV_COUNTER(gc_bytes_rewritten, "Live value-log bytes GC appended again."),
    NOKV_COUNTER(gc_bytes_reclaimed, "Value-log bytes GC deleted."),
    NOKV_COUNTER(gets, "Point reads."),
    NOKV_COUNTER(get_hits, "Point reads that found a value."),
    NOKV_COUNTER(iterators_created, "Iterators created."),
    NOKV_COUNTER(hot_reads_sampled, "Reads counted by the hot-key tracker."),
    NOKV_COUNTER(hot_writes_sampled, "Written keys counted by the hot-key tracker."),
    NOKV_GAUGE(hot_tracker_bytes, "Memory of the hot-key tracker."),
    NOKV_COUNTER(hot_cache_hits, "Gets served by the hot-read cache."),
    NOKV_COUNTER(hot_cache_fills, "Hot values put in the hot-read cache."),
    NOKV_GAUGE(hot_cache_bytes, "Memory in use by the hot-read cache."),
    NOKV_GAUGE(oldest_snapshot_ts, "Timestamp of the oldest open snapshot (0: none)."),
    NOKV_GAUGE(history_horizon, "Explicit read timestamps below it fail (history dropped)."),
    NOKV_COUNTER(txn_tracking_overflows, "Times conflict tracking outgrew its memory."),
    NOKV_GAUGE(memtable_limit_bytes, "Memtable size at which it is sealed."),
    NOKV_COUNTER(tables_deleted, "Obsolete tables deleted."),
    NOKV_COUNTER(manifest_rewrites, "Manifests rewritten as a snapshot."),
    NOKV_COUNTER(bloom_checks, "Bloom filter checks."),
    NOKV_GAUGE(vlog_garbage_permille, "Known dead value-log bytes per 1000."),
    NOKV_COUNTER(vlog_prefetches, "Values scans asked the kernel to read ahead."),
    NOKV_COUNTER(gc_runs, "Value-log segments GC examined."),
    NOKV_COUNTER(gc_idle_checks, "Idle checks of the value log's garbage."),
    NOKV_COUNTER(gc_segments_measured, "Segments whose dead share an idle check measured."),
    NOKV_GAUGE(hot_read_candidates, "Keys the hot-key tracker holds as possibly hot (reads)."),
    NOKV_GAUGE(hot_write_candidates, "Keys the hot-key tracker holds as possibly hot (writes)."),
    NOKV_COUNTER(bg_full_retries, "Flushes and compactions retried after a full disk."),
    NOKV_GAUGE(recovered_records, "WAL records the last open replayed."),
    NOKV_GAUGE(recovered_bytes, "WAL bytes the last open replayed."),
    NOKV_GAUGE(torn_tail_truncations, "WAL tails the last open cut (torn records)."),
    NOKV_GAUGE(torn_tail_bytes, "WAL bytes the last open cut."),
    NOKV_GAUGE(orphan_tables_removed, "Tables no version named, removed by the last open."),
    NOKV_GAUGE(vlog_validated_bytes, "Value-log bytes the last open checked past the head."),
    NOKV_GAUGE(vlog_torn_bytes, "Value-log bytes the last open cut (torn tails)."),
    NOKV_GAUGE(wal_records_dangling, "WAL records the last open dropped (their values were lost)."),
    NOKV_GAUGE(wal_segments_replayed, "WAL segments the last open replayed."),
    NOKV_GAUGE(tables_checked, "Live tables the last open found on disk."),
    NOKV_GAUGE(vlog_segments_removed, "Retired value-log segments the last open deleted."),
    NOKV_GAUGE(recovery_micros, "Wall time of the last open's recovery."),
    NOKV_GAUGE(recovery_manifest_micros, "Of it: CURRENT and the manifest replayed."),
    NOKV_GAUGE(recovery_table_check_micros, "Of it: every live table found on disk."),
    NOKV_GAUGE(recovery_vlog_micros, "Of it: the value log validated past the head."),
    NOKV_GAUGE(recovery_wal_micros, "Of it: the WAL replayed into a memtable."),
    NOKV_GAUGE(recovery_flush_micros, "Of it: that memtable written to L0."),
    NOKV_GAUGE(recovery_cleanup_micros, "Of it: orphans removed."),
};

#undef NOKV_GAUGE
#undef NOKV_COUNTER

void RenderEngine(nokv_db* db, std::string* out) {
  nokv_statistics s;
  if (nokv_stats(db, &s) != NOKV_OK) {
    Append(out, "# nokv_stats failed: %s\n", nokv_errmsg());
    return;
  }
  for (const EngineMetric& m : kEngine) {
    const char* suffix = m.gauge ? "" : "_total";
    Append(out, "# HELP nokv_%s%s %s\n# TYPE nokv_%s%s %s\nnokv_%s%s %llu\n", m.name, suffix,
           m.help, m.name, suffix, m.gauge ? "gauge" : "counter", m.name, suffix,
           static_cast<unsigned long long>(m.get(s)));
  }
  out->append("# HELP nokv_level_files Tables per level.\n# TYPE nokv_level_files gauge\n");
  for (int l = 0; l < NOKV_NUM_LEVELS; l++) {
    Append(out, "nokv_level_files{level=\"%d\"} %llu\n", l, static_cast<unsigned long long>(s.level_files[l]));
  }
  out->append("# HELP nokv_level_bytes Table bytes per level.\n# TYPE nokv_level_bytes gauge\n");
  for (int l = 0; l < NOKV_NUM_LEVELS; l++) {
    Append(out, "nokv_level_bytes{level=\"%d\"} %llu\n", l, static_cast<unsigned long long>(s.level_bytes[l]));
  }
}

// A replica's Raft state (docs/replication.md), from its own thread.
void RenderRaft(nokv_repl_node* node, std::string* out) {
  nokv_repl_status st;
  if (nokv_repl_node_status(node, &st) != NOKV_OK) return;
  out->append("# HELP nokv_raft_state 1 for this node's Raft state.\n"
              "# TYPE nokv_raft_state gauge\n");
  for (int state : {RAFT_FOLLOWER, RAFT_CANDIDATE, RAFT_LEADER, RAFT_UNAVAILABLE}) {
    Append(out, "nokv_raft_state{state=\"%s\"} %d\n", nokv_repl_state_name(state),
           st.state == state ? 1 : 0);
  }
  const struct {
    const char* name;
    uint64_t value;
    const char* help;
  } gauges[] = {
      {"term", st.term, "Current Raft term."},
      {"leader_id", st.leader_id, "The leader's node id as this node knows it (0: none)."},
      {"commit_index", st.commit_index, "Highest log index known committed."},
      {"applied_index", st.applied_index, "Highest log index applied to the engine."},
      {"last_index", st.last_index, "Highest log index stored."},
      {"snapshot_index", st.snapshot_index, "Log index of the last snapshot."},
      {"members", st.n_members, "Members of the group's configuration."},
      {"lease_remaining_ms", static_cast<uint64_t>(st.lease_ms),
       "On the leader: what its read lease has left (0: reads go through the log)."},
  };
  for (const auto& g : gauges) {
    Append(out, "# HELP nokv_raft_%s %s\n# TYPE nokv_raft_%s gauge\nnokv_raft_%s %llu\n", g.name,
           g.help, g.name, g.name, static_cast<unsigned long long>(g.value));
  }
  out->append("# HELP nokv_raft_linearizable_reads_total Linearizable reads served here, by the "
              "leader's lease or by a barrier through the log.\n"
              "# TYPE nokv_raft_linearizable_reads_total counter\n");
  Append(out, "nokv_raft_linearizable_reads_total{by=\"lease\"} %llu\n",
         static_cast<unsigned long long>(st.lease_reads));
  Append(out, "nokv_raft_linearizable_reads_total{by=\"barrier\"} %llu\n",
         static_cast<unsigned long long>(st.barrier_reads));
  if (st.state != RAFT_LEADER) return;
  out->append("# HELP nokv_raft_match_index On the leader: the last log index each member holds.\n"
              "# TYPE nokv_raft_match_index gauge\n");
  for (size_t i = 0; i < st.n_members; i++) {
    Append(out, "nokv_raft_match_index{member=\"%llu\"} %llu\n",
           static_cast<unsigned long long>(st.members[i].id),
           static_cast<unsigned long long>(st.members[i].match_index));
  }
}

void RenderProcess(std::string* out) {
  long page = sysconf(_SC_PAGESIZE);
  unsigned long long size = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%llu %llu", &size, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  Append(out, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
              "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n",
         resident * static_cast<unsigned long long>(page));
  unsigned long long fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (struct dirent* e = readdir(d)) fds += e->d_name[0] != '.';
    closedir(d);
    fds--;  // the directory's own descriptor
  }
  Append(out, "# HELP process_open_fds Open file descriptors.\n"
              "# TYPE process_open_fds gauge\nprocess_open_fds %llu\n", fds);
}

// libmicrohttpd's handler: GET /metrics, anything else 404.
MHD_Result Handle(void* cls, MHD_Connection* conn, const char* url, const char* method,
                  const char*, const char*, size_t*, void**) {
  auto* server = static_cast<MetricsServer*>(cls);
  bool ok = std::strcmp(method, "GET") == 0 && std::strcmp(url, "/metrics") == 0;
  std::string body = ok ? server->Render() : std::string("not found: GET /metrics\n");
  MHD_Response* r = MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
  if (r == nullptr) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain");
  MHD_Result ret = MHD_queue_response(conn, ok ? MHD_HTTP_OK : MHD_HTTP_NOT_FOUND, r);
  MHD_destroy_response(r);
  return ret;
}

}  // namespace

std::unique_ptr<MetricsServer> MetricsServer::Start(const std::string& listen, nokv_db* db,
                                                    RpcMetrics* rpc, std::string* bound,
                                                    nokv_repl_node* node) {
  size_t colon = listen.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (colon == std::string::npos ||
      inet_pton(AF_INET, listen.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "nokv-server: --metrics_listen wants IPv4:PORT, not %s\n", listen.c_str());
    return nullptr;
  }
  int port = std::atoi(listen.c_str() + colon + 1);
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "nokv-server: bad port in --metrics_listen %s\n", listen.c_str());
    return nullptr;
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::unique_ptr<MetricsServer> s(new MetricsServer(db, rpc, node));
  s->daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, nullptr,
                                nullptr, &Handle, s.get(), MHD_OPTION_SOCK_ADDR, &addr,
                                MHD_OPTION_END);
  if (s->daemon_ == nullptr) {
    std::fprintf(stderr, "nokv-server: cannot serve metrics on %s\n", listen.c_str());
    return nullptr;
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(s->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  *bound = listen.substr(0, colon) + ":" + std::to_string(info != nullptr ? info->port : port);
  return s;
}

MetricsServer::~MetricsServer() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

std::string MetricsServer::Render() {
  std::string out;
  RenderEngine(db_, &out);
  if (node_ != nullptr) RenderRaft(node_, &out);
  rpc_->Render(&out);
  RenderProcess(&out);
  return out;
}

}  // namespace nokv::service
