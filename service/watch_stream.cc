// watch_stream.cc — the Watch RPC (watch_stream.h).
#include "service/watch_stream.h"

#include <optional>
#include <string>
#include <vector>

#include "service/status.h"

namespace nokv::service {

namespace {

using Clock = std::chrono::steady_clock;

class RefusedWatch final : public grpc::ServerWriteReactor<nokv::v1::WatchResponse> {
 public:
  explicit RefusedWatch(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// The key range a request names: [start, end), end empty for no bound.
grpc::Status RangeOf(const nokv::v1::WatchRequest& req, std::string* start, std::string* end) {
  switch (req.target_case()) {
    case nokv::v1::WatchRequest::kKey:
      if (req.key().empty()) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty key");
      }
      *start = req.key();
      *end = req.key() + '\0';  // the key alone
      return grpc::Status::OK;
    case nokv::v1::WatchRequest::kPrefix: {
      *start = req.prefix();
      // The successor: drop trailing 0xff bytes, increment the last other byte;
      // none (no bound) for a prefix of only 0xff bytes.
      std::string e = req.prefix();
      while (!e.empty() && static_cast<unsigned char>(e.back()) == 0xff) e.pop_back();
      if (!e.empty()) e.back() = static_cast<char>(static_cast<unsigned char>(e.back()) + 1);
      *end = e;
      return grpc::Status::OK;
    }
    case nokv::v1::WatchRequest::kRange:
      *start = req.range().start();
      *end = req.range().end();
      if (!end->empty() && *start >= *end) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "empty range: start must sort before end");
      }
      return grpc::Status::OK;
    default:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "a watch needs a key, a prefix or a range");
  }
}

}  // namespace

class WatchHub::Stream final : public grpc::ServerWriteReactor<nokv::v1::WatchResponse> {
 public:
  Stream(WatchHub* hub, grpc::CallbackServerContext* ctx, nokv_watch* w)
      : hub_(hub), ctx_(ctx), w_(w) {}

  std::shared_ptr<Stream> self;  // the hub's reference ends at OnDone

  // The first message: the watch is established.
  void Begin() {
    std::lock_guard<std::mutex> l(mu_);
    msg_.Clear();
    msg_.set_created(true);
    msg_.set_oldest_ts(nokv_watch_oldest_ts(hub_->db_));
    in_flight_ = true;
    sent_at_ = Clock::now();
    StartWrite(&msg_);
  }

  // Sends what the watch has now, unless a message is in flight.
  void Pump() {
    std::lock_guard<std::mutex> l(mu_);
    if (in_flight_ || done_ || w_ == nullptr) return;
    msg_.Clear();
    size_t bytes = 0;
    uint64_t events = 0;
    while (bytes < hub_->options_.message_bytes) {
      uint64_t ts;
      const nokv_event* ev;
      size_t n;
      int rc = nokv_watch_next(w_, 0, &ts, &ev, &n);
      if (rc == NOKV_ETIMEDOUT) break;
      if (rc != NOKV_OK) {
        EndLocked(rc);
        return;
      }
      nokv::v1::WatchGroup* g = msg_.add_groups();
      g->set_commit_ts(ts);
      for (size_t i = 0; i < n; i++) bytes += Add(g->add_events(), ev[i]);
      events += n;
    }
    if (msg_.groups_size() == 0) return;
    hub_->groups_sent_ += static_cast<uint64_t>(msg_.groups_size());
    hub_->events_sent_ += events;
    in_flight_ = true;
    sent_at_ = Clock::now();
    StartWrite(&msg_);
  }

  // Cancels the stream if its message has waited past the send timeout, also
  // one already ending (its Finish waits for that write).
  void CheckStalled(Clock::time_point now) {
    std::lock_guard<std::mutex> l(mu_);
    if (cancelled_ || !in_flight_ ||
        now - sent_at_ < std::chrono::milliseconds(hub_->options_.send_timeout_ms)) {
      return;
    }
    // The stuck write then fails, and OnWriteDone finishes: a client that
    // reads again finds the stream cancelled.
    cancelled_ = true;
    if (!done_) {
      done_ = true;
      finish_after_write_ = grpc::Status::CANCELLED;
    }
    hub_->stalled_++;
    ctx_->TryCancel();
  }

  void End(const grpc::Status& s) {
    std::lock_guard<std::mutex> l(mu_);
    FinishLocked(s);
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      in_flight_ = false;
      if (finish_after_write_) {
        Finish(*finish_after_write_);
        finish_after_write_.reset();
        return;
      }
      if (!ok) {  // the client is gone
        FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
        return;
      }
      if (done_) return;
    }
    Pump();  // what came while the message was on its way
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> l(mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      nokv_watch_close(w_);  // now: the database may close once the server is down
      w_ = nullptr;
    }
    hub_->Remove(this);  // drops self: the last holder deletes this
  }

 private:
  // Fills out from e; returns its key and value bytes.
  static size_t Add(nokv::v1::WatchEvent* out, const nokv_event& e) {
    out->set_key(static_cast<const char*>(e.key), e.klen);
    switch (e.type) {
      case NOKV_EVENT_PUT:
        out->set_type(nokv::v1::WatchEvent::PUT);
        if (e.value != nullptr) out->set_value(static_cast<const char*>(e.value), e.vlen);
        out->set_expires_at_ms(e.expires_at_ms);
        break;
      case NOKV_EVENT_DELETE:
        out->set_type(nokv::v1::WatchEvent::DELETE);
        break;
      case NOKV_EVENT_DELETE_RANGE:
        out->set_type(nokv::v1::WatchEvent::DELETE_RANGE);
        out->set_range_end(static_cast<const char*>(e.end), e.end_len);
        break;
    }
    if (e.has_prev) {
      out->set_has_prev(true);
      out->set_prev_value(static_cast<const char*>(e.prev_value), e.prev_vlen);
    }
    out->set_prev_lost(e.prev_lost);
    return e.klen + e.vlen + e.end_len + e.prev_vlen + 16;
  }

  // Finishes the call once, after the write in flight if there is one (one
  // operation in flight at a time: Finish is the last write). REQUIRES: mu_.
  void FinishLocked(const grpc::Status& s) {
    if (done_) return;
    done_ = true;
    if (in_flight_) {
      finish_after_write_ = s;
    } else {
      Finish(s);
    }
  }

  // Ends the stream for the engine's rc. REQUIRES: mu_.
  void EndLocked(int rc) {
    if (rc == NOKV_ESTALE) {
      uint64_t oldest = nokv_watch_oldest_ts(hub_->db_);
      ctx_->AddTrailingMetadata("nokv-oldest-ts", std::to_string(oldest));
      FinishLocked(grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                                std::string(nokv_errmsg()) + " (oldest start: " +
                                    std::to_string(oldest) + ")"));
      return;
    }
    FinishLocked(ToGrpcStatus(rc, nokv_errmsg()));
  }

  WatchHub* hub_;
  grpc::CallbackServerContext* ctx_;
  std::mutex mu_;
  nokv_watch* w_;
  bool in_flight_ = false, done_ = false, cancelled_ = false;
  std::optional<grpc::Status> finish_after_write_;
  Clock::time_point sent_at_;
  nokv::v1::WatchResponse msg_;
};

WatchHub::WatchHub(nokv_db* db, WatchOptions options) : db_(db), options_(options) {}

void WatchHub::Stop() {
  std::thread t;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    t = std::move(dispatcher_);
  }
  if (t.joinable()) t.join();
}

grpc::ServerWriteReactor<nokv::v1::WatchResponse>* WatchHub::Start(
    grpc::CallbackServerContext* ctx, const nokv::v1::WatchRequest* req) {
  std::string start, end;
  if (grpc::Status s = RangeOf(*req, &start, &end); !s.ok()) return new RefusedWatch(s);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) {
      return new RefusedWatch(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
    }
    if (streams_.size() >= options_.max_watches) {
      return new RefusedWatch(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          "too many open watches (" + std::to_string(options_.max_watches) + "); retry later"));
    }
    // The dispatcher starts with the first watch: a service that serves none
    // never calls the engine from another thread.
    if (!dispatcher_.joinable()) dispatcher_ = std::thread([this] { Dispatch(); });
  }
  nokv_watch_options o;
  nokv_watch_options_init(&o);
  o.start = start.data();
  o.start_len = start.size();
  o.end = end.data();
  o.end_len = end.size();
  o.start_ts = req->start_ts();
  o.keys_only = req->keys_only();
  o.prev_values = req->prev_values();
  nokv_watch* w = nullptr;
  int rc = nokv_watch_open(db_, &o, &w);
  if (rc == NOKV_ESTALE) {
    uint64_t oldest = nokv_watch_oldest_ts(db_);
    ctx->AddTrailingMetadata("nokv-oldest-ts", std::to_string(oldest));
    return new RefusedWatch(grpc::Status(
        grpc::StatusCode::OUT_OF_RANGE,
        std::string(nokv_errmsg()) + " (oldest start: " + std::to_string(oldest) + ")"));
  }
  if (rc != NOKV_OK) return new RefusedWatch(ToGrpcStatus(rc, nokv_errmsg()));
  auto s = std::make_shared<Stream>(this, ctx, w);
  s->self = s;
  {
    std::lock_guard<std::mutex> l(mu_);
    streams_.insert(s);
  }
  s->Begin();
  return s.get();
}

void WatchHub::Remove(Stream* s) {
  std::shared_ptr<Stream> last;
  std::lock_guard<std::mutex> l(mu_);
  last = std::move(s->self);  // destroyed after the lock (it may be the last)
  streams_.erase(last);
}

void WatchHub::EndAll(const grpc::Status& status) {
  std::vector<std::shared_ptr<Stream>> all;
  {
    std::lock_guard<std::mutex> l(mu_);
    all.assign(streams_.begin(), streams_.end());
  }
  for (auto& s : all) s->End(status);
}

size_t WatchHub::open() {
  std::lock_guard<std::mutex> l(mu_);
  return streams_.size();
}

void WatchHub::Dispatch() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
    }
    // Bounded, so that a stop and stalled clients are noticed without a commit.
    uint64_t newest = 0;
    if (nokv_watch_wait(db_, seen, 200, &newest) == NOKV_OK) seen = newest;
    std::vector<std::shared_ptr<Stream>> all;
    {
      std::lock_guard<std::mutex> l(mu_);
      all.assign(streams_.begin(), streams_.end());
    }
    Clock::time_point now = Clock::now();
    for (auto& s : all) {
      s->Pump();
      s->CheckStalled(now);
    }
  }
}

}  // namespace nokv::service
