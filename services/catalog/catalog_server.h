// The catalog process's composition root: builds every piece from Options,
// in dependency order, and owns them.
//
//   PostgreSQL pool -> migrations -> PgModelStore, PgConnectionStore
//   curated list file -> validated models
//   HuggingFaceClient (--hf_endpoint), SecretBox (--secret_key_file),
//   DeploymentUsage (gRPC to --deployment_address, or "none in use"),
//   ChangeNotifier (WatchModel's feed)
//   -> Catalog (ModelImporter, PreparationManager, ConnectionRegistry on a
//   TaskGroup) -> CatalogServiceImpl -> hangar::Server (reflection, health,
//   metrics, graceful drain; the drain closes the notifier, which ends every
//   WatchModel stream with UNAVAILABLE)
//
// Create() fails with one clear status when anything is wrong (a bad
// option, an unreachable database, a malformed curated file, a port in use)
// and leaves nothing running. main.cc turns flags into Options; tests build
// the server the same way with port 0 and injected fakes.
//
//   ASSIGN_OR_RETURN(auto server, CatalogServer::Create({
//       .server = {.name = "catalog", .port = 7101, .metrics_port = 9101},
//       .db = "postgresql://hangar@127.0.0.1/hangar",
//       .model_store = "/var/lib/hangar/models",
//       .curated_models = "/usr/share/hangar/catalog/curated_models.json"}));
//   server->WaitForTermination();
#ifndef HANGAR_SERVICES_CATALOG_CATALOG_SERVER_H_
#define HANGAR_SERVICES_CATALOG_CATALOG_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/bearer.h"
#include "common/auth/secret_box.h"
#include "common/db/pool.h"
#include "common/metrics/metrics.h"
#include "common/server/server.h"
#include "common/server/service_host.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "services/catalog/catalog.h"
#include "services/catalog/catalog_metrics.h"
#include "services/catalog/catalog_service.h"
#include "services/catalog/deployment_usage.h"
#include "services/catalog/downloader.h"
#include "services/catalog/event_log.h"
#include "services/catalog/hugging_face_client.h"
#include "services/catalog/pg_connection_store.h"
#include "services/catalog/pg_model_store.h"

namespace hangar::catalog {

class CatalogServer {
 public:
  struct Options {
    // Address, ports, drain and TLS, nested as in every Hangar service.
    // Loopback by default (control plane).
    ServerOptions server = {.name = "catalog",
                            .host = "127.0.0.1",
                            .port = 7101,
                            .metrics_port = 9101};
    // When set, every call but health and reflection must carry
    // "authorization: Bearer <the token in this file>", and calls to the
    // deployment service carry it too.
    std::string admin_token_file;

    // --- State ---
    // libpq connection string or URI. Required.
    std::string db;
    // Database connections, in [1, 64].
    int db_pool_size = 8;
    // How long start-up keeps retrying while PostgreSQL refuses connections
    // (containers starting together); zero fails at once.
    absl::Duration db_startup_timeout = absl::ZeroDuration();
    // Longest one connection attempt may take (db::PoolOptions).
    absl::Duration db_connect_timeout = absl::Seconds(2);
    // Directory of prepared weights. Required.
    std::string model_store;
    // Local imports must lie under this directory; empty disables them.
    std::string local_model_root;
    // The curated model list (JSON). Required.
    std::string curated_models;
    // Key file for sealing connection tokens; created (0600) when missing.
    // Empty: <model_store>/.catalog-secret.key.
    std::string secret_key_file;

    // --- Dependencies ---
    // The Hugging Face Hub or a mirror.
    std::string hf_endpoint = "https://huggingface.co";
    // A download that moves no byte for this long is retried.
    absl::Duration hf_stall_timeout = absl::Seconds(30);
    // How a preparation waits out a Hub outage (backoff, budget).
    HubRetryPolicy hub_retry;
    // host:port of the deployment service, asked before deleting a model;
    // empty: no deployment service, nothing is in use.
    std::string deployment_address;
    // Imported models with at most this many parameters run on CPU.
    int64_t cpu_max_parameters = 2'000'000'000;
    // The connection whose token fetches curated models (several are gated
    // on the Hub); empty: curated models are fetched anonymously.
    std::string curated_connection;
    // How often download progress is stored and streamed.
    absl::Duration progress_interval = absl::Seconds(1);
    // Per-file download retries for short blips.
    FileDownloader::Options download;
    // Imports and downloads running at once, each in [1, 256].
    int max_imports = 4;
    int max_downloads = 8;

    // --- Injected for tests (not owned) ---
    // Replaces the gRPC client built from deployment_address.
    DeploymentUsage* deployment_usage = nullptr;
    // Receives the catalog's event lines instead of stderr.
    EventLog* log = nullptr;
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<CatalogServer>> Create(Options options);

  // Shuts the server down (drain) before the catalog stops its work.
  ~CatalogServer();
  CatalogServer(const CatalogServer&) = delete;
  CatalogServer& operator=(const CatalogServer&) = delete;

  // "host:port" to dial, and the bound ports.
  std::string address() const { return host_->server().address(); }
  int port() const { return host_->server().port(); }
  int metrics_port() const { return host_->server().metrics_port(); }
  Catalog& catalog() { return *catalog_; }

  // Blocks until SIGTERM/SIGINT or Shutdown(), then drains.
  void WaitForTermination() { host_->server().WaitForTermination(); }
  void Shutdown() { host_->server().Shutdown(); }

 private:
  CatalogServer() = default;

  // Declared in construction order; destroyed in reverse.
  MetricsRegistry metrics_;
  std::unique_ptr<CatalogMetrics> catalog_metrics_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<PgModelStore> models_;
  std::unique_ptr<PgConnectionStore> connections_;
  ChangeNotifier notifier_;
  std::unique_ptr<HuggingFaceClient> hub_;
  std::unique_ptr<auth::SecretBox> secrets_;
  std::unique_ptr<auth::AdminToken> admin_token_;  // Null: no admin check.
  std::unique_ptr<DeploymentUsage> owned_usage_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<CatalogServiceImpl> service_;
  // The server, its drain hooks and the database probe; destroyed first.
  std::unique_ptr<ServiceHost> host_;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_CATALOG_SERVER_H_
