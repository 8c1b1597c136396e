#include "service/kv_service.h"
#include "service/metrics.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/health_check_service_interface.h>

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "service/cluster.h"
#include "service/reflection.h"
#include "service/scan_wire.h"
#include "service/state_transfer.h"
#include "service/status.h"

namespace nokv::service {

namespace {

grpc::Status EngineError(int rc) { return ToGrpcStatus(rc, nokv_errmsg()); }

grpc::Status RequireKey(const std::string& key) {
  if (key.empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty key");
  return grpc::Status::OK;
}

// The gRPC names of the engine's counters (core/include/nokv/stats.h).
#define NOKV_COUNTERS(X)                                                                    \
  X(last_commit_ts) X(live_snapshots) X(oldest_snapshot_ts) X(history_horizon)              \
  X(txns_active) X(txn_commits) X(txn_conflicts) X(txn_tracked_keys)                        \
  X(txn_tracking_overflows) X(cond_writes) X(cond_failures) X(cond_rejudged) X(ttl_expired) \
  X(range_deletes) X(range_tombstones) X(range_dropped)                                     \
  X(memtable_entries) X(memtable_bytes) X(memtable_limit_bytes)   \
  X(puts) X(deletes) X(batches) X(write_groups)                                             \
  X(wal_syncs) X(wal_bytes_written) X(wal_segments) X(wal_segment_bytes)                    \
  X(gets) X(get_hits) X(iterators_created) X(recovered_records)     \
  X(recovered_bytes) X(torn_tail_truncations) X(torn_tail_bytes) X(immutable_memtables)     \
  X(user_bytes_written) X(write_stalls) X(write_stall_micros) X(write_slowdowns) X(flushes) \
  X(flush_bytes_written) X(compactions) X(trivial_moves) X(subcompactions) X(compaction_bytes_read)           \
  X(compaction_bytes_written) X(pending_compaction_bytes) X(tables) X(table_bytes)          \
  X(tables_deleted) X(files_pending_delete) X(manifest_rewrites) X(disk_bytes_written) X(get_table_probes)          \
  X(block_cache_hits) X(block_cache_misses) X(block_cache_bytes) X(block_reads)             \
  X(bloom_checks) X(bloom_negatives) X(checksum_errors) X(orphan_tables_removed)            \
  X(vlog_segments) X(vlog_bytes) X(vlog_garbage_bytes) X(vlog_garbage_permille)             \
  X(vlog_bytes_written) X(vlog_reads) X(vlog_prefetches) X(gc_runs)                         \
  X(gc_segments_collected) X(gc_bytes_rewritten) X(gc_bytes_reclaimed)                      \
  X(gc_idle_checks) X(gc_segments_measured)                                                 \
  X(vlog_validated_bytes) X(vlog_torn_bytes) X(wal_records_dangling)                       \
  X(wal_segments_replayed) X(tables_checked) X(vlog_segments_removed) X(recovery_micros)    \
  X(recovery_manifest_micros) X(recovery_table_check_micros) X(recovery_vlog_micros)        \
  X(recovery_wal_micros)                                                                     \
  X(recovery_flush_micros) X(recovery_cleanup_micros) X(writes_refused_full)                \
  X(bg_full_retries) X(hot_reads_sampled) X(hot_writes_sampled) X(hot_read_candidates)      \
  X(hot_write_candidates) X(hot_tracker_bytes) X(hot_writes_throttled)         \
  X(hot_cache_hits) X(hot_cache_fills) X(hot_cache_bytes)

}  // namespace

grpc::Status CheckScanBounds(const std::string& start, const std::string& end,
                             const std::string& prefix) {
  if (!prefix.empty() && (!start.empty() || !end.empty())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "scan takes a prefix or a start/end range, not both");
  }
  if (!end.empty() && end < start) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "scan end is before start");
  }
  return grpc::Status::OK;
}

bool FillScanChunk(nokv_iter* iter, google::protobuf::RepeatedPtrField<nokv::v1::KeyValue>* kvs,
                   size_t chunk_bytes, uint32_t limit, uint32_t* sent) {
  auto add = [kvs](const void* k, size_t kl, const void* v, size_t vl, uint64_t ts) {
    nokv::v1::KeyValue* kv = kvs->Add();
    kv->set_key(static_cast<const char*>(k), kl);
    kv->set_value(static_cast<const char*>(v), vl);
    kv->set_commit_ts(ts);
    return true;
  };
  return TakeScanChunk(iter, chunk_bytes, limit, sent, add) == ChunkEnd::kFull;
}

size_t NextChunkBytes(nokv_iter* iter, size_t chunk_bytes) {
  if (!nokv_iter_valid(iter)) return chunk_bytes;
  size_t kl, vl;
  nokv_iter_key(iter, &kl);
  nokv_iter_value(iter, &vl);
  return std::max(chunk_bytes, kl + vl);
}

KvService::KvService(nokv_db* db, ServiceOptions options)
    : db_(db),
      options_(std::move(options)),
      workers_(std::max(1, options_.stream_workers)),
      watches_(db, options_.watch),
      forwarder_(options_.scan_idle_timeout_ms) {
  reaper_ = std::thread([this] { ReapStreams(); });
}

KvService::~KvService() {
  {
    std::lock_guard<std::mutex> l(streams_mu_);
    stopping_ = true;
  }
  streams_cv_.notify_all();
  reaper_.join();
}

namespace {

grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* ctx, grpc::Status s) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(std::move(s));
  return r;
}

// A write proposed to the Raft group, until it is applied here (or fails).
template <typename Response>
struct ReplWrite {
  nokv_repl_node* node;
  grpc::CallbackServerContext* ctx;
  grpc::ServerUnaryReactor* reactor;
  Response* resp;
  std::function<bool(grpc::CallbackServerContext*, grpc::ServerUnaryReactor*)> forward;

  static void Done(void* arg, const nokv_repl_outcome* o) {
    auto* w = static_cast<ReplWrite*>(arg);
    if (o->rc == NOKV_REPL_ENOTLEADER && w->forward(w->ctx, w->reactor)) {
      delete w;
      return;
    }
    grpc::Status s = grpc::Status::OK;
    if (o->rc == NOKV_OK) {
      w->resp->set_commit_ts(o->commit_ts);
    } else {
      s = ReplicationStatus(w->node, w->ctx, o->rc);
    }
    grpc::ServerUnaryReactor* r = w->reactor;
    delete w;
    r->Finish(std::move(s));
  }
};

// A write queued with nokv_write_async, until its completion.
template <typename Response>
struct PendingWrite {
  grpc::ServerUnaryReactor* reactor;
  nokv_batch* batch;
  Response* resp;

  static void Done(void* arg, int rc, uint64_t ts, const char* msg) {
    auto* w = static_cast<PendingWrite*>(arg);
    grpc::ServerUnaryReactor* r = w->reactor;
    if (rc == NOKV_OK) w->resp->set_commit_ts(ts);
    grpc::Status s = rc == NOKV_OK ? grpc::Status::OK : ToGrpcStatus(rc, msg);
    nokv_batch_free(w->batch);
    delete w;
    r->Finish(std::move(s));
  }
};

}  // namespace

// A linearizable Get in a cluster, waiting for its read point.
struct KvService::ReplRead {
  KvService* service;
  grpc::CallbackServerContext* ctx;
  grpc::ServerUnaryReactor* reactor;
  const nokv::v1::GetRequest* req;
  nokv::v1::GetResponse* resp;

  // On the node's thread. The read runs right here: an engine Get is mostly
  // memory (a block read at worst), far below a heartbeat interval, while
  // handing each read to a worker cost more CPU than the read (a fifth of the
  // throughput of linearizable Gets).
  static void Done(void* arg, const nokv_repl_outcome* o) {
    auto* g = static_cast<ReplRead*>(arg);
    if (o->rc == NOKV_REPL_ENOTLEADER &&
        g->service->Forward(g->ctx, g->reactor,
                            Forwarder::To(&Forwarder::Async::Get, g->req, g->resp))) {
      delete g;
      return;
    }
    if (o->rc != NOKV_OK) {
      g->reactor->Finish(ReplicationStatus(g->service->options_.repl, g->ctx, o->rc));
      delete g;
      return;
    }
    g->reactor->Finish(g->service->GetLocal(g->req, g->resp));
    delete g;
  }
};

grpc::ServerUnaryReactor* KvService::Get(grpc::CallbackServerContext* ctx,
                                         const nokv::v1::GetRequest* req,
                                         nokv::v1::GetResponse* resp) {
  if (auto s = Authorize(ctx); !s.ok()) return Finished(ctx, s);
  if (auto s = RequireKey(req->key()); !s.ok()) return Finished(ctx, s);
  if (options_.repl != nullptr && req->read_ts() == 0 && !req->serializable()) {
    auto* g = new ReplRead{this, ctx, ctx->DefaultReactor(), req, resp};
    grpc::ServerUnaryReactor* reactor = g->reactor;  // g may be gone once the call returns
    nokv_repl_read_index(options_.repl, &ReplRead::Done, g);
    return reactor;
  }
  return Finished(ctx, GetLocal(req, resp));
}

std::string KvService::ForwardTarget(const grpc::CallbackServerContext* ctx) {
  if (options_.repl == nullptr || !options_.forward || Forwarder::Forwarded(ctx)) return "";
  char addr[NOKV_REPL_ADDR_MAX];
  if (nokv_repl_is_leader(options_.repl) || nokv_repl_leader(options_.repl, addr, sizeof addr) == 0) {
    return "";
  }
  return addr;
}

bool KvService::Forward(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor,
                        const Forwarder::Invoke& invoke) {
  std::string addr = ForwardTarget(ctx);
  if (addr.empty()) return false;
  forwarder_.Call(addr, ctx, invoke, [reactor](grpc::Status s) { reactor->Finish(std::move(s)); });
  return true;
}

grpc::Status KvService::GetLocal(const nokv::v1::GetRequest* req, nokv::v1::GetResponse* resp) {
  nokv_read_options ro;
  nokv_read_options_init(&ro);
  // With no read_ts the engine reads at the latest timestamp it can serve (never
  // stale); it reports the timestamp either way.
  ro.read_ts = req->read_ts();
  uint64_t served = 0, expires = 0;
  ro.served_ts = &served;
  ro.expires_at_ms = &expires;
  void* val = nullptr;
  size_t len = 0;
  uint64_t ts = 0;
  int rc = nokv_get(db_, &ro, req->key().data(), req->key().size(), &val, &len, &ts);
  resp->set_read_ts(served);
  if (rc == NOKV_ENOTFOUND) {
    resp->set_found(false);
    return grpc::Status::OK;
  }
  if (rc != NOKV_OK) return EngineError(rc);
  resp->set_found(true);
  resp->set_value(static_cast<const char*>(val), len);
  resp->set_commit_ts(ts);
  if (expires != 0) {
    resp->set_expires_at_ms(expires);
    uint64_t now = nokv_wall_clock_ms();
    resp->set_ttl_remaining_ms(expires > now ? expires - now : 1);  // read alive: at least 1
  }
  nokv_free(val);
  return grpc::Status::OK;
}

template <typename Response>
grpc::ServerUnaryReactor* KvService::WriteAsync(grpc::CallbackServerContext* ctx,
                                                nokv_batch* batch, int built, bool sync,
                                                Response* resp, Forwarder::Invoke forward) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  int rc = built;
  if (rc == NOKV_OK && options_.repl != nullptr) {
    // Through the group's log (durable there: sync changes nothing).
    raft_buffer entry;
    rc = nokv_repl_entry(batch, &entry);
    nokv_batch_free(batch);
    batch = nullptr;
    if (rc == NOKV_OK) {
      auto* w = new ReplWrite<Response>{
          options_.repl, ctx, reactor, resp,
          [this, forward = std::move(forward)](grpc::CallbackServerContext* c,
                                                grpc::ServerUnaryReactor* r) {
            return Forward(c, r, forward);
          }};
      nokv_repl_propose(options_.repl, entry, &ReplWrite<Response>::Done, w);
      return reactor;
    }
  } else if (rc == NOKV_OK) {
    auto* w = new PendingWrite<Response>{reactor, batch, resp};
    nokv_write_options wo;
    nokv_write_options_init(&wo);
    wo.sync = options_.force_sync || sync;
    // On NOKV_OK the completion owns w and the batch (and may already have run).
    rc = nokv_write_async(db_, &wo, batch, &PendingWrite<Response>::Done, w);
    if (rc == NOKV_OK) return reactor;
    delete w;
  }
  grpc::Status s = EngineError(rc);
  nokv_batch_free(batch);
  reactor->Finish(std::move(s));
  return reactor;
}

grpc::ServerUnaryReactor* KvService::Put(grpc::CallbackServerContext* ctx,
                                         const nokv::v1::PutRequest* req,
                                         nokv::v1::PutResponse* resp) {
  if (auto s = Authorize(ctx); !s.ok()) return Finished(ctx, s);
  if (auto s = RequireKey(req->key()); !s.ok()) return Finished(ctx, s);
  nokv_batch* b = nullptr;
  int rc = nokv_batch_new(&b);
  if (rc == NOKV_OK) {
    rc = nokv_batch_put_ttl(b, req->key().data(), req->key().size(), req->value().data(),
                            req->value().size(), req->ttl_ms());
  }
  return WriteAsync(ctx, b, rc, req->sync(), resp,
                    Forwarder::To(&Forwarder::Async::Put, req, resp));
}

grpc::ServerUnaryReactor* KvService::Delete(grpc::CallbackServerContext* ctx,
                                            const nokv::v1::DeleteRequest* req,
                                            nokv::v1::DeleteResponse* resp) {
  if (auto s = Authorize(ctx); !s.ok()) return Finished(ctx, s);
  if (auto s = RequireKey(req->key()); !s.ok()) return Finished(ctx, s);
  nokv_batch* b = nullptr;
  int rc = nokv_batch_new(&b);
  if (rc == NOKV_OK) rc = nokv_batch_delete(b, req->key().data(), req->key().size());
  return WriteAsync(ctx, b, rc, req->sync(), resp,
                    Forwarder::To(&Forwarder::Async::Delete, req, resp));
}

grpc::ServerWriteReactor<nokv::v1::WatchResponse>* KvService::Watch(
    grpc::CallbackServerContext* ctx, const nokv::v1::WatchRequest* req) {
  if (auto s = Authorize(ctx); !s.ok()) {
    struct Refused final : grpc::ServerWriteReactor<nokv::v1::WatchResponse> {
      explicit Refused(grpc::Status st) { Finish(std::move(st)); }
      void OnDone() override { delete this; }
    };
    return new Refused(s);
  }
  return watches_.Start(ctx, req);
}

void KvService::EndWatches() {
  watches_.EndAll(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                               "the server is shutting down; watch again from the last "
                               "commit_ts received + 1"));
}

grpc::ServerUnaryReactor* KvService::DeleteRange(grpc::CallbackServerContext* ctx,
                                                 const nokv::v1::DeleteRangeRequest* req,
                                                 nokv::v1::DeleteRangeResponse* resp) {
  if (auto s = Authorize(ctx); !s.ok()) return Finished(ctx, s);
  if (req->start() >= req->end()) {
    return Finished(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                      "empty range: start must sort before end"));
  }
  nokv_batch* b = nullptr;
  int rc = nokv_batch_new(&b);
  if (rc == NOKV_OK) {
    rc = nokv_batch_delete_range(b, req->start().data(), req->start().size(), req->end().data(),
                                 req->end().size());
  }
  return WriteAsync(ctx, b, rc, req->sync(), resp,
                    Forwarder::To(&Forwarder::Async::DeleteRange, req, resp));
}

// A conditional Write proposed to the Raft group, until it is applied here.
struct KvService::ReplCondWrite {
  KvService* service;
  grpc::CallbackServerContext* ctx;
  grpc::ServerUnaryReactor* reactor;
  const nokv::v1::WriteRequest* req;
  nokv::v1::WriteResponse* resp;

  // On the node's thread; a failed condition's key is read on a worker.
  static void Done(void* arg, const nokv_repl_outcome* o) {
    auto* w = static_cast<ReplCondWrite*>(arg);
    if (o->rc == NOKV_REPL_ENOTLEADER &&
        w->service->Forward(w->ctx, w->reactor,
                            Forwarder::To(&Forwarder::Async::Write, w->req, w->resp))) {
      delete w;
      return;
    }
    if (o->rc == NOKV_ECONDITION) {
      uint64_t ts = o->commit_ts;
      size_t failed = o->failed;
      w->service->workers_.Submit([w, ts, failed] { w->Failed(ts, failed); });
      return;
    }
    grpc::Status s = grpc::Status::OK;
    if (o->rc == NOKV_OK) {
      w->resp->set_succeeded(true);
      w->resp->set_commit_ts(o->commit_ts);
      w->resp->set_read_ts(o->commit_ts - 1);
    } else {
      s = ReplicationStatus(w->service->options_.repl, w->ctx, o->rc);
    }
    grpc::ServerUnaryReactor* r = w->reactor;
    delete w;
    r->Finish(std::move(s));
  }

  // The conditions were judged against the state just below the entry's
  // timestamp, on every replica alike: what the failed one found is read
  // back from there.
  void Failed(uint64_t ts, size_t failed) {
    resp->set_succeeded(false);
    resp->set_failed_condition(static_cast<uint32_t>(failed));
    resp->set_read_ts(ts - 1);
    if (failed < static_cast<size_t>(req->conditions_size())) {
      const std::string& key = req->conditions(static_cast<int>(failed)).key();
      nokv_read_options ro;
      nokv_read_options_init(&ro);
      ro.read_ts = ts - 1;
      void* v = nullptr;
      size_t n = 0;
      uint64_t found_ts = 0;
      if (nokv_get(service->db_, &ro, key.data(), key.size(), &v, &n, &found_ts) == NOKV_OK) {
        resp->set_found(true);
        resp->set_found_commit_ts(found_ts);
        nokv_free(v);
      }
    }
    grpc::ServerUnaryReactor* r = reactor;
    delete this;
    r->Finish(grpc::Status::OK);
  }
};

grpc::ServerUnaryReactor* KvService::Write(grpc::CallbackServerContext* ctx,
                                           const nokv::v1::WriteRequest* req,
                                           nokv::v1::WriteResponse* resp) {
  if (auto s = Authorize(ctx); !s.ok()) return Finished(ctx, s);
  std::vector<nokv_condition> conds(req->conditions_size());
  for (int i = 0; i < req->conditions_size(); i++) {
    const nokv::v1::Condition& c = req->conditions(i);
    nokv_condition& out = conds[i];
    if (auto s = RequireKey(c.key()); !s.ok()) {
      return Finished(ctx, grpc::Status(s.error_code(),
                                        "condition " + std::to_string(i) + ": empty key"));
    }
    out.key = c.key().data();
    out.klen = c.key().size();
    switch (c.check_case()) {
      case nokv::v1::Condition::kAbsent: out.op = NOKV_COND_ABSENT; break;
      case nokv::v1::Condition::kPresent: out.op = NOKV_COND_PRESENT; break;
      case nokv::v1::Condition::kValueEquals:
        out.op = NOKV_COND_VALUE_EQUALS;
        out.value = c.value_equals().data();
        out.vlen = c.value_equals().size();
        break;
      case nokv::v1::Condition::kCommitTsEquals:
        out.op = NOKV_COND_TS_EQUALS;
        out.commit_ts = c.commit_ts_equals();
        break;
      case nokv::v1::Condition::kCommitTsBelow:
        out.op = NOKV_COND_TS_BELOW;
        out.commit_ts = c.commit_ts_below();
        break;
      default:
        return Finished(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          "condition " + std::to_string(i) + " checks nothing"));
    }
    // absent: false and present: false are set oneofs that assert nothing.
    if ((c.check_case() == nokv::v1::Condition::kAbsent && !c.absent()) ||
        (c.check_case() == nokv::v1::Condition::kPresent && !c.present())) {
      return Finished(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        "condition " + std::to_string(i) + " is set to false"));
    }
  }
  nokv_batch* b = nullptr;
  int rc = nokv_batch_new(&b);
  for (int i = 0; rc == NOKV_OK && i < req->mutations_size(); i++) {
    const nokv::v1::Mutation& m = req->mutations(i);
    bool range = m.op_case() == nokv::v1::Mutation::kDeleteRangeEnd;
    grpc::Status bad = range ? grpc::Status::OK : RequireKey(m.key());
    if (!bad.ok()) {
      bad = grpc::Status(bad.error_code(), "mutation " + std::to_string(i) + ": empty key");
    } else if (range) {
      if (m.key() >= m.delete_range_end()) {
        bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                           "mutation " + std::to_string(i) +
                               ": empty range: key must sort before delete_range_end");
      } else {
        rc = nokv_batch_delete_range(b, m.key().data(), m.key().size(),
                                     m.delete_range_end().data(), m.delete_range_end().size());
      }
    } else if (m.op_case() == nokv::v1::Mutation::kPut) {
      rc = nokv_batch_put_ttl(b, m.key().data(), m.key().size(), m.put().data(), m.put().size(),
                              m.ttl_ms());
    } else if (m.op_case() == nokv::v1::Mutation::kDelete && m.delete_()) {
      rc = nokv_batch_delete(b, m.key().data(), m.key().size());
    } else {
      bad = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "mutation " + std::to_string(i) + " is neither a put nor a delete");
    }
    if (!bad.ok()) {
      nokv_batch_free(b);
      return Finished(ctx, bad);
    }
  }
  if (rc != NOKV_OK) {
    nokv_batch_free(b);
    return Finished(ctx, EngineError(rc));
  }
  if (options_.repl != nullptr) {
    // Judged by every replica as it applies the entry (repl/fsm.h).
    raft_buffer entry;
    rc = nokv_repl_cond_entry(conds.data(), conds.size(), b, &entry);
    nokv_batch_free(b);
    if (rc == NOKV_EINVAL) {
      return Finished(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        "a replicated Write takes at most " +
                                            std::to_string(NOKV_REPL_MAX_CONDS) + " conditions"));
    }
    if (rc != NOKV_OK) return Finished(ctx, EngineError(rc));
    auto* w = new ReplCondWrite{this, ctx, ctx->DefaultReactor(), req, resp};
    grpc::ServerUnaryReactor* reactor = w->reactor;  // w may be gone once the call returns
    nokv_repl_propose(options_.repl, entry, &ReplCondWrite::Done, w);
    return reactor;
  }
  // Judged here (reads, as Get's), committed by the engine's commit thread,
  // whose completion finishes the call. Only if a write to a condition's key
  // lands between the two is it judged again, by nokv_write_if on a stream
  // worker (it waits, and retries itself). The request outlives the call's
  // Finish, which comes last.
  auto* w = new PendingCondWrite{this, ctx->DefaultReactor(), resp, b, std::move(conds),
                                 options_.force_sync || req->sync()};
  grpc::ServerUnaryReactor* reactor = w->reactor;  // w may be gone once the call returns
  nokv_write_options wo;
  nokv_write_options_init(&wo);
  wo.sync = w->sync;
  rc = nokv_write_if_async(db_, &wo, w->conds.data(), w->conds.size(), b,
                           &PendingCondWrite::Done, w);
  if (rc != NOKV_OK) {  // refused up front: done was not called
    nokv_batch_free(b);
    delete w;
    reactor->Finish(EngineError(rc));
  }
  return reactor;
}

void KvService::PendingCondWrite::Answer(int rc, uint64_t ts, const nokv_cond_result& r,
                                         const char* msg) {
  resp->set_read_ts(r.read_ts);
  if (rc == NOKV_OK) {
    resp->set_succeeded(true);
    resp->set_commit_ts(ts);
  } else if (rc == NOKV_ECONDITION) {
    resp->set_succeeded(false);
    resp->set_failed_condition(static_cast<uint32_t>(r.failed));
    resp->set_found(r.found);
    resp->set_found_commit_ts(r.found_ts);
    rc = NOKV_OK;
  }
  grpc::Status status = rc == NOKV_OK ? grpc::Status::OK : ToGrpcStatus(rc, msg);
  grpc::ServerUnaryReactor* r2 = reactor;
  nokv_batch_free(batch);
  delete this;
  r2->Finish(std::move(status));
}

void KvService::PendingCondWrite::Done(void* arg, int rc, uint64_t ts, const nokv_cond_result* r,
                                       const char* msg) {
  auto* w = static_cast<PendingCondWrite*>(arg);
  if (rc != NOKV_ECONFLICT) return w->Answer(rc, ts, *r, msg);
  w->service->workers_.Submit([w] {
    nokv_write_options wo;
    nokv_write_options_init(&wo);
    wo.sync = w->sync;
    uint64_t ts2 = 0;
    nokv_cond_result r2;
    int rc2 = nokv_write_if(w->service->db_, &wo, w->conds.data(), w->conds.size(), w->batch,
                            &ts2, &r2);
    w->Answer(rc2, ts2, r2, nokv_errmsg());
  });
}

// A membership change, until the leader's node answers it.
struct KvService::ReplChange {
  KvService* service;
  grpc::CallbackServerContext* ctx;
  grpc::ServerUnaryReactor* reactor;
  const nokv::v1::ClusterRequest* req;
  nokv::v1::ClusterResponse* resp;

  static void Done(void* arg, const nokv_repl_outcome* o) {
    auto* c = static_cast<ReplChange*>(arg);
    nokv_repl_node* node = c->service->options_.repl;
    if (o->rc == NOKV_REPL_ENOTLEADER &&
        c->service->Forward(c->ctx, c->reactor,
                            Forwarder::To(&Forwarder::Async::Cluster, c->req, c->resp))) {
      delete c;
      return;
    }
    grpc::Status s = grpc::Status::OK;
    if (o->rc == NOKV_OK) {
      // The status is asked of the node's own thread: not from this callback,
      // which runs there.
      c->service->workers_.Submit([c] {
        nokv_repl_status st;
        if (nokv_repl_node_status(c->service->options_.repl, &st) == NOKV_OK) {
          FillClusterStatus(st, c->resp->mutable_status());
        }
        c->reactor->Finish(grpc::Status::OK);
        delete c;
      });
      return;
    }
    if (o->msg != nullptr && o->rc != NOKV_REPL_ENOTLEADER) {
      s = ToGrpcStatus(o->rc, o->msg);
    } else {
      s = ReplicationStatus(node, c->ctx, o->rc);
    }
    grpc::ServerUnaryReactor* r = c->reactor;
    delete c;
    r->Finish(std::move(s));
  }
};

grpc::ServerUnaryReactor* KvService::Cluster(grpc::CallbackServerContext* ctx,
                                             const nokv::v1::ClusterRequest* req,
                                             nokv::v1::ClusterResponse* resp) {
  if (auto s = Authorize(ctx); !s.ok()) return Finished(ctx, s);
  if (options_.repl == nullptr) {
    return Finished(ctx, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                      "this server is not in a cluster (no --node_id)"));
  }
  nokv_repl_change_kind kind;
  uint64_t id = 0;
  std::string address;
  switch (req->change_case()) {
    case nokv::v1::ClusterRequest::kAdd:
      kind = NOKV_REPL_ADD;
      id = req->add().id();
      address = req->add().raft_address();
      if (id == 0 || address.empty()) {
        return Finished(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          "add takes the node's id (not 0) and raft_address"));
      }
      break;
    case nokv::v1::ClusterRequest::kRemove:
      kind = NOKV_REPL_REMOVE;
      id = req->remove();
      break;
    case nokv::v1::ClusterRequest::kTransfer:
      kind = NOKV_REPL_TRANSFER;
      id = req->transfer();
      break;
    default:
      return Finished(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        "a ClusterRequest names add, remove or transfer"));
  }
  auto* c = new ReplChange{this, ctx, ctx->DefaultReactor(), req, resp};
  grpc::ServerUnaryReactor* reactor = c->reactor;  // c may be gone once the call returns
  nokv_repl_change(options_.repl, kind, id, address.empty() ? nullptr : address.c_str(),
                   &ReplChange::Done, c);
  return reactor;
}

grpc::Status KvService::Stats(grpc::ServerContext* ctx, const nokv::v1::StatsRequest* req,
                              nokv::v1::StatsResponse* resp) {
  if (auto s = Authorize(ctx); !s.ok()) return s;
  nokv_statistics s;
  int rc = nokv_stats(db_, &s);
  if (rc != NOKV_OK) return EngineError(rc);
  size_t want = req->hot_keys() == 0 ? 16 : std::min<size_t>(req->hot_keys(), 256);
  std::vector<nokv_hot_key> hot(want);
  for (nokv_hot_kind kind : {NOKV_HOT_READS, NOKV_HOT_WRITES}) {
    size_t n = 0;
    if ((rc = nokv_hot_keys(db_, kind, want, hot.data(), &n)) != NOKV_OK) return EngineError(rc);
    auto* out = kind == NOKV_HOT_READS ? resp->mutable_hot_read_keys()
                                       : resp->mutable_hot_write_keys();
    for (size_t i = 0; i < n; i++) {
      nokv::v1::HotKey* k = out->Add();
      k->set_key(hot[i].key, std::min<size_t>(hot[i].klen, NOKV_HOT_KEY_MAX));
      k->set_key_size(hot[i].klen);
      k->set_per_sec(hot[i].per_sec);
    }
  }
  auto& counters = *resp->mutable_counters();
#define NOKV_SET_COUNTER(name) counters[#name] = s.name;
  NOKV_COUNTERS(NOKV_SET_COUNTER)
#undef NOKV_SET_COUNTER
  for (int l = 0; l < NOKV_NUM_LEVELS; l++) {
    counters["level" + std::to_string(l) + "_files"] = s.level_files[l];
    counters["level" + std::to_string(l) + "_bytes"] = s.level_bytes[l];
  }
  counters["txns_open"] = open_txns();
  counters["scans_open"] = open_scans();
  counters["watches_open"] = watches_.open();
  counters["watch_groups_sent"] = watches_.groups_sent();
  counters["watch_events_sent"] = watches_.events_sent();
  counters["watches_stalled"] = watches_.stalled();
  counters["scans_waiting"] = scans_waiting();
  counters["scan_buffered_bytes"] = scan_buffered_bytes();
  counters["txn_buffered_bytes"] = txn_buffered_bytes_.load();
  counters["streams_expired"] = streams_expired_.load();
  counters["streams_refused"] = streams_refused_.load();
  resp->set_last_commit_ts(s.last_commit_ts);
  resp->set_data_dir(options_.data_dir);
  if (options_.repl != nullptr) {
    nokv_repl_status st;
    if (nokv_repl_node_status(options_.repl, &st) == NOKV_OK) {
      FillClusterStatus(st, resp->mutable_cluster());
    }
  }
  return grpc::Status::OK;
}

namespace {

using Clock = std::chrono::steady_clock;

// A Scan refused before it began.
class RefusedScan final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RefusedScan(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

int64_t Nanos(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

grpc::Status KvService::FetchState(grpc::ServerContext* ctx, const nokv::v1::FetchStateRequest*,
                                   grpc::ServerWriter<nokv::v1::StateChunk>* out) {
  if (auto s = Authorize(ctx); !s.ok()) return s;
  if (options_.repl == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "this server is not in a cluster (no --node_id)");
  }
  return ServeState(db_, options_.raft_dir, ctx, out);
}

grpc::Status KvService::Checkpoint(grpc::ServerContext* ctx, const nokv::v1::CheckpointRequest* req,
                                   nokv::v1::CheckpointResponse* resp) {
  if (auto s = Authorize(ctx); !s.ok()) return s;
  if (options_.backup_dir.empty()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "checkpoints are off: start the server with --backup_dir");
  }
  std::string name = req->name();
  bool ok = name.empty() || name[0] != '.';
  for (char c : name) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
  }
  if (!ok || name.size() > 200) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "checkpoint name must be letters, digits, '.', '_' or '-' (not starting "
                        "with '.'), at most 200 of them");
  }
  if (name.empty()) name = "checkpoint-" + std::to_string(nokv_last_commit_ts(db_));
  std::string path = options_.backup_dir + "/" + name;
  // One at a time: two with the same name must not both find it absent.
  std::lock_guard<std::mutex> l(checkpoint_mu_);
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, path + " already exists");
  }
  if (mkdir(options_.backup_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        "cannot create " + options_.backup_dir + ": " + strerror(errno));
  }
  uint64_t ts = 0;
  if (int rc = nokv_checkpoint(db_, path.c_str(), &ts); rc != NOKV_OK) return EngineError(rc);
  resp->set_path(path);
  resp->set_commit_ts(ts);
  return grpc::Status::OK;
}

grpc::Status KvService::Compact(grpc::ServerContext* ctx, const nokv::v1::CompactRequest* req,
                                nokv::v1::CompactResponse* resp) {
  if (auto s = Authorize(ctx); !s.ok()) return s;
  if (req->gc_ratio() < 0 || req->gc_ratio() >= 1) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "gc_ratio must be in [0, 1)");
  }
  std::lock_guard<std::mutex> l(compact_mu_);
  nokv_statistics before, after;
  if (int rc = nokv_stats(db_, &before); rc != NOKV_OK) return EngineError(rc);
  if (int rc = nokv_compact(db_); rc != NOKV_OK) return EngineError(rc);
  if (!req->skip_gc()) {
    if (int rc = nokv_vlog_gc(db_, req->gc_ratio(), nullptr); rc != NOKV_OK) {
      return EngineError(rc);
    }
  }
  if (int rc = nokv_stats(db_, &after); rc != NOKV_OK) return EngineError(rc);
  // Background GC may have collected some first: every collection counts.
  resp->set_segments_collected(
      static_cast<uint32_t>(after.gc_segments_collected - before.gc_segments_collected));
  resp->set_disk_bytes_before(before.table_bytes + before.vlog_bytes);
  resp->set_disk_bytes_after(after.table_bytes + after.vlog_bytes);
  return grpc::Status::OK;
}

// One Scan stream: a snapshot, an iterator over it, and one outstanding write.
class KvService::ScanReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // REQUIRES: the service's streams_mu_ held (OnDone takes it to unregister).
  ScanReactor(KvService* service, grpc::CallbackServerContext* ctx,
              const nokv::v1::ScanRequest* req)
      : service_(service),
        ctx_(ctx),
        started_(Clock::now()),
        start_(req->start()),
        end_(req->end()),
        prefix_(req->prefix()),
        asked_ts_(req->read_ts()),
        limit_(req->limit()),
        chunk_bytes_(std::max<size_t>(1, std::min(service->options_.scan_first_chunk_bytes,
                                                  service->options_.scan_chunk_bytes))) {
    if (service->options_.repl != nullptr && asked_ts_ == 0 && !req->serializable()) {
      nokv_repl_read_index(service->options_.repl, &ScanReactor::ReadPoint, this);
    } else {
      service_->workers_.Submit([this] { Start(); });
    }
  }

  // In a cluster, on the node's thread: the scan starts once the leader has
  // applied everything committed before it arrived.
  static void ReadPoint(void* arg, const nokv_repl_outcome* o) {
    auto* scan = static_cast<ScanReactor*>(arg);
    if (o->rc != NOKV_OK) {
      scan->Finish(ReplicationStatus(scan->service_->options_.repl, scan->ctx_, o->rc));
      return;
    }
    scan->service_->workers_.Submit([scan] { scan->Start(); });
  }

  void OnWriteDone(bool ok) override {
    write_started_ns_ = 0;
    ReleaseBuffer();
    if (!ok) {  // the client went away (or the reaper cancelled); OnDone follows
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client stopped reading"));
      return;
    }
    // The client keeps up: let its next message be larger.
    chunk_bytes_ =
        std::max<size_t>(1, std::min(chunk_bytes_ * 2, service_->options_.scan_chunk_bytes));
    service_->workers_.Submit([this] { SendNext(); });
  }

  // What the next message will hold at most (read while the scan is queued).
  size_t next_chunk_bytes() const { return wanted_; }
  // On a worker: a queued scan's turn has come.
  void Resume() { SendNext(); }

  // A scan queued for the buffer budget has nothing outstanding, so nothing
  // else would notice the cancel: it finishes here. Otherwise the outstanding
  // write (or the next one) fails and OnWriteDone finishes.
  void OnCancel() override {
    if (service_->UnqueueScan(this)) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "scan cancelled"));
    }
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> l(service_->streams_mu_);
      service_->scans_.erase(this);
    }
    ReleaseBuffer();  // a Finish after a failed fill leaves the reservation
    nokv_iter_close(iter_);
    if (snap_ != nullptr) nokv_snapshot_release(service_->db_, snap_);
    delete this;
  }

  // Called by the reaper (holding streams_mu_, so OnDone cannot run): cancels a
  // scan past its lifetime, or whose client has not taken a message for the
  // idle timeout. Cancelling fails the outstanding write (or the next one).
  void ExpireIfStalled(Clock::time_point now) {
    if (cancelled_) return;
    const ServiceOptions& o = service_->options_;
    int64_t writing_since = write_started_ns_.load();
    bool stalled = writing_since != 0 &&
                   Nanos(now) - writing_since >= int64_t{o.scan_idle_timeout_ms} * 1000000;
    bool too_old = o.max_stream_lifetime_ms != 0 &&
                   now - started_ >= std::chrono::milliseconds(o.max_stream_lifetime_ms);
    if (!stalled && !too_old) return;
    cancelled_ = true;
    service_->streams_expired_++;
    ctx_->TryCancel();
  }

 private:
  // On a worker (opening tables and reading blocks may block): the snapshot and
  // the iterator, then the first chunk.
  void Start() {
    nokv_db* db = service_->db_;
    int rc = nokv_snapshot_create(db, &snap_);
    nokv_read_options ro;
    nokv_read_options_init(&ro);
    if (rc == NOKV_OK) {
      ro.snapshot = snap_;
      if (asked_ts_ != 0 && asked_ts_ < nokv_snapshot_ts(snap_)) {
        ro.snapshot = nullptr;
        ro.read_ts = asked_ts_;
      }
      read_ts_ = ro.snapshot ? nokv_snapshot_ts(snap_) : ro.read_ts;
      rc = prefix_.empty() ? nokv_iter_new(db, &ro, start_.data(), start_.size(), end_.data(),
                                           end_.size(), &iter_)
                           : nokv_iter_new_prefix(db, &ro, prefix_.data(), prefix_.size(), &iter_);
    }
    if (rc != NOKV_OK) {
      Finish(EngineError(rc));
      return;
    }
    nokv_iter_seek_first(iter_);
    SendNext();
  }

  void ReleaseBuffer() {
    if (reserved_ != 0) service_->ReleaseScanBytes(std::exchange(reserved_, 0));
  }

  // On a worker: fills one chunk from the iterator and writes it, or finishes
  // the stream; or, if other scans hold the buffer budget, queues the scan to
  // be resumed (here again) when they release it. Nothing touches the reactor
  // after StartWrite, Finish or queueing: its OnWriteDone, OnDone or resumption
  // may already be running.
  void SendNext() {
    wanted_ = NextChunkBytes(iter_, chunk_bytes_);
    if (!service_->ReserveScanBytes(this, wanted_)) return;
    reserved_ = wanted_;
    ScanChunkEncoder enc(wanted_);
    bool encoded = EncodeScanChunk(iter_, chunk_bytes_, limit_, &sent_, &enc);
    if (int rc = nokv_iter_status(iter_); rc != NOKV_OK) {
      Finish(EngineError(rc));
      return;
    }
    if (enc.pairs() == 0 && chunks_ > 0) {
      Finish(grpc::Status::OK);
      return;
    }
    // The first message is sent even for an empty range: it carries read_ts.
    if (!encoded || !enc.Finish(read_ts_, &resp_)) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "out of memory encoding a scan"));
      return;
    }
    chunks_++;
    service_->scan_chunks_sent_++;
    write_started_ns_ = Nanos(Clock::now());
    StartWrite(&resp_);
  }

  KvService* service_;
  grpc::CallbackServerContext* const ctx_;
  const Clock::time_point started_;
  std::atomic<int64_t> write_started_ns_{0};  // of the outstanding write; 0: none
  bool cancelled_ = false;                    // under the service's streams_mu_
  const std::string start_, end_, prefix_;
  const uint64_t asked_ts_;
  uint32_t limit_;
  uint32_t sent_ = 0;
  uint64_t chunks_ = 0;
  uint64_t read_ts_ = 0;
  size_t chunk_bytes_;    // key+value bytes the next message may carry
  size_t wanted_ = 0;     // what the next message will hold at most (a pair may pass chunk_bytes_)
  size_t reserved_ = 0;   // of scan_buffer_bytes, held by the outstanding message
  nokv_snapshot* snap_ = nullptr;
  nokv_iter* iter_ = nullptr;
  grpc::ByteBuffer resp_;  // the outstanding message, in wire format
};

grpc::ServerWriteReactor<grpc::ByteBuffer>* KvService::Scan(grpc::CallbackServerContext* ctx,
                                                            const grpc::ByteBuffer* raw) {
  if (auto s = Authorize(ctx); !s.ok()) return new RefusedScan(s);
  nokv::v1::ScanRequest parsed;
  const nokv::v1::ScanRequest* req = &parsed;
  grpc::ByteBuffer copy(*raw);  // Deserialize consumes its buffer; slices are shared, not copied
  if (!grpc::SerializationTraits<nokv::v1::ScanRequest>::Deserialize(&copy, &parsed).ok()) {
    return new RefusedScan(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "malformed ScanRequest"));
  }
  if (grpc::Status s = CheckScanBounds(req->start(), req->end(), req->prefix()); !s.ok()) {
    return new RefusedScan(s);
  }
  if (req->read_ts() == 0 && !req->serializable()) {
    if (std::string leader = ForwardTarget(ctx); !leader.empty()) {
      return forwarder_.Scan(leader, ctx, *raw);
    }
  }
  std::lock_guard<std::mutex> l(streams_mu_);
  if (scans_.size() >= options_.max_scans) {
    streams_refused_++;
    return new RefusedScan(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        "too many open scans (" + std::to_string(options_.max_scans) + "); retry later"));
  }
  auto* reactor = new ScanReactor(this, ctx, req);
  scans_.insert(reactor);
  streams_cv_.notify_one();  // the reaper sleeps while there is nothing to watch
  return reactor;
}

void KvService::ExpireScan(ScanReactor* scan, std::chrono::steady_clock::time_point now) {
  scan->ExpireIfStalled(now);
}

size_t KvService::open_scans() {
  std::lock_guard<std::mutex> l(streams_mu_);
  return scans_.size();
}

bool KvService::ReserveScanBytes(ScanReactor* scan, size_t n) {
  std::lock_guard<std::mutex> l(scan_budget_mu_);
  if (scan_buffered_ != 0 && scan_buffered_ + n > options_.scan_buffer_bytes) {
    scans_queued_.push_back(scan);
    return false;
  }
  scan_buffered_ += n;
  return true;
}

void KvService::ReleaseScanBytes(size_t n) {
  std::vector<ScanReactor*> resume;
  {
    std::lock_guard<std::mutex> l(scan_budget_mu_);
    scan_buffered_ -= n;
    // Resume in arrival order as many as the room holds (with nothing held,
    // at least the first: it may be larger than the whole budget). Each
    // reserves when it runs, and queues again if others took the room first;
    // a scan is queued only while another holds bytes, whose release comes
    // back here.
    size_t room = options_.scan_buffer_bytes - std::min(scan_buffered_, options_.scan_buffer_bytes);
    while (!scans_queued_.empty()) {
      size_t want = scans_queued_.front()->next_chunk_bytes();
      if (want > room && !(resume.empty() && scan_buffered_ == 0)) break;
      resume.push_back(scans_queued_.front());
      scans_queued_.pop_front();
      room -= std::min(room, want);
    }
  }
  for (ScanReactor* s : resume) workers_.Submit([s] { s->Resume(); });
}

bool KvService::UnqueueScan(ScanReactor* scan) {
  std::lock_guard<std::mutex> l(scan_budget_mu_);
  auto it = std::find(scans_queued_.begin(), scans_queued_.end(), scan);
  if (it == scans_queued_.end()) return false;
  scans_queued_.erase(it);
  return true;
}

size_t KvService::scan_buffered_bytes() {
  std::lock_guard<std::mutex> l(scan_budget_mu_);
  return scan_buffered_;
}

size_t KvService::scans_waiting() {
  std::lock_guard<std::mutex> l(scan_budget_mu_);
  return scans_queued_.size();
}

bool KvService::ReserveTxnBytes(size_t n) {
  size_t now = txn_buffered_bytes_.fetch_add(n) + n;
  if (now <= options_.txn_buffer_bytes) return true;
  txn_buffered_bytes_ -= n;
  return false;
}

namespace {

// Why path cannot serve as a PEM file of `what`, or empty.
std::string CheckPemFile(const std::string& path, const char* what) {
  FILE* f = fopen(path.c_str(), "r");
  if (f == nullptr) return what + (": " + path + ": " + strerror(errno));
  char buf[4096];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  if (strstr(buf, "-----BEGIN ") == nullptr) return what + (": " + path + ": not PEM");
  return "";
}

std::shared_ptr<grpc::ServerCredentials> Credentials(const ServerConfig& c) {
  if (c.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  namespace ex = grpc::experimental;
  auto provider = std::make_shared<ex::FileWatcherCertificateProvider>(
      c.tls_key_file, c.tls_cert_file, c.tls_client_ca_file, c.tls_reload_seconds);
  ex::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!c.tls_client_ca_file.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return ex::TlsServerCredentials(options);
}

// grpc.health.v1 Check for the plaintext health port: SERVING or NOT_SERVING
// as the main server says, for "" and nokv.v1.KV; Watch is left unimplemented
// (probes only Check).
class HealthMirror final : public grpc::health::v1::Health::CallbackService {
 public:
  explicit HealthMirror(std::shared_ptr<std::atomic<bool>> serving)
      : serving_(std::move(serving)) {}
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const grpc::health::v1::HealthCheckRequest* req,
                                  grpc::health::v1::HealthCheckResponse* resp) override {
    if (!req->service().empty() && req->service() != nokv::v1::KV::service_full_name()) {
      return Finished(ctx, grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
    }
    resp->set_status(*serving_ ? grpc::health::v1::HealthCheckResponse::SERVING
                               : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    return Finished(ctx, grpc::Status::OK);
  }

 private:
  std::shared_ptr<std::atomic<bool>> serving_;
};

}  // namespace

std::string CheckServerConfig(const ServerConfig& c) {
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return "TLS needs both a certificate and a key file";
  }
  if (!c.tls_client_ca_file.empty() && c.tls_cert_file.empty()) {
    return "client certificates (mTLS) need the server's TLS certificate and key";
  }
  if (c.tls_cert_file.empty()) return "";
  if (c.tls_reload_seconds == 0) return "the TLS reload interval must be at least 1 s";
  std::string e = CheckPemFile(c.tls_cert_file, "TLS certificate");
  if (e.empty()) e = CheckPemFile(c.tls_key_file, "TLS key");
  if (e.empty() && !c.tls_client_ca_file.empty()) {
    e = CheckPemFile(c.tls_client_ca_file, "client CA");
  }
  return e;
}

std::unique_ptr<Server> StartServer(const ServerConfig& config, KvService* service,
                                    int* bound_port) {
  if (!CheckServerConfig(config).empty()) return nullptr;
  grpc::EnableDefaultHealthCheckService(true);
  // Reflection resolves a service's descriptor in the generated pool; taking
  // one from the health messages links them in (proto/grpc/health/v1).
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  std::vector<std::unique_ptr<grpc::Service>> own = NewReflectionServices(
      {nokv::v1::KV::service_full_name(), "grpc.health.v1.Health"},
      config.auth_reflection ? config.service.auth : nullptr);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, Credentials(config), bound_port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config.max_message_bytes));
  builder.RegisterService(service);
  for (auto& s : own) builder.RegisterService(s.get());
  if (config.rpc_metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(NewMetricsInterceptorFactory(config.rpc_metrics));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *bound_port == 0) return nullptr;
  auto serving = std::make_shared<std::atomic<bool>>(true);
  std::unique_ptr<grpc::Server> health_server;
  int health_port = 0;
  if (!config.health_listen.empty()) {
    own.push_back(std::make_unique<HealthMirror>(serving));
    grpc::ServerBuilder hb;
    // Not gRPC's default health service as well: the mirror is the health service.
    hb.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
    hb.AddListeningPort(config.health_listen, grpc::InsecureServerCredentials(), &health_port);
    hb.RegisterService(own.back().get());
    health_server = hb.BuildAndStart();
    if (health_server == nullptr || health_port == 0) {
      server->Shutdown();
      return nullptr;
    }
  }
  server->GetHealthCheckService()->SetServingStatus("nokv.v1.KV", true);
  server->GetHealthCheckService()->SetServingStatus(true);
  return std::make_unique<Server>(std::move(server), std::move(own), std::move(health_server),
                                  health_port, std::move(serving));
}

}  // namespace nokv::service
