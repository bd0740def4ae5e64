#include "tests/integration/gateway/fake_control_plane.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace hangar::testing {
namespace {

// How often a Watch handler looks at its call's cancellation.
constexpr absl::Duration kPoll = absl::Milliseconds(20);

}  // namespace

void FakeScheduler::SetRoutes(std::vector<v1::Route> routes) {
  absl::MutexLock lock(&mu_);
  routes_ = std::move(routes);
  ++version_;
}

std::vector<v1::ReportLoadRequest> FakeScheduler::loads() const {
  absl::MutexLock lock(&mu_);
  return loads_;
}

int FakeScheduler::connections() const {
  absl::MutexLock lock(&mu_);
  return connections_;
}

void FakeScheduler::EndStreams() {
  absl::MutexLock lock(&mu_);
  ++generation_;
}

int FakeScheduler::watchers() const {
  absl::MutexLock lock(&mu_);
  return watchers_;
}

grpc::Status FakeScheduler::WatchRoutes(
    grpc::ServerContext* context, const v1::WatchRoutesRequest*,
    grpc::ServerWriter<v1::RouteEvent>* writer) {
  int sent = -1;
  int generation;
  {
    absl::MutexLock lock(&mu_);
    ++watchers_;
    ++connections_;
    generation = generation_;
  }
  while (!context->IsCancelled()) {
    v1::RouteEvent event;
    {
      absl::MutexLock lock(&mu_);
      if (generation != generation_) {
        --watchers_;
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake restart");
      }
      std::pair<int*, int*> versions(&version_, &sent);
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](std::pair<int*, int*>* v) { return *v->first != *v->second; },
              &versions),
          kPoll);
      if (generation != generation_) {
        --watchers_;
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake restart");
      }
      if (version_ == sent) continue;
      sent = version_;
      event.set_kind(v1::RouteEvent::KIND_SNAPSHOT);
      for (const v1::Route& route : routes_) *event.add_routes() = route;
    }
    if (!writer->Write(event)) break;
  }
  absl::MutexLock lock(&mu_);
  --watchers_;
  return grpc::Status::OK;
}

grpc::Status FakeScheduler::ReportLoad(grpc::ServerContext*,
                                       const v1::ReportLoadRequest* request,
                                       v1::ReportLoadResponse*) {
  absl::MutexLock lock(&mu_);
  loads_.push_back(*request);
  return grpc::Status::OK;
}

void FakeDeployment::AddKey(const std::string& key_name,
                            const std::string& deployment,
                            const std::string& sha256) {
  absl::MutexLock lock(&mu_);
  v1::ApiKeyEvent::Entry entry;
  entry.set_key_name(key_name);
  entry.set_deployment(deployment);
  entry.set_sha256(sha256);
  keys_.push_back(entry);
  v1::ApiKeyEvent& event = events_.emplace_back();
  event.set_kind(v1::ApiKeyEvent::KIND_ADDED);
  *event.add_entries() = entry;
}

void FakeDeployment::RevokeKey(const std::string& key_name) {
  absl::MutexLock lock(&mu_);
  v1::ApiKeyEvent& event = events_.emplace_back();
  event.set_kind(v1::ApiKeyEvent::KIND_REVOKED);
  for (auto it = keys_.begin(); it != keys_.end();) {
    if (it->key_name() == key_name) {
      *event.add_entries() = *it;
      it = keys_.erase(it);
    } else {
      ++it;
    }
  }
}

void FakeDeployment::FailNextUsage(int calls) {
  absl::MutexLock lock(&mu_);
  fail_usage_ = calls;
}

std::vector<v1::RecordUsageRequest> FakeDeployment::usage() const {
  absl::MutexLock lock(&mu_);
  return usage_;
}

std::vector<std::string> FakeDeployment::attempts() const {
  absl::MutexLock lock(&mu_);
  return attempts_;
}

grpc::Status FakeDeployment::WatchApiKeys(
    grpc::ServerContext* context, const v1::WatchApiKeysRequest*,
    grpc::ServerWriter<v1::ApiKeyEvent>* writer) {
  size_t next;
  v1::ApiKeyEvent snapshot;
  {
    absl::MutexLock lock(&mu_);
    snapshot.set_kind(v1::ApiKeyEvent::KIND_SNAPSHOT);
    for (const auto& entry : keys_) *snapshot.add_entries() = entry;
    next = events_.size();
  }
  if (!writer->Write(snapshot)) return grpc::Status::OK;
  while (!context->IsCancelled()) {
    std::vector<v1::ApiKeyEvent> events;
    {
      absl::MutexLock lock(&mu_);
      std::pair<std::vector<v1::ApiKeyEvent>*, size_t*> position(&events_,
                                                                 &next);
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](std::pair<std::vector<v1::ApiKeyEvent>*, size_t*>* v) {
                return v->first->size() != *v->second;
              },
              &position),
          kPoll);
      events.assign(events_.begin() + next, events_.end());
      next = events_.size();
    }
    for (const v1::ApiKeyEvent& event : events) {
      if (!writer->Write(event)) return grpc::Status::OK;
    }
  }
  return grpc::Status::OK;
}

grpc::Status FakeDeployment::RecordUsage(grpc::ServerContext*,
                                         const v1::RecordUsageRequest* request,
                                         v1::RecordUsageResponse*) {
  absl::MutexLock lock(&mu_);
  attempts_.push_back(request->report_id());
  if (fail_usage_ > 0) {
    --fail_usage_;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake outage");
  }
  usage_.push_back(*request);
  return grpc::Status::OK;
}

FakeControlPlane::FakeControlPlane() {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&scheduler_);
  builder.RegisterService(&deployment_);
  server_ = builder.BuildAndStart();
  address_ = absl::StrCat("127.0.0.1:", port);
}

FakeControlPlane::~FakeControlPlane() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

}  // namespace hangar::testing
