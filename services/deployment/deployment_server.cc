#include "services/deployment/deployment_server.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/auth/crypto.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "grpcpp/grpcpp.h"
#include "services/deployment/grpc_clients.h"
#include "services/deployment/grpc_facts.h"

namespace hangar::deployment {

absl::StatusOr<std::unique_ptr<DeploymentServer>> DeploymentServer::Create(
    Options options) {
  if (options.db.empty()) {
    return absl::InvalidArgumentError(
        "--db: required (a libpq conninfo or URI)");
  }
  if (options.model_facts == nullptr && options.catalog_address.empty()) {
    return absl::InvalidArgumentError(
        "--catalog_address: required (host:port of the catalog)");
  }
  if (options.offering_facts == nullptr && options.scheduler_address.empty()) {
    return absl::InvalidArgumentError(
        "--scheduler_address: required (host:port of the scheduler)");
  }
  if (options.gateway_endpoint.empty()) {
    return absl::InvalidArgumentError(
        "--gateway_endpoint: required (the gateway address shown to users)");
  }
  if (options.dependency_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("dependency_timeout: must be positive");
  }
  for (const auto& [flag, price] :
       {std::pair<const char*, double>{"--prompt_price_per_1k",
                                       options.prompt_price_per_1k},
        {"--completion_price_per_1k", options.completion_price_per_1k}}) {
    if (!std::isfinite(price) || price < 0 || price > 1e6) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, ": must be a price in [0, 1000000] USD; was ", price));
    }
  }
  std::unique_ptr<DeploymentServer> server(new DeploymentServer());

  if (!options.admin_token_file.empty()) {
    absl::StatusOr<std::unique_ptr<auth::AdminToken>> admin =
        auth::AdminToken::FromFile(options.admin_token_file);
    if (!admin.ok()) {
      return PrefixStatus("--admin_token_file", admin.status());
    }
    server->admin_token_ = *std::move(admin);
  }

  ASSIGN_OR_RETURN(
      server->pool_,
      db::Pool::Create({.conninfo = options.db,
                        .size = options.db_pool_size,
                        .connect_timeout = options.db_connect_timeout,
                        .startup_timeout = options.db_startup_timeout,
                        .clock = options.clock}));
  RETURN_IF_ERROR(MigrateDeploymentSchema(*server->pool_));
  if (options.db_read_pool_size < 0 || options.db_read_pool_size > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("--db_read_pool_size: must be in [0, 16]; was ",
                     options.db_read_pool_size));
  }
  if (options.db_read_pool_size > 0) {
    ASSIGN_OR_RETURN(
        server->read_pool_,
        db::Pool::Create({.conninfo = options.db,
                          .size = options.db_read_pool_size,
                          .connect_timeout = options.db_connect_timeout,
                          .startup_timeout = options.db_startup_timeout,
                          .clock = options.clock}));
  }
  server->store_ = std::make_unique<PgDeploymentStore>(
      server->pool_.get(), server->read_pool_.get());
  server->reconciler_store_ =
      std::make_unique<PgDeploymentStore>(server->pool_.get());

  ModelFactsSource* models = options.model_facts;
  if (models == nullptr) {
    server->owned_model_facts_ = std::make_unique<GrpcCatalogFacts>(
        grpc::CreateChannel(options.catalog_address,
                            grpc::InsecureChannelCredentials()),
        GrpcFactsOptions{.address = options.catalog_address,
                         .admin_token = server->admin_token_.get(),
                         .timeout = options.dependency_timeout});
    models = server->owned_model_facts_.get();
  }
  OfferingFactsSource* offerings = options.offering_facts;
  if (offerings == nullptr) {
    server->owned_offering_facts_ = std::make_unique<GrpcSchedulerFacts>(
        grpc::CreateChannel(options.scheduler_address,
                            grpc::InsecureChannelCredentials()),
        GrpcFactsOptions{.address = options.scheduler_address,
                         .admin_token = server->admin_token_.get(),
                         .timeout = options.dependency_timeout});
    offerings = server->owned_offering_facts_.get();
  }

  const GrpcFactsOptions client_options{
      .admin_token = server->admin_token_.get(),
      .timeout = options.dependency_timeout};
  CatalogClient* catalog = options.catalog_client;
  if (catalog == nullptr) {
    GrpcFactsOptions o = client_options;
    o.address = options.catalog_address;
    server->owned_catalog_client_ = std::make_unique<GrpcCatalogClient>(
        grpc::CreateChannel(options.catalog_address,
                            grpc::InsecureChannelCredentials()),
        std::move(o));
    catalog = server->owned_catalog_client_.get();
  }
  OptimizerClient* optimizer = options.optimizer_client;
  if (optimizer == nullptr) {
    GrpcFactsOptions o = client_options;
    o.address = options.optimizer_address;
    server->owned_optimizer_client_ = std::make_unique<GrpcOptimizerClient>(
        grpc::CreateChannel(options.optimizer_address,
                            grpc::InsecureChannelCredentials()),
        std::move(o));
    optimizer = server->owned_optimizer_client_.get();
  }
  SchedulerClient* scheduler = options.scheduler_client;
  if (scheduler == nullptr) {
    GrpcFactsOptions o = client_options;
    o.address = options.scheduler_address;
    server->owned_scheduler_client_ = std::make_unique<GrpcSchedulerClient>(
        grpc::CreateChannel(options.scheduler_address,
                            grpc::InsecureChannelCredentials()),
        std::move(o));
    scheduler = server->owned_scheduler_client_.get();
  }
  std::string owner = options.reconciler_owner;
  if (owner.empty()) {
    char host[256] = {};
    (void)gethostname(host, sizeof(host) - 1);
    ASSIGN_OR_RETURN(std::string random, auth::RandomBytes(4));
    std::string suffix;
    for (unsigned char c : random) absl::StrAppend(&suffix, absl::Hex(c));
    owner = absl::StrCat(host, "-", getpid(), "-", suffix);
  }
  // Webhooks: the reconciler's event sink (with any injected one), and the
  // senders started with the server.
  if (options.webhook_max_attempts < 1 || options.webhook_max_attempts > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("--webhook_max_attempts: must be in [1, 100]; was ",
                     options.webhook_max_attempts));
  }
  if (options.webhook_timeout <= absl::ZeroDuration() ||
      options.webhook_timeout > absl::Seconds(60)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--webhook_timeout: must be in (0, 60s]; was ",
                     absl::FormatDuration(options.webhook_timeout)));
  }
  server->webhook_store_ = std::make_unique<webhooks::PgWebhookStore>(
      server->pool_.get(), options.clock);
  {
    webhooks::Webhooks::Options webhook_options{
        .store = server->webhook_store_.get(), .clock = options.clock};
    webhook_options.retry.max_attempts = options.webhook_max_attempts;
    webhook_options.timeout = options.webhook_timeout;
    webhook_options.connect_timeout =
        std::min(webhook_options.connect_timeout, options.webhook_timeout);
    absl::StatusOr<std::unique_ptr<webhooks::Webhooks>> created =
        webhooks::Webhooks::Create(std::move(webhook_options));
    if (!created.ok()) return PrefixStatus("webhooks", created.status());
    server->webhooks_ = *std::move(created);
    server->events_ = std::make_unique<webhooks::FanOutEventSink>(
        std::vector<DeploymentEventSink*>{server->webhooks_.get(),
                                          options.events});
  }
  {
    absl::StatusOr<std::unique_ptr<Reconciler>> reconciler =
        Reconciler::Create({.owner = owner,
                            .lease_duration = options.lease_duration,
                            .resync_interval = options.resync_interval,
                            .active_interval = options.active_interval,
                            .drain_seconds = options.drain_seconds,
                            .threads_per_replica = options.threads_per_replica,
                            .max_context_length = options.max_context_length,
                            .deploy_timeout = options.deploy_timeout,
                            .store = server->reconciler_store_.get(),
                            .catalog = catalog,
                            .optimizer = optimizer,
                            .scheduler = scheduler,
                            .models = models,
                            .offerings = offerings,
                            .notifier = &server->notifier_,
                            .events = server->events_.get(),
                            .clock = options.clock});
    if (!reconciler.ok())
      return PrefixStatus("reconciler", reconciler.status());
    server->reconciler_ = *std::move(reconciler);
  }

  ASSIGN_OR_RETURN(
      server->deployments_,
      Deployments::Create(
          {.gateway_endpoint = options.gateway_endpoint,
           .prompt_price_per_1k_micros =
               std::llround(options.prompt_price_per_1k * 1e6),
           .completion_price_per_1k_micros =
               std::llround(options.completion_price_per_1k * 1e6),
           .on_change =
               [reconciler = server->reconciler_.get()](
                   const std::string& name) { reconciler->Wake(name); },
           .store = server->store_.get(),
           .models = models,
           .offerings = offerings,
           .notifier = &server->notifier_,
           .clock = options.clock}));
  ASSIGN_OR_RETURN(server->deployment_webhooks_,
                   webhooks::DeploymentWebhooks::Create(
                       {.deployments = server->deployments_.get(),
                        .webhooks = server->webhooks_.get(),
                        .notifier = &server->notifier_,
                        // PgDeploymentStore::Get joins webhook_targets.
                        .store_fills_urls_on_get = true}));
  server->service_ = std::make_unique<DeploymentServiceImpl>(
      server->deployments_.get(), &server->notifier_,
      server->admin_token_.get(), server->deployment_webhooks_.get());
  // The drain ends every watch stream instead of holding it open; health
  // follows the database.
  ASSIGN_OR_RETURN(server->host_,
                   ServiceHost::Start({.server = options.server,
                                       .services = {server->service_.get()},
                                       .notifiers = {&server->notifier_},
                                       .database = server->pool_.get(),
                                       .metrics = &server->metrics_,
                                       .clock = options.clock}));
  RETURN_IF_ERROR(server->webhooks_->Start());
  if (options.start_reconciler) server->reconciler_->Start();
  server->host_->server().SetServing(true);
  return server;
}

DeploymentServer::~DeploymentServer() {
  // Probe, then drain (ServiceHost's order).
  if (host_ != nullptr) host_->Stop();
  // After the drain (no call can wake it any more), before the store goes.
  if (reconciler_ != nullptr) reconciler_->Stop();
  // Its sink's senders, once nothing reports to them any more.
  if (webhooks_ != nullptr) webhooks_->Stop();
  host_.reset();  // The server, then the notifier.
}

}  // namespace hangar::deployment
