// The KV service in process: a real gRPC server on 127.0.0.1 (port 0) and a C++
// stub, covering every RPC, the error codes, and Scan's flow control.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nokv/nokv.h"
#include "service/status.h"
#include "util/clock.h"
#include "tests/service/service_fixture.h"

namespace {

using grpc::ClientContext;
using grpc::StatusCode;
using namespace nokv::v1;
using nokv_service_test::ServiceTest;

TEST_F(ServiceTest, PutGetDeleteWithTimestamps) {
  uint64_t t1 = Put("k", "v1");
  uint64_t t2 = Put("k", "v2");
  EXPECT_LT(t1, t2);
  GetResponse g = Get("k");
  EXPECT_TRUE(g.found());
  EXPECT_EQ(g.value(), "v2");
  EXPECT_EQ(g.commit_ts(), t2);
  EXPECT_EQ(g.read_ts(), t2);
  EXPECT_EQ(Get("k", t1).value(), "v1");
  EXPECT_EQ(Get("k", t1).read_ts(), t1);
  ClientContext ctx;
  DeleteRequest del;
  del.set_key("k");
  del.set_sync(true);
  DeleteResponse dresp;
  ASSERT_TRUE(stub_->Delete(&ctx, del, &dresp).ok());
  EXPECT_GT(dresp.commit_ts(), t2);
  EXPECT_FALSE(Get("k").found());
  EXPECT_FALSE(Get("missing").found());
}

// A read_ts below what a flush or compaction collected is refused, not answered
// from a partial past; one above it keeps reading the same state.
TEST_F(ServiceTest, ReadTimestampOlderThanTheKeptHistoryIsFailedPrecondition) {
  uint64_t t1 = Put("k", "v1");
  uint64_t t2 = Put("k", "v2");
  nokv_snapshot* snap;  // holds the watermark at t2 through the flush
  ASSERT_EQ(nokv_snapshot_create(db_, &snap), NOKV_OK);
  Put("k", "v3");
  EXPECT_EQ(Get("k", t1).value(), "v1");
  Put("k", "v4");
  ASSERT_EQ(nokv_flush(db_), NOKV_OK);
  nokv_snapshot_release(db_, snap);
  ClientContext ctx;
  GetRequest req;
  req.set_key("k");
  req.set_read_ts(t1);
  GetResponse resp;
  grpc::Status s = stub_->Get(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("older than the history"), std::string::npos)
      << s.error_message();
  EXPECT_EQ(Get("k", t2).value(), "v2");

  ClientContext sctx;
  ScanRequest scan;
  scan.set_read_ts(t1);
  auto reader = stub_->Scan(&sctx, scan);
  ScanResponse sresp;
  EXPECT_FALSE(reader->Read(&sresp));
  EXPECT_EQ(reader->Finish().error_code(), StatusCode::FAILED_PRECONDITION);
}

// A Get without read_ts reads at the latest timestamp and never fails for
// staleness, however many flushes raise the history horizon while it runs.
TEST_F(ServiceTest, GetWithoutReadTsIsNeverStaleUnderFlushes) {
  std::atomic<bool> stop{false};
  std::thread flusher([&] {
    for (int i = 0; !stop.load(); i++) {
      std::string v = std::to_string(i);
      ASSERT_EQ(nokv_put(db_, nullptr, "k", 1, v.data(), v.size(), nullptr), NOKV_OK);
      ASSERT_EQ(nokv_flush(db_), NOKV_OK);
    }
  });
  uint64_t last = 0;
  for (int i = 0; i < 2000; i++) {
    GetResponse r = Get("k");  // expects OK
    EXPECT_GE(r.read_ts(), last);
    if (r.found()) {
      EXPECT_LE(r.commit_ts(), r.read_ts());
    }
    last = r.read_ts();
  }
  stop = true;
  flusher.join();
  EXPECT_GT(last, 0u);
}

TEST_F(ServiceTest, InvalidArguments) {
  Put("", "v", StatusCode::INVALID_ARGUMENT);
  Get("", 0, StatusCode::INVALID_ARGUMENT);
  Put(std::string(65537, 'k'), "v", StatusCode::INVALID_ARGUMENT);
  Get(std::string(65537, 'k'), 0, StatusCode::INVALID_ARGUMENT);
  ClientContext ctx;
  DeleteRequest del;
  DeleteResponse dresp;
  EXPECT_EQ(stub_->Delete(&ctx, del, &dresp).error_code(), StatusCode::INVALID_ARGUMENT);
  // Larger than the server's message limit: rejected by gRPC itself.
  Put("k", std::string(2 << 20, 'v'), StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(ServiceTest, WritesBeyondOneMemtableFlushAndStayReadable) {
  Stop();
  Start(1 << 20);
  for (int i = 0; i < 5000; i++) Put("k" + std::to_string(i), std::string(1000, 'v'));
  EXPECT_TRUE(Get("k0").found());
  EXPECT_TRUE(Get("k4999").found());
  ClientContext ctx;
  StatsResponse resp;
  ASSERT_TRUE(stub_->Stats(&ctx, StatsRequest(), &resp).ok());
  EXPECT_GE(resp.counters().at("flushes"), 3u);
}

TEST_F(ServiceTest, StatusMappingCoversEveryEngineCode) {
  using nokv::service::ToGrpcStatus;
  EXPECT_TRUE(ToGrpcStatus(NOKV_OK, "").ok());
  EXPECT_EQ(ToGrpcStatus(NOKV_ENOTFOUND, "").error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpcStatus(NOKV_EINVAL, "x").error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ToGrpcStatus(NOKV_ECORRUPT, "x").error_code(), StatusCode::DATA_LOSS);
  EXPECT_EQ(ToGrpcStatus(NOKV_EIO, "x").error_code(), StatusCode::INTERNAL);
  EXPECT_EQ(ToGrpcStatus(NOKV_ENOMEM, "x").error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(NOKV_EFULL, "x").error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(NOKV_EBUSY, "x").error_code(), StatusCode::UNAVAILABLE);
  EXPECT_EQ(ToGrpcStatus(NOKV_ECLOSED, "x").error_code(), StatusCode::UNAVAILABLE);
  EXPECT_EQ(ToGrpcStatus(NOKV_ESTALE, "x").error_code(), StatusCode::FAILED_PRECONDITION);
  grpc::Status conflict = ToGrpcStatus(NOKV_ECONFLICT, "");
  EXPECT_EQ(conflict.error_code(), StatusCode::ABORTED);
  EXPECT_NE(conflict.error_message().find("retry"), std::string::npos);
  EXPECT_EQ(ToGrpcStatus(NOKV_EINVAL, "").error_message(), "invalid argument");
}

// Each Scan test runs against the server, and through a pipe to it (what a
// follower does with a Scan stream: forward.h).
class ScanTest : public ServiceTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    pipe_streams_ = GetParam();
    ServiceTest::SetUp();
  }
};
INSTANTIATE_TEST_SUITE_P(DirectAndPiped, ScanTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Piped" : "Direct";
                         });

TEST_P(ScanTest, ScanRangesLimitsAndSnapshot) {
  for (int i = 0; i < 100; i++) Put("s" + std::to_string(1000 + i), std::string(100, 'v'));
  uint64_t before = Put("t", "x");
  Put("s1050", "newer");
  auto scan = [&](ScanRequest req) {
    ClientContext ctx;
    auto reader = streams()->Scan(&ctx, req);
    std::vector<std::string> keys;
    ScanResponse resp;
    int chunks = 0;
    while (reader->Read(&resp)) {
      chunks++;
      for (auto& kv : resp.kvs()) keys.push_back(kv.key() + "=" + kv.value().substr(0, 5));
    }
    EXPECT_TRUE(reader->Finish().ok());
    return std::make_pair(keys, chunks);
  };
  ScanRequest req;
  req.set_start("s");
  req.set_end("t");
  auto [keys, chunks] = scan(req);
  ASSERT_EQ(keys.size(), 100u);
  EXPECT_EQ(keys[50], "s1050=newer");
  EXPECT_GE(chunks, 3);  // 10 KB over 4 KiB chunks
  req.set_read_ts(before);
  EXPECT_EQ(scan(req).first[50], "s1050=vvvvv");
  req.set_read_ts(0);
  req.set_limit(3);
  EXPECT_EQ(scan(req).first.size(), 3u);
  ScanRequest by_prefix;
  by_prefix.set_prefix("s102");
  auto [with_prefix, unused] = scan(by_prefix);
  EXPECT_EQ(with_prefix.size(), 10u);  // s1020..s1029
  ScanRequest empty;
  empty.set_start("zzz");
  auto [none, one] = scan(empty);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(one, 1);  // one message carrying read_ts

  for (int both = 0; both < 2; both++) {
    ClientContext ctx;
    ScanRequest bad;
    bad.set_start("b");
    if (both) {
      bad.set_prefix("b");
    } else {
      bad.set_end("a");
    }
    auto reader = streams()->Scan(&ctx, bad);
    ScanResponse resp;
    EXPECT_FALSE(reader->Read(&resp));
    EXPECT_EQ(reader->Finish().error_code(), StatusCode::INVALID_ARGUMENT);
  }
}

// A client that stops reading must stop the scan: the server may run ahead only
// by what HTTP/2 flow control lets it put on the wire, not through the range.
TEST_P(ScanTest, ScanFollowsASlowClient) {
  const int kKeys = 20000;  // 20 MB of values in 4 KiB chunks: ~5000 messages
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  std::string v(1000, 'v');
  for (int i = 0; i < kKeys; i++) {
    std::string k = "slow" + std::to_string(100000 + i);
    nokv_batch_put(b, k.data(), k.size(), v.data(), v.size());
  }
  ASSERT_EQ(nokv_write(db_, nullptr, b, nullptr), NOKV_OK);
  nokv_batch_free(b);

  ClientContext ctx;
  ScanRequest req;
  req.set_start("slow");
  auto reader = streams()->Scan(&ctx, req);
  ScanResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  // Give the server every chance to run ahead; it must stay within flow control.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  uint64_t produced = service_->scan_chunks_sent();
  // What the connections' flow-control windows hold (a pipe: two of them).
  EXPECT_LT(produced, GetParam() ? 4000u : 2000u)
      << "the server buffered the scan ahead of the client";
  size_t n = resp.kvs_size();
  while (reader->Read(&resp)) n += resp.kvs_size();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(n, static_cast<size_t>(kKeys));
  printf("chunks produced while the client paused: %llu of %llu\n",
         (unsigned long long)produced, (unsigned long long)service_->scan_chunks_sent());
}

// Scans a client opens and never reads are bounded: past max_scans they are
// refused, and a stalled one is cancelled after the idle timeout, releasing its
// snapshot (and the memtables, versions and value-log segments it pinned).
TEST_P(ScanTest, StalledAndExcessScansAreBounded) {
  Stop();
  Start(256 << 20, 4096, [](nokv::service::ServiceOptions* o) {
    o->max_scans = 3;
    o->scan_idle_timeout_ms = 300;
  });
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  std::string v(1000, 'v');
  for (int i = 0; i < 20000; i++) {
    std::string k = "scan" + std::to_string(100000 + i);
    nokv_batch_put(b, k.data(), k.size(), v.data(), v.size());
  }
  ASSERT_EQ(nokv_write(db_, nullptr, b, nullptr), NOKV_OK);
  nokv_batch_free(b);
  struct Open {
    ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<ScanResponse>> reader;
  };
  std::vector<std::unique_ptr<Open>> scans;
  for (int i = 0; i < 3; i++) {
    auto o = std::make_unique<Open>();
    ScanRequest req;
    req.set_prefix("scan");
    o->reader = streams()->Scan(&o->ctx, req);
    ScanResponse first;
    ASSERT_TRUE(o->reader->Read(&first));  // the scan is open; then the client stalls
    scans.push_back(std::move(o));
  }
  EXPECT_EQ(service_->open_scans(), 3u);
  EXPECT_EQ(Counter("live_snapshots"), 3u);
  {
    ClientContext ctx;
    ScanRequest req;
    req.set_prefix("scan");
    auto reader = streams()->Scan(&ctx, req);
    ScanResponse resp;
    EXPECT_FALSE(reader->Read(&resp));
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    EXPECT_NE(s.error_message().find("too many open scans"), std::string::npos);
  }
  // The stalled ones are cancelled, and their snapshots released.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((service_->open_scans() > 0 || Counter("live_snapshots") > 0) &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling interval
  }
  EXPECT_EQ(service_->open_scans(), 0u);
  EXPECT_EQ(Counter("live_snapshots"), 0u);
  if (pipe_streams_) {
    // The pipes cancel their stalled clients too (the same timeout), though
    // the clients still take nothing.
    while (pipe_->open_pipes() > 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling interval
    }
    EXPECT_EQ(pipe_->open_pipes(), 0u);
  }
  EXPECT_EQ(Counter("streams_expired"), 3u);
  EXPECT_EQ(Counter("streams_refused"), 1u);
  for (auto& o : scans) {
    ScanResponse resp;
    while (o->reader->Read(&resp)) {
    }
    EXPECT_EQ(o->reader->Finish().error_code(), StatusCode::CANCELLED);
  }
  // A scan that reads keeps going past the idle timeout.
  ClientContext ctx;
  ScanRequest req;
  req.set_prefix("scan");
  auto reader = streams()->Scan(&ctx, req);
  ScanResponse resp;
  size_t n = 0;
  while (reader->Read(&resp)) n += resp.kvs_size();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(n, 20000u);
}

// Checkpoint writes a copy under --backup_dir only, with a checked name.
// Compact reclaims overwritten values' space on demand: tables compacted,
// value-log segments past the ratio collected, every latest value kept.
TEST_F(ServiceTest, CompactReclaimsSpaceOnDemand) {
  Stop();
  Start(256 << 20, 4096, nullptr, [](nokv_options* o) {
    o->value_log_segment_bytes = 64 << 10;
    o->disable_auto_gc = true;  // only the call collects
  });
  auto compact = [&](double ratio, bool skip_gc, CompactResponse* resp) {
    ClientContext ctx;
    CompactRequest req;
    req.set_gc_ratio(ratio);
    req.set_skip_gc(skip_gc);
    return stub_->Compact(&ctx, req, resp);
  };
  CompactResponse resp;
  EXPECT_EQ(compact(1.0, false, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(compact(-0.5, false, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 50; i++) {
      Put("k" + std::to_string(i), std::string(4000, static_cast<char>('a' + round)));
    }
  }
  grpc::Status s = compact(0, true, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.segments_collected(), 0u);
  s = compact(0, false, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_GT(resp.segments_collected(), 0u);
  EXPECT_LT(resp.disk_bytes_after(), resp.disk_bytes_before());
  EXPECT_LT(resp.disk_bytes_after(), 2u * 50 * 4000 + (64u << 10));
  for (int i = 0; i < 50; i++) {
    EXPECT_EQ(Get("k" + std::to_string(i)).value(), std::string(4000, 'c')) << i;
  }
}

TEST_F(ServiceTest, CheckpointWritesAnOpenableCopyUnderTheBackupDirOnly) {
  auto call = [&](const std::string& name, CheckpointResponse* resp) {
    ClientContext ctx;
    CheckpointRequest req;
    req.set_name(name);
    return stub_->Checkpoint(&ctx, req, resp);
  };
  CheckpointResponse resp;
  EXPECT_EQ(call("b1", &resp).error_code(), StatusCode::FAILED_PRECONDITION);
  nokv_test::TempDir backups;
  Stop();
  Start(256 << 20, 4096,
        [&](nokv::service::ServiceOptions* o) { o->backup_dir = backups.file("b"); });
  for (int i = 0; i < 100; i++) Put("k" + std::to_string(i), std::string(i % 2 ? 3000 : 10, 'v'));
  uint64_t last = Put("last", "x");
  grpc::Status s = call("b1", &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.path(), backups.file("b") + "/b1");
  EXPECT_EQ(resp.commit_ts(), last);
  Put("after", "y");
  for (const char* bad : {"../escape", "a/b", ".hidden", "sp ace"}) {
    EXPECT_EQ(call(bad, &resp).error_code(), StatusCode::INVALID_ARGUMENT) << bad;
  }
  EXPECT_EQ(call("b1", &resp).error_code(), StatusCode::ALREADY_EXISTS);
  nokv_db* copy;
  ASSERT_EQ(nokv_open((backups.file("b") + "/b1").c_str(), nullptr, &copy), NOKV_OK)
      << nokv_errmsg();
  EXPECT_TRUE(nokv_test::Get(copy, "last"));
  EXPECT_EQ(nokv_test::Get(copy, "k1")->data, std::string(3000, 'v'));
  EXPECT_FALSE(nokv_test::Get(copy, "after"));
  ASSERT_EQ(nokv_close(copy), NOKV_OK);
}

TEST_P(ScanTest, CancelledScanReleasesItsSnapshot) {
  for (int i = 0; i < 5000; i++) Put("c" + std::to_string(i), std::string(500, 'v'));
  {
    ClientContext ctx;
    ScanRequest req;
    auto reader = streams()->Scan(&ctx, req);
    ScanResponse resp;
    ASSERT_TRUE(reader->Read(&resp));
    ctx.TryCancel();
    while (reader->Read(&resp)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), StatusCode::CANCELLED);
  }
  // Stop() closes the engine, which fails with EBUSY if the stream leaked its
  // snapshot or iterator; shutdown waits for the reactor to finish.
}

TEST_F(ServiceTest, Stats) {
  Put("a", "1");
  Get("a");
  ClientContext ctx;
  StatsResponse resp;
  ASSERT_TRUE(stub_->Stats(&ctx, StatsRequest(), &resp).ok());
  EXPECT_EQ(resp.counters().at("puts"), 1u);
  EXPECT_EQ(resp.counters().at("gets"), 1u);
  EXPECT_EQ(resp.counters().at("get_hits"), 1u);
  EXPECT_EQ(resp.data_dir(), dir_.path());
  EXPECT_EQ(resp.last_commit_ts(), resp.counters().at("last_commit_ts"));
  EXPECT_EQ(resp.counters().count("level0_files"), 1u);
  EXPECT_EQ(resp.counters().count("level6_bytes"), 1u);
  EXPECT_EQ(resp.counters().count("block_cache_hits"), 1u);
}

TEST_F(ServiceTest, StatsListsHotKeys) {
  // Interleaved: the tracker's rates decay with time, so on a loaded machine a
  // key read only early would fall behind one read only late.
  for (int i = 0; i < 800; i++) {
    Get("read-often");
    Get("read-often");
    Get("read-less");
    if (i % 2 == 0) Put("written-often", std::to_string(i));
  }
  ClientContext ctx;
  StatsResponse resp;
  ASSERT_TRUE(stub_->Stats(&ctx, StatsRequest(), &resp).ok());
  ASSERT_EQ(resp.hot_read_keys_size(), 2);
  EXPECT_EQ(resp.hot_read_keys(0).key(), "read-often");
  EXPECT_EQ(resp.hot_read_keys(0).key_size(), 10u);
  EXPECT_EQ(resp.hot_read_keys(1).key(), "read-less");
  EXPECT_GT(resp.hot_read_keys(0).per_sec(), resp.hot_read_keys(1).per_sec());
  ASSERT_EQ(resp.hot_write_keys_size(), 1);
  EXPECT_EQ(resp.hot_write_keys(0).key(), "written-often");
  EXPECT_GE(resp.counters().at("hot_reads_sampled"), 2400u / 8 - 16);  // per-thread sampling
  EXPECT_GT(resp.counters().at("hot_tracker_bytes"), 0u);
  ClientContext one;
  StatsRequest req;
  req.set_hot_keys(1);
  ASSERT_TRUE(stub_->Stats(&one, req, &resp).ok());
  ASSERT_EQ(resp.hot_read_keys_size(), 1);
  EXPECT_EQ(resp.hot_read_keys(0).key(), "read-often");
}

// A key written past hot_write_limit is refused with RESOURCE_EXHAUSTED, the
// message naming the key and the limit; other keys go on.
TEST_F(ServiceTest, HotWriteLimitIsResourceExhausted) {
  Stop();
  Start(256 << 20, 4096, nullptr, [](nokv_options* o) { o->hot_write_limit = 20; });
  int accepted = 0, refused = 0;
  for (int i = 0; i < 100; i++) {
    ClientContext ctx;
    PutRequest req;
    req.set_key("hot");
    req.set_value(std::to_string(i));
    PutResponse resp;
    grpc::Status s = stub_->Put(&ctx, req, &resp);
    if (s.ok()) {
      accepted++;
      continue;
    }
    refused++;
    EXPECT_EQ(s.error_code(), StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(s.error_message().find("\"hot\""), std::string::npos) << s.error_message();
    EXPECT_NE(s.error_message().find("hot_write_limit (20"), std::string::npos);
  }
  // About 20 a second are accepted (a window turning meanwhile lets in a few more).
  EXPECT_GE(accepted, 20);
  EXPECT_LE(accepted, 40);
  EXPECT_EQ(accepted + refused, 100);
  Put("cool", "1");
  ClientContext ctx;
  StatsResponse resp;
  ASSERT_TRUE(stub_->Stats(&ctx, StatsRequest(), &resp).ok());
  EXPECT_EQ(resp.counters().at("hot_writes_throttled"), static_cast<uint64_t>(refused));
}

TEST_F(ServiceTest, LargeValuesGoThroughTheValueLog) {
  std::string big(64 << 10, 'x');
  for (int i = 0; i < 8; i++) Put("big" + std::to_string(i), big + std::to_string(i));
  for (int i = 0; i < 8; i++) EXPECT_EQ(Get("big" + std::to_string(i)).value(), big + std::to_string(i));
  ClientContext ctx;
  StatsResponse resp;
  ASSERT_TRUE(stub_->Stats(&ctx, StatsRequest(), &resp).ok());
  EXPECT_GE(resp.counters().at("vlog_bytes"), 8u * (64 << 10));
  EXPECT_GE(resp.counters().at("vlog_reads"), 8u);
  EXPECT_EQ(resp.counters().count("gc_bytes_reclaimed"), 1u);
  EXPECT_EQ(resp.counters().count("vlog_garbage_permille"), 1u);
}

// Write: a batch at one commit timestamp, applied only if its conditions hold.
class WriteTest : public ServiceTest {
 protected:
  static Mutation PutOp(const std::string& k, const std::string& v) {
    Mutation m;
    m.set_key(k);
    m.set_put(v);
    return m;
  }
  static Mutation DeleteOp(const std::string& k) {
    Mutation m;
    m.set_key(k);
    m.set_delete_(true);
    return m;
  }
  grpc::Status Write(const std::vector<Condition>& conds, const std::vector<Mutation>& muts,
                     WriteResponse* resp, KV::Stub* stub = nullptr) {
    ClientContext ctx;
    WriteRequest req;
    for (const auto& c : conds) *req.add_conditions() = c;
    for (const auto& m : muts) *req.add_mutations() = m;
    return (stub ? stub : stub_.get())->Write(&ctx, req, resp);
  }
};

TEST_F(WriteTest, ABatchCommitsAtOneTimestamp) {
  Put("gone", "x");
  WriteResponse resp;
  ASSERT_TRUE(Write({}, {PutOp("a", "1"), PutOp("b", ""), DeleteOp("gone"), PutOp("a", "2")},
                    &resp).ok());
  EXPECT_TRUE(resp.succeeded());
  EXPECT_EQ(Get("a").value(), "2");  // a later mutation of a key wins
  EXPECT_EQ(Get("a").commit_ts(), resp.commit_ts());
  EXPECT_TRUE(Get("b").found());
  EXPECT_EQ(Get("b").commit_ts(), resp.commit_ts());
  EXPECT_FALSE(Get("gone").found());
}

TEST_F(WriteTest, CompareAndSet) {
  uint64_t ts = Put("k", "v1");
  Condition by_value, by_version, absent;
  by_value.set_key("k");
  by_value.set_value_equals("v0");
  WriteResponse resp;
  ASSERT_TRUE(Write({by_value}, {PutOp("k", "v2")}, &resp).ok());
  EXPECT_FALSE(resp.succeeded());
  EXPECT_EQ(resp.failed_condition(), 0u);
  EXPECT_TRUE(resp.found());
  EXPECT_EQ(resp.found_commit_ts(), ts);
  EXPECT_GE(resp.read_ts(), ts);
  EXPECT_EQ(Get("k").value(), "v1");  // nothing written

  by_version.set_key("k");
  by_version.set_commit_ts_equals(ts);
  absent.set_key("lock");
  absent.set_absent(true);
  ASSERT_TRUE(Write({absent, by_version}, {PutOp("k", "v2"), PutOp("lock", "me")}, &resp).ok());
  EXPECT_TRUE(resp.succeeded());
  EXPECT_EQ(Get("k").value(), "v2");
  // The same again: the version moved on and the lock is taken.
  ASSERT_TRUE(Write({by_version, absent}, {PutOp("k", "v3")}, &resp).ok());
  EXPECT_FALSE(resp.succeeded());
  EXPECT_EQ(resp.failed_condition(), 0u);
  EXPECT_EQ(resp.found_commit_ts(), Get("k").commit_ts());
  ASSERT_TRUE(Write({absent}, {}, &resp).ok());  // a pure check
  EXPECT_FALSE(resp.succeeded());
  EXPECT_TRUE(resp.found());
  EXPECT_EQ(Counter("cond_failures"), 3u);
  EXPECT_EQ(Counter("cond_writes"), 1u);
}

TEST_F(WriteTest, MalformedRequestsAreInvalidArguments) {
  Condition no_check, false_absent, empty_key;
  no_check.set_key("k");
  false_absent.set_key("k");
  false_absent.set_absent(false);
  empty_key.set_present(true);
  Mutation nothing;
  nothing.set_key("k");
  WriteResponse resp;
  for (const auto& conds : {std::vector<Condition>{no_check}, std::vector<Condition>{false_absent},
                            std::vector<Condition>{empty_key}}) {
    EXPECT_EQ(Write(conds, {PutOp("k", "v")}, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_EQ(Write({}, {nothing}, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({}, {PutOp("", "v")}, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Write({}, {PutOp(std::string(70000, 'k'), "v")}, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(Get("k").found());
}

// Compare-and-set increments from several clients over the wire: none lost.
TEST_F(WriteTest, ConcurrentIncrementsLoseNothing) {
  Put("n", "0");
  constexpr int kClients = 4, kEach = 100;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; c++) {
    clients.emplace_back([&] {
      for (int done = 0; done < kEach;) {
        GetResponse cur = Get("n");
        Condition same;
        same.set_key("n");
        same.set_commit_ts_equals(cur.commit_ts());
        WriteResponse resp;
        grpc::Status s = Write({same}, {PutOp("n", std::to_string(std::stoi(cur.value()) + 1))},
                               &resp);
        ASSERT_TRUE(s.ok()) << s.error_message();
        if (resp.succeeded()) done++;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(Get("n").value(), std::to_string(kClients * kEach));
}

// TTL over the wire, on a fake clock: Put, a Write mutation and a Txn put
// expire; Get reports the expiry and the time left.
uint64_t fake_clock_ms = 1'700'000'000'000;
uint64_t FakeClock() { return fake_clock_ms; }

TEST_F(WriteTest, TtlOnEveryKindOfPut) {
  nk_wall_clock_override = FakeClock;
  uint64_t t0 = fake_clock_ms;
  {
    ClientContext ctx;
    PutRequest req;
    req.set_key("p");
    req.set_value("v");
    req.set_ttl_ms(1000);
    PutResponse resp;
    ASSERT_TRUE(stub_->Put(&ctx, req, &resp).ok());
  }
  Mutation m = PutOp("w", "v");
  m.set_ttl_ms(2000);
  WriteResponse wresp;
  ASSERT_TRUE(Write({}, {m}, &wresp).ok());
  {
    ClientContext ctx;
    auto stream = stub_->Txn(&ctx);
    TxnRequest put;
    put.mutable_put()->set_key("t");
    put.mutable_put()->set_value("v");
    put.mutable_put()->set_ttl_ms(3000);
    TxnRequest commit;
    commit.mutable_commit();
    TxnResponse r;
    ASSERT_TRUE(stream->Write(put) && stream->Read(&r));
    ASSERT_TRUE(stream->Write(commit) && stream->Read(&r));
    stream->WritesDone();
    ASSERT_TRUE(stream->Finish().ok());
  }
  fake_clock_ms = t0 + 400;
  GetResponse g = Get("p");
  EXPECT_TRUE(g.found());
  EXPECT_EQ(g.expires_at_ms(), t0 + 1000);
  EXPECT_EQ(g.ttl_remaining_ms(), 600u);
  EXPECT_EQ(Get("w").expires_at_ms(), t0 + 2000);
  EXPECT_EQ(Get("t").expires_at_ms(), t0 + 3000);
  Put("plain", "x");
  EXPECT_EQ(Get("plain").expires_at_ms(), 0u);
  fake_clock_ms = t0 + 2000;
  EXPECT_FALSE(Get("p").found());
  EXPECT_FALSE(Get("w").found());
  EXPECT_TRUE(Get("t").found());
  fake_clock_ms = t0 + 3000;
  EXPECT_FALSE(Get("t").found());
  nk_wall_clock_override = nullptr;
}

}  // namespace

namespace nokv_service_test {

class WatchServiceTest : public ServiceTest {
 protected:
  void SetUp() override {
    // Long enough for a reader under the sanitizers, short for a stuck one.
    Start(1 << 20, 4096, [](nokv::service::ServiceOptions* o) { o->watch.send_timeout_ms = 2000; },
          [](nokv_options* o) {
            o->watch_ring_bytes = 256 << 10;
            // History for watchers that fall behind the ring (on a loaded
            // machine the reading one may too): the stuck one must end for not
            // reading, not for falling out of the history.
            o->history_retention_commits = 1u << 20;
          });
  }
};

// A watcher that stops reading costs the server one message and the engine
// its bounded ring: writes go on at full speed, and the watch is cancelled
// once a message has waited send_timeout_ms. A watcher that reads meanwhile
// sees every commit.
TEST_F(WatchServiceTest, AWatcherThatStopsReadingIsCancelledAndWritersNeverWait) {
  WatchRequest req;
  req.set_prefix("s/");
  ClientContext stuck_ctx, live_ctx;
  auto stuck = stub_->Watch(&stuck_ctx, req);
  auto live = stub_->Watch(&live_ctx, req);
  WatchResponse first;
  ASSERT_TRUE(stuck->Read(&first));
  ASSERT_TRUE(first.created());
  ASSERT_TRUE(live->Read(&first));
  std::atomic<uint64_t> live_groups{0}, last_ts{0};
  std::thread reader([&] {
    WatchResponse m;
    while (live->Read(&m)) {
      for (const WatchGroup& g : m.groups()) {
        live_groups++;
        last_ts = g.commit_ts();
      }
    }
  });
  std::string big(64 << 10, 'x');  // 64 KiB a commit: 12.8 MB in all
  uint64_t ts = 0;
  for (int i = 0; i < 200; i++) ts = Put("s/" + std::to_string(i % 20), big);
  // The stuck watch is cancelled (its message waited past the timeout) while
  // the other one keeps up.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while ((service_->watches().stalled() == 0 || last_ts.load() < ts) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(service_->watches().stalled(), 1u);
  EXPECT_EQ(last_ts.load(), ts);
  EXPECT_EQ(live_groups.load(), 200u);
  WatchResponse m;
  while (stuck->Read(&m)) {
  }
  EXPECT_EQ(stuck->Finish().error_code(), StatusCode::CANCELLED);
  live_ctx.TryCancel();
  reader.join();
  EXPECT_EQ(live->Finish().error_code(), StatusCode::CANCELLED);
}

}  // namespace nokv_service_test
