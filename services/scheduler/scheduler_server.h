// The scheduler process's composition root: builds every piece from
// Options, in dependency order, and owns them.
//
//   hardware file (LoadHardwareConfig: one clear error naming the line)
//   PostgreSQL pool -> migrations -> PgSchedulerStore
//   ChangeNotifier (the Watch feeds), SchedulerMetrics
//   -> Scheduler (Placer with the placement policy, Autoscaler, and the
//      LocalExecutor it creates: hangar-runner children and jobs; recovery
//      from the store) -> SchedulerServiceImpl -> hangar::Server (reflection,
//      health, metrics, graceful drain; the drain closes the notifier, which
//      ends every Watch stream with UNAVAILABLE)
//
// Create() fails with one clear status when anything is wrong (a bad
// option, a malformed hardware file, an unreachable database, a port in use)
// and leaves nothing running. main.cc turns flags into Options; tests build
// the server the same way with port 0.
//
//   ASSIGN_OR_RETURN(auto server, SchedulerServer::Create({
//       .db = "postgresql://hangar@127.0.0.1/hangar",
//       .hardware_config = "deploy/config/hardware.textproto"}));
//   server->WaitForTermination();
#ifndef HANGAR_SERVICES_SCHEDULER_SCHEDULER_SERVER_H_
#define HANGAR_SERVICES_SCHEDULER_SCHEDULER_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/bearer.h"
#include "common/db/pool.h"
#include "common/metrics/metrics.h"
#include "common/server/server.h"
#include "common/server/service_host.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "services/scheduler/local_executor.h"
#include "services/scheduler/pg_scheduler_store.h"
#include "services/scheduler/scheduler.h"
#include "services/scheduler/scheduler_metrics.h"
#include "services/scheduler/scheduler_service.h"

namespace hangar::scheduler {

class SchedulerServer {
 public:
  struct Options {
    // Address, ports, drain and TLS, nested as in every Hangar service.
    ServerOptions server = {.name = "scheduler",
                            .host = "127.0.0.1",
                            .port = 7104,
                            .metrics_port = 9104};
    // When set, every call but health and reflection must carry
    // "authorization: Bearer <the token in this file>".
    std::string admin_token_file;

    // --- State ---
    // libpq connection string or URI. Required.
    std::string db;
    // Database connections, in [1, 64].
    int db_pool_size = 4;
    // How long start-up keeps retrying while PostgreSQL refuses connections.
    absl::Duration db_startup_timeout = absl::ZeroDuration();
    // Longest one connection attempt may take.
    absl::Duration db_connect_timeout = absl::Seconds(2);

    // --- Hardware and placement ---
    // The hardware file (protobuf text format). Required.
    std::string hardware_config;
    // "best-fit" (default), "first-fit" or "fgd".
    std::string placement_policy = "best-fit";
    // How often the autoscaler is evaluated.
    absl::Duration autoscale_period = absl::Seconds(1);
    // How long a load report counts when ReportLoad gives no ttl.
    absl::Duration default_report_ttl = absl::Seconds(10);
    // Drain of scale-in and of DeleteReplicaSet without drain_seconds.
    absl::Duration default_drain = absl::Seconds(30);

    // --- Executor ---
    // The local executor's settings; runner_path empty: hangar-runner next
    // to this binary or in the build tree; run_dir empty: a temporary
    // directory (hangar-scheduler sets detach_children when --state_dir is
    // given, so children outlive a crash and are re-adopted). Its observer
    // and clock are set by the server.
    LocalExecutor::Options executor;

    // --- Injected for tests (not owned) ---
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<SchedulerServer>> Create(
      Options options);

  // Drains the server, then stops the scheduler (and its children).
  ~SchedulerServer();
  SchedulerServer(const SchedulerServer&) = delete;
  SchedulerServer& operator=(const SchedulerServer&) = delete;

  std::string address() const { return host_->server().address(); }
  int port() const { return host_->server().port(); }
  int metrics_port() const { return host_->server().metrics_port(); }
  Scheduler& scheduler() { return *scheduler_; }

  void WaitForTermination() { host_->server().WaitForTermination(); }
  void Shutdown() { host_->server().Shutdown(); }

 private:
  SchedulerServer() = default;

  // Declared in construction order; destroyed in reverse.
  MetricsRegistry metrics_;
  std::unique_ptr<SchedulerMetrics> scheduler_metrics_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<PgSchedulerStore> store_;
  ChangeNotifier notifier_;
  std::unique_ptr<auth::AdminToken> admin_token_;  // Null: no admin check.
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<SchedulerServiceImpl> service_;
  // The server, its drain hooks and the database probe; destroyed first.
  std::unique_ptr<ServiceHost> host_;
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_SCHEDULER_SERVER_H_
