#include "common/server/server.h"

#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/server/call_context_interceptor.h"
#include "common/server/invalid_request_interceptor.h"
#include "common/server/shutdown_signal.h"
#include "common/status/status_util.h"
#include "common/util/file.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/impl/server_builder_option.h"
#include "grpcpp/impl/server_builder_plugin.h"
#include "grpcpp/impl/server_initializer.h"
#include "grpcpp/resource_quota.h"

namespace hangar {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     const std::string& what) {
  absl::StatusOr<std::string> contents = ReadFileToString(path);
  if (!contents.ok()) return PrefixStatus(what, contents.status());
  return contents;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(
    const ServerOptions& options) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_cert_file and tls_key_file: give both or neither");
  }
  if (options.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  auto cert = ReadFile(options.tls_cert_file, "tls_cert_file");
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(options.tls_key_file, "tls_key_file");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(ssl);
}

// gRPC does not say which services a grpc::Service implements; a builder
// plugin is handed the list (the reflection plugin reads it the same way).
class ServiceListPlugin final : public grpc::ServerBuilderPlugin {
 public:
  explicit ServiceListPlugin(std::vector<std::string>* names) : names_(names) {}
  std::string name() override { return "hangar_service_list"; }
  void InitServer(grpc::ServerInitializer* initializer) override {
    const std::vector<std::string>* services = initializer->GetServiceList();
    if (services != nullptr) *names_ = *services;
  }
  void Finish(grpc::ServerInitializer*) override {}
  void ChangeArguments(const std::string&, void*) override {}

 private:
  std::vector<std::string>* names_;
};

class ServiceListOption final : public grpc::ServerBuilderOption {
 public:
  explicit ServiceListOption(std::vector<std::string>* names) : names_(names) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    plugins->push_back(std::make_unique<ServiceListPlugin>(names_));
  }

 private:
  std::vector<std::string>* names_;
};

absl::Status Validate(const ServerOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("port: must be in [0, 65535]; was ", options.port));
  }
  if (options.metrics_port < -1 || options.metrics_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics_port: must be in [-1, 65535]; was ", options.metrics_port));
  }
  if (options.drain_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("drain_timeout: must be >= 0");
  }
  if (options.max_message_bytes < 1024 ||
      options.max_message_bytes > (1 << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes: must be in [1024, 1073741824]; was ",
                     options.max_message_bytes));
  }
  if (options.max_threads < 4 || options.max_threads > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_threads: must be in [4, 4096]; was ", options.max_threads));
  }
  return absl::OkStatus();
}

}  // namespace

Server::Server(ServerOptions options, MetricsRegistry* metrics)
    : options_(std::move(options)),
      metrics_(metrics),
      server_metrics_(metrics->registry()) {}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(
    const ServerOptions& options, const std::vector<grpc::Service*>& services,
    MetricsRegistry* metrics) {
  if (metrics == nullptr) {
    return absl::InvalidArgumentError("metrics: must not be null");
  }
  if (absl::Status valid = Validate(options); !valid.ok()) return valid;
  auto credentials = Credentials(options);
  if (!credentials.ok()) return credentials.status();

  std::unique_ptr<Server> server(new Server(options, metrics));
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::string address = absl::StrCat(options.host, ":", options.port);
  builder.AddListeningPort(address, *credentials, &server->port_);
  // Two servers must never share a port by accident (gRPC sets SO_REUSEPORT
  // by default, which would let a second instance bind silently).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  grpc::ResourceQuota quota(absl::StrCat("hangar-", options.name));
  quota.SetMaxThreads(options.max_threads);
  builder.SetResourceQuota(quota);
  for (grpc::Service* service : services) builder.RegisterService(service);
  builder.RegisterService(&server->health_);
  builder.SetOption(
      std::make_unique<ServiceListOption>(&server->service_names_));

  // Order matters for PRE_SEND_STATUS: the status is corrected before the
  // metrics interceptor records its code.
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(std::make_unique<InvalidRequestInterceptorFactory>(
      &server->server_metrics_));
  interceptors.push_back(std::make_unique<CallContextInterceptorFactory>());
  interceptors.push_back(
      std::make_unique<MetricsInterceptorFactory>(&server->server_metrics_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));

  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat(options.name, ": cannot listen on ", address,
                     " (in use, or not an address of this host)"));
  }
  if (options.metrics_port >= 0) {
    absl::Status serving = metrics->Serve(options.host, options.metrics_port);
    if (!serving.ok()) {
      server->server_->Shutdown();
      return serving;
    }
  }
  for (const std::string& name : server->service_names_) {
    server->health_.AddService(name);
  }
  return server;
}

Server::~Server() { Shutdown(); }

std::string Server::address() const {
  std::string host = options_.host == "0.0.0.0" ? "127.0.0.1" : options_.host;
  return absl::StrCat(host, ":", port_);
}

int Server::metrics_port() const { return metrics_->port(); }

void Server::SetServing(bool serving) { health_.SetServing(serving); }

void Server::SetDependencyHealth(const std::string& dependency, bool healthy) {
  health_.SetDependency(dependency, healthy);
}

std::function<void(bool)> Server::HealthReporter(std::string dependency) {
  return [this, dependency = std::move(dependency)](bool healthy) {
    SetDependencyHealth(dependency, healthy);
  };
}

void Server::RequestShutdown() {
  absl::MutexLock lock(&request_mu_);
  shutdown_requested_ = true;
}

void Server::Shutdown() {
  RequestShutdown();
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  // Health first, so load balancers and watchers stop sending; then end
  // health Watch streams, which would otherwise hold the drain open.
  health_.Shutdown();
  for (const auto& callback : shutdown_callbacks_) callback();
  // Stops accepting calls and waits for in-flight ones until the deadline,
  // then cancels whatever is left.
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoNanoseconds(options_.drain_timeout));
  server_->Wait();
  metrics_->StopServing();
  absl::MutexLock request_lock(&request_mu_);
  if (signal_callback_id_ >= 0) RemoveShutdownCallback(signal_callback_id_);
}

void Server::OnShutdown(std::function<void()> callback) {
  absl::MutexLock lock(&shutdown_mu_);
  shutdown_callbacks_.push_back(std::move(callback));
}

void Server::HandleSignals() {
  absl::MutexLock lock(&request_mu_);
  if (signal_callback_id_ >= 0) return;
  signal_callback_id_ = OnShutdownSignal([this](int signal_number) {
    std::cerr << options_.name << ": received signal " << signal_number
              << ", draining for up to "
              << absl::FormatDuration(options_.drain_timeout) << std::endl;
    RequestShutdown();
  });
}

void Server::WaitForTermination() {
  HandleSignals();
  {
    absl::MutexLock lock(&request_mu_);
    request_mu_.Await(absl::Condition(&shutdown_requested_));
  }
  Shutdown();
}

}  // namespace hangar
