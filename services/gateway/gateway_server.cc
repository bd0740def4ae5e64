#include "services/gateway/gateway_server.h"

#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "grpcpp/grpcpp.h"

namespace hangar::gateway {
namespace {

// The sequence-id prefix: the gateway id's printable characters, at most 40.
std::string SequencePrefix(const std::string& gateway_id) {
  std::string prefix;
  for (char c : gateway_id) {
    if (c > 0x20 && c < 0x7f && prefix.size() < 40) prefix += c;
  }
  return prefix.empty() ? "gw" : prefix;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GatewayServer>> GatewayServer::Create(
    Options options) {
  if (options.scheduler_address.empty()) {
    return absl::InvalidArgumentError(
        "--scheduler_address: required (host:port)");
  }
  if (options.deployment_address.empty()) {
    return absl::InvalidArgumentError(
        "--deployment_address: required (host:port)");
  }
  if (options.gateway_id.empty() || options.gateway_id.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gateway_id: must be 1 to 128 characters; was ",
                     options.gateway_id.size()));
  }
  if (options.max_concurrent_per_key < 1 ||
      options.max_concurrent_per_key > (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_concurrent_per_key: must be in [1, 1048576]; was ",
                     options.max_concurrent_per_key));
  }
  if (options.default_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_timeout: must be positive");
  }
  if (options.report_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("report_interval: must be positive");
  }
  std::unique_ptr<GatewayServer> server(new GatewayServer(options));

  if (!options.admin_token_file.empty()) {
    absl::StatusOr<std::unique_ptr<auth::AdminToken>> admin =
        auth::AdminToken::FromFile(options.admin_token_file);
    if (!admin.ok()) return PrefixStatus("--admin_token_file", admin.status());
    server->admin_token_ = *std::move(admin);
  }
  server->gateway_metrics_ =
      std::make_unique<GatewayMetrics>(server->metrics_.registry());
  server->limiter_ =
      std::make_unique<ConcurrencyLimiter>(options.max_concurrent_per_key);
  ASSIGN_OR_RETURN(
      server->usage_,
      UsageMeter::Create({.reporter_id = options.gateway_id.substr(0, 100),
                          .clock = options.clock}));
  absl::StatusOr<std::unique_ptr<Dispatcher>> dispatcher =
      Dispatcher::Create({.sequence_prefix = SequencePrefix(options.gateway_id),
                          .max_queue_delay = options.max_queue_delay,
                          .max_queue_size = options.max_queue_size,
                          .max_attempts = options.max_attempts,
                          .metrics = server->gateway_metrics_.get(),
                          .usage = server->usage_.get(),
                          .clock = options.clock});
  if (!dispatcher.ok()) {
    // Name the flags behind the batcher's settings.
    return PrefixStatus("--max_queue_delay/--max_queue_size",
                        dispatcher.status());
  }
  server->dispatcher_ = *std::move(dispatcher);
  server->upstream_ = std::make_unique<Upstream>(Upstream::Options{
      .gateway_id = options.gateway_id,
      .load_interval = options.report_interval,
      .usage_interval = options.report_interval,
      .scheduler = grpc::CreateChannel(options.scheduler_address,
                                       grpc::InsecureChannelCredentials()),
      .deployment = grpc::CreateChannel(options.deployment_address,
                                        grpc::InsecureChannelCredentials()),
      .admin_token = server->admin_token_.get(),
      .routes = &server->routes_,
      .keys = &server->keys_,
      .dispatcher = server->dispatcher_.get(),
      .usage = server->usage_.get(),
      .clock = options.clock});
  server->service_ = std::make_unique<InferenceServiceImpl>(
      InferenceServiceImpl::Options{.default_timeout = options.default_timeout,
                                    .keys = &server->keys_,
                                    .routes = &server->routes_,
                                    .limiter = server->limiter_.get(),
                                    .dispatcher = server->dispatcher_.get(),
                                    .metrics = server->gateway_metrics_.get(),
                                    .clock = options.clock});
  ASSIGN_OR_RETURN(server->tasks_, TaskGroup::Create({.name = "gateway",
                                                      .max_threads = 5,
                                                      .max_queued = 0,
                                                      .clock = options.clock}));
  RETURN_IF_ERROR(
      server->tasks_->Submit([dispatcher = server->dispatcher_.get()](
                                 const StopToken&) { dispatcher->Run(); }));
  RETURN_IF_ERROR(server->upstream_->Start(*server->tasks_));
  ASSIGN_OR_RETURN(server->server_,
                   Server::Create(options.server, {server->service_.get()},
                                  &server->metrics_));
  // Streams end before the gRPC drain gives up on them: calls still running
  // at 3/4 of the drain timeout are answered UNAVAILABLE.
  server->server_->OnShutdown([dispatcher = server->dispatcher_.get(),
                               clock = options.clock,
                               drain = options.server.drain_timeout] {
    dispatcher->Drain(clock->Now() + drain * 3 / 4);
  });
  server->server_->SetServing(true);
  return server;
}

void GatewayServer::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) server_->Shutdown();
  if (dispatcher_ != nullptr) dispatcher_->Stop();
  if (upstream_ != nullptr) upstream_->Stop();
  if (tasks_ != nullptr) tasks_->Shutdown();
  if (upstream_ != nullptr &&
      !upstream_->FlushUsage(options_.clock->Now() +
                             options_.usage_flush_timeout)) {
    std::cerr << "gateway: usage of " << usage_->unreported_requests()
              << " requests could not be reported before shutdown" << std::endl;
  }
}

void GatewayServer::WaitForTermination() {
  server_->WaitForTermination();
  Shutdown();
}

GatewayServer::~GatewayServer() { Shutdown(); }

}  // namespace hangar::gateway
