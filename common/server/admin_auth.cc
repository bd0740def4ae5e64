#include "common/server/admin_auth.h"

#include "common/status/grpc_status.h"

namespace hangar {

grpc::Status AuthorizeAdmin(const auth::AdminToken* token,
                            const grpc::ServerContextBase& context) {
  if (token == nullptr) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization: missing admin token "
                        "(send \"authorization: Bearer <admin token>\")");
  }
  return ToGrpcStatus(token->Authorize(
      absl::string_view(it->second.data(), it->second.size())));
}

void AttachAdminToken(const auth::AdminToken* token,
                      grpc::ClientContext* context) {
  if (token == nullptr) return;
  context->AddMetadata("authorization", token->AuthorizationHeader());
}

}  // namespace hangar
