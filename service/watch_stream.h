// watch_stream.h — the Watch RPC: server-streaming watches over the engine's
// nokv_watch (core/include/nokv/watch.h).
//
// One dispatcher thread (started by the first watch) serves every watch: it waits for the engine's next
// commit (nokv_watch_wait) and then asks each watch without a message in
// flight for what it has (nokv_watch_next with no wait), packing groups into
// one message up to message_bytes. A watch whose message is in flight is not
// asked: its next groups wait in the engine's change ring (bounded), so the
// server buffers at most one message per watch and writers never wait. A
// watch that falls behind the ring catches up from the LSM; one that falls
// behind the history kept ends with OUT_OF_RANGE. A client that stops reading
// is cancelled once a message has waited send_timeout_ms.
#ifndef NOKV_SERVICE_WATCH_STREAM_H
#define NOKV_SERVICE_WATCH_STREAM_H

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "nokv/nokv.h"
#include "nokv/v1/kv.grpc.pb.h"

namespace nokv::service {

struct WatchOptions {
  size_t max_watches = 4096;            // open Watch streams; more are RESOURCE_EXHAUSTED
  uint32_t send_timeout_ms = 30000;     // a message not taken by then cancels the stream
  size_t message_bytes = 256 << 10;     // groups packed into one message, up to about this
};

class WatchHub {
 public:
  WatchHub(nokv_db* db, WatchOptions options);
  ~WatchHub() { Stop(); }
  // Stops the dispatcher (it calls the engine: stop it before the database
  // closes). REQUIRES: every Watch call is over (the server is down).
  void Stop();

  grpc::ServerWriteReactor<nokv::v1::WatchResponse>* Start(grpc::CallbackServerContext* ctx,
                                                            const nokv::v1::WatchRequest* req);
  // Ends every open watch with status (a graceful shutdown: UNAVAILABLE, so
  // clients resume elsewhere from their last commit_ts + 1).
  void EndAll(const grpc::Status& status);

  size_t open();
  uint64_t groups_sent() const { return groups_sent_.load(); }
  uint64_t events_sent() const { return events_sent_.load(); }
  uint64_t stalled() const { return stalled_.load(); }  // cancelled for not reading

 private:
  class Stream;
  void Dispatch();
  void Remove(Stream* s);

  nokv_db* db_;
  WatchOptions options_;
  std::mutex mu_;
  std::unordered_set<std::shared_ptr<Stream>> streams_;
  bool stop_ = false;
  std::atomic<uint64_t> groups_sent_{0}, events_sent_{0}, stalled_{0};
  std::thread dispatcher_;
};

}  // namespace nokv::service

#endif  // NOKV_SERVICE_WATCH_STREAM_H
