#include "services/catalog/catalog_server.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "grpcpp/grpcpp.h"
#include "services/catalog/curated_models.h"
#include "services/catalog/grpc_deployment_usage.h"

namespace hangar::catalog {

absl::StatusOr<std::unique_ptr<CatalogServer>> CatalogServer::Create(
    Options options) {
  if (options.db.empty()) {
    return absl::InvalidArgumentError(
        "--db: required (a libpq conninfo or URI)");
  }
  if (options.model_store.empty()) {
    return absl::InvalidArgumentError("--model_store: required (a directory)");
  }
  if (options.curated_models.empty()) {
    return absl::InvalidArgumentError(
        "--curated_models: required (a JSON file)");
  }
  if (options.hf_endpoint.empty()) {
    return absl::InvalidArgumentError("--hf_endpoint: must not be empty");
  }
  std::unique_ptr<CatalogServer> server(new CatalogServer());

  // Validate the data file before touching the database.
  ASSIGN_OR_RETURN(
      std::vector<v1::Model> curated,
      LoadCuratedModels(options.curated_models,
                        {.cpu_max_parameters = options.cpu_max_parameters}));

  ASSIGN_OR_RETURN(
      server->pool_,
      db::Pool::Create({.conninfo = options.db,
                        .size = options.db_pool_size,
                        .connect_timeout = options.db_connect_timeout,
                        .startup_timeout = options.db_startup_timeout,
                        .clock = options.clock}));
  RETURN_IF_ERROR(MigrateCatalogSchema(*server->pool_));
  server->models_ = std::make_unique<PgModelStore>(server->pool_.get());
  server->connections_ =
      std::make_unique<PgConnectionStore>(server->pool_.get());

  server->hub_ = std::make_unique<HuggingFaceClient>(
      HuggingFaceClient::Options{.endpoint = options.hf_endpoint,
                                 .stall_timeout = options.hf_stall_timeout});

  std::string key_file = options.secret_key_file;
  if (key_file.empty()) {
    std::error_code ignored;
    std::filesystem::create_directories(options.model_store, ignored);
    key_file =
        (std::filesystem::path(options.model_store) / ".catalog-secret.key")
            .string();
  }
  absl::StatusOr<std::unique_ptr<auth::SecretBox>> secrets =
      auth::SecretBox::FromKeyFile(key_file);
  if (!secrets.ok()) {
    return PrefixStatus("--secret_key_file", secrets.status());
  }
  server->secrets_ = *std::move(secrets);

  if (!options.admin_token_file.empty()) {
    absl::StatusOr<std::unique_ptr<auth::AdminToken>> admin =
        auth::AdminToken::FromFile(options.admin_token_file);
    if (!admin.ok()) {
      return PrefixStatus("--admin_token_file", admin.status());
    }
    server->admin_token_ = *std::move(admin);
  }

  DeploymentUsage* usage = options.deployment_usage;
  if (usage == nullptr) {
    if (options.deployment_address.empty()) {
      server->owned_usage_ = std::make_unique<NoDeploymentUsage>();
    } else {
      server->owned_usage_ = std::make_unique<GrpcDeploymentUsage>(
          grpc::CreateChannel(options.deployment_address,
                              grpc::InsecureChannelCredentials()),
          GrpcDeploymentUsage::Options{.admin_token =
                                           server->admin_token_.get()});
    }
    usage = server->owned_usage_.get();
  }

  server->catalog_metrics_ =
      std::make_unique<CatalogMetrics>(server->metrics_.registry());
  ASSIGN_OR_RETURN(
      server->catalog_,
      Catalog::Create({.model_store = options.model_store,
                       .local_model_root = options.local_model_root,
                       .curated_models = std::move(curated),
                       .cpu_max_parameters = options.cpu_max_parameters,
                       .curated_connection = options.curated_connection,
                       .progress_interval = options.progress_interval,
                       .download = options.download,
                       .hub_retry = options.hub_retry,
                       .max_imports = options.max_imports,
                       .max_downloads = options.max_downloads,
                       .models = server->models_.get(),
                       .connections = server->connections_.get(),
                       .hub = server->hub_.get(),
                       .deployment_usage = usage,
                       .secrets = server->secrets_.get(),
                       .notifier = &server->notifier_,
                       .metrics = server->catalog_metrics_.get(),
                       .log = options.log,
                       .clock = options.clock}));
  server->service_ = std::make_unique<CatalogServiceImpl>(
      server->catalog_.get(), &server->notifier_, server->admin_token_.get());
  // The drain ends every WatchModel stream (UNAVAILABLE); health follows
  // the database.
  ASSIGN_OR_RETURN(server->host_,
                   ServiceHost::Start({.server = options.server,
                                       .services = {server->service_.get()},
                                       .notifiers = {&server->notifier_},
                                       .database = server->pool_.get(),
                                       .metrics = &server->metrics_,
                                       .clock = options.clock}));
  server->host_->server().SetServing(true);
  return server;
}

CatalogServer::~CatalogServer() {
  host_.reset();     // Probe, drain, server, notifier: ServiceHost's order.
  catalog_.reset();  // Stops downloads and joins background work.
}

}  // namespace hangar::catalog
