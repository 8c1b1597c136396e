#include "service/forward.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <utility>

namespace nokv::service {

using nokv::v1::TxnRequest;
using nokv::v1::TxnResponse;

bool Forwarder::Forwarded(const grpc::CallbackServerContext* ctx) {
  return ctx->client_metadata().count(kForwardedHeader) != 0;
}

Forwarder::Peer* Forwarder::PeerFor(const std::string& addr) {
  std::lock_guard<std::mutex> l(mu_);
  std::unique_ptr<Peer>& peer = peers_[addr];
  if (peer == nullptr) {
    // A leader that restarts is back in a second or so: reconnect soon, not
    // after gRPC's default backoff (at least 20 s).
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    peer = std::make_unique<Peer>();
    peer->channel = grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
    peer->stub = nokv::v1::KV::NewStub(peer->channel);
    peer->generic = std::make_unique<grpc::GenericStub>(peer->channel);
  }
  return peer.get();
}

std::shared_ptr<grpc::ClientContext> Forwarder::ContextFor(grpc::CallbackServerContext* in) {
  // The client's deadline carries over; its cancellation is passed on by the
  // streams' pipes (OnCancel), while a unary call runs to its end or deadline.
  {
    std::lock_guard<std::mutex> l(mu_);
    calls_++;
  }
  // Counted until the context goes, wherever its last owner lets go of it.
  std::shared_ptr<grpc::ClientContext> ctx(new grpc::ClientContext, [this](grpc::ClientContext* c) {
    delete c;
    Release();
  });
  ctx->set_deadline(in->raw_deadline());
  ctx->AddMetadata(kForwardedHeader, "1");
  auto token = in->client_metadata().find("authorization");
  if (token != in->client_metadata().end()) {
    ctx->AddMetadata("authorization", std::string(token->second.data(), token->second.size()));
  }
  return ctx;
}

void Forwarder::Release() {
  std::lock_guard<std::mutex> l(mu_);
  if (--calls_ == 0) idle_.notify_all();
}

// What the forwarder's reaper sees of a pipe.
class PipeBase {
 public:
  virtual ~PipeBase() = default;
  // Cancels the client's call if a write to it has waited since before
  // `since`. REQUIRES: the forwarder's pipes_mu_ held (the pipe cannot go).
  virtual void CancelIfStalled(std::chrono::steady_clock::time_point since) = 0;
};

Forwarder::Forwarder(uint32_t stall_ms) : stall_ms_(stall_ms) {
  if (stall_ms_ != 0) reaper_ = std::thread([this] { ReapStalled(); });
}

Forwarder::~Forwarder() {
  {
    std::lock_guard<std::mutex> l(pipes_mu_);
    stopping_ = true;
    pipes_cv_.notify_all();
  }
  if (reaper_.joinable()) reaper_.join();
  std::unique_lock<std::mutex> l(mu_);
  idle_.wait(l, [this] { return calls_ == 0; });
}

void Forwarder::Opened(PipeBase* p) {
  std::lock_guard<std::mutex> l(pipes_mu_);
  pipes_.insert(p);
  pipes_cv_.notify_all();  // the reaper sleeps while there is nothing to watch
}

void Forwarder::Closed(PipeBase* p) {
  std::lock_guard<std::mutex> l(pipes_mu_);
  pipes_.erase(p);
}

size_t Forwarder::open_pipes() {
  std::lock_guard<std::mutex> l(pipes_mu_);
  return pipes_.size();
}

// A client that stops taking a piped stream's messages holds the pipe (and, by
// flow control, the leader's stream, which the leader ends at its own idle
// timeout): it is cancelled once a message has waited stall_ms_.
void Forwarder::ReapStalled() {
  const auto stall = std::chrono::milliseconds(stall_ms_);
  const auto period = std::chrono::milliseconds(std::clamp<uint32_t>(stall_ms_ / 4, 5, 250));
  std::unique_lock<std::mutex> l(pipes_mu_);
  while (!stopping_) {
    if (pipes_.empty()) {
      pipes_cv_.wait(l);
      continue;
    }
    pipes_cv_.wait_for(l, period);
    auto since = std::chrono::steady_clock::now() - stall;
    for (PipeBase* p : pipes_) p->CancelIfStalled(since);
  }
}

void Forwarder::Call(const std::string& addr, grpc::CallbackServerContext* in,
                     const Invoke& invoke, std::function<void(grpc::Status)> done) {
  std::shared_ptr<grpc::ClientContext> ctx = ContextFor(in);
  invoke(PeerFor(addr)->stub->async(), ctx.get(),
         [ctx, done = std::move(done)](grpc::Status s) { done(std::move(s)); });
}

namespace {

// A stream piped to the leader: Down is this node's side of the client's call,
// and every response the leader sends (read into resp_ by the subclass's
// upstream reactor) is written to the client before the next is read. The
// leader's final status ends the client's call, with the trailing metadata
// that names a leader. Operations on the leader's call start from this side's
// reactions too, so the subclass holds that call open (AddHold) until it will
// start no more (Close). Deleted once both calls are done.
template <typename Down, typename Response>
class Pipe : public Down, public PipeBase {
 public:
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    writing_ = false;
    if (final_) {
      this->Finish(std::move(*final_));
    } else if (!closed_ && ok) {
      ReadUpstream();
    } else if (!closed_) {  // the client is gone
      ctx_->TryCancel();
      Close();
    }
  }
  void OnCancel() override { ctx_->TryCancel(); }  // the read in flight then fails
  void OnDone() override { Unref(); }

 protected:
  Pipe(Forwarder* forwarder, grpc::CallbackServerContext* in,
       std::shared_ptr<grpc::ClientContext> ctx)
      : forwarder_(forwarder), in_(in), ctx_(std::move(ctx)) {
    forwarder_->Opened(this);
  }
  ~Pipe() override { forwarder_->Closed(this); }

  void CancelIfStalled(std::chrono::steady_clock::time_point since) override {
    std::lock_guard<std::mutex> l(mu_);
    // While a write is pending the client's call is not finished (Finish
    // waits for it): in_ is alive.
    if (writing_ && !cancelled_ && write_started_ < since) {
      cancelled_ = true;
      in_->TryCancel();  // the write fails; OnWriteDone finishes the call
    }
  }

  // Asks the leader's call for its next response. REQUIRES: mu_ held.
  virtual void ReadUpstream() = 0;
  // Releases the hold on the leader's call. REQUIRES: mu_ held.
  virtual void RemoveHold() = 0;

  // Nothing more will be started on the leader's call. REQUIRES: mu_ held.
  void Close() {
    if (closed_) return;
    closed_ = true;
    RemoveHold();
  }

  // The leader's call read a response into resp_ (ok), or has no more.
  void Delivered(bool ok) {
    std::lock_guard<std::mutex> l(mu_);
    if (!ok) {
      Close();
      return;
    }
    writing_ = true;
    write_started_ = std::chrono::steady_clock::now();
    this->StartWrite(&resp_);
  }

  // The leader's call is over.
  void Ended(const grpc::Status& s) {
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [k, v] : ctx_->GetServerTrailingMetadata()) {
        std::string key(k.data(), k.size());
        if (key.rfind("nokv-", 0) == 0) {
          in_->AddTrailingMetadata(key, std::string(v.data(), v.size()));
        }
      }
      if (writing_) {
        final_ = s;  // once that write is done: Finish may not overlap it
      } else {
        this->Finish(s);
      }
    }
    Unref();
  }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  Forwarder* const forwarder_;
  grpc::CallbackServerContext* const in_;
  const std::shared_ptr<grpc::ClientContext> ctx_;
  std::mutex mu_;
  bool writing_ = false;  // a response is being written to the client
  std::chrono::steady_clock::time_point write_started_;  // of that write
  bool cancelled_ = false;  // for a stalled client
  bool closed_ = false;   // the hold on the leader's call is released
  std::optional<grpc::Status> final_;
  Response resp_;
  std::atomic<int> refs_{2};  // the client's call and the leader's
};

class TxnPipe final : public Pipe<grpc::ServerBidiReactor<TxnRequest, TxnResponse>, TxnResponse> {
 public:
  TxnPipe(Forwarder* forwarder, grpc::CallbackServerContext* in,
          std::shared_ptr<grpc::ClientContext> ctx, nokv::v1::KV::Stub* stub)
      : Pipe(forwarder, in, std::move(ctx)), up_(this) {
    std::lock_guard<std::mutex> l(mu_);
    stub->async()->Txn(ctx_.get(), &up_);
    up_.AddHold();
    up_.StartRead(&resp_);
    up_.StartCall();
    StartRead(&req_);
  }

  // A request from the client: on to the leader (at its end, the end of
  // the leader's requests).
  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return;
    if (ok) {
      up_.StartWrite(&req_);
    } else {
      up_.StartWritesDone();
    }
  }

 private:
  class Upstream final : public grpc::ClientBidiReactor<TxnRequest, TxnResponse> {
   public:
    explicit Upstream(TxnPipe* p) : p_(p) {}
    void OnReadDone(bool ok) override { p_->Delivered(ok); }
    void OnWriteDone(bool ok) override {
      if (ok) p_->StartRead(&p_->req_);  // the next request (else its status ends it)
    }
    void OnDone(const grpc::Status& s) override { p_->Ended(s); }

   private:
    TxnPipe* const p_;
  };

  void ReadUpstream() override { up_.StartRead(&resp_); }
  void RemoveHold() override { up_.RemoveHold(); }

  TxnRequest req_;
  Upstream up_;
};

class ScanPipe final : public Pipe<grpc::ServerWriteReactor<grpc::ByteBuffer>, grpc::ByteBuffer> {
 public:
  ScanPipe(Forwarder* forwarder, grpc::CallbackServerContext* in,
           std::shared_ptr<grpc::ClientContext> ctx, grpc::GenericStub* stub,
           const grpc::ByteBuffer& request)
      : Pipe(forwarder, in, std::move(ctx)), req_(request), up_(this) {
    std::lock_guard<std::mutex> l(mu_);
    // One request, then chunks: a server-streaming call is a stream like any
    // other on the wire.
    stub->PrepareBidiStreamingCall(ctx_.get(), "/nokv.v1.KV/Scan", grpc::StubOptions(), &up_);
    up_.AddHold();
    up_.StartWriteLast(&req_, grpc::WriteOptions());
    up_.StartRead(&resp_);
    up_.StartCall();
  }

 private:
  class Upstream final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    explicit Upstream(ScanPipe* p) : p_(p) {}
    void OnReadDone(bool ok) override { p_->Delivered(ok); }
    void OnDone(const grpc::Status& s) override { p_->Ended(s); }

   private:
    ScanPipe* const p_;
  };

  void ReadUpstream() override { up_.StartRead(&resp_); }
  void RemoveHold() override { up_.RemoveHold(); }

  grpc::ByteBuffer req_;
  Upstream up_;
};

}  // namespace

grpc::ServerBidiReactor<TxnRequest, TxnResponse>* Forwarder::Txn(
    const std::string& addr, grpc::CallbackServerContext* in) {
  return new TxnPipe(this, in, ContextFor(in), PeerFor(addr)->stub.get());
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* Forwarder::Scan(const std::string& addr,
                                                           grpc::CallbackServerContext* in,
                                                           const grpc::ByteBuffer& request) {
  return new ScanPipe(this, in, ContextFor(in), PeerFor(addr)->generic.get(), request);
}

}  // namespace nokv::service
