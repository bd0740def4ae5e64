#include "common/server/health_service.h"

namespace hangar {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch stream. At most one write is in flight; a change that arrives
// meanwhile is sent when the write completes (only the latest status
// matters). Deletes itself in OnDone.
class HealthService::Watcher final
    : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  Watcher(HealthService* health, std::string service)
      : health_(health), service_(std::move(service)) {}

  // Sends the current status if it differs from the last one sent (or none
  // was), and finishes after shutdown. Lock order: the service's mu_, then
  // this watcher's.
  void Update() ABSL_EXCLUSIVE_LOCKS_REQUIRED(health_->mu_) {
    const ServingStatus status = health_->StatusOfLocked(service_);
    const bool shut_down = health_->shut_down_;
    absl::MutexLock lock(&mu_);
    if (finished_ || writing_) return;  // OnWriteDone sends what is new.
    if (!sent_any_ || status != last_sent_) {
      response_.set_status(status);
      last_sent_ = status;
      sent_any_ = true;
      writing_ = true;
      StartWrite(&response_);
      return;
    }
    if (shut_down) {
      finished_ = true;
      Finish(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
    }
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock health_lock(&health_->mu_);
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        // The client went away.
        if (!finished_) {
          finished_ = true;
          Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client gone"));
        }
        return;
      }
    }
    Update();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&health_->mu_);
      health_->watchers_.erase(this);
    }
    delete this;
  }

 private:
  HealthService* const health_;
  const std::string service_;
  absl::Mutex mu_;  // Protects the fields below.
  HealthCheckResponse response_ ABSL_GUARDED_BY(mu_);
  ServingStatus last_sent_ ABSL_GUARDED_BY(mu_) = HealthCheckResponse::UNKNOWN;
  bool sent_any_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

void HealthService::AddService(const std::string& service) {
  {
    absl::MutexLock lock(&mu_);
    if (!services_.insert(service).second) return;
  }
  NotifyWatchers();
}

void HealthService::SetServing(bool serving) {
  {
    absl::MutexLock lock(&mu_);
    if (serving_ == serving) return;
    serving_ = serving;
  }
  NotifyWatchers();
}

void HealthService::SetDependency(const std::string& dependency, bool healthy) {
  {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = dependencies_.try_emplace(dependency, healthy);
    if (!inserted && it->second == healthy) return;
    it->second = healthy;
  }
  NotifyWatchers();
}

HealthService::ServingStatus HealthService::StatusOf(
    const std::string& service) {
  absl::MutexLock lock(&mu_);
  return StatusOfLocked(service);
}

HealthService::ServingStatus HealthService::StatusOfLocked(
    const std::string& service) {
  if (!services_.contains(service)) {
    return HealthCheckResponse::SERVICE_UNKNOWN;
  }
  if (shut_down_ || !serving_) return HealthCheckResponse::NOT_SERVING;
  for (const auto& [name, healthy] : dependencies_) {
    if (!healthy) return HealthCheckResponse::NOT_SERVING;
  }
  return HealthCheckResponse::SERVING;
}

void HealthService::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  NotifyWatchers();
}

int HealthService::watchers() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(watchers_.size());
}

void HealthService::NotifyWatchers() {
  // Holding mu_ keeps every watcher alive: one deletes itself only after
  // leaving watchers_ under mu_ (OnDone). gRPC runs reactions on its own
  // threads, never inside StartWrite() or Finish().
  absl::MutexLock lock(&mu_);
  for (Watcher* watcher : watchers_) watcher->Update();
}

grpc::Status HealthService::Check(grpc::ServerContext* /*context*/,
                                  const HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  absl::MutexLock lock(&mu_);
  const ServingStatus status = StatusOfLocked(request->service());
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service: " + request->service());
  }
  response->set_status(status);
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext* /*context*/,
    const HealthCheckRequest* request) {
  // Per the health protocol, an unknown service is reported as
  // SERVICE_UNKNOWN (and the stream stays open in case it appears).
  auto* watcher = new Watcher(this, request->service());
  absl::MutexLock lock(&mu_);
  watchers_.insert(watcher);
  watcher->Update();
  return watcher;
}

}  // namespace hangar
