// A server interceptor that makes each synchronous call's deadline and
// cancellation visible to the code serving it through CallContext (see
// call_context.h), so that the database pool stops work for a caller that
// has gone or run out of time. Server::Create adds it to every server.
#ifndef HANGAR_COMMON_SERVER_CALL_CONTEXT_INTERCEPTOR_H_
#define HANGAR_COMMON_SERVER_CALL_CONTEXT_INTERCEPTOR_H_

#include "grpcpp/support/server_interceptor.h"

namespace hangar {

class CallContextInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_CALL_CONTEXT_INTERCEPTOR_H_
