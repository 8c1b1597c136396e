// Moving an engine's state between the nodes of a cluster (docs/replication.md).
//
// A replica further behind than the log its leader kept is sent a snapshot: a
// small record (repl/fsm.h) naming the node that took it. The data itself
// moves apart, never through libraft's in-memory buffers: the replica fetches a
// checkpoint of that node's engine over gRPC (FetchState), file by file in
// chunks that each carry an XXH3-64 checksum, into DATA_DIR/raft/fetch, checks
// every file whole, syncs it, and marks it complete. The server then restarts
// in-process: before the engine opens, the fetched state replaces it
// (InstallFetchedState, each step a rename, so a crash at any point resumes or
// repeats it). The snapshot, sent again, then restores at once: the engine
// holds it. The checkpoint may be newer than the snapshot; the entries after
// the snapshot are then skipped as applied (their timestamps are held).
#ifndef NOKV_SERVICE_STATE_TRANSFER_H
#define NOKV_SERVICE_STATE_TRANSFER_H

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "nokv/nokv.h"
#include "nokv/v1/kv.pb.h"
#include "repl/node.h"

namespace nokv::service {

// The FetchState RPC: a checkpoint of db made under scratch_dir (removed
// after), streamed to out.
grpc::Status ServeState(nokv_db* db, const std::string& scratch_dir, grpc::ServerContext* ctx,
                        grpc::ServerWriter<nokv::v1::StateChunk>* out);

// Fetches the state a snapshot names, on a thread of its own; when it is
// complete on disk, calls installed() (which restarts the server).
class StateFetcher {
 public:
  // token: the bearer token to present (empty: none).
  StateFetcher(std::string raft_dir, std::string token, std::function<void()> installed);
  ~StateFetcher();  // cancels a fetch under way and waits for it

  // nokv_repl_options.fetch, with ctx this fetcher: starts a fetch unless one
  // runs or has completed.
  static void Hook(void* ctx, const nokv_repl_snapshot_info* info);

  // Waits for a fetch under way to end; whether a fetched state waits to be
  // installed (then installed() was called).
  bool WaitIdle();

 private:
  void Run(std::string origin, uint64_t origin_id);
  // Receives the checkpoint into dir; empty if whole and synced, else why not.
  std::string Receive(const std::string& origin, const std::string& dir);

  const std::string raft_dir_;
  const std::string token_;
  const std::function<void()> installed_;
  std::mutex mu_;
  std::condition_variable idle_;
  bool running_ = false;  // a fetch under way
  bool complete_ = false; // fetched: waiting for the restart
  bool stopping_ = false;
  grpc::ClientContext* call_ = nullptr;  // the call under way, to cancel
  std::thread thread_;
};

// Where a fetched state waits, complete, for the restart.
std::string FetchedStateDir(const std::string& raft_dir);

// Before the engine at engine_dir opens: if raft_dir holds a complete fetched
// state, it becomes the engine (the old one is removed: the state that
// replaces it is newer, checked whole). *installed says whether it did. Empty
// if fine, else what failed.
std::string InstallFetchedState(const std::string& raft_dir, const std::string& engine_dir,
                                bool* installed);

}  // namespace nokv::service

#endif  // NOKV_SERVICE_STATE_TRANSFER_H
