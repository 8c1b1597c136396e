// The Txn stream from a C++ client: isolation and own writes, conflicts that
// surface as ABORTED and succeed on retry, every way a stream can end without
// commit (rollback, half-close, cancel, deadline, idle timeout, errors), the
// open-transaction limit, scans in chunks, and concurrent increments.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nokv/nokv.h"
#include "tests/service/service_fixture.h"

namespace {

using grpc::ClientContext;
using grpc::StatusCode;
using namespace nokv::v1;
using nokv_service_test::ServiceTest;

// One transaction on one stream. Each call sends a request and waits for its
// answer; once the server ends the stream, calls return nothing and status()
// has the final status.
class TxnStream {
 public:
  explicit TxnStream(KV::Stub* stub, std::chrono::milliseconds deadline = {}) {
    if (deadline.count() > 0) ctx_.set_deadline(std::chrono::system_clock::now() + deadline);
    stream_ = stub->Txn(&ctx_);
  }

  std::optional<TxnResponse> Call(const TxnRequest& req) {
    TxnResponse resp;
    if (!ended_ && stream_->Write(req) && stream_->Read(&resp)) return resp;
    ended_ = true;
    return std::nullopt;
  }

  std::optional<TxnResponse> Begin(bool read_only = false, uint32_t idle_ms = 0) {
    TxnRequest req;
    req.mutable_begin()->set_read_only(read_only);
    req.mutable_begin()->set_idle_timeout_ms(idle_ms);
    return Call(req);
  }
  // The value, "<none>" if the key is absent, "<ended>" if the stream ended.
  std::string Get(const std::string& key) {
    TxnRequest req;
    req.mutable_get()->set_key(key);
    auto resp = Call(req);
    if (!resp) return "<ended>";
    read_ts_ = resp->read_ts();
    return resp->get().found() ? resp->get().value() : "<none>";
  }
  bool Put(const std::string& key, const std::string& value) {
    TxnRequest req;
    req.mutable_put()->set_key(key);
    req.mutable_put()->set_value(value);
    return Call(req).has_value();
  }
  bool Delete(const std::string& key) {
    TxnRequest req;
    req.mutable_delete_()->set_key(key);
    return Call(req).has_value();
  }
  // Every chunk of one scan (empty if the stream ended).
  std::vector<TxnScanChunk> Scan(const TxnScan& scan) {
    TxnRequest req;
    *req.mutable_scan() = scan;
    std::vector<TxnScanChunk> chunks;
    auto resp = Call(req);
    while (resp && resp->has_scan()) {
      chunks.push_back(resp->scan());
      if (resp->scan().done()) break;
      TxnResponse next;
      resp.reset();
      if (stream_->Read(&next)) resp = next;
    }
    return chunks;
  }
  // Commits; the stream's final status (OK, ABORTED, ...).
  grpc::Status Commit(uint64_t* commit_ts = nullptr, bool sync = false) {
    TxnRequest req;
    req.mutable_commit()->set_sync(sync);
    auto resp = Call(req);
    if (resp && commit_ts != nullptr) *commit_ts = resp->committed().commit_ts();
    if (resp) {
      EXPECT_TRUE(resp->has_committed());
    }
    return Close();
  }
  grpc::Status Rollback() {
    TxnRequest req;
    req.mutable_rollback();
    auto resp = Call(req);
    if (resp) {
      EXPECT_TRUE(resp->has_rolled_back());
    }
    return Close();
  }
  // Half-closes and waits for the final status.
  grpc::Status Close() {
    stream_->WritesDone();
    TxnResponse extra;
    while (stream_->Read(&extra)) ADD_FAILURE() << "unexpected message after the end";
    return stream_->Finish();
  }
  // Waits for the server to end the stream (no request sent meanwhile).
  grpc::Status AwaitEnd() {
    TxnResponse extra;
    while (stream_->Read(&extra)) ADD_FAILURE() << "unexpected message";
    return stream_->Finish();
  }

  bool ReadRaw(TxnResponse* resp) { return stream_->Read(resp); }
  bool WriteRaw(const TxnRequest& req) { return stream_->Write(req); }
  ClientContext& context() { return ctx_; }
  uint64_t read_ts() const { return read_ts_; }

 private:
  ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<TxnRequest, TxnResponse>> stream_;
  bool ended_ = false;
  uint64_t read_ts_ = 0;
};

// Each test runs against the server, and through a pipe to it (what a
// follower does with a Txn stream: forward.h).
class TxnStreamTest : public ServiceTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    pipe_streams_ = GetParam();
    ServiceTest::SetUp();
  }

  // The server ends streams asynchronously after a client cancels: wait until
  // it has let go of every transaction.
  void AwaitOpenTransactions(size_t n) {
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (service_->open_txns() > n && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::yield();
    }
    ASSERT_EQ(service_->open_txns(), n);
  }
  void AwaitNoOpenTransactions() {
    AwaitOpenTransactions(0);
    EXPECT_EQ(Counter("txns_active"), 0u);
    EXPECT_EQ(Counter("live_snapshots"), 0u);
  }

  // Reads counter in a transaction, writes it plus one, commits; retries on
  // ABORTED. Returns the attempts it took.
  int Increment(const std::string& key) {
    for (int attempt = 1;; attempt++) {
      TxnStream t(streams());
      std::string v = t.Get(key);
      int n = v == "<none>" ? 0 : std::stoi(v);
      EXPECT_TRUE(t.Put(key, std::to_string(n + 1)));
      grpc::Status s = t.Commit();
      if (s.ok()) return attempt;
      EXPECT_EQ(s.error_code(), StatusCode::ABORTED) << s.error_message();
      if (s.error_code() != StatusCode::ABORTED || attempt == 1000) return -1;
    }
  }
};

TEST_P(TxnStreamTest, IsolatedUntilCommitThenAtomicAtOneTimestamp) {
  uint64_t t0 = Put("x", "1");
  TxnStream t(streams());
  auto begun = t.Begin();
  ASSERT_TRUE(begun && begun->has_begun());
  EXPECT_EQ(begun->read_ts(), t0);
  EXPECT_EQ(begun->begun().idle_timeout_ms(), 30000u);
  EXPECT_EQ(t.Get("x"), "1");
  ASSERT_TRUE(t.Put("y", "2"));
  ASSERT_TRUE(t.Delete("x"));
  EXPECT_EQ(t.Get("y"), "2");  // its own writes
  EXPECT_EQ(t.Get("x"), "<none>");
  EXPECT_FALSE(Get("y").found());  // its writes are invisible to others
  EXPECT_EQ(Get("x").value(), "1");
  uint64_t cts = 0;
  grpc::Status s = t.Commit(&cts, /*sync=*/true);
  ASSERT_TRUE(s.ok()) << s.error_message();
  GetResponse y = Get("y");
  EXPECT_EQ(y.value(), "2");
  EXPECT_EQ(y.commit_ts(), cts);
  EXPECT_FALSE(Get("x").found());
  EXPECT_EQ(Get("x", cts - 1).value(), "1");  // just before the commit, both old
  EXPECT_FALSE(Get("y", cts - 1).found());
  EXPECT_EQ(Counter("txn_commits"), 1u);
  EXPECT_EQ(Counter("wal_syncs"), 1u);
}

// Requests may be pipelined: the client sends a whole transaction before
// reading any answer, and the answers come back in request order (a scan's
// chunks together), each seeing the writes requested before it.
TEST_P(TxnStreamTest, PipelinedRequestsAreAnsweredInOrder) {
  Put("a", "1");
  const std::string big(10 << 10, 'v');  // the fixture sends 4 KiB scan chunks: several
  TxnStream t(streams());
  std::vector<TxnRequest> reqs(9);
  reqs[0].mutable_get()->set_key("a");
  reqs[1].mutable_put()->set_key("a");
  reqs[1].mutable_put()->set_value("2");
  reqs[2].mutable_get()->set_key("a");
  reqs[3].mutable_put()->set_key("b");
  reqs[3].mutable_put()->set_value(big);
  reqs[4].mutable_put()->set_key("c");
  reqs[4].mutable_put()->set_value(big);
  reqs[5].mutable_scan()->set_start("a");
  reqs[6].mutable_delete_()->set_key("b");
  reqs[7].mutable_get()->set_key("b");
  reqs[8].mutable_commit();
  for (const TxnRequest& r : reqs) ASSERT_TRUE(t.WriteRaw(r));
  TxnResponse resp;
  ASSERT_TRUE(t.ReadRaw(&resp));
  EXPECT_EQ(resp.get().value(), "1");
  ASSERT_TRUE(t.ReadRaw(&resp));
  EXPECT_EQ(resp.written().ops(), 1u);
  ASSERT_TRUE(t.ReadRaw(&resp));
  EXPECT_EQ(resp.get().value(), "2");
  ASSERT_TRUE(t.ReadRaw(&resp));
  EXPECT_EQ(resp.written().ops(), 2u);
  ASSERT_TRUE(t.ReadRaw(&resp));
  EXPECT_EQ(resp.written().ops(), 3u);
  std::vector<std::string> scanned;
  int chunks = 0;
  do {
    ASSERT_TRUE(t.ReadRaw(&resp));
    ASSERT_TRUE(resp.has_scan());
    chunks++;
    for (const auto& kv : resp.scan().kvs()) scanned.push_back(kv.key());
  } while (!resp.scan().done());
  EXPECT_EQ(scanned, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_GE(chunks, 2);
  ASSERT_TRUE(t.ReadRaw(&resp));
  EXPECT_EQ(resp.written().ops(), 4u);
  ASSERT_TRUE(t.ReadRaw(&resp));
  EXPECT_FALSE(resp.get().found());
  ASSERT_TRUE(t.ReadRaw(&resp));
  ASSERT_TRUE(resp.has_committed());
  grpc::Status s = t.Close();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Get("a").value(), "2");
  EXPECT_FALSE(Get("b").found());
  EXPECT_EQ(Get("c").value().size(), big.size());
}

TEST_P(TxnStreamTest, ConflictIsAbortedWithARetryMessageAndTheRetrySucceeds) {
  Put("counter", "10");
  TxnStream a(streams()), b(streams());
  EXPECT_EQ(a.Get("counter"), "10");
  EXPECT_EQ(b.Get("counter"), "10");
  ASSERT_TRUE(a.Put("counter", "11"));
  ASSERT_TRUE(b.Put("counter", "11"));
  ASSERT_TRUE(a.Commit().ok());
  grpc::Status s = b.Commit();
  EXPECT_EQ(s.error_code(), StatusCode::ABORTED);
  EXPECT_NE(s.error_message().find("retry"), std::string::npos) << s.error_message();
  EXPECT_EQ(Get("counter").value(), "11");
  EXPECT_EQ(Counter("txn_conflicts"), 1u);

  // A plain write between a transaction's read and its commit conflicts too;
  // the retry, on a new stream, reads that write and succeeds.
  TxnStream loser(streams());
  EXPECT_EQ(loser.Get("counter"), "11");
  ASSERT_TRUE(loser.Put("counter", "12"));
  Put("counter", "100");  // a plain write conflicts too
  EXPECT_EQ(loser.Commit().error_code(), StatusCode::ABORTED);
  EXPECT_EQ(Increment("counter"), 1);
  EXPECT_EQ(Get("counter").value(), "101");
}

TEST_P(TxnStreamTest, ReadOnlyTransactionReadsOneStateAndNeverConflicts) {
  Put("a", "50");
  Put("b", "50");
  TxnStream r(streams());
  auto begun = r.Begin(/*read_only=*/true);
  ASSERT_TRUE(begun && begun->begun().read_only());
  EXPECT_EQ(r.Get("a"), "50");
  Put("a", "20");
  Put("b", "80");
  EXPECT_EQ(r.Get("b"), "50");  // not 80: one snapshot
  TxnScan all;
  auto chunks = r.Scan(all);
  ASSERT_EQ(chunks.size(), 1u);
  ASSERT_EQ(chunks[0].kvs_size(), 2);
  EXPECT_EQ(chunks[0].kvs(0).value(), "50");
  EXPECT_FALSE(r.Put("a", "1"));  // cannot write: the stream ends
  grpc::Status s = r.Close();
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("rolled back"), std::string::npos) << s.error_message();

  TxnStream r2(streams());
  ASSERT_TRUE(r2.Begin(true));
  EXPECT_EQ(r2.Get("a"), "20");
  Put("a", "0");
  uint64_t cts = 0;
  EXPECT_TRUE(r2.Commit(&cts).ok());
  EXPECT_EQ(cts, r2.read_ts());
}

TEST_P(TxnStreamTest, ScanStreamsChunksMergedWithItsOwnWritesAndCountsAsReads) {
  for (int i = 0; i < 100; i++) Put("s" + std::to_string(1000 + i), std::string(100, 'v'));
  TxnStream t(streams());
  ASSERT_TRUE(t.Put("s1000x", "mine"));
  ASSERT_TRUE(t.Delete("s1001"));
  TxnScan scan;
  scan.set_prefix("s10");
  auto chunks = t.Scan(scan);
  ASSERT_GE(chunks.size(), 3u);  // 10 KB in 4 KiB chunks
  std::vector<KeyValue> kvs;
  for (size_t i = 0; i < chunks.size(); i++) {
    EXPECT_EQ(chunks[i].done(), i + 1 == chunks.size());
    kvs.insert(kvs.end(), chunks[i].kvs().begin(), chunks[i].kvs().end());
  }
  ASSERT_EQ(kvs.size(), 100u);  // 100 - s1001 + s1000x
  EXPECT_EQ(kvs[1].key(), "s1000x");
  EXPECT_EQ(kvs[1].value(), "mine");
  EXPECT_EQ(kvs[1].commit_ts(), 0u);  // not committed yet
  EXPECT_EQ(kvs[2].key(), "s1002");
  EXPECT_GT(kvs[2].commit_ts(), 0u);

  TxnScan limited;
  limited.set_start("s1050");
  limited.set_end("s1060");
  limited.set_limit(3);
  chunks = t.Scan(limited);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].kvs_size(), 3);
  EXPECT_TRUE(chunks[0].done());
  TxnScan empty;
  empty.set_start("zzz");
  chunks = t.Scan(empty);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].kvs_size(), 0);

  Put("s1099", "changed");  // a key the scan returned
  EXPECT_EQ(t.Commit().error_code(), StatusCode::ABORTED);
  EXPECT_FALSE(Get("s1000x").found());
}

TEST_P(TxnStreamTest, EveryEndWithoutCommitRollsBack) {
  {
    TxnStream t(streams());
    ASSERT_TRUE(t.Put("r1", "v"));
    EXPECT_TRUE(t.Rollback().ok());
  }
  {
    TxnStream t(streams());  // the client closes its side without commit
    ASSERT_TRUE(t.Put("r2", "v"));
    EXPECT_TRUE(t.Close().ok());
  }
  {
    TxnStream t(streams());
    ASSERT_TRUE(t.Put("r3", "v"));
    t.context().TryCancel();
    EXPECT_EQ(t.AwaitEnd().error_code(), StatusCode::CANCELLED);
  }
  {
    TxnStream t(streams(), std::chrono::milliseconds(300));
    ASSERT_TRUE(t.Put("r4", "v"));
    EXPECT_EQ(t.AwaitEnd().error_code(), StatusCode::DEADLINE_EXCEEDED);
  }
  AwaitNoOpenTransactions();
  for (const char* k : {"r1", "r2", "r3", "r4"}) EXPECT_FALSE(Get(k).found()) << k;
  EXPECT_EQ(Counter("txn_commits"), 0u);
}

TEST_P(TxnStreamTest, IdleTransactionIsRolledBackWithDeadlineExceeded) {
  // Asked for by the client in its first message.
  TxnStream t(streams());
  auto begun = t.Begin(false, /*idle_ms=*/200);
  ASSERT_TRUE(begun);
  EXPECT_EQ(begun->begun().idle_timeout_ms(), 200u);
  ASSERT_TRUE(t.Put("idle", "v"));
  auto quiet_from = std::chrono::steady_clock::now();
  grpc::Status s = t.AwaitEnd();
  auto quiet = std::chrono::steady_clock::now() - quiet_from;
  EXPECT_EQ(s.error_code(), StatusCode::DEADLINE_EXCEEDED);
  EXPECT_NE(s.error_message().find("idle"), std::string::npos) << s.error_message();
  EXPECT_GE(quiet, std::chrono::milliseconds(200));
  EXPECT_LT(quiet, std::chrono::seconds(5));
  EXPECT_FALSE(Get("idle").found());
  AwaitNoOpenTransactions();

  // The server's timeout, for a stream that never set one. A transaction whose
  // client keeps talking outlives it.
  Stop();
  Start(256 << 20, 4096, [](nokv::service::ServiceOptions* o) { o->txn_idle_timeout_ms = 300; });
  TxnStream busy(streams()), quiet_one(streams());
  ASSERT_TRUE(quiet_one.Put("q", "v"));
  ASSERT_TRUE(busy.Put("b", "v"));
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(900);
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_EQ(busy.Get("b"), "v");  // a client thinking 30 ms between requests
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  EXPECT_TRUE(busy.Commit().ok());
  EXPECT_EQ(quiet_one.AwaitEnd().error_code(), StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(Get("b").found());
  EXPECT_FALSE(Get("q").found());
}

// A client that stops reading a scan stalls its stream (flow control) and is
// idle too: the reaper ends the stream while a response is still in flight.
TEST_P(TxnStreamTest, ClientThatStopsReadingAScanIsRolledBackWhenIdle) {
  Stop();  // a pipe cancels a client that took nothing for this long
  Start(256 << 20, 4096, [](nokv::service::ServiceOptions* o) { o->scan_idle_timeout_ms = 300; });
  nokv_batch* b;
  ASSERT_EQ(nokv_batch_new(&b), NOKV_OK);
  std::string v(1000, 'v');
  for (int i = 0; i < 20000; i++) {
    std::string k = "stall" + std::to_string(100000 + i);
    nokv_batch_put(b, k.data(), k.size(), v.data(), v.size());
  }
  ASSERT_EQ(nokv_write(db_, nullptr, b, nullptr), NOKV_OK);
  nokv_batch_free(b);

  TxnStream t(streams());
  ASSERT_TRUE(t.Begin(false, /*idle_ms=*/200));
  ASSERT_TRUE(t.Put("stall-own", "v"));
  TxnRequest req;
  req.mutable_scan()->set_prefix("stall");
  auto first = t.Call(req);
  ASSERT_TRUE(first && first->has_scan());
  // The client stalls (think of a consumer that hangs): the reaper must roll
  // the transaction back without waiting for it to read.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (nokv_test::Stats(db_).txns_active > 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling interval
  }
  ASSERT_EQ(nokv_test::Stats(db_).txns_active, 0u);
  if (GetParam()) {
    // The pipe cancels its stalled client too, though the client still takes
    // nothing.
    while (pipe_->open_pipes() > 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling interval
    }
    EXPECT_EQ(pipe_->open_pipes(), 0u);
  }
  size_t chunks = 1;
  bool done = false;
  TxnResponse resp;
  while (t.ReadRaw(&resp)) {
    chunks++;
    done = done || resp.scan().done();
  }
  EXPECT_FALSE(done);  // 20 MB would take ~5000 chunks
  // What the connections' flow-control windows held (a pipe: two of them).
  EXPECT_LT(chunks, GetParam() ? 4000u : 2000u);
  // A response was in flight, so the server could not finish the stream with a
  // status (Finish may not overlap a write): it cancelled the call.
  grpc::Status s = t.AwaitEnd();
  EXPECT_EQ(s.error_code(), StatusCode::CANCELLED) << s.error_message();
  AwaitNoOpenTransactions();
  EXPECT_GE(Counter("streams_expired"), 1u);
  EXPECT_FALSE(Get("stall-own").found());
}

// A transaction that keeps talking (never idle) still ends at the stream
// lifetime: it pins a snapshot, so nothing may hold one forever.
TEST_P(TxnStreamTest, TransactionsEndAtTheStreamLifetime) {
  Stop();
  Start(256 << 20, 4096, [](nokv::service::ServiceOptions* o) {
    o->max_stream_lifetime_ms = 400;
    o->txn_idle_timeout_ms = 10000;
  });
  auto began = std::chrono::steady_clock::now();  // before the stream: its lifetime starts there
  TxnStream t(streams());
  ASSERT_TRUE(t.Put("chatty", "v"));
  std::string got;
  while ((got = t.Get("chatty")) != "<ended>") {
    ASSERT_EQ(got, "v");
    ASSERT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a client's think time
  }
  EXPECT_GE(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(400));
  grpc::Status s = t.AwaitEnd();
  EXPECT_EQ(s.error_code(), StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_NE(s.error_message().find("max_stream_lifetime_ms"), std::string::npos)
      << s.error_message();
  AwaitNoOpenTransactions();
  EXPECT_FALSE(Get("chatty").found());
  EXPECT_EQ(Counter("streams_expired"), 1u);
}

// What all open transactions buffer is capped: past it a write ends its
// transaction RESOURCE_EXHAUSTED, and the bytes come back when transactions end.
TEST_P(TxnStreamTest, BufferedTransactionBytesAreCapped) {
  Stop();
  Start(256 << 20, 4096, [](nokv::service::ServiceOptions* o) { o->txn_buffer_bytes = 1 << 20; });
  std::string v(300 << 10, 'v');
  TxnStream a(streams()), b(streams());
  ASSERT_TRUE(a.Put("a1", v));
  ASSERT_TRUE(a.Put("a2", v));
  ASSERT_TRUE(b.Put("b1", v));
  EXPECT_GE(Counter("txn_buffered_bytes"), 900u << 10);
  EXPECT_FALSE(b.Put("b2", v));  // 1.2 MiB would pass the 1 MiB cap
  grpc::Status s = b.Close();
  EXPECT_EQ(s.error_code(), StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("txn_buffer_bytes"), std::string::npos) << s.error_message();
  EXPECT_FALSE(Get("b1").found());
  EXPECT_TRUE(a.Commit().ok());
  AwaitNoOpenTransactions();
  EXPECT_EQ(Counter("txn_buffered_bytes"), 0u);
  TxnStream c(streams());
  ASSERT_TRUE(c.Put("c1", v));
  ASSERT_TRUE(c.Put("c2", v));
  ASSERT_TRUE(c.Put("c3", v));
  EXPECT_TRUE(c.Commit().ok());
  EXPECT_TRUE(Get("a2").found());
  EXPECT_TRUE(Get("c3").found());
  EXPECT_EQ(Counter("txn_buffered_bytes"), 0u);
}

TEST_P(TxnStreamTest, BadRequestsEndTheStreamWithAClearErrorAndRollBack) {
  auto expect_invalid = [&](const std::function<void(TxnStream&)>& steps, const char* what) {
    TxnStream t(streams());
    ASSERT_TRUE(t.Put("pending", "v"));
    steps(t);
    grpc::Status s = t.Close();
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << what;
    EXPECT_NE(s.error_message().find("rolled back"), std::string::npos) << s.error_message();
  };
  expect_invalid([](TxnStream& t) { EXPECT_FALSE(t.Put("", "v")); }, "empty key");
  expect_invalid([](TxnStream& t) { EXPECT_EQ(t.Get(""), "<ended>"); }, "empty get key");
  expect_invalid([](TxnStream& t) { EXPECT_FALSE(t.Put(std::string(65537, 'k'), "v")); },
                 "oversized key");
  expect_invalid([](TxnStream& t) { EXPECT_FALSE(t.Begin()); }, "begin after the first message");
  expect_invalid([](TxnStream& t) { EXPECT_FALSE(t.Call(TxnRequest())); }, "empty request");
  expect_invalid(
      [](TxnStream& t) {
        TxnScan scan;
        scan.set_prefix("a");
        scan.set_start("a");
        EXPECT_TRUE(t.Scan(scan).empty());
      },
      "prefix and range");
  EXPECT_FALSE(Get("pending").found());

  // Past the transaction size limit (half the 1 MiB memtable).
  Stop();
  Start(1 << 20);
  TxnStream big(streams());
  std::string v(300 << 10, 'v');
  ASSERT_TRUE(big.Put("big1", v));
  EXPECT_FALSE(big.Put("big2", v));
  grpc::Status s = big.Close();
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("max_txn_bytes"), std::string::npos) << s.error_message();
  EXPECT_FALSE(Get("big1").found());
}

TEST_P(TxnStreamTest, OpenTransactionsAreLimited) {
  Stop();
  Start(256 << 20, 4096, [](nokv::service::ServiceOptions* o) { o->max_txns = 2; });
  TxnStream a(streams()), b(streams());
  ASSERT_TRUE(a.Begin());
  ASSERT_TRUE(b.Begin());
  {
    TxnStream c(streams());
    EXPECT_FALSE(c.Begin());
    grpc::Status s = c.Close();
    EXPECT_EQ(s.error_code(), StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(s.error_message().find("too many open transactions"), std::string::npos);
  }
  EXPECT_TRUE(a.Rollback().ok());  // its slot is free once its stream is done
  AwaitOpenTransactions(1);
  TxnStream d(streams());
  EXPECT_TRUE(d.Begin());
  EXPECT_TRUE(d.Commit().ok());
  EXPECT_TRUE(b.Commit().ok());
}

// Concurrent read-modify-write transactions with retries: no increment is lost,
// and some of them had to retry.
TEST_P(TxnStreamTest, ConcurrentIncrementsWithRetriesLoseNothing) {
  const int kThreads = 4, kEach = 40;
  std::atomic<int> retries{0}, failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; i++) {
    threads.emplace_back([&] {
      for (int j = 0; j < kEach; j++) {
        int attempts = Increment("hot");
        if (attempts < 0) failures++;
        if (attempts > 1) retries += attempts - 1;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(Get("hot").value(), std::to_string(kThreads * kEach));
  EXPECT_EQ(Counter("txn_commits"), static_cast<uint64_t>(kThreads * kEach));
  EXPECT_EQ(Counter("txn_conflicts"), static_cast<uint64_t>(retries.load()));
  printf("%d increments, %d retries\n", kThreads * kEach, retries.load());
}

INSTANTIATE_TEST_SUITE_P(DirectAndPiped, TxnStreamTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Piped" : "Direct";
                         });

}  // namespace
