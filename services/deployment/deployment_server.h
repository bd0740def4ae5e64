// The deployment process's composition root: builds every piece from
// Options, in dependency order, and owns them.
//
//   PostgreSQL pool -> migrations -> PgDeploymentStore
//   admin token (--admin_token_file), carried on calls to the catalog and
//   the scheduler too
//   GrpcCatalogFacts (--catalog_address), GrpcSchedulerFacts
//   (--scheduler_address), or fakes injected by tests
//   ChangeNotifier (WatchApiKeys' feed)
//   Reconciler over the catalog, optimizer (--optimizer_address) and
//   scheduler clients (or injected ones), woken by Deployments' writes
//   -> Deployments -> DeploymentServiceImpl -> hangar::Server (reflection,
//   health, metrics, graceful drain; the drain closes the notifier, which
//   ends every watch stream with UNAVAILABLE) and a DatabaseProbe that turns
//   health NOT_SERVING while PostgreSQL is unreachable.
//
// Create() fails with one clear status naming the flag when anything is
// wrong, and leaves nothing running. main.cc turns flags into Options;
// tests build the server the same way with port 0 and injected facts.
#ifndef HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_SERVER_H_
#define HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_SERVER_H_

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
#include "services/deployment/clients.h"
#include "services/deployment/deployment_events.h"
#include "services/deployment/deployment_service.h"
#include "services/deployment/deployments.h"
#include "services/deployment/facts.h"
#include "services/deployment/pg_deployment_store.h"
#include "services/deployment/reconciler.h"
#include "services/deployment/webhooks/deployment_webhooks.h"
#include "services/deployment/webhooks/event_fan_out.h"
#include "services/deployment/webhooks/pg_webhook_store.h"
#include "services/deployment/webhooks/webhooks.h"

namespace hangar::deployment {

class DeploymentServer {
 public:
  struct Options {
    // Address, ports, drain and TLS, nested as in every Hangar service.
    // Loopback by default (control plane).
    ServerOptions server = {.name = "deployment",
                            .host = "127.0.0.1",
                            .port = 7102,
                            .metrics_port = 9102};
    // When set, every call but health and reflection must carry
    // "authorization: Bearer <the token in this file>", and calls to the
    // catalog and the scheduler carry it too.
    std::string admin_token_file;

    // --- State ---
    // libpq connection string or URI. Required.
    std::string db;
    // Database connections, in [1, 64].
    int db_pool_size = 8;
    // How long start-up keeps retrying while PostgreSQL refuses connections;
    // zero fails at once.
    absl::Duration db_startup_timeout = absl::ZeroDuration();
    // Longest one connection attempt may take.
    absl::Duration db_connect_timeout = absl::Seconds(2);
    // Connections of a second pool kept for GetDeployment and
    // ListDeployments, in [0, 16]; 0: reads share the main pool. Its own
    // few connections keep reads from queueing behind creates and the
    // reconciler's passes when all of the main pool's are busy.
    int db_read_pool_size = 2;

    // --- Dependencies ---
    // host:port of the catalog (model facts). Required unless
    // `model_facts` is injected.
    std::string catalog_address;
    // host:port of the scheduler (hardware offerings). Required unless
    // `offering_facts` is injected.
    std::string scheduler_address;
    // host:port of the optimizer (the reconciler's conversion jobs).
    // Required unless `optimizer_client` is injected.
    std::string optimizer_address = "127.0.0.1:7103";
    // Deadline of one call to the catalog, the optimizer or the scheduler.
    absl::Duration dependency_timeout = absl::Seconds(5);

    // --- The reconciler (reconciler.h) ---
    // Every live deployment is looked at this often.
    absl::Duration resync_interval = absl::Seconds(10);
    // A deployment on its way (fetching, optimizing, starting replicas,
    // releasing them) is looked at this often.
    absl::Duration active_interval = absl::Seconds(1);
    // How long a deployment stays with this process without a pass before
    // another process may take it over.
    absl::Duration lease_duration = absl::Seconds(30);
    // How long a released replica may finish its requests, in [0, 3600] s.
    int drain_seconds = 10;
    // Engine threads per replica, in [1, 256].
    int threads_per_replica = 1;
    // KV cache per replica sequence: the model's context, at most this.
    int max_context_length = 8192;
    // A revision DEPLOYING longer than this (fewer than min_replicas READY)
    // goes FAILED, naming its replicas' states; > 0.
    absl::Duration deploy_timeout = absl::Minutes(10);
    // This process's name in leases; empty: "<hostname>-<pid>-<random>".
    std::string reconciler_owner;
    // The gateway address shown to users (Deployment.endpoint). Required.
    std::string gateway_endpoint = "127.0.0.1:7100";

    // --- Webhooks (webhooks/webhooks.h) ---
    // Attempts per delivery in all, in [1, 100].
    int webhook_max_attempts = 8;
    // Longest one delivery attempt may take, in (0, 60s].
    absl::Duration webhook_timeout = absl::Seconds(5);

    // --- Charges ---
    // Inference prices in USD per 1000 prompt / completion tokens, >= 0.
    double prompt_price_per_1k = 0.0;
    double completion_price_per_1k = 0.0;

    // --- For tests ---
    // False: the reconciler's loop is not started (tests that make each
    // pass themselves through reconciler()).
    bool start_reconciler = true;
    // Injected (not owned):
    ModelFactsSource* model_facts = nullptr;
    OfferingFactsSource* offering_facts = nullptr;
    CatalogClient* catalog_client = nullptr;
    OptimizerClient* optimizer_client = nullptr;
    SchedulerClient* scheduler_client = nullptr;
    // Optional: told of every committed state change (webhooks).
    DeploymentEventSink* events = nullptr;
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<DeploymentServer>> Create(
      Options options);

  ~DeploymentServer();
  DeploymentServer(const DeploymentServer&) = delete;
  DeploymentServer& operator=(const DeploymentServer&) = delete;

  std::string address() const { return host_->server().address(); }
  int port() const { return host_->server().port(); }
  int metrics_port() const { return host_->server().metrics_port(); }

  Reconciler* reconciler() { return reconciler_.get(); }

  void WaitForTermination() { host_->server().WaitForTermination(); }
  void Shutdown() { host_->server().Shutdown(); }

 private:
  DeploymentServer() = default;

  // Declared in construction order; destroyed in reverse.
  MetricsRegistry metrics_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<db::Pool> read_pool_;  // Null: reads use pool_.
  std::unique_ptr<PgDeploymentStore> store_;
  // The reconciler's: all on pool_, so its passes leave the read pool to
  // API reads.
  std::unique_ptr<PgDeploymentStore> reconciler_store_;
  ChangeNotifier notifier_;
  std::unique_ptr<auth::AdminToken> admin_token_;  // Null: no admin check.
  std::unique_ptr<ModelFactsSource> owned_model_facts_;
  std::unique_ptr<OfferingFactsSource> owned_offering_facts_;
  std::unique_ptr<CatalogClient> owned_catalog_client_;
  std::unique_ptr<OptimizerClient> owned_optimizer_client_;
  std::unique_ptr<SchedulerClient> owned_scheduler_client_;
  std::unique_ptr<webhooks::PgWebhookStore> webhook_store_;
  std::unique_ptr<webhooks::Webhooks> webhooks_;
  std::unique_ptr<webhooks::FanOutEventSink> events_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<Deployments> deployments_;
  std::unique_ptr<webhooks::DeploymentWebhooks> deployment_webhooks_;
  std::unique_ptr<DeploymentServiceImpl> service_;
  // The server, its drain hooks and the database probe; destroyed first.
  std::unique_ptr<ServiceHost> host_;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_SERVER_H_
