#include "services/optimizer/optimizer_server.h"

#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "grpcpp/grpcpp.h"
#include "services/optimizer/grpc_scheduler_client.h"

namespace hangar::optimizer {

absl::StatusOr<std::unique_ptr<OptimizerServer>> OptimizerServer::Create(
    Options options) {
  if (options.db.empty())
    return absl::InvalidArgumentError(
        "--db: required (a libpq conninfo or URI)");
  if (options.model_store.empty())
    return absl::InvalidArgumentError("--model_store: required (a directory)");
  if (options.scheduler == nullptr && options.scheduler_address.empty()) {
    return absl::InvalidArgumentError(
        "--scheduler_address: required (host:port of the scheduler)");
  }
  if (options.optimize_binary.empty())
    return absl::InvalidArgumentError("--optimize_binary: must not be empty");
  std::unique_ptr<OptimizerServer> server(new OptimizerServer());
  server->optimizer_metrics_ =
      std::make_unique<OptimizerMetrics>(server->metrics_.registry());
  ASSIGN_OR_RETURN(
      server->pool_,
      db::Pool::Create({.conninfo = options.db,
                        .size = options.db_pool_size,
                        .connect_timeout = options.db_connect_timeout,
                        .startup_timeout = options.db_startup_timeout,
                        .clock = options.clock}));
  RETURN_IF_ERROR(MigrateOptimizerSchema(*server->pool_));
  server->store_ = std::make_unique<PgJobStore>(server->pool_.get());
  if (!options.admin_token_file.empty()) {
    absl::StatusOr<std::unique_ptr<auth::AdminToken>> admin =
        auth::AdminToken::FromFile(options.admin_token_file);
    if (!admin.ok()) return PrefixStatus("--admin_token_file", admin.status());
    server->admin_token_ = *std::move(admin);
  }
  SchedulerClient* scheduler = options.scheduler;
  if (scheduler == nullptr) {
    server->owned_scheduler_ = std::make_unique<GrpcSchedulerClient>(
        grpc::CreateChannel(options.scheduler_address,
                            grpc::InsecureChannelCredentials()),
        GrpcSchedulerClient::Options{.admin_token =
                                         server->admin_token_.get()});
    scheduler = server->owned_scheduler_.get();
  }
  absl::StatusOr<std::unique_ptr<Optimizer>> optimizer = Optimizer::Create(
      {.model_store = options.model_store,
       .optimize_binary = options.optimize_binary,
       .max_logit_error_bounds = options.max_logit_error_bounds,
       .watch_slice = options.watch_slice,
       .gc_grace = options.gc_grace,
       .collect_at_start = options.gc_at_start,
       .store = server->store_.get(),
       .scheduler = scheduler,
       .notifier = &server->notifier_,
       .metrics = server->optimizer_metrics_.get(),
       .clock = options.clock});
  if (!optimizer.ok()) return PrefixStatus("optimizer", optimizer.status());
  server->optimizer_ = *std::move(optimizer);
  server->service_ = std::make_unique<OptimizerServiceImpl>(
      server->optimizer_.get(), &server->notifier_, server->admin_token_.get());
  ASSIGN_OR_RETURN(server->host_,
                   ServiceHost::Start({.server = options.server,
                                       .services = {server->service_.get()},
                                       .notifiers = {&server->notifier_},
                                       .database = server->pool_.get(),
                                       .metrics = &server->metrics_,
                                       .clock = options.clock}));
  // Jobs that were running when the last process stopped.
  RETURN_IF_ERROR(server->optimizer_->Start());
  server->host_->server().SetServing(true);
  return server;
}

OptimizerServer::~OptimizerServer() {
  host_.reset();       // Probe, drain, server, notifier: ServiceHost's order.
  optimizer_.reset();  // Stops following jobs (they go on in the scheduler).
}

}  // namespace hangar::optimizer
