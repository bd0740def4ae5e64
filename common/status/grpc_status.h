// Conversion between absl::Status (used everywhere inside Hangar) and
// grpc::Status (used only at the edge, in *_service.cc adapters and clients).
//
// The canonical codes are numerically identical in both libraries, so the
// conversion keeps the code and the message; nothing is lost either way.
#ifndef HANGAR_COMMON_STATUS_GRPC_STATUS_H_
#define HANGAR_COMMON_STATUS_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace hangar {

// absl -> grpc, for returning from a service method.
grpc::Status ToGrpcStatus(const absl::Status& status);

// grpc -> absl, for a client call's result. `context` (for example
// "scheduler.ApplyReplicaSet") is prefixed to the message when not empty.
absl::Status FromGrpcStatus(const grpc::Status& status,
                            absl::string_view context = {});

// For thin service adapters: moves a domain result into the gRPC response,
// or converts its error.
//
//   return ReplyWith(catalog_->GetModel(request->name()), response);
template <typename T>
grpc::Status ReplyWith(absl::StatusOr<T> result, T* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace hangar

#endif  // HANGAR_COMMON_STATUS_GRPC_STATUS_H_
