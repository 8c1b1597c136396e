// txn_rpc_bench — what the Txn stream costs over the engine's own transactions.
//
//   txn_rpc_bench [--threads 4] [--txns 20000] [--keys 100000] [--dist uniform|zipfian]
//                 [--sync]
//
// The workload of txn_bench (read-modify-write of 4 distinct keys per
// transaction, retried on conflict), run twice on one fresh database: through
// the C API in process, and through the Txn RPC of an in-process server over
// loopback TCP, with one stream per transaction: each request awaiting its
// answer (9 round trips), and pipelined (the 4 gets sent at once, then the 4
// puts and the commit: 2 round trips); then the same requests as plain unary
// Get and Put calls (not atomic), to separate what the transport costs from
// what the stream adds. Reports committed txn/s, the abort rate and
// latency percentiles of each, and checks that the transactional runs' counters
// sum to 4 × their commits.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nokv/nokv.h"
#include "nokv/v1/kv.grpc.pb.h"
#include "service/kv_service.h"
#include "tests/bench/bench_util.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace nokv::v1;

constexpr int kKeysPerTxn = 4;

std::string KeyOf(uint64_t n) {
  char k[32];
  snprintf(k, sizeof k, "acct%012llu", static_cast<unsigned long long>(n));
  return k;
}

struct Options {
  int threads = 4;
  int txns = 20000;  // committed transactions per mode, over all threads
  uint64_t keys = 100000;
  bool zipfian = false;
  bool sync = false;
};

// One thread's share: picks distinct keys, runs rmw(keys) until it commits.
struct Picker {
  uint64_t rng;
  const zipf* z;
  uint64_t keys;
  std::vector<std::string> Next() {
    std::vector<uint64_t> picked;
    while (picked.size() < kKeysPerTxn) {
      uint64_t k = z != nullptr ? zipf_next(z, &rng) : bench_splitmix(&rng) % keys;
      if (std::find(picked.begin(), picked.end(), k) == picked.end()) picked.push_back(k);
    }
    std::vector<std::string> out;
    for (uint64_t k : picked) out.push_back(KeyOf(k));
    return out;
  }
};

// A read-modify-write: 1 committed, 0 conflicted, -1 failed.
using Rmw = std::function<int(const std::vector<std::string>&)>;

struct Result {
  double seconds = 0;
  uint64_t commits = 0, aborts = 0;
  std::vector<double> latencies_us;  // of committed attempts
};

Result Run(const Options& o, const zipf* z, const std::function<Rmw()>& make_rmw) {
  Result r;
  std::atomic<uint64_t> commits{0}, aborts{0};
  std::atomic<bool> failed{false};
  std::vector<std::vector<double>> lat(o.threads);
  std::vector<std::thread> threads;
  auto start = Clock::now();
  for (int t = 0; t < o.threads; t++) {
    threads.emplace_back([&, t] {
      Rmw rmw = make_rmw();
      Picker p{0x1234 + static_cast<uint64_t>(t) * 7919, z, o.keys};
      for (int i = t; i < o.txns && !failed; i += o.threads) {
        std::vector<std::string> keys = p.Next();
        for (;;) {
          auto t0 = Clock::now();
          int rc = rmw(keys);
          if (rc < 0) {
            failed = true;
            break;
          }
          if (rc == 1) {
            lat[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
            commits++;
            break;
          }
          aborts++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (failed) {
    fprintf(stderr, "txn_rpc_bench: a transaction failed\n");
    exit(1);
  }
  r.commits = commits;
  r.aborts = aborts;
  for (auto& l : lat) r.latencies_us.insert(r.latencies_us.end(), l.begin(), l.end());
  std::sort(r.latencies_us.begin(), r.latencies_us.end());
  return r;
}

double Pct(const std::vector<double>& v, double p) {
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

void Report(const char* mode, const char* dist, const Result& r) {
  printf("%-7s %-8s %9.0f txn/s  aborts %6.2f%%  p50 %7.1f us  p99 %7.1f us\n", mode, dist,
         r.commits / r.seconds, 100.0 * r.aborts / (r.commits + r.aborts),
         Pct(r.latencies_us, 0.50), Pct(r.latencies_us, 0.99));
}

// Engine: nokv_txn in process.
Rmw EngineRmw(nokv_db* db, bool sync) {
  return [db, sync](const std::vector<std::string>& keys) {
    nokv_txn* txn;
    if (nokv_txn_begin(db, 0, &txn) != NOKV_OK) return -1;
    for (const std::string& k : keys) {
      void* v;
      size_t n;
      if (nokv_txn_get(txn, k.data(), k.size(), &v, &n) != NOKV_OK) {
        nokv_txn_discard(txn);
        return -1;
      }
      std::string next = std::to_string(std::stol(std::string(static_cast<char*>(v), n)) + 1);
      nokv_free(v);
      if (nokv_txn_put(txn, k.data(), k.size(), next.data(), next.size()) != NOKV_OK) {
        nokv_txn_discard(txn);
        return -1;
      }
    }
    nokv_write_options wo{};
    wo.sync = sync;
    int rc = nokv_txn_commit(txn, &wo, nullptr);
    return rc == NOKV_OK ? 1 : rc == NOKV_ECONFLICT ? 0 : -1;
  };
}

using TxnStream = grpc::ClientReaderWriter<TxnRequest, TxnResponse>;

// Half-closes a Txn stream and maps its end to an Rmw result.
int EndTxn(TxnStream* stream, bool committed) {
  stream->WritesDone();
  grpc::Status s = stream->Finish();
  if (committed && s.ok()) return 1;
  if (s.error_code() == grpc::StatusCode::ABORTED) return 0;
  fprintf(stderr, "txn_rpc_bench: %s\n", s.error_message().c_str());
  return -1;
}

// RPC: one Txn stream per attempt, each request waiting for its answer.
Rmw RpcRmw(std::shared_ptr<grpc::Channel> channel, bool sync) {
  auto stub = std::shared_ptr<KV::Stub>(KV::NewStub(channel));
  return [stub, sync](const std::vector<std::string>& keys) {
    grpc::ClientContext ctx;
    auto stream = stub->Txn(&ctx);
    TxnRequest req;
    TxnResponse resp;
    for (const std::string& k : keys) {
      req.mutable_get()->set_key(k);
      if (!stream->Write(req) || !stream->Read(&resp) || !resp.get().found()) break;
      req.mutable_put()->set_key(k);
      req.mutable_put()->set_value(std::to_string(std::stol(resp.get().value()) + 1));
      if (!stream->Write(req) || !stream->Read(&resp)) break;
    }
    req.mutable_commit()->set_sync(sync);
    bool committed = stream->Write(req) && stream->Read(&resp) && resp.has_committed();
    return EndTxn(stream.get(), committed);
  };
}

// Pipelined: the Txn stream answers in order, so a client need not wait for an
// answer before sending the next request. The gets go out together, then the
// puts and the commit: two round trips, and a shorter conflict window.
Rmw PipelinedRmw(std::shared_ptr<grpc::Channel> channel, bool sync) {
  auto stub = std::shared_ptr<KV::Stub>(KV::NewStub(channel));
  return [stub, sync](const std::vector<std::string>& keys) {
    grpc::ClientContext ctx;
    auto stream = stub->Txn(&ctx);
    TxnRequest req;
    TxnResponse resp;
    bool ok = true;
    for (const std::string& k : keys) {
      req.mutable_get()->set_key(k);
      ok = ok && stream->Write(req);
    }
    std::vector<std::string> next;
    for (size_t i = 0; i < keys.size() && ok; i++) {
      ok = stream->Read(&resp) && resp.has_get() && resp.get().found();
      if (ok) next.push_back(std::to_string(std::stol(resp.get().value()) + 1));
    }
    for (size_t i = 0; i < keys.size() && ok; i++) {
      req.mutable_put()->set_key(keys[i]);
      req.mutable_put()->set_value(next[i]);
      ok = stream->Write(req);
    }
    req.mutable_commit()->set_sync(sync);
    ok = ok && stream->Write(req);
    for (size_t i = 0; i < keys.size() && ok; i++) ok = stream->Read(&resp) && resp.has_written();
    bool committed = ok && stream->Read(&resp) && resp.has_committed();
    return EndTxn(stream.get(), committed);
  };
}

// Unary: the same round trips as plain Get and Put calls (not atomic: only a
// measure of what the transport costs per request).
Rmw UnaryRmw(std::shared_ptr<grpc::Channel> channel, bool sync) {
  auto stub = std::shared_ptr<KV::Stub>(KV::NewStub(channel));
  return [stub, sync](const std::vector<std::string>& keys) {
    for (const std::string& k : keys) {
      grpc::ClientContext gctx, pctx;
      GetRequest get;
      get.set_key(k);
      GetResponse got;
      if (!stub->Get(&gctx, get, &got).ok()) return -1;
      PutRequest put;
      put.set_key(k);
      put.set_value(std::to_string(std::stol(got.value()) + 1));
      put.set_sync(sync);
      PutResponse done;
      if (!stub->Put(&pctx, put, &done).ok()) return -1;
    }
    return 1;
  };
}

uint64_t SumCounters(nokv_db* db, uint64_t keys) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < keys; i++) {
    std::string k = KeyOf(i);
    void* v;
    size_t n;
    if (nokv_get(db, nullptr, k.data(), k.size(), &v, &n, nullptr) != NOKV_OK) exit(1);
    sum += std::stoul(std::string(static_cast<char*>(v), n));
    nokv_free(v);
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string f = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (f == "--sync") {
      o.sync = true;
      continue;
    }
    if (value == nullptr || (f != "--threads" && f != "--txns" && f != "--keys" && f != "--dist")) {
      fprintf(stderr, "usage: txn_rpc_bench [--threads N] [--txns N] [--keys N] "
                      "[--dist uniform|zipfian] [--sync]\n");
      return 2;
    }
    i++;
    if (f == "--threads") o.threads = atoi(value);
    if (f == "--txns") o.txns = atoi(value);
    if (f == "--keys") o.keys = strtoull(value, nullptr, 10);
    if (f == "--dist") o.zipfian = !strcmp(value, "zipfian");
  }
  char dir[] = "/tmp/nokv-txn-rpc-XXXXXX";
  if (mkdtemp(dir) == nullptr) return 1;
  nokv_db* db;
  if (nokv_open(dir, nullptr, &db) != NOKV_OK) {
    fprintf(stderr, "txn_rpc_bench: open: %s\n", nokv_errmsg());
    return 1;
  }
  nokv_batch* b;
  nokv_batch_new(&b);
  for (uint64_t i = 0; i < o.keys; i++) {
    std::string k = KeyOf(i);
    nokv_batch_put(b, k.data(), k.size(), "0", 1);
  }
  if (nokv_write(db, nullptr, b, nullptr) != NOKV_OK) return 1;
  nokv_batch_free(b);

  nokv::service::ServerConfig config;
  config.listen = "127.0.0.1:0";
  nokv::service::KvService service(db, config.service);
  int port = 0;
  std::unique_ptr<nokv::service::Server> server = nokv::service::StartServer(config, &service, &port);
  if (server == nullptr) return 1;
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                     grpc::InsecureChannelCredentials());

  zipf z;
  if (o.zipfian) zipf_init(&z, o.keys);
  const char* dist = o.zipfian ? "zipfian" : "uniform";
  printf("%d threads, %d transactions of %d read-modify-writes each, %llu keys, %s%s\n",
         o.threads, o.txns, kKeysPerTxn, static_cast<unsigned long long>(o.keys), dist,
         o.sync ? ", synced commits" : "");
  Result engine = Run(o, o.zipfian ? &z : nullptr, [&] { return EngineRmw(db, o.sync); });
  Report("engine", dist, engine);
  Result rpc = Run(o, o.zipfian ? &z : nullptr, [&] { return RpcRmw(channel, o.sync); });
  Report("rpc", dist, rpc);
  printf("rpc/engine throughput: %.3f\n", (rpc.commits / rpc.seconds) / (engine.commits / engine.seconds));
  Result piped = Run(o, o.zipfian ? &z : nullptr, [&] { return PipelinedRmw(channel, o.sync); });
  Report("piped", dist, piped);
  printf("piped/rpc throughput: %.3f\n", (piped.commits / piped.seconds) / (rpc.commits / rpc.seconds));
  // All ran atomically: every commit added exactly 1 to each of its 4 keys.
  uint64_t sum = SumCounters(db, o.keys);
  uint64_t want = kKeysPerTxn * (engine.commits + rpc.commits + piped.commits);
  if (sum != want) {
    fprintf(stderr, "txn_rpc_bench: counters sum to %llu, expected %llu\n",
            static_cast<unsigned long long>(sum), static_cast<unsigned long long>(want));
    return 1;
  }
  printf("counters sum to 4 x commits: ok\n");
  Result unary = Run(o, o.zipfian ? &z : nullptr, [&] { return UnaryRmw(channel, o.sync); });
  Report("unary", dist, unary);
  printf("rpc/unary throughput: %.3f (one stream of 9 requests vs 8 unary calls)\n",
         (rpc.commits / rpc.seconds) / (unary.commits / unary.seconds));

  server->Shutdown();
  server.reset();
  service.StopWatches();
  nokv_close(db);
  remove_dir(dir);
  return 0;
}
