#include "common/server/metrics_interceptor.h"

#include <chrono>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace hangar {
namespace {

using grpc::experimental::InterceptionHookPoints;

// "/hangar.v1.CatalogService/GetModel" -> {"hangar.v1.CatalogService",
// "GetModel"}.
std::pair<std::string, std::string> SplitMethod(const std::string& full) {
  std::vector<std::string> parts =
      absl::StrSplit(absl::string_view(full), '/', absl::SkipEmpty());
  if (parts.size() != 2) return {"unknown", full};
  return {parts[0], parts[1]};
}

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  int index = static_cast<int>(code);
  return index >= 0 && index <= 16 ? kNames[index] : "UNKNOWN";
}

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(ServerMetrics* metrics, std::string method)
      : metrics_(metrics),
        method_(std::move(method)),
        start_(std::chrono::steady_clock::now()) {
    metrics_->Started(method_);
  }

  ~MetricsInterceptor() override {
    // A call cancelled before a status was sent still counts, as CANCELLED.
    if (!handled_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(grpc::StatusCode code) {
    handled_ = true;
    std::chrono::duration<double> elapsed =
        std::chrono::steady_clock::now() - start_;
    metrics_->Handled(method_, code, elapsed.count());
  }

  ServerMetrics* metrics_;
  std::string method_;
  // Latency is measured on the monotonic clock: it is an observation, never
  // a timer that logic depends on.
  std::chrono::steady_clock::time_point start_;
  bool handled_ = false;
};

}  // namespace

ServerMetrics::ServerMetrics(prometheus::Registry& registry)
    : started_(prometheus::BuildCounter()
                   .Name("grpc_server_started_total")
                   .Help("RPCs started on the server.")
                   .Register(registry)),
      handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("RPCs completed on the server, by status code.")
                   .Register(registry)),
      handling_seconds_(prometheus::BuildHistogram()
                            .Name("grpc_server_handling_seconds")
                            .Help("Latency of RPCs handled by the server.")
                            .Register(registry)),
      in_flight_(prometheus::BuildGauge()
                     .Name("grpc_server_in_flight")
                     .Help("RPCs started and not yet handled.")
                     .Register(registry)
                     .Add({})),
      invalid_requests_(
          prometheus::BuildCounter()
              .Name("grpc_server_invalid_requests_total")
              .Help("Requests refused because they did not parse (invalid "
                    "UTF-8 in a string field, malformed bytes).")
              .Register(registry)) {}

ServerMetrics::MethodMetrics& ServerMetrics::ForMethodLocked(
    const std::string& full_method) {
  auto it = methods_.find(full_method);
  if (it != methods_.end()) return it->second;
  auto [service, method] = SplitMethod(full_method);
  prometheus::Labels labels{{"grpc_service", service}, {"grpc_method", method}};
  MethodMetrics metrics{
      .started = &started_.Add(labels),
      .latency = &handling_seconds_.Add(labels, LatencyBucketsSeconds()),
      .handled_by_code = {}};
  return methods_.emplace(full_method, std::move(metrics)).first->second;
}

void ServerMetrics::Started(const std::string& full_method) {
  in_flight_.Increment();
  absl::MutexLock lock(&mu_);
  ForMethodLocked(full_method).started->Increment();
}

void ServerMetrics::Handled(const std::string& full_method,
                            grpc::StatusCode code, double seconds) {
  in_flight_.Decrement();
  absl::MutexLock lock(&mu_);
  MethodMetrics& metrics = ForMethodLocked(full_method);
  metrics.latency->Observe(seconds);
  auto [it, inserted] =
      metrics.handled_by_code.try_emplace(static_cast<int>(code), nullptr);
  if (inserted) {
    auto [service, method] = SplitMethod(full_method);
    it->second = &handled_.Add({{"grpc_service", service},
                                {"grpc_method", method},
                                {"grpc_code", CodeName(code)}});
  }
  it->second->Increment();
}

void ServerMetrics::InvalidRequest(const std::string& full_method,
                                   const std::string& reason) {
  auto [service, method] = SplitMethod(full_method);
  // Family::Add is thread-safe and returns the existing child when the
  // labels repeat.
  invalid_requests_
      .Add({{"grpc_service", service},
            {"grpc_method", method},
            {"reason", reason}})
      .Increment();
}

int64_t ServerMetrics::in_flight() const {
  return static_cast<int64_t>(in_flight_.Value());
}

grpc::experimental::Interceptor*
MetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MetricsInterceptor(metrics_, info->method());
}

}  // namespace hangar
