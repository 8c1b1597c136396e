// The Scan RPC's hand-written wire format (service/scan_wire.h) against
// protobuf's own: for the same pairs the bytes are identical, they parse back
// to the same message, and a chunk from the iterator holds what FillScanChunk
// (the protobuf path the Txn stream's scans use) puts in one.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "nokv/nokv.h"
#include "nokv/v1/kv.pb.h"
#include "service/kv_service.h"
#include "service/scan_wire.h"
#include "tests/core/test_util.h"

namespace {

using nokv::service::EncodeScanChunk;
using nokv::service::ScanChunkEncoder;

std::string Bytes(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(b.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

TEST(ScanWireTest, SameBytesAsProtobufForEveryFieldShape) {
  std::mt19937_64 rng(nokv_test::TestSeed());
  // Lengths across varint boundaries, empty values, timestamps of every size.
  const size_t lens[] = {0, 1, 127, 128, 300, 16383, 16384, 70000};
  const uint64_t stamps[] = {0, 1, 127, 128, 1ull << 35, ~0ull};
  for (int round = 0; round < 50; round++) {
    nokv::v1::ScanResponse want;
    ScanChunkEncoder enc;
    int n = static_cast<int>(rng() % 6);
    for (int i = 0; i < n; i++) {
      std::string k(1 + rng() % 40, 'k'), v(lens[rng() % 8], 'v');
      for (char& c : k) c = static_cast<char>(rng());
      for (char& c : v) c = static_cast<char>(rng());
      uint64_t ts = stamps[rng() % 6];
      auto* kv = want.add_kvs();
      kv->set_key(k);
      kv->set_value(v);
      kv->set_commit_ts(ts);
      ASSERT_TRUE(enc.Add(k.data(), k.size(), v.data(), v.size(), ts));
    }
    uint64_t read_ts = stamps[rng() % 6];
    want.set_read_ts(read_ts);
    EXPECT_EQ(enc.pairs(), static_cast<size_t>(n));
    grpc::ByteBuffer out;
    ASSERT_TRUE(enc.Finish(read_ts, &out));
    std::string got = Bytes(out);
    EXPECT_EQ(got, want.SerializeAsString()) << "round " << round;
    nokv::v1::ScanResponse parsed;
    ASSERT_TRUE(parsed.ParseFromString(got));
    EXPECT_EQ(parsed.SerializeAsString(), want.SerializeAsString());
    EXPECT_EQ(enc.pairs(), 0u);  // ready for the next message
  }
}

TEST(ScanWireTest, ChunksFromTheIteratorMatchTheProtobufPath) {
  nokv_test::TempDir dir;
  nokv_options o;
  nokv_options_init(&o);
  nokv_db* db;
  ASSERT_EQ(nokv_open(dir.path().c_str(), &o, &db), NOKV_OK);
  for (int i = 0; i < 300; i++) {
    char key[16];
    snprintf(key, sizeof key, "key%05d", i);
    std::string value(i % 7 == 0 ? 0 : 10 + i * 13 % 3000, static_cast<char>('a' + i % 26));
    ASSERT_EQ(nokv_test::Put(db, key, value), NOKV_OK);
  }
  for (uint32_t limit : {0u, 1u, 57u}) {
    for (size_t chunk : {size_t{1}, size_t{4096}, size_t{1} << 20}) {
      nokv_iter *a, *b;
      ASSERT_EQ(nokv_iter_new(db, nullptr, "", 0, nullptr, 0, &a), NOKV_OK);
      ASSERT_EQ(nokv_iter_new(db, nullptr, "", 0, nullptr, 0, &b), NOKV_OK);
      nokv_iter_seek_first(a);
      nokv_iter_seek_first(b);
      uint32_t sent_a = 0, sent_b = 0;
      int messages = 0;
      for (;;) {
        nokv::v1::ScanResponse want;
        nokv::service::FillScanChunk(a, want.mutable_kvs(), chunk, limit, &sent_a);
        want.set_read_ts(42);
        ScanChunkEncoder enc;
        ASSERT_TRUE(EncodeScanChunk(b, chunk, limit, &sent_b, &enc));
        EXPECT_EQ(enc.pairs(), static_cast<size_t>(want.kvs_size()));
        grpc::ByteBuffer out;
        ASSERT_TRUE(enc.Finish(42, &out));
        ASSERT_EQ(Bytes(out), want.SerializeAsString())
            << "limit " << limit << " chunk " << chunk << " message " << messages;
        if (want.kvs_size() == 0) break;
        messages++;
      }
      EXPECT_EQ(sent_a, limit == 0 ? 300u : limit);
      EXPECT_EQ(sent_b, sent_a);
      EXPECT_GT(messages, 0);
      nokv_iter_close(a);
      nokv_iter_close(b);
    }
  }
  ASSERT_EQ(nokv_close(db), NOKV_OK);
}

}  // namespace
