// The admin check of control-plane services (catalog, deployment, optimizer,
// scheduler): when a service is started with an admin token file, every call
// but health and reflection must carry `authorization: Bearer <admin token>`.
//
// gRPC C++ 1.51 cannot reject a call from a server interceptor, and its
// AuthMetadataProcessor does not run on plaintext ports, so each service
// method starts with one line:
//
//   if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
//       !denied.ok()) return denied;
//
// and each callback (streaming) method with:
//
//   if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
//       !denied.ok()) return FinishedWriteReactor<v1::Model>(denied);
//
// tests/integration/auth walks every method of every service through the
// reflection client and fails when one of them forgets the check.
//
// A null token means the check is off (the default: control-plane services
// bind to loopback).
#ifndef HANGAR_COMMON_SERVER_ADMIN_AUTH_H_
#define HANGAR_COMMON_SERVER_ADMIN_AUTH_H_

#include "common/auth/bearer.h"
#include "grpcpp/grpcpp.h"

namespace hangar {

// OK when `token` is null or the call carries "Bearer <token>";
// UNAUTHENTICATED (never echoing what was sent) otherwise. Takes the base of
// both server contexts, so sync methods (grpc::ServerContext) and callback
// methods (grpc::CallbackServerContext, e.g. a Watch that must refuse with
// FinishedWriteReactor before it starts) check the token the same way.
grpc::Status AuthorizeAdmin(const auth::AdminToken* token,
                            const grpc::ServerContextBase& context);

// Adds the admin token to an outgoing call (no-op for a null token).
void AttachAdminToken(const auth::AdminToken* token,
                      grpc::ClientContext* context);

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_ADMIN_AUTH_H_
