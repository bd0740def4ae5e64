#include "common/status/grpc_status.h"

#include "common/status/status_util.h"

namespace hangar {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status,
                            absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  return PrefixStatus(
      context, absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                            status.error_message()));
}

}  // namespace hangar
