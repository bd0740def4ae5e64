// The tail every database-backed composition root shares: the Server over
// the services, the drain that ends Watch streams, and the DatabaseProbe
// that keeps health honest while PostgreSQL is away — built in one call and
// torn down in the one order that is safe.
//
// A control-plane server (catalog, deployment, optimizer, scheduler) owns a
// ServiceHost as its last member:
//
//   ASSIGN_OR_RETURN(server->host_, ServiceHost::Start({
//       .server = options.server,            // .name = "catalog"
//       .services = {server->service_.get()},
//       .notifiers = {&server->notifier_},
//       .database = server->pool_.get(),
//       .metrics = &server->metrics_,
//       .clock = options.clock}));
//   ...                                   // start background work
//   server->host_->server().SetServing(true);
//
// Start():
//  * creates the hangar::Server (common/server/server.h) over `services`;
//  * registers OnShutdown hooks that Close() every notifier, so the drain
//    ends every Watch stream (WatchReactor answers UNAVAILABLE) instead of
//    holding it open until drain_timeout;
//  * when `database` is set, starts a db::DatabaseProbe (common/db/probe.h)
//    that reports to the server's "database" health entry (every entry is
//    NOT_SERVING while PostgreSQL is unreachable, SERVING when it answers)
//    and to the pool's fail-fast, logging one line per change as `name`
//    (the server's name unless set).
// It does not call SetServing(true): the composition root does, once the
// work it starts after the server (reconcilers, resumed jobs) is running.
//
// Teardown, in this order (the probe reports to the server; the server's
// in-flight calls use what the notifiers feed):
//   1. the probe stops (no health report after this);
//   2. the server drains (Server::Shutdown: health NOT_SERVING, notifiers
//      closed by the hooks, in-flight calls finish within drain_timeout);
//   3. the server is destroyed;
//   4. every notifier is closed (again: for a server that never drained).
// The destructor runs all four. A composition root that must stop its own
// work after the drain but while the server still exists calls Stop()
// (steps 1 and 2) first, then stops that work, then destroys the host:
//
//   DeploymentServer::~DeploymentServer() {
//     if (host_ != nullptr) host_->Stop();
//     if (reconciler_ != nullptr) reconciler_->Stop();
//     host_.reset();
//   }
//
// Declare the host after everything it points to (services, notifiers,
// pool, metrics), so that it is destroyed first.
#ifndef HANGAR_COMMON_SERVER_SERVICE_HOST_H_
#define HANGAR_COMMON_SERVER_SERVICE_HOST_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/db/pool.h"
#include "common/db/probe.h"
#include "common/metrics/metrics.h"
#include "common/server/server.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "grpcpp/grpcpp.h"

namespace hangar {

struct ServiceHostOptions {
  // Address, ports, drain and TLS of the server.
  ServerOptions server;

  // Prefix of the database probe's log lines; empty: server.name
  // ("catalog").
  std::string name;

  // The services to serve. Not owned; they must outlive the host. At least
  // one, none null.
  std::vector<grpc::Service*> services;

  // Closed when the drain begins, so that the Watch streams they feed end
  // with UNAVAILABLE. Not owned; none null. May be empty.
  std::vector<ChangeNotifier*> notifiers;

  // --- Injected dependencies (not owned; must outlive the host) ---
  // The pool a DatabaseProbe checks and reports to (health "database").
  // Null: no probe (a server without a database).
  db::Pool* database = nullptr;
  // The process's registry for the server's RPC metrics. Required.
  MetricsRegistry* metrics = nullptr;
  // Paces the probe. Never null.
  Clock* clock = Clock::Real();
};

class ServiceHost {
 public:
  // Builds the server, the drain hooks and the probe (which runs its first
  // check before this returns, so health is right from the first call).
  // INVALID_ARGUMENT for bad options; the server's own errors (a port in
  // use: UNAVAILABLE) as Server::Create returns them. On error nothing is
  // left running.
  static absl::StatusOr<std::unique_ptr<ServiceHost>> Start(
      ServiceHostOptions options);

  // Stop(), then destroys the server and closes every notifier.
  ~ServiceHost();
  ServiceHost(const ServiceHost&) = delete;
  ServiceHost& operator=(const ServiceHost&) = delete;

  // Stops the probe and drains the server; returns when drained.
  // Idempotent; call it from the thread that destroys the host (any thread
  // may call server().Shutdown() meanwhile). The server object (address,
  // ports) stays valid.
  void Stop();

  Server& server() { return *server_; }
  const Server& server() const { return *server_; }

 private:
  explicit ServiceHost(ServiceHostOptions options);

  const ServiceHostOptions options_;
  std::unique_ptr<Server> server_;
  // Reports to server_; stopped first.
  std::unique_ptr<db::DatabaseProbe> probe_;
};

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_SERVICE_HOST_H_
