// In-process stand-ins for the two control-plane services the gateway
// talks to, on real gRPC over loopback (port 0), until the scheduler and the
// deployment service exist:
//
//   FakeScheduler:  WatchRoutes (a snapshot at connect and after every
//                   SetRoutes) and ReportLoad (recorded).
//   FakeDeployment: WatchApiKeys (a snapshot at connect, then ADDED and
//                   REVOKED events) and RecordUsage (recorded; it can fail
//                   the next calls UNAVAILABLE to prove retries keep their
//                   report id).
#ifndef HANGAR_TESTS_INTEGRATION_GATEWAY_FAKE_CONTROL_PLANE_H_
#define HANGAR_TESTS_INTEGRATION_GATEWAY_FAKE_CONTROL_PLANE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "hangar/v1/scheduler.grpc.pb.h"

namespace hangar::testing {

class FakeScheduler final : public v1::SchedulerService::Service {
 public:
  // Replaces the routes; every open WatchRoutes stream gets a snapshot.
  void SetRoutes(std::vector<v1::Route> routes);
  std::vector<v1::ReportLoadRequest> loads() const;
  // Open WatchRoutes streams now, and streams opened so far.
  int watchers() const;
  int connections() const;
  // Ends every open WatchRoutes stream with UNAVAILABLE (a scheduler
  // restart, as the gateway sees it).
  void EndStreams();

  grpc::Status WatchRoutes(grpc::ServerContext* context,
                           const v1::WatchRoutesRequest* request,
                           grpc::ServerWriter<v1::RouteEvent>* writer) override;
  grpc::Status ReportLoad(grpc::ServerContext* context,
                          const v1::ReportLoadRequest* request,
                          v1::ReportLoadResponse* response) override;

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::Route> routes_ ABSL_GUARDED_BY(mu_);
  int version_ ABSL_GUARDED_BY(mu_) = 0;
  int watchers_ ABSL_GUARDED_BY(mu_) = 0;
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
  // Streams opened before this generation end.
  int generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::ReportLoadRequest> loads_ ABSL_GUARDED_BY(mu_);
};

class FakeDeployment final : public v1::DeploymentService::Service {
 public:
  void AddKey(const std::string& key_name, const std::string& deployment,
              const std::string& sha256);
  void RevokeKey(const std::string& key_name);
  // The next `calls` RecordUsage calls fail UNAVAILABLE (after recording
  // their report id in attempts()).
  void FailNextUsage(int calls);
  // Every RecordUsage call that succeeded / was attempted.
  std::vector<v1::RecordUsageRequest> usage() const;
  std::vector<std::string> attempts() const;

  grpc::Status WatchApiKeys(
      grpc::ServerContext* context, const v1::WatchApiKeysRequest* request,
      grpc::ServerWriter<v1::ApiKeyEvent>* writer) override;
  grpc::Status RecordUsage(grpc::ServerContext* context,
                           const v1::RecordUsageRequest* request,
                           v1::RecordUsageResponse* response) override;

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::ApiKeyEvent::Entry> keys_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ApiKeyEvent> events_ ABSL_GUARDED_BY(mu_);
  int fail_usage_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::RecordUsageRequest> usage_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> attempts_ ABSL_GUARDED_BY(mu_);
};

// Both fakes on one loopback server.
class FakeControlPlane {
 public:
  FakeControlPlane();
  ~FakeControlPlane();
  std::string address() const { return address_; }
  FakeScheduler& scheduler() { return scheduler_; }
  FakeDeployment& deployment() { return deployment_; }

 private:
  FakeScheduler scheduler_;
  FakeDeployment deployment_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

}  // namespace hangar::testing

#endif  // HANGAR_TESTS_INTEGRATION_GATEWAY_FAKE_CONTROL_PLANE_H_
