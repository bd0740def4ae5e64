// The optimizer process's composition root: builds every piece from
// Options, in dependency order, and owns them.
//
//   PostgreSQL pool -> migrations -> PgJobStore
//   SchedulerClient (gRPC to --scheduler_address, or injected)
//   ChangeNotifier (WatchOptimizationJob's feed), OptimizerMetrics
//   -> Optimizer (resumes unfinished jobs at start) -> OptimizerServiceImpl
//   -> hangar::Server (reflection, health, metrics, drain; the drain closes
//   the notifier, which ends every Watch stream with UNAVAILABLE)
//
// Create() fails with one clear status naming the flag when anything is
// wrong and leaves nothing running. Jobs keep running in the scheduler
// while the optimizer is down; the next Create() follows them again.
//
//   ASSIGN_OR_RETURN(auto server, OptimizerServer::Create({
//       .db = "postgresql://hangar@127.0.0.1/hangar",
//       .scheduler_address = "127.0.0.1:7102",
//       .model_store = "/var/lib/hangar/models"}));
//   server->WaitForTermination();
#ifndef HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_SERVER_H_
#define HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_SERVER_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/bearer.h"
#include "common/db/pool.h"
#include "common/metrics/metrics.h"
#include "common/server/server.h"
#include "common/server/service_host.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "services/optimizer/optimizer.h"
#include "services/optimizer/optimizer_metrics.h"
#include "services/optimizer/optimizer_service.h"
#include "services/optimizer/pg_job_store.h"
#include "services/optimizer/scheduler_client.h"

namespace hangar::optimizer {

class OptimizerServer {
 public:
  struct Options {
    // Address, ports, drain and TLS, nested as in every Hangar service.
    ServerOptions server = {.name = "optimizer",
                            .host = "127.0.0.1",
                            .port = 7103,
                            .metrics_port = 9103};
    // When set, every call but health and reflection must carry
    // "authorization: Bearer <the token in this file>", and calls to the
    // scheduler carry it too.
    std::string admin_token_file;
    // --- State ---
    // libpq connection string or URI. Required.
    std::string db;
    // Database connections, in [1, 64].
    int db_pool_size = 4;
    // How long start-up keeps retrying an unreachable database.
    absl::Duration db_startup_timeout = absl::ZeroDuration();
    // Longest one connection attempt may take.
    absl::Duration db_connect_timeout = absl::Seconds(2);
    // Directory of prepared models; artifacts go under <model_store>/artifacts.
    // Required.
    std::string model_store;
    // --- Dependencies ---
    // host:port of the scheduler's job API. Required unless `scheduler` is
    // injected.
    std::string scheduler_address;
    // The program each job runs (the scheduler's executor starts it).
    std::string optimize_binary = "hangar-optimize";
    // Per-recipe bound overrides, "CTRANSLATE2/int8" -> bound.
    std::map<std::string, double> max_logit_error_bounds;
    // Longest one WatchJob call lasts before it is renewed.
    absl::Duration watch_slice = absl::Seconds(2);
    // Unheld artifacts are kept this long after their last use (>= 0).
    absl::Duration gc_grace = absl::Hours(1);
    // Collect garbage once at start (after resuming jobs).
    bool gc_at_start = true;
    // --- Injected for tests (not owned) ---
    SchedulerClient* scheduler = nullptr;
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<OptimizerServer>> Create(
      Options options);
  ~OptimizerServer();
  OptimizerServer(const OptimizerServer&) = delete;
  OptimizerServer& operator=(const OptimizerServer&) = delete;

  std::string address() const { return host_->server().address(); }
  int port() const { return host_->server().port(); }
  int metrics_port() const { return host_->server().metrics_port(); }
  Optimizer& optimizer() { return *optimizer_; }
  void WaitForTermination() { host_->server().WaitForTermination(); }
  void Shutdown() { host_->server().Shutdown(); }

 private:
  OptimizerServer() = default;
  // Declared in construction order; destroyed in reverse.
  MetricsRegistry metrics_;
  std::unique_ptr<OptimizerMetrics> optimizer_metrics_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<PgJobStore> store_;
  ChangeNotifier notifier_;
  std::unique_ptr<auth::AdminToken> admin_token_;  // Null: no admin check.
  std::unique_ptr<SchedulerClient> owned_scheduler_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<OptimizerServiceImpl> service_;
  // The server, its drain hooks and the database probe; destroyed first.
  std::unique_ptr<ServiceHost> host_;
};

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_SERVER_H_
