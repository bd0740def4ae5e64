// Requests that do not parse are the caller's fault: this interceptor turns
// them into INVALID_ARGUMENT naming the field, counts them, and keeps them
// out of the log.
//
// gRPC C++ answers a request whose bytes do not parse (for example a string
// field holding invalid UTF-8) with INTERNAL and an empty message, and
// protobuf logs "String field 'X' contains invalid UTF-8 data ..." for every
// such request: a client could flood the log. Every Hangar server therefore
//  * filters that protobuf log line (InstallProtobufParseLogFilter()) and
//    remembers the field it names for the thread that was parsing;
//  * sees, at POST_RECV_MESSAGE, that the request did not deserialize (gRPC
//    hands interceptors a null message) and, at PRE_SEND_STATUS, replaces
//    the status with INVALID_ARGUMENT:
//      "hangar.v1.GetModelRequest.name: invalid UTF-8 in a string field"
//      "request: not a valid message for /hangar.v1.CatalogService/GetModel"
//  * counts it in grpc_server_invalid_requests_total{grpc_service,
//    grpc_method, reason="invalid_utf8"|"malformed"}.
// Both the synchronous and the callback API deserialize and run these hooks
// on one thread, which is what lets the field name travel in a thread-local.
// Other protobuf log lines pass through to the previous handler unchanged.
#ifndef HANGAR_COMMON_SERVER_INVALID_REQUEST_INTERCEPTOR_H_
#define HANGAR_COMMON_SERVER_INVALID_REQUEST_INTERCEPTOR_H_

#include "common/server/metrics_interceptor.h"
#include "grpcpp/support/server_interceptor.h"

namespace hangar {

// Installs the protobuf log filter described above; idempotent, thread-safe.
void InstallProtobufParseLogFilter();

class InvalidRequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` (not owned) counts the refused requests.
  explicit InvalidRequestInterceptorFactory(ServerMetrics* metrics);
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  ServerMetrics* metrics_;
};

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_INVALID_REQUEST_INTERCEPTOR_H_
