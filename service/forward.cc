#include "service/forward.h"

#include <utility>

namespace nokv::service {

bool Forwarder::Forwarded(const grpc::CallbackServerContext* ctx) {
  return ctx->client_metadata().count(kForwardedHeader) != 0;
}

nokv::v1::KV::Stub* Forwarder::StubFor(const std::string& addr) {
  std::lock_guard<std::mutex> l(mu_);
  auto& stub = stubs_[addr];
  if (stub == nullptr) {
    // A leader that restarts is back in a second or so: reconnect soon, not
    // after gRPC's default backoff (at least 20 s).
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    stub = nokv::v1::KV::NewStub(
        grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args));
  }
  return stub.get();
}

void Forwarder::Call(const std::string& addr, grpc::CallbackServerContext* in,
                     const Invoke& invoke, std::function<void(grpc::Status)> done) {
  // The client's deadline and cancellation carry over.
  std::shared_ptr<grpc::ClientContext> ctx = grpc::ClientContext::FromCallbackServerContext(*in);
  ctx->AddMetadata(kForwardedHeader, "1");
  auto token = in->client_metadata().find("authorization");
  if (token != in->client_metadata().end()) {
    ctx->AddMetadata("authorization", std::string(token->second.data(), token->second.size()));
  }
  invoke(StubFor(addr)->async(), ctx.get(),
         [ctx, done = std::move(done)](grpc::Status s) { done(std::move(s)); });
}

}  // namespace nokv::service
