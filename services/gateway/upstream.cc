#include "services/gateway/upstream.h"

#include <algorithm>
#include <iostream>
#include <utility>

#include "common/api/time.h"
#include "common/server/admin_auth.h"

namespace hangar::gateway {
namespace {

constexpr absl::Duration kInitialBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(5);
constexpr absl::Duration kCallTimeout = absl::Seconds(5);

}  // namespace

Upstream::Upstream(Options options) : options_(std::move(options)) {
  scheduler_ = v1::SchedulerService::NewStub(options_.scheduler);
  deployment_ = v1::DeploymentService::NewStub(options_.deployment);
}

absl::Status Upstream::Start(TaskGroup& tasks) {
  for (auto task : {&Upstream::WatchRoutes, &Upstream::WatchKeys,
                    &Upstream::ReportUsage, &Upstream::ReportLoad}) {
    if (absl::Status status = tasks.Submit(
            [this, task](const StopToken& stop) { (this->*task)(stop); });
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

void Upstream::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  for (grpc::ClientContext* context : open_) context->TryCancel();
}

void Upstream::Reconnect(
    const StopToken& stop,
    const std::function<bool(grpc::ClientContext*)>& stream_once) {
  absl::Duration backoff = kInitialBackoff;
  while (!stop.stop_requested()) {
    grpc::ClientContext context;
    AttachAdminToken(options_.admin_token, &context);
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      open_.insert(&context);
    }
    const bool got_snapshot = stream_once(&context);
    {
      absl::MutexLock lock(&mu_);
      open_.erase(&context);
    }
    if (got_snapshot) backoff = kInitialBackoff;
    if (stop.WaitUntil(options_.clock, options_.clock->Now() + backoff)) {
      return;
    }
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

void Upstream::WatchRoutes(const StopToken& stop) {
  Reconnect(stop, [this](grpc::ClientContext* context) {
    std::unique_ptr<grpc::ClientReader<v1::RouteEvent>> reader =
        scheduler_->WatchRoutes(context, v1::WatchRoutesRequest());
    v1::RouteEvent event;
    bool snapshot = false;
    while (reader->Read(&event)) {
      if (!snapshot && event.kind() != v1::RouteEvent::KIND_SNAPSHOT) {
        continue;  // A resync starts with the snapshot.
      }
      snapshot = true;
      options_.routes->Apply(event);
      options_.dispatcher->UpdateRoutes(options_.routes->Routes());
    }
    grpc::Status status = reader->Finish();
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      std::cerr << "gateway: WatchRoutes: " << status.error_message()
                << std::endl;
    }
    return snapshot;
  });
}

void Upstream::WatchKeys(const StopToken& stop) {
  Reconnect(stop, [this](grpc::ClientContext* context) {
    std::unique_ptr<grpc::ClientReader<v1::ApiKeyEvent>> reader =
        deployment_->WatchApiKeys(context, v1::WatchApiKeysRequest());
    v1::ApiKeyEvent event;
    bool snapshot = false;
    while (reader->Read(&event)) {
      std::vector<KeyEntry> entries;
      for (const v1::ApiKeyEvent::Entry& entry : event.entries()) {
        entries.push_back({.key_name = entry.key_name(),
                           .deployment = entry.deployment(),
                           .sha256 = entry.sha256()});
      }
      switch (event.kind()) {
        case v1::ApiKeyEvent::KIND_SNAPSHOT:
          snapshot = true;
          options_.keys->ReplaceAll(entries);
          break;
        case v1::ApiKeyEvent::KIND_ADDED:
          if (!snapshot) break;
          for (const KeyEntry& entry : entries) options_.keys->Add(entry);
          break;
        case v1::ApiKeyEvent::KIND_REVOKED:
          // Revocations apply even before a snapshot: never keep a key
          // longer than told.
          for (const KeyEntry& entry : entries) {
            options_.keys->Revoke(entry.key_name);
          }
          break;
        default:
          break;
      }
    }
    grpc::Status status = reader->Finish();
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      std::cerr << "gateway: WatchApiKeys: " << status.error_message()
                << std::endl;
    }
    return snapshot;
  });
}

bool Upstream::SendUsageOnce(absl::Time deadline) {
  std::optional<UsageBatch> batch = options_.usage->NextBatch();
  if (!batch.has_value()) return true;
  grpc::ClientContext context;
  AttachAdminToken(options_.admin_token, &context);
  context.set_deadline(absl::ToChronoTime(
      std::min(deadline, options_.clock->Now() + kCallTimeout)));
  v1::RecordUsageResponse response;
  grpc::Status status =
      deployment_->RecordUsage(&context, batch->request, &response);
  if (!status.ok()) return false;
  options_.usage->Acknowledge(batch->request.report_id());
  return true;
}

void Upstream::ReportUsage(const StopToken& stop) {
  while (!stop.WaitUntil(options_.clock,
                         options_.clock->Now() + options_.usage_interval)) {
    SendUsageOnce(options_.clock->Now() + kCallTimeout);
  }
}

bool Upstream::FlushUsage(absl::Time deadline) {
  while (options_.clock->Now() < deadline) {
    if (options_.usage->unreported_requests() == 0) return true;
    if (!SendUsageOnce(deadline)) {
      options_.clock->SleepUntil(
          std::min(deadline, options_.clock->Now() + kInitialBackoff));
    }
  }
  return options_.usage->unreported_requests() == 0;
}

void Upstream::ReportLoad(const StopToken& stop) {
  do {
    v1::ReportLoadRequest request;
    request.set_reporter(options_.gateway_id);
    *request.mutable_report_time() = ToProtoTimestamp(options_.clock->Now());
    *request.mutable_ttl() = ToProtoDuration(options_.load_ttl);
    for (v1::RevisionLoad& load : options_.dispatcher->Load()) {
      *request.add_loads() = std::move(load);
    }
    grpc::ClientContext context;
    AttachAdminToken(options_.admin_token, &context);
    context.set_deadline(
        absl::ToChronoTime(options_.clock->Now() + options_.load_interval));
    v1::ReportLoadResponse response;
    if (scheduler_->ReportLoad(&context, request, &response).ok()) {
      loads_reported_.fetch_add(1);
    }
  } while (!stop.WaitUntil(options_.clock,
                           options_.clock->Now() + options_.load_interval));
}

}  // namespace hangar::gateway
