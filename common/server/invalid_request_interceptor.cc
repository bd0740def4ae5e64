#include "common/server/invalid_request_interceptor.h"

#include <mutex>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"

namespace hangar {
namespace {

using grpc::experimental::InterceptionHookPoints;

// The field named by the last invalid-UTF-8 parse error on this thread.
thread_local std::string invalid_utf8_field;
thread_local bool invalid_utf8_seen = false;

google::protobuf::LogHandler* previous_handler = nullptr;

constexpr char kStringFieldPrefix[] = "String field '";

void FilterParseErrors(google::protobuf::LogLevel level, const char* filename,
                       int line, const std::string& message) {
  // protobuf: "String field 'pkg.Message.field' contains invalid UTF-8 data
  // when parsing a protocol buffer. ..."
  if (absl::StartsWith(message, kStringFieldPrefix) &&
      absl::StrContains(message, "invalid UTF-8 data when parsing")) {
    const size_t start = sizeof(kStringFieldPrefix) - 1;
    const size_t end = message.find('\'', start);
    invalid_utf8_field = end == std::string::npos
                             ? std::string()
                             : message.substr(start, end - start);
    invalid_utf8_seen = true;
    return;
  }
  if (previous_handler != nullptr) {
    previous_handler(level, filename, line, message);
  }
}

class InvalidRequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  InvalidRequestInterceptor(ServerMetrics* metrics, std::string method,
                            bool client_streams)
      : metrics_(metrics),
        method_(std::move(method)),
        client_streams_(client_streams) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      const bool utf8 = invalid_utf8_seen;
      std::string field = std::move(invalid_utf8_field);
      invalid_utf8_seen = false;
      invalid_utf8_field.clear();
      // A unary or server-streaming call gets exactly one request, so a
      // null one did not parse. From a client stream, null also means the
      // stream ended; only a parse error logged just now says otherwise.
      if (methods->GetRecvMessage() == nullptr && !refused_ &&
          (!client_streams_ || utf8)) {
        refused_ = true;
        invalid_utf8_ = utf8;
        field_ = std::move(field);
      }
    }
    if (refused_ && methods->QueryInterceptionHookPoint(
                        InterceptionHookPoints::PRE_SEND_STATUS)) {
      // gRPC answers a request that did not parse with INTERNAL and no
      // message (synchronous methods) or UNIMPLEMENTED (callback methods, in
      // 1.51). A null request also comes with RESOURCE_EXHAUSTED when the
      // server is out of threads (ServerOptions::max_threads): that status
      // is true and stays.
      const grpc::StatusCode code = methods->GetSendStatus().error_code();
      if (invalid_utf8_ || code == grpc::StatusCode::INTERNAL ||
          code == grpc::StatusCode::UNIMPLEMENTED) {
        std::string message =
            invalid_utf8_
                ? absl::StrCat(field_.empty() ? "request" : field_,
                               ": invalid UTF-8 in a string field")
                : absl::StrCat("request: not a valid message for ", method_);
        metrics_->InvalidRequest(method_,
                                 invalid_utf8_ ? "invalid_utf8" : "malformed");
        methods->ModifySendStatus(grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT, std::move(message)));
      }
    }
    methods->Proceed();
  }

 private:
  ServerMetrics* const metrics_;
  const std::string method_;
  const bool client_streams_;
  // The request did not deserialize (set at POST_RECV_MESSAGE).
  bool refused_ = false;
  bool invalid_utf8_ = false;
  std::string field_;  // Named by protobuf's log line; may be empty.
};

}  // namespace

void InstallProtobufParseLogFilter() {
  static std::once_flag once;
  std::call_once(once, [] {
    previous_handler = google::protobuf::SetLogHandler(&FilterParseErrors);
  });
}

InvalidRequestInterceptorFactory::InvalidRequestInterceptorFactory(
    ServerMetrics* metrics)
    : metrics_(metrics) {
  InstallProtobufParseLogFilter();
}

grpc::experimental::Interceptor*
InvalidRequestInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  using Type = grpc::experimental::ServerRpcInfo::Type;
  const bool client_streams = info->type() == Type::CLIENT_STREAMING ||
                              info->type() == Type::BIDI_STREAMING;
  return new InvalidRequestInterceptor(metrics_, info->method(),
                                       client_streams);
}

}  // namespace hangar
