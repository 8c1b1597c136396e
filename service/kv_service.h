// The nokv.v1.KV service: a thin translation from protobuf to the C API.
//
// Get, Put and Delete use the callback API with no thread handoff: a Get runs
// in gRPC's reaction (an engine read does not wait on other requests), and a
// write is queued with nokv_write_async, whose completion, on the engine's
// commit thread, finishes the call; so every write in flight, synced or not,
// can join one commit group, and no thread blocks per write. Stats and
// Checkpoint, rare and slow, stay on the synchronous API. The streams
// use the callback API, so that no thread is pinned per open stream, and run
// their engine calls, which may block (a table read, a commit's fsync), on a
// small pool of workers rather than in gRPC's reactions, which must not block.
//
// Scan (ServerWriteReactor, on the raw method: its messages are encoded from the
// iterator without a protobuf object, scan_wire.h) reads the next chunk only
// once the previous one was
// handed to the transport, so a slow client slows the scan instead of making
// the server buffer the range. What a scan holds in its one message is bounded
// twice: a stream's messages start small and double with each one its client
// takes (up to scan_chunk_bytes), so a client that never reads costs a small
// chunk; and all scans together hold at most scan_buffer_bytes in messages not
// yet taken, past which a scan waits for another's message to be taken.
//
// Txn (txn_stream.cc) is a bidi stream that runs one request at a time. A
// reaper thread rolls back transactions left idle and cancels scans whose
// client stopped reading, and ends any stream past its lifetime: a stream pins a snapshot (memtables, versions, value-log segments),
// so none may live unbounded. A stream with a write outstanding cannot be
// finished with a status (one write in flight, and Finish counts as one): it is
// cancelled, and the client sees CANCELLED.
#ifndef NOKV_SERVICE_KV_SERVICE_H
#define NOKV_SERVICE_KV_SERVICE_H

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "nokv/nokv.h"
#include "nokv/v1/kv.grpc.pb.h"
#include "repl/node.h"
#include "service/auth.h"
#include "service/forward.h"
#include "service/watch_stream.h"
#include "service/work_queue.h"

namespace nokv::service {

struct ServiceOptions {
  bool force_sync = false;           // every write fsyncs, whatever the request says
  size_t scan_chunk_bytes = 256 << 10;  // key+value bytes per ScanResponse (at least one pair)
  size_t scan_first_chunk_bytes = 4 << 10;   // a stream's first message; each later one doubles
  size_t scan_buffer_bytes = 64 << 20;  // key+value bytes all scans hold in messages not yet
                                        // taken by the transport; past it a scan waits
  std::string data_dir;              // reported by Stats
  uint32_t txn_idle_timeout_ms = 30000;  // an open transaction idle this long is rolled back
  size_t max_txns = 1024;                // open Txn streams; more are RESOURCE_EXHAUSTED
  int stream_workers = 8;                // threads running Scan and Txn streams' engine calls
  // Bounds on what streams may pin (memtables, versions, value-log segments) or
  // buffer: a client that opens streams and stalls must not exhaust the server.
  size_t max_scans = 1024;               // open Scan streams; more are RESOURCE_EXHAUSTED
  uint32_t scan_idle_timeout_ms = 30000;  // a Scan whose client has not taken its next
                                          // message for this long is cancelled
  uint32_t max_stream_lifetime_ms = 600000;  // Scan and Txn streams end after this (0: never)
  size_t txn_buffer_bytes = size_t{1} << 30;  // keys+values all open transactions buffer;
                                              // a write past it ends its Txn RESOURCE_EXHAUSTED
  std::string backup_dir;  // where Checkpoint writes ("": Checkpoint is refused)
  TokenAuth* auth = nullptr;  // borrowed; if set, every call needs a bearer token
  WatchOptions watch;
  // Cluster mode (borrowed; cluster.h): writes go through the Raft group's
  // log, and linearizable reads wait for a read point from the leader.
  nokv_repl_node* repl = nullptr;
  std::string raft_dir;  // cluster mode: where FetchState makes its checkpoints
  // In a cluster, a node that does not lead forwards unary calls to the one
  // that does (forward.h); off: it answers UNAVAILABLE naming the leader.
  bool forward = true;
};

class KvService final
    : public nokv::v1::KV::WithCallbackMethod_Get<nokv::v1::KV::WithCallbackMethod_Put<
          nokv::v1::KV::WithCallbackMethod_Delete<nokv::v1::KV::WithCallbackMethod_Txn<
              nokv::v1::KV::WithCallbackMethod_Write<nokv::v1::KV::WithCallbackMethod_DeleteRange<
                  nokv::v1::KV::WithCallbackMethod_Watch<nokv::v1::KV::WithCallbackMethod_Cluster<
                      nokv::v1::KV::WithRawCallbackMethod_Scan<nokv::v1::KV::Service>>>>>>>>> {
 public:
  // db is borrowed and must outlive the server. Destroy the service only after
  // the server has shut down (every stream has ended).
  KvService(nokv_db* db, ServiceOptions options);
  ~KvService() override;

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext*, const nokv::v1::GetRequest*,
                                nokv::v1::GetResponse*) override;
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext*, const nokv::v1::PutRequest*,
                                nokv::v1::PutResponse*) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext*, const nokv::v1::DeleteRequest*,
                                   nokv::v1::DeleteResponse*) override;
  // One dispatcher thread serves every watch (watch_stream.h).
  grpc::ServerWriteReactor<nokv::v1::WatchResponse>* Watch(
      grpc::CallbackServerContext* ctx, const nokv::v1::WatchRequest* req) override;
  // Ends every watch with UNAVAILABLE (a graceful shutdown: clients resume
  // elsewhere from their last commit_ts + 1).
  void EndWatches();
  size_t open_watches() { return watches_.open(); }
  const WatchHub& watches() const { return watches_; }
  // Stops serving watches for good: call once the server is down, before the
  // database closes (the destructor does it too).
  void StopWatches() { watches_.Stop(); }
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext*,
                                        const nokv::v1::DeleteRangeRequest*,
                                        nokv::v1::DeleteRangeResponse*) override;
  // Judged in the reaction and committed asynchronously (PendingCondWrite).
  grpc::ServerUnaryReactor* Write(grpc::CallbackServerContext*, const nokv::v1::WriteRequest*,
                                  nokv::v1::WriteResponse*) override;
  // A membership change through the node (cluster.h); forwarded by a follower.
  grpc::ServerUnaryReactor* Cluster(grpc::CallbackServerContext*, const nokv::v1::ClusterRequest*,
                                    nokv::v1::ClusterResponse*) override;
  // Between cluster nodes: a checkpoint of the engine, streamed (state_transfer.h).
  grpc::Status FetchState(grpc::ServerContext*, const nokv::v1::FetchStateRequest*,
                          grpc::ServerWriter<nokv::v1::StateChunk>*) override;
  grpc::Status Stats(grpc::ServerContext*, const nokv::v1::StatsRequest*,
                     nokv::v1::StatsResponse*) override;
  grpc::Status Checkpoint(grpc::ServerContext*, const nokv::v1::CheckpointRequest*,
                          nokv::v1::CheckpointResponse*) override;
  grpc::Status Compact(grpc::ServerContext*, const nokv::v1::CompactRequest*,
                       nokv::v1::CompactResponse*) override;
  // Raw: the request is parsed here, and the responses are written in their
  // wire format straight from the iterator (scan_wire.h).
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Scan(grpc::CallbackServerContext*,
                                                   const grpc::ByteBuffer*) override;
  grpc::ServerBidiReactor<nokv::v1::TxnRequest, nokv::v1::TxnResponse>* Txn(
      grpc::CallbackServerContext*) override;

  // ScanResponse messages produced so far (all streams); lets tests observe that
  // a scan advances only as fast as its client reads.
  uint64_t scan_chunks_sent() const { return scan_chunks_sent_.load(); }
  // Txn and Scan streams open now.
  size_t open_txns();
  size_t open_scans();
  // Key+value bytes in Scan messages not yet taken by the transport, and the
  // scans waiting for that to drop below scan_buffer_bytes.
  size_t scan_buffered_bytes();
  size_t scans_waiting();
  // For a graceful shutdown: transactions still open at `when` are rolled back
  // and their streams end with UNAVAILABLE (instead of the transport's cancel),
  // so a client can tell that it should retry elsewhere.
  void EndTxnsAt(std::chrono::steady_clock::time_point when);

 private:
  // OK, or UNAUTHENTICATED if options_.auth is set and the call has no token.
  grpc::Status Authorize(const grpc::ServerContextBase* ctx) {
    return options_.auth == nullptr ? grpc::Status::OK : options_.auth->Check(ctx);
  }

  // A Write between its judgement and its answer.
  struct PendingCondWrite {
    KvService* service;
    grpc::ServerUnaryReactor* reactor;
    nokv::v1::WriteResponse* resp;
    nokv_batch* batch;
    std::vector<nokv_condition> conds;  // point into the request
    bool sync;
    static void Done(void* arg, int rc, uint64_t ts, const nokv_cond_result* r, const char* msg);
    // Finishes the call (msg: the engine's message when rc fails) and deletes this.
    void Answer(int rc, uint64_t ts, const nokv_cond_result& r, const char* msg);
  };

  class ScanReactor;
  class TxnReactor;
  struct ReplCondWrite;
  struct ReplRead;
  struct ReplChange;

  // In a cluster, on a node that does not lead: forwards the call to the
  // leader, whose answer finishes it; false (the caller answers) if this node
  // may not (forwarding off, the call forwarded already, no leader known).
  bool Forward(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor,
               const Forwarder::Invoke& invoke);
  // The leader's client address if this node should forward ctx's call there
  // (in a cluster, not leading, forwarding on, not forwarded already); else "".
  std::string ForwardTarget(const grpc::CallbackServerContext* ctx);

  // Get's read of the engine, at req's read_ts or the newest.
  grpc::Status GetLocal(const nokv::v1::GetRequest* req, nokv::v1::GetResponse* resp);

  // Queues batch (owned, freed once written) with nokv_write_async; the
  // completion sets resp's commit_ts and finishes the call. built is the result
  // of making the batch: an error finishes the call with it at once.
  // In a cluster, the batch goes through the group's log instead, and a
  // node that does not lead forwards the call with `forward`.
  template <typename Response>
  grpc::ServerUnaryReactor* WriteAsync(grpc::CallbackServerContext* ctx, nokv_batch* batch,
                                       int built, bool sync, Response* resp,
                                       Forwarder::Invoke forward);

  // The reaper: ends transactions left idle, scans whose client stopped reading,
  // and streams past their lifetime.
  void ReapStreams();
  // REQUIRES: streams_mu_ held (kv_service.cc, where a scan is complete).
  static void ExpireScan(ScanReactor* scan, std::chrono::steady_clock::time_point now);
  // Reserves n bytes of scan_buffer_bytes for scan's next message; false (and
  // the scan is queued, to be resumed by ReleaseScanBytes) if that would pass
  // the budget while other scans' messages hold some of it. A scan alone may
  // pass it: the one pair a message must carry can be larger than the budget.
  bool ReserveScanBytes(ScanReactor* scan, size_t n);
  // Returns n reserved bytes, and resumes the queued scans that now fit.
  void ReleaseScanBytes(size_t n);
  // Drops scan from the queue; false if it was not queued.
  bool UnqueueScan(ScanReactor* scan);
  // Accounts n more bytes buffered by transactions; false (nothing accounted)
  // if that would pass txn_buffer_bytes.
  bool ReserveTxnBytes(size_t n);
  void ReleaseTxnBytes(size_t n) { txn_buffered_bytes_ -= n; }

  nokv_db* db_;
  ServiceOptions options_;
  std::atomic<uint64_t> scan_chunks_sent_{0};
  std::atomic<size_t> txn_buffered_bytes_{0};
  std::atomic<uint64_t> streams_expired_{0};  // ended by a timeout or the lifetime
  std::atomic<uint64_t> streams_refused_{0};  // refused by max_txns, max_scans or the buffer cap
  std::mutex checkpoint_mu_;
  std::mutex compact_mu_;  // one Compact at a time

  // scan_buffer_bytes accounting. Lock order: streams_mu_ before scan_budget_mu_.
  std::mutex scan_budget_mu_;
  size_t scan_buffered_ = 0;
  std::deque<ScanReactor*> scans_queued_;

  // Open streams, for the reaper and the limits. Lock order: streams_mu_ before
  // a reactor's own mutex.
  std::mutex streams_mu_;
  std::condition_variable streams_cv_;
  std::unordered_set<TxnReactor*> txns_;
  std::unordered_set<ScanReactor*> scans_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point end_txns_at_ = std::chrono::steady_clock::time_point::max();
  WorkQueue workers_;
  std::thread reaper_;
  WatchHub watches_;
  Forwarder forwarder_;
};

// INVALID_ARGUMENT unless the bounds name a range [start, end) (empty end: no
// upper bound) or a prefix, not both.
grpc::Status CheckScanBounds(const std::string& start, const std::string& end,
                             const std::string& prefix);

// Moves pairs from iter into kvs while they hold at most chunk_bytes of keys and
// values (at least one pair, however large), until the iterator ends or *sent
// reaches limit (0: none). Returns whether the scan has more to send; check
// nokv_iter_status after.
bool FillScanChunk(nokv_iter* iter, google::protobuf::RepeatedPtrField<nokv::v1::KeyValue>* kvs,
                   size_t chunk_bytes, uint32_t limit, uint32_t* sent);

// The most key+value bytes FillScanChunk will move next: chunk_bytes, or the
// next pair's size if that is larger.
size_t NextChunkBytes(nokv_iter* iter, size_t chunk_bytes);

class RpcMetrics;

struct ServerConfig {
  // host:port, or unix:PATH for a Unix domain socket (e.g. for a sidecar).
  std::string listen = "127.0.0.1:50051";
  size_t max_message_bytes = 80 << 20;
  ServiceOptions service;
  // If set, every call's method, status and duration are recorded there (a
  // server interceptor; metrics.h).
  RpcMetrics* rpc_metrics = nullptr;
  // TLS: the server's certificate chain and key (PEM). With client_ca_file too,
  // clients must present a certificate that CA signed (mTLS). The files are
  // watched and reloaded every tls_reload_seconds, so certificates rotated in
  // place (cert-manager) take effect for new connections without a restart.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  unsigned tls_reload_seconds = 10;
  // If set, a second, plaintext listener that serves grpc.health.v1 Check
  // alone, with the main server's answer: Kubernetes' gRPC probes speak no TLS.
  std::string health_listen;
  // With service.auth set, reflection needs the token too (health checking
  // stays open for probes either way).
  bool auth_reflection = false;
};

// A started server and the services it serves besides the KV service (which
// the caller owns); with ServerConfig::health_listen, also the plaintext
// server that answers health checks alone.
class Server {
 public:
  Server(std::unique_ptr<grpc::Server> server, std::vector<std::unique_ptr<grpc::Service>> own,
         std::unique_ptr<grpc::Server> health_server, int health_port,
         std::shared_ptr<std::atomic<bool>> serving)
      : own_(std::move(own)),
        server_(std::move(server)),
        health_server_(std::move(health_server)),
        health_port_(health_port),
        serving_(std::move(serving)) {}
  ~Server() {
    if (health_server_ != nullptr) health_server_->Shutdown();
  }
  grpc::Server* grpc() { return server_.get(); }
  int health_port() const { return health_port_; }  // 0: no health_listen
  void Shutdown() { server_->Shutdown(); }
  void Shutdown(std::chrono::system_clock::time_point deadline) { server_->Shutdown(deadline); }
  void Wait() { server_->Wait(); }
  // Health checking's answer for every service (NOT_SERVING while shutting down).
  void SetServing(bool serving) {
    *serving_ = serving;
    server_->GetHealthCheckService()->SetServingStatus(serving);
  }

 private:
  std::vector<std::unique_ptr<grpc::Service>> own_;  // destroyed after the servers
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;
  int health_port_;
  std::shared_ptr<std::atomic<bool>> serving_;
};

// Checks what config names (readable certificate files) before any listening:
// empty if fine, else what is wrong.
std::string CheckServerConfig(const ServerConfig& config);

// Builds and starts a server with the KV service, gRPC health checking (service
// "nokv.v1.KV" and "" report SERVING) and server reflection. *bound_port gets
// the port actually bound (useful with port 0; 1 for a Unix socket). Returns
// null if it cannot listen.
std::unique_ptr<Server> StartServer(const ServerConfig& config, KvService* service,
                                    int* bound_port);

}  // namespace nokv::service

#endif  // NOKV_SERVICE_KV_SERVICE_H
