// Forwarding unary calls from a follower to the leader of its Raft group, so
// clients may call any node (docs/replication.md). A forwarded call carries
// the client's deadline, cancellation and bearer token, and is marked so that
// it is never forwarded again: a node that gets one it cannot serve answers
// UNAVAILABLE naming the leader, and the client retries.
#ifndef NOKV_SERVICE_FORWARD_H
#define NOKV_SERVICE_FORWARD_H

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/grpcpp.h>

#include "nokv/v1/kv.grpc.pb.h"

namespace nokv::service {

inline constexpr char kForwardedHeader[] = "nokv-forwarded";

class Forwarder {
 public:
  using Async = nokv::v1::KV::StubInterface::async_interface;
  // Starts the call on the leader's stub: (async stub, client context, done).
  using Invoke =
      std::function<void(Async*, grpc::ClientContext*, std::function<void(grpc::Status)>)>;

  // Whether the call was forwarded to this node already.
  static bool Forwarded(const grpc::CallbackServerContext* ctx);

  // Sends the call to the server at addr; done gets its status (the response
  // was filled by invoke's call) on a gRPC thread.
  void Call(const std::string& addr, grpc::CallbackServerContext* in, const Invoke& invoke,
            std::function<void(grpc::Status)> done);

 private:
  nokv::v1::KV::Stub* StubFor(const std::string& addr);

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<nokv::v1::KV::Stub>> stubs_;  // by address; few
};

}  // namespace nokv::service

#endif  // NOKV_SERVICE_FORWARD_H
