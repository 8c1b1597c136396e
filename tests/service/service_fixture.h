// The KV service in process, for the service tests: a real gRPC server on
// 127.0.0.1 (port 0) over an engine in a temporary directory, and a C++ stub.
#ifndef NOKV_TESTS_SERVICE_SERVICE_FIXTURE_H
#define NOKV_TESTS_SERVICE_SERVICE_FIXTURE_H

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "nokv/nokv.h"
#include "nokv/v1/kv.grpc.pb.h"
#include "service/forward.h"
#include "service/kv_service.h"
#include "tests/core/test_util.h"

namespace nokv_service_test {

using grpc::ClientContext;
using grpc::StatusCode;
using namespace nokv::v1;

// What a follower does with Txn and Scan streams (forward.h): pipes each to
// the server at target.
class StreamPipe final
    : public KV::WithCallbackMethod_Txn<KV::WithRawCallbackMethod_Scan<KV::Service>> {
 public:
  // stall_ms: as a server's scan_idle_timeout_ms (Forwarder).
  StreamPipe(std::string target, uint32_t stall_ms)
      : target_(std::move(target)), forwarder_(stall_ms) {}
  grpc::ServerBidiReactor<TxnRequest, TxnResponse>* Txn(grpc::CallbackServerContext* ctx) override {
    return forwarder_.Txn(target_, ctx);
  }
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Scan(grpc::CallbackServerContext* ctx,
                                                  const grpc::ByteBuffer* req) override {
    return forwarder_.Scan(target_, ctx, *req);
  }
  size_t open_pipes() { return forwarder_.open_pipes(); }

 private:
  const std::string target_;
  nokv::service::Forwarder forwarder_;
};

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(256 << 20); }
  void TearDown() override { Stop(); }

  // Opens the engine in dir_ and serves it; tweak adjusts the service options.
  void Start(size_t memtable_bytes, size_t chunk = 4096,
             const std::function<void(nokv::service::ServiceOptions*)>& tweak = nullptr,
             const std::function<void(nokv_options*)>& engine_tweak = nullptr) {
    nokv_options o;
    nokv_options_init(&o);
    o.memtable_max_bytes = memtable_bytes;
    if (engine_tweak) engine_tweak(&o);
    ASSERT_EQ(nokv_open(dir_.path().c_str(), &o, &db_), NOKV_OK);
    nokv::service::ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.max_message_bytes = 1 << 20;
    config.service.scan_chunk_bytes = chunk;
    config.service.data_dir = dir_.path();
    if (tweak) tweak(&config.service);
    if (config_tweak_) config_tweak_(&config);
    service_ = std::make_unique<nokv::service::KvService>(db_, config.service);
    port_ = 0;
    server_ = nokv::service::StartServer(config, service_.get(), &port_);
    ASSERT_NE(server_, nullptr);
    stub_ = KV::NewStub(Channel(channel_creds_));
    if (pipe_streams_) {
      // Ten times the server's: the tests see the server end a stalled stream
      // first, then the pipe let go of its client too. The server's clock
      // starts only once the pipe stopped reading, after the pipe's own
      // (its write to the stalled client blocked, then its window from the
      // server filled); at twice, a loaded sanitizer run once saw the pipe
      // cancel first, and the server counted a cancellation, not an expiry.
      pipe_ = std::make_unique<StreamPipe>("127.0.0.1:" + std::to_string(port_),
                                           10 * config.service.scan_idle_timeout_ms);
      grpc::ServerBuilder b;
      int pipe_port = 0;
      b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &pipe_port);
      b.RegisterService(pipe_.get());
      pipe_server_ = b.BuildAndStart();
      ASSERT_NE(pipe_server_, nullptr);
      pipe_stub_ = KV::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(pipe_port),
                                                   grpc::InsecureChannelCredentials()));
    }
  }
  // The stub Txn and Scan streams go through: the server's, or with
  // pipe_streams_ a pipe's to it.
  KV::Stub* streams() { return pipe_streams_ ? pipe_stub_.get() : stub_.get(); }
  // A new channel to the server (test certificates carry its address, 127.0.0.1).
  std::shared_ptr<grpc::Channel> Channel(std::shared_ptr<grpc::ChannelCredentials> creds) {
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                               creds ? creds : grpc::InsecureChannelCredentials());
  }
  void Stop() {
    if (pipe_server_ != nullptr) {
      pipe_server_->Shutdown();
      pipe_server_.reset();
      pipe_.reset();
    }
    server_->Shutdown();
    server_.reset();
    service_.reset();
    ASSERT_EQ(nokv_close(db_), NOKV_OK) << nokv_errmsg();
  }
  uint64_t Put(const std::string& k, const std::string& v, StatusCode want = StatusCode::OK) {
    ClientContext ctx;
    PutRequest req;
    req.set_key(k);
    req.set_value(v);
    PutResponse resp;
    grpc::Status s = stub_->Put(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), want) << s.error_message();
    return resp.commit_ts();
  }
  GetResponse Get(const std::string& k, uint64_t read_ts = 0, StatusCode want = StatusCode::OK) {
    ClientContext ctx;
    GetRequest req;
    req.set_key(k);
    req.set_read_ts(read_ts);
    GetResponse resp;
    grpc::Status s = stub_->Get(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), want) << s.error_message();
    return resp;
  }

  uint64_t Counter(const std::string& name) {
    ClientContext ctx;
    StatsResponse resp;
    grpc::Status s = stub_->Stats(&ctx, StatsRequest(), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.counters().at(name);
  }

  nokv_test::TempDir dir_;
  // Set before Start: the server's configuration beyond the service options,
  // and the stub's credentials (null: plaintext).
  std::function<void(nokv::service::ServerConfig*)> config_tweak_;
  std::shared_ptr<grpc::ChannelCredentials> channel_creds_;
  int port_ = 0;
  nokv_db* db_ = nullptr;
  std::unique_ptr<nokv::service::KvService> service_;
  std::unique_ptr<nokv::service::Server> server_;
  std::unique_ptr<KV::Stub> stub_;
  bool pipe_streams_ = false;  // set before Start
  std::unique_ptr<StreamPipe> pipe_;
  std::unique_ptr<grpc::Server> pipe_server_;
  std::unique_ptr<KV::Stub> pipe_stub_;
};

}  // namespace nokv_service_test

#endif  // NOKV_TESTS_SERVICE_SERVICE_FIXTURE_H
