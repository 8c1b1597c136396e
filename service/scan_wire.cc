#include "service/scan_wire.h"

#include <grpcpp/support/slice.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace nokv::service {

namespace {

// Field tags: (number << 3) | wire type (0 varint, 2 length-delimited).
constexpr uint32_t kScanResponseKvs = 1, kScanResponseReadTs = 2;
constexpr uint32_t kKeyValueKey = 1, kKeyValueValue = 2, kKeyValueCommitTs = 3;

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

// Bytes a bytes field takes, left out when empty (proto3).
size_t BytesFieldSize(size_t n) { return n == 0 ? 0 : 1 + VarintSize(n) + n; }
size_t VarintFieldSize(uint64_t v) { return v == 0 ? 0 : 1 + VarintSize(v); }

}  // namespace

ScanChunkEncoder::ScanChunkEncoder(size_t expect) {
  // Each pair adds a few bytes of tags and lengths; a quarter more covers
  // pairs down to a few dozen bytes (smaller ones grow the buffer once).
  if (expect > 0) (void)Reserve(expect + expect / 4 + 64);
}

ScanChunkEncoder::~ScanChunkEncoder() { free(buf_); }

bool ScanChunkEncoder::Reserve(size_t more) {
  if (len_ + more <= cap_) return true;
  size_t cap = std::max({cap_ * 2, len_ + more, size_t{4096}});
  char* p = static_cast<char*>(realloc(buf_, cap));
  if (p == nullptr) return false;
  buf_ = p;
  cap_ = cap;
  return true;
}

void ScanChunkEncoder::PutVarint(uint64_t v) {
  while (v >= 0x80) {
    buf_[len_++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  buf_[len_++] = static_cast<char>(v);
}

void ScanChunkEncoder::PutBytes(uint32_t field, const void* p, size_t n) {
  if (n == 0) return;
  buf_[len_++] = static_cast<char>(field << 3 | 2);
  PutVarint(n);
  memcpy(buf_ + len_, p, n);
  len_ += n;
}

bool ScanChunkEncoder::Add(const void* key, size_t klen, const void* value, size_t vlen,
                           uint64_t commit_ts) {
  size_t inner = BytesFieldSize(klen) + BytesFieldSize(vlen) + VarintFieldSize(commit_ts);
  if (!Reserve(1 + VarintSize(inner) + inner)) return false;
  buf_[len_++] = static_cast<char>(kScanResponseKvs << 3 | 2);
  PutVarint(inner);
  PutBytes(kKeyValueKey, key, klen);
  PutBytes(kKeyValueValue, value, vlen);
  if (commit_ts != 0) {
    buf_[len_++] = static_cast<char>(kKeyValueCommitTs << 3);
    PutVarint(commit_ts);
  }
  pairs_++;
  return true;
}

bool ScanChunkEncoder::Finish(uint64_t read_ts, grpc::ByteBuffer* out) {
  if (!Reserve(VarintFieldSize(read_ts))) return false;
  if (read_ts != 0) {
    buf_[len_++] = static_cast<char>(kScanResponseReadTs << 3);
    PutVarint(read_ts);
  }
  // gRPC frees the buffer once it has sent it. An empty message is a valid
  // (empty) ScanResponse.
  grpc::Slice slice = len_ == 0 ? grpc::Slice() : grpc::Slice(buf_, len_, free);
  if (len_ == 0) free(buf_);
  *out = grpc::ByteBuffer(&slice, 1);
  buf_ = nullptr;
  len_ = cap_ = pairs_ = 0;
  return true;
}

bool EncodeScanChunk(nokv_iter* iter, size_t chunk_bytes, uint32_t limit, uint32_t* sent,
                     ScanChunkEncoder* enc) {
  auto add = [enc](const void* k, size_t kl, const void* v, size_t vl, uint64_t ts) {
    return enc->Add(k, kl, v, vl, ts);
  };
  return TakeScanChunk(iter, chunk_bytes, limit, sent, add) != ChunkEnd::kFailed;
}

}  // namespace nokv::service
