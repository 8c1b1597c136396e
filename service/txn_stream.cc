// The Txn RPC: one snapshot-isolation transaction per bidirectional stream.
//
// A stream alternates between waiting for its client (a read or a write in
// flight) and running one request's engine calls on a worker ("busy"). Only
// one of these happens at a time, so requests are answered in order and the
// transaction is touched by one thread at a time. Cancellation and the idle
// reaper can strike at any moment: while the stream is busy they only leave the
// status for the worker, which ends the stream when its call returns.
//
// The reactor is deleted when gRPC is done with it (OnDone) and no queued
// worker task still refers to it (refs_).
#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "service/cluster.h"
#include "service/kv_service.h"
#include "service/status.h"

namespace nokv::service {

namespace {

using Clock = std::chrono::steady_clock;
using nokv::v1::TxnRequest;
using nokv::v1::TxnResponse;

grpc::Status Invalid(const std::string& what) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, what);
}

// A stream refused before it began.
class RefusedTxn final : public grpc::ServerBidiReactor<TxnRequest, TxnResponse> {
 public:
  explicit RefusedTxn(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

class KvService::TxnReactor final : public grpc::ServerBidiReactor<TxnRequest, TxnResponse> {
 public:
  TxnReactor(KvService* service, grpc::CallbackServerContext* ctx)
      : service_(service),
        ctx_(ctx),
        started_(Clock::now()),
        idle_timeout_ms_(service->options_.txn_idle_timeout_ms) {
    std::lock_guard<std::mutex> l(mu_);
    last_activity_ = started_;
    StartRead(&req_);
  }

  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    if (finished_) return;
    if (!ok) {  // the client closed its side without commit or rollback
      End(grpc::Status::OK);
      return;
    }
    RunOnWorker([this] { Handle(); });
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    writing_ = false;
    if (finished_) return;
    if (!ok) {
      End(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    if (end_pending_) {  // expired while the response was in flight
      End(std::move(*end_pending_));
      return;
    }
    if (iter_ != nullptr) {
      RunOnWorker([this] { ContinueScan(); });
    } else {
      last_activity_ = Clock::now();
      StartRead(&req_);
    }
  }

  void OnCancel() override {
    EndSoon(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> l(service_->streams_mu_);
      service_->txns_.erase(this);
    }
    Unref();
  }

  // Called by the reaper (holding the service's streams_mu_).
  void EndForShutdown() {
    EndSoon(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         "the server is shutting down; the transaction was rolled back (retry it)"));
  }
  // Called by the reaper: ends a transaction idle for its timeout (a client
  // that neither sends nor reads) or open for longer than the stream lifetime.
  void ExpireIfIdle(Clock::time_point now) {
    uint32_t lifetime = service_->options_.max_stream_lifetime_ms;
    std::lock_guard<std::mutex> l(mu_);
    if (finished_ || cancelled_) return;
    if (lifetime != 0 && now - started_ >= std::chrono::milliseconds(lifetime)) {
      // Ends once the worker or the response in flight is done; a client that
      // does not take that response within its idle timeout more is cancelled.
      if (!end_pending_) {
        service_->streams_expired_++;
        end_pending_ = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                    "transaction open for more than " + std::to_string(lifetime) +
                                        " ms (the server's max_stream_lifetime_ms); rolled back, "
                                        "retry it");
      }
      if (busy_) return;
      if (!writing_) {
        End(std::move(*end_pending_));
      } else if (now - started_ >= std::chrono::milliseconds(lifetime + idle_timeout_ms_)) {
        EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stalled past its lifetime"));
      }
      return;
    }
    if (finished_ || busy_ || now - last_activity_ < std::chrono::milliseconds(idle_timeout_ms_)) {
      return;
    }
    service_->streams_expired_++;
    EndLocked(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                           "transaction idle for more than " + std::to_string(idle_timeout_ms_) +
                               " ms; rolled back"));
  }

 private:
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Marks the stream busy and queues f. REQUIRES: mu_ held, not busy.
  template <typename F>
  void RunOnWorker(F f) {
    busy_ = true;
    refs_.fetch_add(1, std::memory_order_relaxed);
    service_->workers_.Submit([this, f] {
      f();
      Unref();
    });
  }

  // Rolls back and finishes. REQUIRES: mu_ held, not busy, no write outstanding.
  void End(grpc::Status status) {
    if (finished_) return;
    finished_ = true;
    nokv_iter_close(iter_);
    iter_ = nullptr;
    nokv_txn_discard(txn_);
    txn_ = nullptr;
    ReleaseBuffered();
    Finish(std::move(status));
  }

  // End, unless a response is being written: Finish may not overlap a write, so
  // the call is cancelled instead (its OnWriteDone(false) then ends it).
  // REQUIRES: mu_ held, not busy.
  void EndLocked(grpc::Status status) {
    if (writing_) {
      if (!cancelled_) ctx_->TryCancel();
      cancelled_ = true;
      return;
    }
    End(std::move(status));
  }

  // EndLocked, or if a worker is running a request, leave it to the worker.
  // Returns whether this call ended (or will end) the stream.
  bool EndSoon(grpc::Status status) {
    std::lock_guard<std::mutex> l(mu_);
    if (finished_ || cancelled_) return false;
    if (busy_) {
      if (end_pending_) return false;
      end_pending_ = std::move(status);
      return true;
    }
    EndLocked(std::move(status));
    return true;
  }

  // The transaction's buffered writes no longer count against txn_buffer_bytes.
  void ReleaseBuffered() {
    service_->ReleaseTxnBytes(buffered_);
    buffered_ = 0;
  }

  // How a worker hands the stream back: the next step is either a response to
  // write (and then more of the scan, or the next read), a final response, or
  // an error status.
  enum class Next { kWrite, kWriteLast, kFail };

  void Resume(Next next, grpc::Status status = grpc::Status::OK) {
    std::lock_guard<std::mutex> l(mu_);
    busy_ = false;
    last_activity_ = Clock::now();
    if (next == Next::kWriteLast) {  // committed or rolled back: say so, whatever came
      finished_ = true;
      writing_ = true;
      StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
    } else if (end_pending_) {
      End(std::move(*end_pending_));
    } else if (next == Next::kFail) {
      End(std::move(status));
    } else {
      writing_ = true;
      StartWrite(&resp_);
    }
  }

  // Rolled back on failure (End); an engine error keeps the engine's message.
  void Fail(grpc::Status status) {
    if (status.error_code() != grpc::StatusCode::ABORTED) {
      status = grpc::Status(status.error_code(),
                            status.error_message() + " (the transaction was rolled back)");
    }
    Resume(Next::kFail, std::move(status));
  }
  void FailEngine(int rc) { Fail(ToGrpcStatus(rc, nokv_errmsg())); }

  // Runs on a worker: one request.
  void Handle() {
    resp_.Clear();
    const TxnRequest::OpCase op = req_.op_case();
    if (txn_ == nullptr) {
      const nokv::v1::TxnBegin& begin = req_.begin();  // defaults unless op is begin
      nokv_repl_node* node = service_->options_.repl;
      if (node != nullptr && !(begin.read_only() && begin.serializable())) {
        // In a cluster the snapshot must hold every write acknowledged before
        // the transaction began: it is taken at a read point from the leader
        // (the stream stays busy meanwhile).
        refs_.fetch_add(1, std::memory_order_relaxed);
        nokv_repl_read_index(node, &TxnReactor::ReadPointReached, this);
        return;
      }
      return Begin(NOKV_OK);
    }
    if (op == TxnRequest::kBegin) {
      return Fail(Invalid("begin must be the first message of a Txn stream"));
    }
    HandleOp();
  }

  // On the node's thread: the read point is reached here (or not).
  static void ReadPointReached(void* arg, const nokv_repl_outcome* o) {
    auto* self = static_cast<TxnReactor*>(arg);
    int rc = o->rc;
    self->service_->workers_.Submit([self, rc] {
      self->Begin(rc);
      self->Unref();
    });
  }

  // Begins the transaction (in a cluster once rc says the read point is
  // reached), then handles the request, begin or the first operation.
  void Begin(int rc) {
    if (rc != NOKV_OK) {
      return Fail(ReplicationStatus(service_->options_.repl, ctx_, rc));
    }
    const nokv::v1::TxnBegin& begin = req_.begin();
    uint32_t asked = begin.idle_timeout_ms();
    unsigned flags = begin.read_only() ? NOKV_TXN_READ_ONLY : 0;
    // A replicated commit carries the keys read (nokv_txn_export).
    if (service_->options_.repl != nullptr) flags |= NOKV_TXN_EXPORTABLE;
    rc = nokv_txn_begin(service_->db_, flags, &txn_);
    if (rc != NOKV_OK) return FailEngine(rc);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (asked != 0 && asked < idle_timeout_ms_) idle_timeout_ms_ = asked;
    }
    if (req_.op_case() == TxnRequest::kBegin) {
      resp_.set_read_ts(nokv_txn_read_ts(txn_));
      resp_.mutable_begun()->set_read_only(begin.read_only());
      resp_.mutable_begun()->set_idle_timeout_ms(idle_timeout_ms_);
      return Resume(Next::kWrite);
    }
    HandleOp();
  }

  // One operation on the open transaction.
  void HandleOp() {
    const TxnRequest::OpCase op = req_.op_case();
    resp_.set_read_ts(nokv_txn_read_ts(txn_));
    switch (op) {
      case TxnRequest::kGet: {
        const std::string& key = req_.get().key();
        void* val = nullptr;
        size_t len = 0;
        int rc = nokv_txn_get(txn_, key.data(), key.size(), &val, &len);
        if (rc != NOKV_OK && rc != NOKV_ENOTFOUND) return FailEngine(rc);
        nokv::v1::TxnGetResult* get = resp_.mutable_get();
        get->set_found(rc == NOKV_OK);
        if (rc == NOKV_OK) get->set_value(static_cast<const char*>(val), len);
        nokv_free(val);
        return Resume(Next::kWrite);
      }
      case TxnRequest::kPut:
      case TxnRequest::kDelete: {
        bool put = op == TxnRequest::kPut;
        const std::string& key = put ? req_.put().key() : req_.delete_().key();
        size_t bytes = key.size() + (put ? req_.put().value().size() : 0);
        if (!service_->ReserveTxnBytes(bytes)) {
          service_->streams_refused_++;
          return Fail(grpc::Status(
              grpc::StatusCode::RESOURCE_EXHAUSTED,
              "open transactions already buffer " +
                  std::to_string(service_->txn_buffered_bytes_.load()) +
                  " bytes of writes, near the server's limit (txn_buffer_bytes " +
                  std::to_string(service_->options_.txn_buffer_bytes) + "); retry later"));
        }
        buffered_ += bytes;
        int rc = put ? nokv_txn_put_ttl(txn_, key.data(), key.size(),
                                        req_.put().value().data(), req_.put().value().size(),
                                        req_.put().ttl_ms())
                     : nokv_txn_delete(txn_, key.data(), key.size());
        if (rc != NOKV_OK) return FailEngine(rc);
        resp_.mutable_written()->set_ops(++writes_);
        return Resume(Next::kWrite);
      }
      case TxnRequest::kScan:
        return StartScan();
      case TxnRequest::kCommit: {
        if (service_->options_.repl != nullptr && writes_ > 0) return CommitReplicated();
        nokv_write_options wo{};
        wo.sync = service_->options_.force_sync || req_.commit().sync();
        uint64_t ts = 0;
        nokv_txn* txn = txn_;
        txn_ = nullptr;  // freed by commit, whatever it returns
        int rc = nokv_txn_commit(txn, &wo, &ts);
        ReleaseBuffered();
        if (rc != NOKV_OK) return FailEngine(rc);
        resp_.mutable_committed()->set_commit_ts(ts);
        return Resume(Next::kWriteLast);
      }
      case TxnRequest::kRollback:
        nokv_txn_discard(txn_);
        txn_ = nullptr;
        ReleaseBuffered();
        resp_.mutable_rolled_back();
        return Resume(Next::kWriteLast);
      default:
        return Fail(Invalid("empty Txn request: set one of begin, get, put, delete, scan, "
                            "commit, rollback"));
    }
  }

  // A transaction that wrote, in a cluster: proposed as the conditional write
  // it exports (repl/fsm.h), which every replica judges alike as it applies it.
  void CommitReplicated() {
    nokv_txn* txn = txn_;
    txn_ = nullptr;
    nokv_batch* writes = nullptr;
    nokv_condition* conds = nullptr;
    size_t n = 0;
    raft_buffer entry;
    int rc = nokv_txn_export(txn, NOKV_REPL_MAX_CONDS, &writes, &conds, &n);
    if (rc == NOKV_OK) rc = nokv_repl_cond_entry(conds, n, writes, &entry);
    read_ts_ = nokv_txn_read_ts(txn);
    nokv_free(conds);
    nokv_batch_free(writes);
    nokv_txn_discard(txn);
    ReleaseBuffered();
    if (rc != NOKV_OK) return FailEngine(rc);
    refs_.fetch_add(1, std::memory_order_relaxed);
    nokv_repl_propose(service_->options_.repl, entry, &TxnReactor::Committed, this);
  }

  // On the node's thread: the commit's outcome. Not rolled back when UNKNOWN:
  // the entry may yet commit.
  static void Committed(void* arg, const nokv_repl_outcome* o) {
    auto* self = static_cast<TxnReactor*>(arg);
    self->resp_.set_read_ts(self->read_ts_);
    if (o->rc == NOKV_OK) {
      self->resp_.mutable_committed()->set_commit_ts(o->commit_ts);
      self->Resume(Next::kWriteLast);
    } else if (o->rc == NOKV_ECONDITION) {
      std::string why = "transaction conflict: a key it read was written after it began (read_ts " +
                        std::to_string(self->read_ts_) + "), or it began more than " +
                        std::to_string(NOKV_REPL_TXN_WINDOW) + " commits before; retry";
      self->Fail(ToGrpcStatus(NOKV_ECONFLICT, why.c_str()));
    } else {
      self->Resume(Next::kFail, ReplicationStatus(self->service_->options_.repl, self->ctx_,
                                                   o->rc));
    }
    self->Unref();
  }

  void StartScan() {
    const nokv::v1::TxnScan& scan = req_.scan();
    const std::string &start = scan.start(), &end = scan.end(), &prefix = scan.prefix();
    if (grpc::Status s = CheckScanBounds(start, end, prefix); !s.ok()) return Fail(s);
    int rc = prefix.empty() ? nokv_txn_iter_new(txn_, start.data(), start.size(), end.data(),
                                                end.size(), &iter_)
                            : nokv_txn_iter_new_prefix(txn_, prefix.data(), prefix.size(), &iter_);
    if (rc != NOKV_OK) return FailEngine(rc);
    nokv_iter_seek_first(iter_);
    scan_limit_ = scan.limit();
    scan_sent_ = 0;
    // As a Scan stream's: small first, doubling as the client takes them.
    const ServiceOptions& o = service_->options_;
    scan_chunk_bytes_ = std::max<size_t>(1, std::min(o.scan_first_chunk_bytes, o.scan_chunk_bytes));
    SendScanChunk();
  }

  void ContinueScan() {
    resp_.Clear();
    resp_.set_read_ts(nokv_txn_read_ts(txn_));
    scan_chunk_bytes_ =
        std::max<size_t>(1, std::min(scan_chunk_bytes_ * 2, service_->options_.scan_chunk_bytes));
    SendScanChunk();
  }

  // One chunk of the scan; the iterator is closed with the last one.
  void SendScanChunk() {
    nokv::v1::TxnScanChunk* chunk = resp_.mutable_scan();
    bool more = FillScanChunk(iter_, chunk->mutable_kvs(), scan_chunk_bytes_, scan_limit_,
                              &scan_sent_);
    int rc = nokv_iter_status(iter_);
    if (rc != NOKV_OK || !more) {
      nokv_iter_close(iter_);
      iter_ = nullptr;
    }
    if (rc != NOKV_OK) return FailEngine(rc);
    chunk->set_done(!more);
    Resume(Next::kWrite);
  }

  KvService* const service_;
  grpc::CallbackServerContext* const ctx_;
  const Clock::time_point started_;
  std::atomic<int> refs_{1};  // gRPC's (until OnDone) + one per queued task

  std::mutex mu_;
  bool busy_ = false;      // a worker owns the transaction and the stream
  bool writing_ = false;   // a response write is outstanding
  bool cancelled_ = false;  // ended by cancelling the call (a write was outstanding)
  bool finished_ = false;  // Finish (or StartWriteAndFinish) was called
  size_t buffered_ = 0;    // bytes of writes counted against txn_buffer_bytes
  std::optional<grpc::Status> end_pending_;  // how to end once the worker is done
  Clock::time_point last_activity_;
  uint32_t idle_timeout_ms_;

  // Owned by whoever runs the stream: a worker while busy_, else under mu_.
  TxnRequest req_;
  TxnResponse resp_;
  nokv_txn* txn_ = nullptr;
  nokv_iter* iter_ = nullptr;  // an unfinished scan
  uint32_t writes_ = 0;
  uint64_t read_ts_ = 0;  // a replicated commit's, while it is proposed
  uint32_t scan_limit_ = 0, scan_sent_ = 0;
  size_t scan_chunk_bytes_ = 0;  // key+value bytes the scan's next chunk may carry
};

grpc::ServerBidiReactor<TxnRequest, TxnResponse>* KvService::Txn(
    grpc::CallbackServerContext* ctx) {
  if (auto s = Authorize(ctx); !s.ok()) return new RefusedTxn(s);
  // In a cluster, a follower pipes the stream to the leader whole (a read-only
  // serializable one too: the leader serves it as well as any node).
  if (std::string leader = ForwardTarget(ctx); !leader.empty()) {
    return forwarder_.Txn(leader, ctx);
  }
  std::lock_guard<std::mutex> l(streams_mu_);
  if (end_txns_at_ != Clock::time_point::max()) {
    return new RefusedTxn(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                       "the server is shutting down"));
  }
  if (txns_.size() >= options_.max_txns) {
    streams_refused_++;
    return new RefusedTxn(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                    "too many open transactions (" +
                                        std::to_string(options_.max_txns) + "); retry later"));
  }
  auto* reactor = new TxnReactor(this, ctx);
  txns_.insert(reactor);
  streams_cv_.notify_one();  // the reaper sleeps while there is nothing to watch
  return reactor;
}

size_t KvService::open_txns() {
  std::lock_guard<std::mutex> l(streams_mu_);
  return txns_.size();
}

void KvService::EndTxnsAt(Clock::time_point when) {
  {
    std::lock_guard<std::mutex> l(streams_mu_);
    end_txns_at_ = when;
  }
  streams_cv_.notify_all();
}

// Checks the open streams a few times per timeout, so one idle for its timeout
// is ended within a quarter of it (at most 250 ms) later.
void KvService::ReapStreams() {
  uint32_t shortest = std::min(options_.txn_idle_timeout_ms, options_.scan_idle_timeout_ms);
  if (options_.max_stream_lifetime_ms != 0) {
    shortest = std::min(shortest, options_.max_stream_lifetime_ms);
  }
  auto period = std::chrono::milliseconds(std::clamp<uint32_t>(shortest / 4, 5, 250));
  std::unique_lock<std::mutex> l(streams_mu_);
  while (!stopping_) {
    if (txns_.empty() && scans_.empty()) {
      streams_cv_.wait(l);
      continue;
    }
    Clock::time_point wake = Clock::now() + period;
    if (end_txns_at_ > Clock::now()) wake = std::min(wake, end_txns_at_);
    streams_cv_.wait_until(l, wake);
    Clock::time_point now = Clock::now();
    for (TxnReactor* r : txns_) {
      if (now >= end_txns_at_) {
        r->EndForShutdown();
      } else {
        r->ExpireIfIdle(now);
      }
    }
    for (ScanReactor* r : scans_) ExpireScan(r, now);
  }
}

}  // namespace nokv::service
