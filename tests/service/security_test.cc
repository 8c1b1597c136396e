// TLS, mTLS, bearer tokens and reflection from the C++ client, against the
// service in process (tls_test.py covers the same from Python against the
// binary, with certificate rotation and Unix sockets).
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <google/protobuf/descriptor.pb.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "service/auth.h"
#include "tests/service/service_fixture.h"

namespace {

using grpc::ClientContext;
using grpc::StatusCode;
using namespace nokv::v1;
using nokv_service_test::ServiceTest;
namespace refl = grpc::reflection::v1;

class SecurityTest : public ServiceTest {
 protected:
  // The certificates make_certs.sh makes, once for the suite.
  static void SetUpTestSuite() {
    certs_ = new nokv_test::TempDir();
    std::string script = std::string(getenv("TEST_SRCDIR")) + "/" + getenv("TEST_WORKSPACE") +
                         "/tests/service/make_certs.sh";
    ASSERT_EQ(system(("bash " + script + " " + certs_->path()).c_str()), 0);
  }
  static void TearDownTestSuite() { delete certs_; }

  static std::string Cert(const std::string& name) {
    std::ifstream in(certs_->file(name));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& root,
                                                        const std::string& client = "") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = Cert(root);
    if (!client.empty()) {
      o.pem_private_key = Cert(client + ".key");
      o.pem_cert_chain = Cert(client + ".crt");
    }
    return grpc::SslCredentials(o);
  }

  // Restarts the server with mTLS (or TLS alone) and the stub on creds.
  void RestartTls(bool mutual, std::shared_ptr<grpc::ChannelCredentials> creds) {
    Stop();
    config_tweak_ = [mutual](nokv::service::ServerConfig* c) {
      c->tls_cert_file = certs_->file("server.crt");
      c->tls_key_file = certs_->file("server.key");
      if (mutual) c->tls_client_ca_file = certs_->file("ca.crt");
    };
    channel_creds_ = std::move(creds);
    Start(256 << 20);
  }

  // Restarts the server requiring one of tokens (and for reflection if asked).
  void RestartWithTokens(const std::string& tokens, bool reflection) {
    Stop();
    std::ofstream(dir_.file("tokens")) << tokens;
    std::string error;
    auth_ = nokv::service::TokenAuth::Load(dir_.file("tokens"), &error);
    ASSERT_NE(auth_, nullptr) << error;
    config_tweak_ = [reflection](nokv::service::ServerConfig* c) {
      c->auth_reflection = reflection;
    };
    Start(256 << 20, 4096,
          [this](nokv::service::ServiceOptions* o) { o->auth = auth_.get(); });
  }

  StatusCode PutOn(KV::Stub* stub, const std::string& token = "") {
    ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) ctx.AddMetadata("authorization", token);
    PutRequest req;
    req.set_key("k");
    req.set_value("v");
    PutResponse resp;
    return stub->Put(&ctx, req, &resp).error_code();
  }

  // One reflection request on a fresh stream; the status if the stream failed.
  grpc::Status Reflect(const refl::ServerReflectionRequest& req, refl::ServerReflectionResponse* resp,
                       const std::string& token = "") {
    auto stub = refl::ServerReflection::NewStub(Channel(channel_creds_));
    ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", token);
    auto stream = stub->ServerReflectionInfo(&ctx);
    stream->Write(req);
    stream->WritesDone();
    bool got = stream->Read(resp);
    grpc::Status s = stream->Finish();
    if (s.ok() && !got) return grpc::Status(StatusCode::INTERNAL, "no reflection response");
    return s;
  }

  static nokv_test::TempDir* certs_;
  std::unique_ptr<nokv::service::TokenAuth> auth_;
};

nokv_test::TempDir* SecurityTest::certs_ = nullptr;

TEST_F(SecurityTest, MutualTlsAcceptsOnlyCertificatesItsCaSigned) {
  RestartTls(true, Tls("ca.crt", "client"));
  EXPECT_EQ(PutOn(stub_.get()), StatusCode::OK);
  EXPECT_TRUE(Get("k").found());
  for (const auto& [why, creds] :
       {std::pair{"no client certificate", Tls("ca.crt")},
        std::pair{"another CA's client certificate", Tls("ca.crt", "other-client")},
        std::pair{"an expired client certificate", Tls("ca.crt", "expired-client")},
        std::pair{"a server certificate the client does not trust", Tls("other-ca.crt", "client")},
        std::pair{"plaintext", grpc::InsecureChannelCredentials()}}) {
    auto stub = KV::NewStub(Channel(creds));
    EXPECT_EQ(PutOn(stub.get()), StatusCode::UNAVAILABLE) << why;
  }
}

TEST_F(SecurityTest, TlsWithoutClientCertificates) {
  RestartTls(false, Tls("ca.crt"));
  EXPECT_EQ(PutOn(stub_.get()), StatusCode::OK);
  auto plain = KV::NewStub(Channel(grpc::InsecureChannelCredentials()));
  EXPECT_EQ(PutOn(plain.get()), StatusCode::UNAVAILABLE);
}

TEST_F(SecurityTest, BearerTokens) {
  RestartWithTokens("alpha\n# a comment\n  beta  \n", false);
  EXPECT_EQ(PutOn(stub_.get()), StatusCode::UNAUTHENTICATED);
  for (const char* bad : {"Bearer alph", "Bearer alphaa", "Bearer ", "alpha", "bearer alpha",
                          "Bearer # a comment"}) {
    EXPECT_EQ(PutOn(stub_.get(), bad), StatusCode::UNAUTHENTICATED) << bad;
  }
  EXPECT_EQ(PutOn(stub_.get(), "Bearer alpha"), StatusCode::OK);
  EXPECT_EQ(PutOn(stub_.get(), "Bearer beta"), StatusCode::OK);
  EXPECT_EQ(auth_->loads(), 1u);
  // Reflection stays open unless asked otherwise.
  refl::ServerReflectionRequest req;
  req.set_list_services("");
  refl::ServerReflectionResponse resp;
  EXPECT_TRUE(Reflect(req, &resp).ok());
}

TEST_F(SecurityTest, ReflectionBehindTheToken) {
  RestartWithTokens("alpha\n", true);
  refl::ServerReflectionRequest req;
  req.set_list_services("");
  refl::ServerReflectionResponse resp;
  EXPECT_EQ(Reflect(req, &resp).error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Reflect(req, &resp, "Bearer wrong").error_code(), StatusCode::UNAUTHENTICATED);
  ASSERT_TRUE(Reflect(req, &resp, "Bearer alpha").ok());
  EXPECT_EQ(resp.list_services_response().service_size(), 4);
}

TEST_F(SecurityTest, ReflectionV1DescribesEveryService) {
  refl::ServerReflectionRequest req;
  req.set_list_services("");
  refl::ServerReflectionResponse resp;
  ASSERT_TRUE(Reflect(req, &resp).ok());
  std::vector<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.push_back(s.name());
  EXPECT_EQ(names, (std::vector<std::string>{"nokv.v1.KV", "grpc.health.v1.Health",
                                             "grpc.reflection.v1.ServerReflection",
                                             "grpc.reflection.v1alpha.ServerReflection"}));
  for (const std::string& name : names) {
    req.set_file_containing_symbol(name);
    ASSERT_TRUE(Reflect(req, &resp).ok());
    ASSERT_TRUE(resp.has_file_descriptor_response()) << name << " " << resp.DebugString();
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(resp.file_descriptor_response().file_descriptor_proto(0)));
    bool found = false;
    for (const auto& svc : file.service()) found |= file.package() + "." + svc.name() == name;
    EXPECT_TRUE(found) << name << " not in " << file.name();
  }
  req.set_file_containing_symbol("nokv.v1.NoSuchThing");
  ASSERT_TRUE(Reflect(req, &resp).ok());
  EXPECT_EQ(resp.error_response().error_code(), static_cast<int>(StatusCode::NOT_FOUND));
  req.set_file_by_filename("nokv/v1/kv.proto");
  ASSERT_TRUE(Reflect(req, &resp).ok());
  EXPECT_GE(resp.file_descriptor_response().file_descriptor_proto_size(), 1);
}

TEST_F(SecurityTest, HealthPortMirrorsTheServersStatus) {
  Stop();
  config_tweak_ = [](nokv::service::ServerConfig* c) {
    c->tls_cert_file = certs_->file("server.crt");
    c->tls_key_file = certs_->file("server.key");
    c->health_listen = "127.0.0.1:0";
  };
  channel_creds_ = Tls("ca.crt");
  Start(256 << 20);
  ASSERT_NE(server_->health_port(), 0);
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server_->health_port()), grpc::InsecureChannelCredentials()));
  auto check = [&](const std::string& service, grpc::health::v1::HealthCheckResponse* resp) {
    ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    return health->Check(&ctx, req, resp);
  };
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(check("nokv.v1.KV", &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  server_->SetServing(false);  // what SIGTERM does first
  for (const char* service : {"", "nokv.v1.KV"}) {
    ASSERT_TRUE(check(service, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING) << service;
  }
  EXPECT_EQ(check("other", &resp).error_code(), StatusCode::NOT_FOUND);
}

}  // namespace
