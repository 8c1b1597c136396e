// Forwarding client calls from a follower to the leader of its Raft group, so
// clients may call any node (docs/replication.md): unary calls, and Txn and
// Scan streams, piped message by message. A forwarded call carries the
// client's deadline and bearer token (and a piped stream its cancellation),
// and is marked so that it is never forwarded again: a node that gets one it cannot serve answers
// UNAVAILABLE naming the leader, and the client retries.
#ifndef NOKV_SERVICE_FORWARD_H
#define NOKV_SERVICE_FORWARD_H

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "nokv/v1/kv.grpc.pb.h"

namespace nokv::service {

inline constexpr char kForwardedHeader[] = "nokv-forwarded";

class PipeBase;

class Forwarder {
 public:
  // stall_ms: a piped stream whose client has not taken a message for this
  // long is cancelled (as the server cancels its own streams' stalled
  // clients); 0: never.
  explicit Forwarder(uint32_t stall_ms = 0);
  // Waits until every forwarded call has let go of its context: the last
  // reference to a channel must not be dropped in one of gRPC's callback
  // threads (releasing the callback queue there freed it twice, under ASan).
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  using Async = nokv::v1::KV::StubInterface::async_interface;
  // Starts the call on the leader's stub: (async stub, client context, done).
  using Invoke =
      std::function<void(Async*, grpc::ClientContext*, std::function<void(grpc::Status)>)>;

  // Whether the call was forwarded to this node already.
  static bool Forwarded(const grpc::CallbackServerContext* ctx);

  // The Invoke that sends req to the leader's method (&Async::Get, ...) and
  // fills resp.
  template <typename Req, typename Resp>
  static Invoke To(void (Async::*method)(grpc::ClientContext*, const Req*, Resp*,
                                         std::function<void(grpc::Status)>),
                   const Req* req, Resp* resp) {
    return [method, req, resp](Async* a, grpc::ClientContext* c,
                               std::function<void(grpc::Status)> done) {
      (a->*method)(c, req, resp, std::move(done));
    };
  }

  // Sends the call to the server at addr; done gets its status (the response
  // was filled by invoke's call) on a gRPC thread.
  void Call(const std::string& addr, grpc::CallbackServerContext* in, const Invoke& invoke,
            std::function<void(grpc::Status)> done);

  // A Txn stream piped to the server at addr: each request on, each response
  // back, and its final status with the trailing metadata that names a leader.
  grpc::ServerBidiReactor<nokv::v1::TxnRequest, nokv::v1::TxnResponse>* Txn(
      const std::string& addr, grpc::CallbackServerContext* in);

  // A Scan stream piped to the server at addr; its chunks pass as they are
  // (in wire format).
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Scan(const std::string& addr,
                                                  grpc::CallbackServerContext* in,
                                                  const grpc::ByteBuffer& request);
  // Piped streams not yet over.
  size_t open_pipes();

  // A pipe comes and goes (forward.cc).
  void Opened(PipeBase* p);
  void Closed(PipeBase* p);

 private:
  struct Peer {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<nokv::v1::KV::Stub> stub;
    std::unique_ptr<grpc::GenericStub> generic;
  };
  Peer* PeerFor(const std::string& addr);
  // A context for the call to the leader, carrying in's deadline,
  // cancellation and token, marked forwarded.
  std::shared_ptr<grpc::ClientContext> ContextFor(grpc::CallbackServerContext* in);

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Peer>> peers_;  // by address; few
  std::condition_variable idle_;
  size_t calls_ = 0;  // forwarded calls whose contexts are alive (under mu_)
  // A forwarded call's context is gone (ContextFor's deleter).
  void Release();
  // Cancels pipes whose client stalled, every quarter of stall_ms_.
  void ReapStalled();

  const uint32_t stall_ms_;
  std::mutex pipes_mu_;  // before a pipe's own
  std::condition_variable pipes_cv_;
  std::set<PipeBase*> pipes_;
  bool stopping_ = false;  // under pipes_mu_
  std::thread reaper_;
};

}  // namespace nokv::service

#endif  // NOKV_SERVICE_FORWARD_H
