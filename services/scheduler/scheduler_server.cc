#include "services/scheduler/scheduler_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "services/scheduler/hardware_config.h"

namespace hangar::scheduler {

absl::StatusOr<std::unique_ptr<SchedulerServer>> SchedulerServer::Create(
    Options options) {
  if (options.db.empty()) {
    return absl::InvalidArgumentError(
        "--db: required (a libpq conninfo or URI)");
  }
  if (options.hardware_config.empty()) {
    return absl::InvalidArgumentError(
        "--hardware_config: required (a protobuf text file)");
  }
  if (options.placement_policy != "best-fit" &&
      options.placement_policy != "first-fit" &&
      options.placement_policy != "fgd") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--placement_policy: must be best-fit, first-fit or fgd; was \"",
        options.placement_policy, "\""));
  }
  // The hardware file before the database: a typo fails at once.
  absl::StatusOr<config::HardwareConfig> hardware =
      LoadHardwareConfig(options.hardware_config);
  if (!hardware.ok()) {
    return PrefixStatus("--hardware_config", hardware.status());
  }
  std::unique_ptr<SchedulerServer> server(new SchedulerServer());
  if (!options.admin_token_file.empty()) {
    absl::StatusOr<std::unique_ptr<auth::AdminToken>> admin =
        auth::AdminToken::FromFile(options.admin_token_file);
    if (!admin.ok()) return PrefixStatus("--admin_token_file", admin.status());
    server->admin_token_ = *std::move(admin);
  }
  ASSIGN_OR_RETURN(
      server->pool_,
      db::Pool::Create({.conninfo = options.db,
                        .size = options.db_pool_size,
                        .connect_timeout = options.db_connect_timeout,
                        .startup_timeout = options.db_startup_timeout,
                        .clock = options.clock}));
  RETURN_IF_ERROR(MigrateSchedulerSchema(*server->pool_));
  server->store_ = std::make_unique<PgSchedulerStore>(server->pool_.get());
  server->scheduler_metrics_ =
      std::make_unique<SchedulerMetrics>(server->metrics_.registry());

  LocalExecutor::Options executor = options.executor;
  executor.clock = options.clock;
  ASSIGN_OR_RETURN(
      server->scheduler_,
      Scheduler::Create(
          {.hardware = *std::move(hardware),
           .placement_policy = options.placement_policy,
           .autoscale_period = options.autoscale_period,
           .default_drain = options.default_drain,
           .default_report_ttl = options.default_report_ttl,
           .make_executor = [executor](ExecutorObserver observer) mutable
           -> absl::StatusOr<std::unique_ptr<Executor>> {
             executor.observer = std::move(observer);
             absl::StatusOr<std::unique_ptr<LocalExecutor>> local =
                 LocalExecutor::Create(executor);
             if (!local.ok()) return PrefixStatus("executor", local.status());
             return std::unique_ptr<Executor>(*std::move(local));
           },
           .store = server->store_.get(),
           .notifier = &server->notifier_,
           .metrics = server->scheduler_metrics_.get(),
           .clock = options.clock}));
  server->service_ = std::make_unique<SchedulerServiceImpl>(
      server->scheduler_.get(), &server->notifier_, server->admin_token_.get());
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

SchedulerServer::~SchedulerServer() {
  host_.reset();       // Probe, drain, server, notifier: ServiceHost's order.
  scheduler_.reset();  // Stops the loop and the executor's children.
}

}  // namespace hangar::scheduler
