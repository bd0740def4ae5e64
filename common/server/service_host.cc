#include "common/server/service_host.h"

#include <utility>

#include "common/status/status_macros.h"

namespace hangar {

absl::StatusOr<std::unique_ptr<ServiceHost>> ServiceHost::Start(
    ServiceHostOptions options) {
  if (options.services.empty()) {
    return absl::InvalidArgumentError("services: must not be empty");
  }
  for (grpc::Service* service : options.services) {
    if (service == nullptr) {
      return absl::InvalidArgumentError("services: must not hold null");
    }
  }
  for (ChangeNotifier* notifier : options.notifiers) {
    if (notifier == nullptr) {
      return absl::InvalidArgumentError("notifiers: must not hold null");
    }
  }
  if (options.metrics == nullptr) {
    return absl::InvalidArgumentError("metrics: must not be null");
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock: must not be null");
  }
  auto host = std::unique_ptr<ServiceHost>(new ServiceHost(std::move(options)));
  const ServiceHostOptions& o = host->options_;
  ASSIGN_OR_RETURN(host->server_,
                   Server::Create(o.server, o.services, o.metrics));
  // The drain ends every Watch stream (UNAVAILABLE) instead of holding it
  // open until drain_timeout.
  for (ChangeNotifier* notifier : o.notifiers) {
    host->server_->OnShutdown([notifier] { notifier->Close(); });
  }
  if (o.database != nullptr) {
    ASSIGN_OR_RETURN(
        host->probe_,
        db::DatabaseProbe::Start(
            {.pool = o.database,
             .name = o.name.empty() ? o.server.name : o.name,
             .on_change = host->server_->HealthReporter("database"),
             .clock = o.clock}));
  }
  return host;
}

ServiceHost::ServiceHost(ServiceHostOptions options)
    : options_(std::move(options)) {}

void ServiceHost::Stop() {
  probe_.reset();  // It reports to server_.
  if (server_ != nullptr) server_->Shutdown();
}

ServiceHost::~ServiceHost() {
  Stop();
  server_.reset();
  for (ChangeNotifier* notifier : options_.notifiers) notifier->Close();
}

}  // namespace hangar
