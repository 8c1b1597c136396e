// wire_load — a closed-loop gRPC load generator for nokv_server and, with the
// same code and payloads, etcd v3.
//
//   wire_load --target nokv|etcd --addr HOST:PORT --op OP [--concurrency 16]
//             [--channels 4] [--seconds 5] [--warmup 1] [--keys 5000]
//             [--value_bytes 100] [--dist uniform|zipfian] [--sync]
//             [--serializable] [--scan_limit 100] [--scans 3] [--batch 100]
//             [--server_pid PID]
//             [--label L]
//
// OP: load (every key once, in order; --seconds is ignored), put, get, scan
// (nokv: a Scan of --scan_limit pairs from a random key; etcd: a Range of as
// many), txn (nokv only: a Txn stream that gets a key, puts it and commits,
// pipelined in one round trip; ABORTED counts as a conflict, not an error),
// stream (nokv only: --scans Scans of the whole key space, from the first key
// with no limit, --concurrency at a time; --seconds is ignored; reports the
// key and value bytes received per second), write (an atomic batch of --batch
// puts, of the key with suffixes /0, /1, ...: nokv's Write, etcd's Txn with no
// compare; items count the keys written), cas (a put of an existing key under a
// condition the server must judge, that it exists: nokv's Write with a present
// condition, etcd's Txn comparing mod_revision > 0). etcd's get is a Range of one key:
// linearizable unless --serializable (so is nokv's in a cluster; a single server's always is).
//
// --concurrency calls are kept in flight over --channels connections (each
// its own HTTP/2 connection) with gRPC's callback API: a call's completion
// starts the next one, so the load is closed-loop. Only calls started and
// finished inside the measured window (after --warmup) count. Prints one JSON
// object: throughput, latency percentiles, errors, the client's CPU, the
// server's CPU per call (from /proc/PID/stat, all threads) and, for nokv,
// writes per write group (from Stats).
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nokv/v1/kv.grpc.pb.h"
#include "tests/bench/bench_util.h"
#include "tests/bench/etcd/etcd_kv.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string target = "nokv";
  std::string addr;
  std::string op = "get";
  std::string label;
  int concurrency = 16;
  int channels = 4;
  double seconds = 5;
  double warmup = 1;
  uint64_t keys = 5000;
  size_t value_bytes = 100;
  bool zipfian = false;
  bool sync = false;
  bool serializable = false;
  int scan_limit = 100;
  uint64_t scans = 3;
  int batch = 100;
  int server_pid = 0;
};

[[noreturn]] void Usage(const char* why) {
  fprintf(stderr,
          "wire_load: %s\nusage: wire_load --target nokv|etcd --addr HOST:PORT --op "
          "load|put|get|scan|txn|stream|write|cas [--concurrency N] [--channels M] [--seconds S] [--warmup S] "
          "[--keys K] [--value_bytes B] [--dist uniform|zipfian] [--sync] [--serializable] "
          "[--scan_limit L] [--scans N] [--batch N] [--server_pid PID] [--label L]\n",
          why);
  exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) Usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--target") o.target = val();
    else if (a == "--addr") o.addr = val();
    else if (a == "--op") o.op = val();
    else if (a == "--label") o.label = val();
    else if (a == "--concurrency") o.concurrency = std::atoi(val().c_str());
    else if (a == "--channels") o.channels = std::atoi(val().c_str());
    else if (a == "--seconds") o.seconds = std::atof(val().c_str());
    else if (a == "--warmup") o.warmup = std::atof(val().c_str());
    else if (a == "--keys") o.keys = std::strtoull(val().c_str(), nullptr, 10);
    else if (a == "--value_bytes") o.value_bytes = std::strtoull(val().c_str(), nullptr, 10);
    else if (a == "--dist") o.zipfian = val() == "zipfian";
    else if (a == "--sync") o.sync = true;
    else if (a == "--serializable") o.serializable = true;
    else if (a == "--scan_limit") o.scan_limit = std::atoi(val().c_str());
    else if (a == "--scans") o.scans = std::strtoull(val().c_str(), nullptr, 10);
    else if (a == "--batch") o.batch = std::atoi(val().c_str());
    else if (a == "--server_pid") o.server_pid = std::atoi(val().c_str());
    else Usage(("unknown flag " + a).c_str());
  }
  if (o.addr.empty()) Usage("--addr is required");
  if (o.target != "nokv" && o.target != "etcd") Usage("--target is nokv or etcd");
  if (o.op != "load" && o.op != "put" && o.op != "get" && o.op != "scan" && o.op != "txn" &&
      o.op != "stream" && o.op != "write" && o.op != "cas") {
    Usage("--op is load, put, get, scan, txn, stream, write or cas");
  }
  if ((o.op == "txn" || o.op == "stream") && o.target != "nokv") {
    Usage("--op txn and --op stream are for --target nokv");
  }
  if (o.concurrency < 1 || o.channels < 1 || o.keys == 0 || o.batch < 1) Usage("bad sizes");
  return o;
}

std::string KeyOf(uint64_t n) {
  char k[32];
  snprintf(k, sizeof k, "key%012llu", static_cast<unsigned long long>(n));
  return k;
}

// User and system CPU seconds of a process (all its threads), or -1.
double ProcessCpuSeconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t p = stat.rfind(')');
  if (p == std::string::npos) return -1;
  // After the command: state is field 3; utime and stime are fields 14 and 15.
  const char* s = stat.c_str() + p + 2;
  unsigned long long utime = 0, stime = 0;
  if (sscanf(s, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) {
    return -1;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double SelfCpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// What the run shares: the measured window, the key picker's state and the
// bookkeeping of calls in flight.
class Load {
 public:
  explicit Load(const Options& o) : o_(o), value_(o.value_bytes, '\0') {
    uint64_t rng = 42;
    for (char& c : value_) c = static_cast<char>('a' + bench_splitmix(&rng) % 26);
    if (o.zipfian) zipf_init(&zipf_, o.keys);
  }

  const Options& options() const { return o_; }
  const std::string& value() const { return value_; }
  // A run of a fixed amount of work (every key written once, or --scans whole
  // scans) rather than of a measured window.
  bool loading() const { return o_.op == "load" || o_.op == "stream"; }

  // The next key for a slot (its own rng); for load, the next unwritten key,
  // for stream the first key ("") while scans remain; false when all are done.
  bool NextKey(uint64_t* rng, std::string* key) {
    uint64_t n;
    if (o_.op == "stream") {
      if (next_load_.fetch_add(1) >= o_.scans) return false;
      key->clear();
      return true;
    }
    if (loading()) {
      n = next_load_.fetch_add(1);
      if (n >= o_.keys) return false;
    } else {
      n = o_.zipfian ? zipf_next(&zipf_, rng) : bench_splitmix(rng) % o_.keys;
    }
    *key = KeyOf(n);
    return true;
  }

  bool stopping() const { return stop_.load(std::memory_order_relaxed); }
  void Stop() { stop_ = true; }
  void SetWindow(Clock::time_point start, Clock::time_point end) {
    window_start_ = start;
    window_end_ = end;
  }
  bool InWindow(Clock::time_point t0, Clock::time_point t1) const {
    return loading() || (t0 >= window_start_ && t1 <= window_end_);
  }

  void SlotStarted() {
    std::lock_guard<std::mutex> l(mu_);
    active_++;
  }
  void SlotEnded() {
    std::lock_guard<std::mutex> l(mu_);
    if (--active_ == 0) cv_.notify_all();
  }
  void AwaitSlots() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return active_ == 0; });
  }

 private:
  const Options o_;
  std::string value_;
  zipf zipf_{};
  std::atomic<uint64_t> next_load_{0};
  std::atomic<bool> stop_{false};
  Clock::time_point window_start_{}, window_end_ = Clock::time_point::max();
  std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0;
};

// One of the in-flight calls: issues a call, and from its completion the next.
// Callbacks of one slot never overlap (one call at a time), so its counters
// need no lock; they are read after all slots ended.
class Slot {
 public:
  Slot(Load* load, int id) : load_(load), rng_(0x9e37 + static_cast<uint64_t>(id) * 7919) {}
  virtual ~Slot() = default;

  void Begin() {
    load_->SlotStarted();
    Next();
  }

  std::vector<float> latencies_us;
  uint64_t ok = 0, errors = 0, conflicts = 0, items = 0, bytes = 0;
  std::string first_error;

 protected:
  // Starts one call for key; it must end with Done.
  virtual void Issue(const std::string& key) = 0;

  void Done(const grpc::Status& s, uint64_t items_read = 0, uint64_t bytes_read = 0) {
    Clock::time_point t1 = Clock::now();
    if (load_->InWindow(t0_, t1)) {
      if (s.ok()) {
        ok++;
        items += items_read;
        bytes += bytes_read;
        latencies_us.push_back(
            static_cast<float>(std::chrono::duration<double, std::micro>(t1 - t0_).count()));
      } else if (s.error_code() == grpc::StatusCode::ABORTED) {
        conflicts++;
      } else {
        if (errors++ == 0) first_error = std::to_string(s.error_code()) + ": " + s.error_message();
      }
    }
    Next();
  }

  Load* const load_;

 private:
  void Next() {
    std::string key;
    if (load_->stopping() || !load_->NextKey(&rng_, &key)) {
      load_->SlotEnded();
      return;
    }
    t0_ = Clock::now();
    Issue(key);
  }

  uint64_t rng_;
  Clock::time_point t0_;
};

// ---- nokv.v1.KV ----

class NokvUnary final : public Slot {
 public:
  NokvUnary(Load* load, int id, nokv::v1::KV::Stub* stub) : Slot(load, id), stub_(stub) {}

 private:
  void Issue(const std::string& key) override {
    ctx_ = std::make_unique<grpc::ClientContext>();
    const Options& o = load_->options();
    if (o.op == "get") {
      get_.set_key(key);
      get_.set_serializable(o.serializable);
      stub_->async()->Get(ctx_.get(), &get_, &got_, [this](grpc::Status s) {
        Done(s, got_.found() ? 1 : 0);
      });
    } else if (o.op == "write" || o.op == "cas") {
      write_.Clear();
      write_.set_sync(o.sync);
      int n = o.op == "write" ? o.batch : 1;
      for (int i = 0; i < n; i++) {
        nokv::v1::Mutation* m = write_.add_mutations();
        m->set_key(o.op == "write" ? key + "/" + std::to_string(i) : key);
        m->set_put(load_->value());
      }
      if (o.op == "cas") {
        nokv::v1::Condition* c = write_.add_conditions();
        c->set_key(key);
        c->set_present(true);
      }
      stub_->async()->Write(ctx_.get(), &write_, &write_resp_, [this, n](grpc::Status s) {
        if (s.ok() && !write_resp_.succeeded()) {
          s = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "condition failed");
        }
        Done(s, static_cast<uint64_t>(n));
      });
    } else {
      put_.set_key(key);
      put_.set_value(load_->value());
      put_.set_sync(o.sync);
      stub_->async()->Put(ctx_.get(), &put_, &put_resp_, [this](grpc::Status s) { Done(s); });
    }
  }

  nokv::v1::KV::Stub* stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  nokv::v1::GetRequest get_;
  nokv::v1::GetResponse got_;
  nokv::v1::PutRequest put_;
  nokv::v1::PutResponse put_resp_;
  nokv::v1::WriteRequest write_;
  nokv::v1::WriteResponse write_resp_;
};

// A Scan: reads every message of the stream.
class NokvScanCall final : public grpc::ClientReadReactor<nokv::v1::ScanResponse> {
 public:
  NokvScanCall(nokv::v1::KV::Stub* stub, const std::string& key, int limit,
               std::function<void(const grpc::Status&, uint64_t, uint64_t)> done)
      : done_(std::move(done)) {
    req_.set_start(key);
    req_.set_limit(static_cast<uint32_t>(limit));
    stub->async()->Scan(&ctx_, &req_, this);
    StartRead(&resp_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    items_ += static_cast<uint64_t>(resp_.kvs_size());
    for (const auto& kv : resp_.kvs()) bytes_ += kv.key().size() + kv.value().size();
    StartRead(&resp_);
  }
  void OnDone(const grpc::Status& s) override {
    done_(s, items_, bytes_);
    delete this;
  }

 private:
  grpc::ClientContext ctx_;
  nokv::v1::ScanRequest req_;
  nokv::v1::ScanResponse resp_;
  uint64_t items_ = 0, bytes_ = 0;
  std::function<void(const grpc::Status&, uint64_t, uint64_t)> done_;
};

// A transaction: get, put and commit sent at once (the stream answers in
// order), then every answer read.
class NokvTxnCall final : public grpc::ClientBidiReactor<nokv::v1::TxnRequest, nokv::v1::TxnResponse> {
 public:
  NokvTxnCall(nokv::v1::KV::Stub* stub, const std::string& key, const std::string& value,
              bool sync, std::function<void(const grpc::Status&)> done)
      : done_(std::move(done)) {
    reqs_[0].mutable_get()->set_key(key);
    reqs_[1].mutable_put()->set_key(key);
    reqs_[1].mutable_put()->set_value(value);
    reqs_[2].mutable_commit()->set_sync(sync);
    stub->async()->Txn(&ctx_, this);
    StartWrite(&reqs_[0]);
    StartRead(&resp_);
    StartCall();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return;
    if (++written_ < 3) {
      StartWrite(&reqs_[written_]);
    } else {
      StartWritesDone();
    }
  }
  void OnReadDone(bool ok) override {
    if (ok) StartRead(&resp_);
  }
  void OnDone(const grpc::Status& s) override {
    done_(s);
    delete this;
  }

 private:
  grpc::ClientContext ctx_;
  nokv::v1::TxnRequest reqs_[3];
  nokv::v1::TxnResponse resp_;
  int written_ = 0;
  std::function<void(const grpc::Status&)> done_;
};

class NokvStream final : public Slot {
 public:
  NokvStream(Load* load, int id, nokv::v1::KV::Stub* stub) : Slot(load, id), stub_(stub) {}

 private:
  void Issue(const std::string& key) override {
    const Options& o = load_->options();
    if (o.op == "scan" || o.op == "stream") {
      new NokvScanCall(stub_, key, o.op == "stream" ? 0 : o.scan_limit,
                       [this](const grpc::Status& s, uint64_t n, uint64_t b) { Done(s, n, b); });
    } else {
      new NokvTxnCall(stub_, key, load_->value(), o.sync,
                      [this](const grpc::Status& s) { Done(s); });
    }
  }

  nokv::v1::KV::Stub* stub_;
};

// ---- etcdserverpb.KV ----

class EtcdUnary final : public Slot {
 public:
  EtcdUnary(Load* load, int id, etcdserverpb::KV::Stub* stub) : Slot(load, id), stub_(stub) {}

 private:
  void Issue(const std::string& key) override {
    ctx_ = std::make_unique<grpc::ClientContext>();
    const Options& o = load_->options();
    if (o.op == "get" || o.op == "scan") {
      range_.Clear();
      range_.set_key(key);
      range_.set_serializable(o.serializable);
      if (o.op == "scan") {
        range_.set_range_end(std::string(1, '\xff'));
        range_.set_limit(o.scan_limit);
      }
      stub_->async()->Range(ctx_.get(), &range_, &range_resp_, [this](grpc::Status s) {
        Done(s, static_cast<uint64_t>(range_resp_.kvs_size()));
      });
    } else if (o.op == "write" || o.op == "cas") {
      txn_.Clear();
      int n = o.op == "write" ? o.batch : 1;
      for (int i = 0; i < n; i++) {
        etcdserverpb::PutRequest* p = txn_.add_success()->mutable_request_put();
        p->set_key(o.op == "write" ? key + "/" + std::to_string(i) : key);
        p->set_value(load_->value());
      }
      if (o.op == "cas") {
        etcdserverpb::Compare* c = txn_.add_compare();
        c->set_key(key);
        c->set_target(etcdserverpb::Compare::MOD);
        c->set_result(etcdserverpb::Compare::GREATER);
        c->set_mod_revision(0);
      }
      stub_->async()->Txn(ctx_.get(), &txn_, &txn_resp_, [this, n](grpc::Status s) {
        if (s.ok() && !txn_resp_.succeeded()) {
          s = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "compare failed");
        }
        Done(s, static_cast<uint64_t>(n));
      });
    } else {
      put_.set_key(key);
      put_.set_value(load_->value());
      stub_->async()->Put(ctx_.get(), &put_, &put_resp_, [this](grpc::Status s) { Done(s); });
    }
  }

  etcdserverpb::KV::Stub* stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  etcdserverpb::RangeRequest range_;
  etcdserverpb::RangeResponse range_resp_;
  etcdserverpb::PutRequest put_;
  etcdserverpb::PutResponse put_resp_;
  etcdserverpb::TxnRequest txn_;
  etcdserverpb::TxnResponse txn_resp_;
};

double Pct(const std::vector<float>& v, double p) {
  if (v.empty()) return 0;
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// nokv's Stats counters, or an empty map if the call fails.
std::map<std::string, uint64_t> NokvCounters(nokv::v1::KV::Stub* stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  nokv::v1::StatsRequest req;
  nokv::v1::StatsResponse resp;
  std::map<std::string, uint64_t> out;
  if (stub->Stats(&ctx, req, &resp).ok()) {
    for (const auto& [k, v] : resp.counters()) out[k] = v;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  Load load(o);

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<nokv::v1::KV::Stub>> nokv_stubs;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> etcd_stubs;
  for (int i = 0; i < o.channels; i++) {
    grpc::ChannelArguments args;
    args.SetInt("wire_load.channel", i);  // distinct arguments: a connection of its own
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(64 << 20);
    auto ch = grpc::CreateCustomChannel(o.addr, grpc::InsecureChannelCredentials(), args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30))) {
      fprintf(stderr, "wire_load: cannot connect to %s\n", o.addr.c_str());
      return 1;
    }
    channels.push_back(ch);
    if (o.target == "nokv") nokv_stubs.push_back(nokv::v1::KV::NewStub(ch));
    else etcd_stubs.push_back(etcdserverpb::KV::NewStub(ch));
  }

  std::vector<std::unique_ptr<Slot>> slots;
  for (int i = 0; i < o.concurrency; i++) {
    int c = i % o.channels;
    if (o.target == "etcd") {
      slots.push_back(std::make_unique<EtcdUnary>(&load, i, etcd_stubs[c].get()));
    } else if (o.op == "scan" || o.op == "txn" || o.op == "stream") {
      slots.push_back(std::make_unique<NokvStream>(&load, i, nokv_stubs[c].get()));
    } else {
      slots.push_back(std::make_unique<NokvUnary>(&load, i, nokv_stubs[c].get()));
    }
  }

  std::map<std::string, uint64_t> before;
  auto start = Clock::now();
  auto window_start = start + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(load.loading() ? 0 : o.warmup));
  auto window_end = window_start + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(o.seconds));
  if (!load.loading()) load.SetWindow(window_start, window_end);
  if (o.target == "nokv") before = NokvCounters(nokv_stubs[0].get());
  for (auto& s : slots) s->Begin();

  double server_cpu0 = 0, server_cpu1 = 0, self_cpu0 = 0, self_cpu1 = 0;
  if (load.loading()) {
    server_cpu0 = o.server_pid ? ProcessCpuSeconds(o.server_pid) : 0;
    self_cpu0 = SelfCpuSeconds();
    load.AwaitSlots();
    window_end = Clock::now();
    window_start = start;
  } else {
    // The run's duration: the clock, not a stand-in for an event.
    std::this_thread::sleep_until(window_start);
    server_cpu0 = o.server_pid ? ProcessCpuSeconds(o.server_pid) : 0;
    self_cpu0 = SelfCpuSeconds();
    std::this_thread::sleep_until(window_end);
  }
  server_cpu1 = o.server_pid ? ProcessCpuSeconds(o.server_pid) : 0;
  self_cpu1 = SelfCpuSeconds();
  load.Stop();
  load.AwaitSlots();
  std::map<std::string, uint64_t> after;
  if (o.target == "nokv") after = NokvCounters(nokv_stubs[0].get());

  std::vector<float> lat;
  uint64_t ok = 0, errors = 0, conflicts = 0, items = 0, bytes = 0;
  std::string first_error;
  for (auto& s : slots) {
    lat.insert(lat.end(), s->latencies_us.begin(), s->latencies_us.end());
    ok += s->ok;
    errors += s->errors;
    conflicts += s->conflicts;
    items += s->items;
    bytes += s->bytes;
    if (first_error.empty()) first_error = s->first_error;
  }
  std::sort(lat.begin(), lat.end());
  double secs = std::chrono::duration<double>(window_end - window_start).count();
  uint64_t calls = ok + errors + conflicts;
  double per_call = calls ? 1e6 / static_cast<double>(calls) : 0;

  printf("{\"label\": \"%s\", \"target\": \"%s\", \"op\": \"%s\", \"sync\": %s, "
         "\"serializable\": %s, \"dist\": \"%s\", \"concurrency\": %d, \"channels\": %d, "
         "\"keys\": %llu, \"value_bytes\": %zu, \"seconds\": %.3f, \"ok\": %llu, "
         "\"errors\": %llu, \"conflicts\": %llu, \"items\": %llu, \"ops_per_s\": %.1f, "
         "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f",
         o.label.c_str(), o.target.c_str(), o.op.c_str(), o.sync ? "true" : "false",
         o.serializable ? "true" : "false", o.zipfian ? "zipfian" : "uniform", o.concurrency,
         o.channels, static_cast<unsigned long long>(o.keys), o.value_bytes, secs,
         static_cast<unsigned long long>(ok), static_cast<unsigned long long>(errors),
         static_cast<unsigned long long>(conflicts), static_cast<unsigned long long>(items),
         static_cast<double>(ok) / secs, Pct(lat, 0.50), Pct(lat, 0.99), Pct(lat, 0.999),
         lat.empty() ? 0.0 : static_cast<double>(lat.back()));
  if (bytes > 0) printf(", \"bytes\": %llu, \"mb_per_s\": %.1f", static_cast<unsigned long long>(bytes),
                       static_cast<double>(bytes) / secs / 1e6);
  printf(", \"client_cpu_us_per_call\": %.1f", (self_cpu1 - self_cpu0) * per_call);
  if (o.server_pid) printf(", \"server_cpu_us_per_call\": %.1f", (server_cpu1 - server_cpu0) * per_call);
  if (!before.empty() && !after.empty()) {
    uint64_t groups = after["write_groups"] - before["write_groups"];
    uint64_t writes = (after["puts"] - before["puts"]) + (after["deletes"] - before["deletes"]) +
                      (after["batches"] - before["batches"]);
    if (groups) printf(", \"writes_per_group\": %.1f", static_cast<double>(writes) / groups);
    printf(", \"wal_syncs\": %llu",
           static_cast<unsigned long long>(after["wal_syncs"] - before["wal_syncs"]));
  }
  if (!first_error.empty()) {
    std::string e;
    for (char c : first_error) e += (c == '"' || c == '\\') ? '\'' : c;
    printf(", \"first_error\": \"%s\"", e.c_str());
  }
  printf("}\n");
  return errors == 0 ? 0 : 1;
}
