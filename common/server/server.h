// The bootstrap every Hangar server is built from.
//
// A `Server` runs the given gRPC services on one port together with:
//   - server reflection (grpcurl can list, describe and call everything);
//   - grpc.health.v1.Health from the real health.proto, so it is described
//     by reflection too, with an entry for "" and for every registered
//     service; all start NOT_SERVING until the composition root calls
//     SetServing(true), and all turn NOT_SERVING while a dependency reported
//     through SetDependencyHealth()/HealthReporter() is down (the database
//     probe of common/db/probe.h);
//   - requests that do not parse answer INVALID_ARGUMENT naming the field,
//     counted instead of logged (invalid_request_interceptor.h);
//   - each synchronous call's deadline and cancellation published to the
//     code serving it (call_context.h), which the database pool obeys;
//   - at most `max_threads` threads serving synchronous calls;
//   - standard RPC metrics (see metrics_interceptor.h) in the process's
//     MetricsRegistry, and a Prometheus endpoint on `metrics_port`;
//   - graceful shutdown: on SIGTERM/SIGINT (or Shutdown()) health turns
//     NOT_SERVING, the server stops accepting calls, and in-flight calls may
//     finish for up to `drain_timeout` before they are cancelled.
//
// Typical main():
//
//   hangar::MetricsRegistry metrics;
//   CatalogServiceImpl service(&catalog, &metrics);
//   ASSIGN_OR_RETURN(auto server,
//                    hangar::Server::Create(options, {&service}, &metrics));
//   server->SetServing(true);
//   server->WaitForTermination();  // returns after a signal and the drain
#ifndef HANGAR_COMMON_SERVER_SERVER_H_
#define HANGAR_COMMON_SERVER_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics/metrics.h"
#include "common/server/health_service.h"
#include "common/server/metrics_interceptor.h"
#include "grpcpp/grpcpp.h"

namespace hangar {

struct ServerOptions {
  // Short name for logs ("catalog", "gateway").
  std::string name = "server";
  // Address to bind. Control-plane services default to loopback; use
  // "0.0.0.0" inside containers.
  std::string host = "127.0.0.1";
  // gRPC port; 0 picks a free one (see Server::port()).
  int port = 0;
  // Prometheus /metrics port on the same host; 0 picks a free one, -1
  // serves no endpoint (the metrics are still recorded).
  int metrics_port = -1;
  // How long in-flight calls may run after shutdown begins.
  absl::Duration drain_timeout = absl::Seconds(10);
  // PEM files for TLS; both or neither. Neither means plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Largest request or response message, bytes, in [1 KiB, 1 GiB].
  int max_message_bytes = 64 << 20;
  // Most threads gRPC may run for synchronous calls (its ResourceQuota), in
  // [4, 4096]. A call that finds none left is refused at once with
  // RESOURCE_EXHAUSTED instead of growing the process without bound; each
  // open synchronous stream holds a thread, and gRPC keeps one or two for
  // polling.
  int max_threads = 64;
};

class Server {
 public:
  // Builds and starts the server with `services` (not owned; they must
  // outlive the server) and records metrics into `metrics` (not owned).
  // Fails with INVALID_ARGUMENT for bad options and UNAVAILABLE when the
  // port cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Create(
      const ServerOptions& options, const std::vector<grpc::Service*>& services,
      MetricsRegistry* metrics);

  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return port_; }
  // "host:port" to dial.
  std::string address() const;
  int metrics_port() const;

  // Health of every service and of the server as a whole.
  void SetServing(bool serving);
  // Health of a dependency (e.g. "database"): while any is unhealthy every
  // health entry is NOT_SERVING. Thread-safe.
  void SetDependencyHealth(const std::string& dependency, bool healthy);
  // A callback that reports `dependency` through SetDependencyHealth(), for
  // probes:  db::DatabaseProbe::Start({.pool = pool,
  //              .on_change = server->HealthReporter("database")});
  // The server must outlive every call of it.
  std::function<void(bool healthy)> HealthReporter(std::string dependency);
  HealthService& health() { return health_; }
  ServerMetrics& server_metrics() { return server_metrics_; }

  // Graceful shutdown; idempotent and thread-safe. Returns when drained.
  void Shutdown();

  // Runs `callback` when shutdown begins, before the drain, so that
  // long-lived streams of a service (Watch calls) can end instead of holding
  // the drain open until drain_timeout. Register before serving.
  void OnShutdown(std::function<void()> callback);

  // From now on SIGTERM/SIGINT begin a graceful shutdown. Idempotent.
  void HandleSignals();

  // Calls HandleSignals(), blocks until a signal or Shutdown(), then shuts
  // down gracefully and returns.
  void WaitForTermination();

 private:
  Server(ServerOptions options, MetricsRegistry* metrics);

  const ServerOptions options_;
  MetricsRegistry* const metrics_;
  HealthService health_;
  ServerMetrics server_metrics_;
  // Full names of the registered services, filled in while building.
  std::vector<std::string> service_names_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  int signal_callback_id_ ABSL_GUARDED_BY(request_mu_) = -1;

  // Marks shutdown as wanted (from a signal or Shutdown()); never blocks.
  void RequestShutdown();

  absl::Mutex request_mu_;  // Protects shutdown_requested_.
  bool shutdown_requested_ ABSL_GUARDED_BY(request_mu_) = false;
  absl::Mutex shutdown_mu_;  // Serializes the drain; protects the fields below.
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  std::vector<std::function<void()>> shutdown_callbacks_
      ABSL_GUARDED_BY(shutdown_mu_);
};

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_SERVER_H_
