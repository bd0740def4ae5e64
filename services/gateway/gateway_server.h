// The composition root of hangar-gateway: builds and owns every piece in
// dependency order and ties them to the Server's lifecycle.
//
//   KeyRegistry, RouteTable, ConcurrencyLimiter, UsageMeter  (domain)
//   Dispatcher  (the per-revision batchers and the runner calls)
//   InferenceServiceImpl  (callback reactors) -> Server (port, health,
//                          metrics, drain)
//   TaskGroup: the dispatcher loop + Upstream's watchers and reporters
//
// Shutdown (SIGTERM or Shutdown()): health NOT_SERVING, the dispatcher
// drains (new calls UNAVAILABLE; calls still running at 3/4 of the drain
// timeout end with UNAVAILABLE and their sequences are cancelled on the
// runners), the gRPC server drains, then the dispatcher loop and the
// watchers stop and the unreported usage is flushed to the deployment
// service (up to `usage_flush_timeout`).
#ifndef HANGAR_SERVICES_GATEWAY_GATEWAY_SERVER_H_
#define HANGAR_SERVICES_GATEWAY_GATEWAY_SERVER_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth/bearer.h"
#include "common/concurrency/task_group.h"
#include "common/metrics/metrics.h"
#include "common/server/server.h"
#include "common/time/clock.h"
#include "services/gateway/dispatcher.h"
#include "services/gateway/gateway_metrics.h"
#include "services/gateway/inference_service.h"
#include "services/gateway/key_registry.h"
#include "services/gateway/route_table.h"
#include "services/gateway/upstream.h"
#include "services/gateway/usage_meter.h"

namespace hangar::gateway {

class GatewayServer {
 public:
  struct Options {
    // Address, ports, drain and TLS. The gateway is the public door: bind
    // 0.0.0.0 in containers.
    ServerOptions server = {.name = "gateway",
                            .port = 7100,
                            .metrics_port = 9100,
                            .max_message_bytes = 4 << 20};
    // SchedulerService (WatchRoutes, ReportLoad), host:port. Required.
    std::string scheduler_address;
    // DeploymentService (WatchApiKeys, RecordUsage), host:port. Required.
    std::string deployment_address;
    // The admin token this gateway presents on its own internal calls;
    // empty: none.
    std::string admin_token_file;
    // This instance's id for load and usage reports, 1 to 128 characters.
    // Required (main.cc defaults it to hostname-pid).
    std::string gateway_id;
    // Longest a partial batch waits for company, in [0, 10 s].
    absl::Duration max_queue_delay = absl::Milliseconds(5);
    // Requests waiting per deployment revision, in [1, 1 << 20].
    int max_queue_size = 1024;
    // Calls one API key may have in flight, in [1, 1 << 20].
    int max_concurrent_per_key = 256;
    // Dispatches of one request at most when replicas fail, in [1, 10].
    int max_attempts = 3;
    // The deadline of calls that set none.
    absl::Duration default_timeout = absl::Minutes(5);
    // How often load and usage are reported.
    absl::Duration report_interval = absl::Seconds(1);
    // How long the shutdown may spend sending unreported usage.
    absl::Duration usage_flush_timeout = absl::Seconds(5);

    // --- Injected for tests (not owned) ---
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<GatewayServer>> Create(Options options);
  ~GatewayServer();

  int port() const { return server_->port(); }
  std::string address() const { return server_->address(); }
  Server& server() { return *server_; }
  MetricsRegistry& metrics() { return metrics_; }
  Dispatcher& dispatcher() { return *dispatcher_; }
  KeyRegistry& keys() { return keys_; }
  RouteTable& routes() { return routes_; }

  // Graceful shutdown as described above; idempotent.
  void Shutdown();
  // Blocks until SIGTERM/SIGINT, then shuts down.
  void WaitForTermination();

 private:
  explicit GatewayServer(Options options) : options_(std::move(options)) {}

  const Options options_;
  MetricsRegistry metrics_;
  std::unique_ptr<GatewayMetrics> gateway_metrics_;
  std::unique_ptr<auth::AdminToken> admin_token_;
  KeyRegistry keys_;
  RouteTable routes_;
  std::unique_ptr<ConcurrencyLimiter> limiter_;
  std::unique_ptr<UsageMeter> usage_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<Upstream> upstream_;
  std::unique_ptr<InferenceServiceImpl> service_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<TaskGroup> tasks_;

  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace hangar::gateway

#endif  // HANGAR_SERVICES_GATEWAY_GATEWAY_SERVER_H_
