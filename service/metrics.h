// metrics.h — Prometheus metrics of nokv_server: the engine's counters, gRPC
// requests by method and status code with latency histograms (a server
// interceptor), and the process's memory and descriptors, served as text on
// /metrics by libmicrohttpd (--metrics_listen). Hot keys stay out: a key as a
// label would make the series count unbounded (Stats and `nokv stats` list them).
#ifndef NOKV_SERVICE_METRICS_H
#define NOKV_SERVICE_METRICS_H

#include <grpcpp/support/server_interceptor.h>

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nokv/nokv.h"
#include "repl/node.h"

struct MHD_Daemon;

namespace nokv::service {

// Per gRPC method: calls by status code and a latency histogram.
class RpcMetrics {
 public:
  static constexpr std::array<double, 16> kBuckets = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   10.0};  // seconds

  void Record(const std::string& method, int code, double seconds);
  // Appends the families in the Prometheus text format.
  void Render(std::string* out);

 private:
  struct Method {
    std::map<int, uint64_t> by_code;
    std::array<uint64_t, kBuckets.size()> buckets{};  // cumulative at render
    uint64_t count = 0;
    double sum = 0;
  };
  std::mutex mu_;
  std::map<std::string, Method> methods_;
};

// Creates the interceptor that feeds an RpcMetrics.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewMetricsInterceptorFactory(
    RpcMetrics* metrics);

// The /metrics endpoint. Start returns nullptr (after printing why) if it
// cannot listen.
class MetricsServer {
 public:
  // node: in cluster mode, this server's replica (its Raft state is exported
  // too); borrowed, and the metrics server must go before it stops.
  static std::unique_ptr<MetricsServer> Start(const std::string& listen, nokv_db* db,
                                              RpcMetrics* rpc, std::string* bound,
                                              nokv_repl_node* node = nullptr);
  ~MetricsServer();
  std::string Render();  // the page, also for tests

 private:
  MetricsServer(nokv_db* db, RpcMetrics* rpc, nokv_repl_node* node)
      : db_(db), rpc_(rpc), node_(node) {}
  nokv_db* db_;
  RpcMetrics* rpc_;
  nokv_repl_node* node_;
  MHD_Daemon* daemon_ = nullptr;
};

}  // namespace nokv::service

#endif  // NOKV_SERVICE_METRICS_H
