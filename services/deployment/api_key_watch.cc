#include "services/deployment/api_key_watch.h"

#include <utility>

#include "common/status/grpc_status.h"

namespace hangar::deployment {

grpc::ServerWriteReactor<v1::ApiKeyEvent>* ApiKeyWatchReactor::Start(
    ChangeNotifier* notifier, std::string key, ReadFn read) {
  auto* reactor = new ApiKeyWatchReactor(std::move(read));
  // Hold the pump while subscribing: on_close may run inside Subscribe.
  {
    absl::MutexLock lock(&reactor->mu_);
    reactor->reading_ = true;
  }
  reactor->subscription_ = notifier->Subscribe(
      std::move(key),
      [reactor] {
        {
          absl::MutexLock lock(&reactor->mu_);
          reactor->dirty_ = true;
        }
        reactor->Advance();
      },
      [reactor] {
        reactor->RequestFinish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                            "server shutting down"));
      });
  {
    absl::MutexLock lock(&reactor->mu_);
    reactor->reading_ = false;
  }
  reactor->Advance();
  return reactor;
}

void ApiKeyWatchReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok && !finish_status_.has_value()) {
      finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED,
                                    "watch: the client went away");
    }
  }
  Advance();
}

void ApiKeyWatchReactor::OnCancel() {
  RequestFinish(grpc::Status(grpc::StatusCode::CANCELLED,
                             "watch: cancelled by the client"));
}

void ApiKeyWatchReactor::OnDone() {
  // Waits for a notifier callback still running; none starts afterwards.
  subscription_.reset();
  delete this;
}

void ApiKeyWatchReactor::RequestFinish(grpc::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (!finish_status_.has_value()) finish_status_ = std::move(status);
  }
  Advance();
}

void ApiKeyWatchReactor::Diff(
    const std::vector<v1::ApiKeyEvent::Entry>& active) {
  std::map<std::string, v1::ApiKeyEvent::Entry> now;
  for (const v1::ApiKeyEvent::Entry& entry : active)
    now[entry.key_name()] = entry;
  if (!snapshot_sent_) {
    snapshot_sent_ = true;
    v1::ApiKeyEvent snapshot;
    snapshot.set_kind(v1::ApiKeyEvent::KIND_SNAPSHOT);
    for (const auto& [name, entry] : now) *snapshot.add_entries() = entry;
    queue_.push_back(std::move(snapshot));
    sent_ = std::move(now);
    return;
  }
  v1::ApiKeyEvent added;
  added.set_kind(v1::ApiKeyEvent::KIND_ADDED);
  for (const auto& [name, entry] : now) {
    if (!sent_.contains(name)) *added.add_entries() = entry;
  }
  v1::ApiKeyEvent revoked;
  revoked.set_kind(v1::ApiKeyEvent::KIND_REVOKED);
  for (const auto& [name, entry] : sent_) {
    if (!now.contains(name)) *revoked.add_entries() = entry;
  }
  if (added.entries_size() > 0) queue_.push_back(std::move(added));
  if (revoked.entries_size() > 0) queue_.push_back(std::move(revoked));
  sent_ = std::move(now);
}

void ApiKeyWatchReactor::Advance() {
  for (;;) {
    std::optional<grpc::Status> finish;
    bool read = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || reading_ || writing_) return;  // Another owner acts.
      if (finish_status_.has_value()) {
        finished_ = true;
        finish = *finish_status_;
      } else if (!queue_.empty()) {
        writing_ = true;
        current_ = std::move(queue_.front());
        queue_.pop_front();
      } else if (dirty_) {
        dirty_ = false;
        reading_ = true;
        read = true;
      } else {
        return;
      }
    }
    if (finish.has_value()) {
      Finish(*finish);  // OnDone may run at once: touch nothing after.
      return;
    }
    if (!read) {
      // current_ is not touched until OnWriteDone clears writing_.
      StartWrite(&current_);
      return;
    }
    absl::StatusOr<std::vector<v1::ApiKeyEvent::Entry>> active = read_();
    absl::MutexLock lock(&mu_);
    reading_ = false;
    if (!active.ok()) {
      if (!finish_status_.has_value()) {
        finish_status_ = ToGrpcStatus(active.status());
      }
    } else {
      Diff(*active);
    }
  }
}

}  // namespace hangar::deployment
