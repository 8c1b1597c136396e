// The Scan RPC's messages in their wire format, written straight from an
// engine iterator into one buffer that gRPC takes over. Going through a
// nokv.v1.ScanResponse would copy every key and value twice (into the message,
// then into gRPC's buffer); here each is copied once. The bytes are exactly
// what protobuf serializes for the same message (fields in number order,
// proto3 defaults left out), so any client parses them as a ScanResponse.
#ifndef NOKV_SERVICE_SCAN_WIRE_H
#define NOKV_SERVICE_SCAN_WIRE_H

#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <cstdint>

#include "nokv/nokv.h"

namespace nokv::service {

// One ScanResponse being encoded: pairs appended in key order, then Finish.
class ScanChunkEncoder {
 public:
  // expect: the key and value bytes the message will about hold, so its
  // buffer is sized once rather than grown by doubling.
  explicit ScanChunkEncoder(size_t expect = 0);
  ~ScanChunkEncoder();
  ScanChunkEncoder(const ScanChunkEncoder&) = delete;
  ScanChunkEncoder& operator=(const ScanChunkEncoder&) = delete;

  // Appends one KeyValue {key, value, commit_ts}. False if out of memory.
  bool Add(const void* key, size_t klen, const void* value, size_t vlen, uint64_t commit_ts);
  // Appends read_ts and hands the message over to out (the buffer becomes
  // gRPC's; the encoder starts empty again). False if out of memory.
  bool Finish(uint64_t read_ts, grpc::ByteBuffer* out);
  size_t pairs() const { return pairs_; }

 private:
  bool Reserve(size_t more);
  void PutVarint(uint64_t v);
  void PutBytes(uint32_t field, const void* p, size_t n);

  char* buf_ = nullptr;
  size_t len_ = 0, cap_ = 0, pairs_ = 0;
};

// Where TakeScanChunk stopped.
enum class ChunkEnd {
  kFull,    // the chunk holds chunk_bytes; the scan has more
  kDone,    // the iterator ended or *sent reached the limit (see nokv_iter_status)
  kFailed,  // add refused a pair
};

// One chunk of a scan, whatever it is put in: hands the iterator's pairs to
// add(key, klen, value, vlen, commit_ts), which returns false on failure,
// while their key and value bytes stay within chunk_bytes (at least one pair,
// however large), until the iterator ends or *sent (pairs sent in all)
// reaches limit (0: none).
template <typename Add>
ChunkEnd TakeScanChunk(nokv_iter* iter, size_t chunk_bytes, uint32_t limit, uint32_t* sent,
                       Add add) {
  size_t bytes = 0;
  while (nokv_iter_valid(iter) && (limit == 0 || *sent < limit)) {
    size_t kl, vl;
    const void* k = nokv_iter_key(iter, &kl);
    const void* v = nokv_iter_value(iter, &vl);
    if (bytes != 0 && bytes + kl + vl > chunk_bytes) return ChunkEnd::kFull;
    if (!add(k, kl, v, vl, nokv_iter_commit_ts(iter))) return ChunkEnd::kFailed;
    bytes += kl + vl;
    (*sent)++;
    nokv_iter_next(iter);
  }
  return ChunkEnd::kDone;
}

// Fills one Scan message from the iterator (TakeScanChunk). Returns false if
// out of memory; the iterator's own errors are in nokv_iter_status.
bool EncodeScanChunk(nokv_iter* iter, size_t chunk_bytes, uint32_t limit, uint32_t* sent,
                     ScanChunkEncoder* enc);

}  // namespace nokv::service

#endif  // NOKV_SERVICE_SCAN_WIRE_H
