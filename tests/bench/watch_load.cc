// watch_load — Watch fan-out over gRPC: --watchers watches of one key range
// on nokv_server or etcd v3, while --writers clients Put keys in it in a closed
// loop; every put reaches every watcher.
//
//   watch_load --target nokv|etcd --addr HOST:PORT [--watchers 100]
//              [--writers 16] [--channels 4] [--seconds 5] [--keys 1000]
//              [--value_bytes 100] [--label L]
//
// Each value starts with the steady-clock time of its put, so a watcher
// measures the delay from the put's start to the event's arrival. After the
// writers stop, the watchers drain (at most 30 s). Prints one JSON object: puts
// per second, events delivered per second (all watchers; from the first put to
// the last event), delivery delay percentiles (a sample of every watcher's
// events), and whether every watcher got every put.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "nokv/v1/kv.grpc.pb.h"
#include "tests/bench/etcd/etcd_kv.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string target = "nokv", addr, label;
  int watchers = 100, writers = 16, channels = 4, seconds = 5;
  int keys = 1000, value_bytes = 100;
};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Watcher {
  std::atomic<uint64_t> events{0};
  std::atomic<int64_t> last_ns{0};
  std::vector<double> delays_ms;  // every 16th event
  std::atomic<bool> created{false};
  grpc::ClientContext ctx;
};

void Note(Watcher* w, const std::string& value) {
  uint64_t n = ++w->events;
  int64_t now = NowNs();
  w->last_ns = now;
  if (n % 16 == 0 && value.size() >= 8) {
    int64_t sent;
    memcpy(&sent, value.data(), 8);
    w->delays_ms.push_back(static_cast<double>(now - sent) / 1e6);
  }
}

void WatchNokv(std::shared_ptr<grpc::Channel> ch, Watcher* w) {
  auto stub = nokv::v1::KV::NewStub(ch);
  nokv::v1::WatchRequest req;
  req.mutable_range()->set_start("k/");
  req.mutable_range()->set_end("k0");
  auto reader = stub->Watch(&w->ctx, req);
  nokv::v1::WatchResponse m;
  while (reader->Read(&m)) {
    if (m.created()) w->created = true;
    for (const auto& g : m.groups()) {
      for (const auto& e : g.events()) Note(w, e.value());
    }
  }
  reader->Finish();
}

void WatchEtcd(std::shared_ptr<grpc::Channel> ch, Watcher* w) {
  auto stub = etcdserverpb::Watch::NewStub(ch);
  auto stream = stub->Watch(&w->ctx);
  etcdserverpb::WatchRequest req;
  req.mutable_create_request()->set_key("k/");
  req.mutable_create_request()->set_range_end("k0");
  stream->Write(req);
  etcdserverpb::WatchResponse m;
  while (stream->Read(&m)) {
    if (m.created()) w->created = true;
    for (const auto& e : m.events()) Note(w, e.kv().value());
  }
  stream->Finish();
}

bool Put(const Options& o, std::shared_ptr<grpc::Channel> ch, const std::string& key,
         const std::string& value) {
  grpc::ClientContext ctx;
  if (o.target == "etcd") {
    etcdserverpb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    etcdserverpb::PutResponse resp;
    return etcdserverpb::KV::NewStub(ch)->Put(&ctx, req, &resp).ok();
  }
  nokv::v1::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  nokv::v1::PutResponse resp;
  return nokv::v1::KV::NewStub(ch)->Put(&ctx, req, &resp).ok();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string f = argv[i], v = argv[i + 1];
    if (f == "--target") o.target = v;
    else if (f == "--addr") o.addr = v;
    else if (f == "--label") o.label = v;
    else if (f == "--watchers") o.watchers = atoi(v.c_str());
    else if (f == "--writers") o.writers = atoi(v.c_str());
    else if (f == "--channels") o.channels = atoi(v.c_str());
    else if (f == "--seconds") o.seconds = atoi(v.c_str());
    else if (f == "--keys") o.keys = atoi(v.c_str());
    else if (f == "--value_bytes") o.value_bytes = atoi(v.c_str());
    else {
      fprintf(stderr, "watch_load: unknown flag %s\n", f.c_str());
      return 2;
    }
  }
  if (o.addr.empty() || o.value_bytes < 8 || o.channels < 1) {
    fprintf(stderr, "watch_load: need --addr, --value_bytes >= 8 and --channels >= 1\n");
    return 2;
  }
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < o.channels; i++) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);  // distinct connections
    channels.push_back(
        grpc::CreateCustomChannel(o.addr, grpc::InsecureChannelCredentials(), args));
  }
  // The server may still be starting: wait until a put goes through.
  auto up_by = Clock::now() + std::chrono::seconds(30);
  while (!Put(o, channels[0], "ready", "12345678")) {
    if (Clock::now() > up_by) {
      fprintf(stderr, "watch_load: %s does not answer\n", o.addr.c_str());
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling a starting server
  }
  std::vector<std::unique_ptr<Watcher>> ws;
  std::vector<std::thread> threads;
  for (int i = 0; i < o.watchers; i++) {
    ws.push_back(std::make_unique<Watcher>());
    Watcher* w = ws.back().get();
    auto ch = channels[i % o.channels];
    threads.emplace_back([&o, ch, w] { o.target == "etcd" ? WatchEtcd(ch, w) : WatchNokv(ch, w); });
  }
  auto ready_by = Clock::now() + std::chrono::seconds(30);
  for (auto& w : ws) {
    while (!w->created && Clock::now() < ready_by) std::this_thread::yield();
  }
  std::atomic<uint64_t> puts{0}, errors{0};
  std::atomic<bool> stop{false};
  int64_t start_ns = NowNs();
  std::vector<std::thread> writers;
  for (int t = 0; t < o.writers; t++) {
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::string value(o.value_bytes, 'v');
      auto ch = channels[t % o.channels];
      while (!stop) {
        int64_t now = NowNs();
        memcpy(&value[0], &now, 8);
        if (Put(o, ch, "k/" + std::to_string(rng() % o.keys), value)) {
          puts++;
        } else {
          errors++;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(o.seconds));  // the measured load
  stop = true;
  for (auto& t : writers) t.join();
  int64_t puts_end_ns = NowNs();
  uint64_t total = puts.load();
  auto drain_by = Clock::now() + std::chrono::seconds(30);
  bool complete = true;
  for (auto& w : ws) {
    while (w->events.load() < total && Clock::now() < drain_by) std::this_thread::yield();
    complete = complete && w->events.load() == total;
  }
  int64_t last_ns = 0;
  uint64_t events = 0;
  std::vector<double> delays;
  for (auto& w : ws) {
    w->ctx.TryCancel();
  }
  for (auto& t : threads) t.join();
  for (auto& w : ws) {
    last_ns = std::max<int64_t>(last_ns, w->last_ns.load());
    events += w->events.load();
    delays.insert(delays.end(), w->delays_ms.begin(), w->delays_ms.end());
  }
  std::sort(delays.begin(), delays.end());
  auto pct = [&](double p) {
    return delays.empty() ? 0.0 : delays[std::min(delays.size() - 1, size_t(p * delays.size()))];
  };
  double put_secs = static_cast<double>(puts_end_ns - start_ns) / 1e9;
  double event_secs = static_cast<double>(std::max(last_ns, puts_end_ns) - start_ns) / 1e9;
  printf("{\"label\": \"%s\", \"target\": \"%s\", \"watchers\": %d, \"writers\": %d, "
         "\"puts\": %llu, \"puts_per_s\": %.0f, \"events\": %llu, \"events_per_s\": %.0f, "
         "\"delay_p50_ms\": %.2f, \"delay_p99_ms\": %.2f, \"errors\": %llu, \"complete\": %s}\n",
         o.label.c_str(), o.target.c_str(), o.watchers, o.writers,
         static_cast<unsigned long long>(total), static_cast<double>(total) / put_secs,
         static_cast<unsigned long long>(events), static_cast<double>(events) / event_secs,
         pct(0.5), pct(0.99), static_cast<unsigned long long>(errors.load()),
         complete ? "true" : "false");
  return complete ? 0 : 1;
}
