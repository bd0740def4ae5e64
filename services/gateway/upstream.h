// The gateway's long-lived conversations with the control plane, each run
// as a TaskGroup task (a handful per gateway, never one per request):
//
//   * RouteWatcher: SchedulerService.WatchRoutes -> RouteTable, then the
//     dispatcher's revisions; on any stream end it reconnects with
//     exponential backoff (100 ms doubling to 5 s) and the new stream's
//     snapshot replaces everything (a resync). Until the first snapshot the
//     table answers UNAVAILABLE.
//   * KeyWatcher: DeploymentService.WatchApiKeys -> KeyRegistry, likewise.
//   * UsageReporter: every `interval` the UsageMeter's next batch goes to
//     DeploymentService.RecordUsage, retried under the same report id until
//     acknowledged; Flush() sends what is left at shutdown.
//   * LoadReporter: every `interval` SchedulerService.ReportLoad with this
//     gateway's id, the time, a ttl and queued + in-flight per revision.
//
// Every outgoing call carries the admin token when one is configured.
// Stop() cancels the open streams so that the tasks return promptly.
#ifndef HANGAR_SERVICES_GATEWAY_UPSTREAM_H_
#define HANGAR_SERVICES_GATEWAY_UPSTREAM_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth/bearer.h"
#include "common/concurrency/task_group.h"
#include "common/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "hangar/v1/scheduler.grpc.pb.h"
#include "services/gateway/dispatcher.h"
#include "services/gateway/key_registry.h"
#include "services/gateway/route_table.h"
#include "services/gateway/usage_meter.h"

namespace hangar::gateway {

class Upstream {
 public:
  struct Options {
    // This gateway instance (ReportLoad's reporter).
    std::string gateway_id;
    // How often load and usage are reported.
    absl::Duration load_interval = absl::Seconds(1);
    absl::Duration usage_interval = absl::Seconds(1);
    // ReportLoad's ttl, in [1 s, 300 s].
    absl::Duration load_ttl = absl::Seconds(10);

    // --- injected (not owned) ---
    std::shared_ptr<grpc::Channel> scheduler;
    std::shared_ptr<grpc::Channel> deployment;
    const auth::AdminToken* admin_token = nullptr;  // optional
    RouteTable* routes = nullptr;
    KeyRegistry* keys = nullptr;
    Dispatcher* dispatcher = nullptr;
    UsageMeter* usage = nullptr;
    Clock* clock = Clock::Real();
  };

  explicit Upstream(Options options);

  // Submits the four tasks to `tasks`.
  absl::Status Start(TaskGroup& tasks);
  // Cancels the open Watch streams; the tasks see their StopToken.
  void Stop();
  // Sends unreported usage until none is left or `deadline`; returns
  // whether everything was acknowledged.
  bool FlushUsage(absl::Time deadline);

  // Successful ReportLoad / RecordUsage calls so far (for tests, logs).
  int64_t loads_reported() const { return loads_reported_.load(); }

 private:
  void WatchRoutes(const StopToken& stop);
  void WatchKeys(const StopToken& stop);
  void ReportUsage(const StopToken& stop);
  void ReportLoad(const StopToken& stop);
  bool SendUsageOnce(absl::Time deadline);

  // Runs `stream_once` (one Watch stream to its end) again and again with
  // backoff until stop.
  void Reconnect(const StopToken& stop,
                 const std::function<bool(grpc::ClientContext*)>& stream_once);

  const Options options_;
  std::unique_ptr<v1::SchedulerService::Stub> scheduler_;
  std::unique_ptr<v1::DeploymentService::Stub> deployment_;
  std::atomic<int64_t> loads_reported_{0};

  absl::Mutex mu_;  // Protects the fields below.
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::set<grpc::ClientContext*> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::gateway

#endif  // HANGAR_SERVICES_GATEWAY_UPSTREAM_H_
