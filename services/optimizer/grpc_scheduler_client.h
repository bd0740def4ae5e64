// SchedulerClient over gRPC: SchedulerService's job API at
// --scheduler_address, with the admin token attached when set.
#ifndef HANGAR_SERVICES_OPTIMIZER_GRPC_SCHEDULER_CLIENT_H_
#define HANGAR_SERVICES_OPTIMIZER_GRPC_SCHEDULER_CLIENT_H_

#include <memory>
#include <string>

#include "common/auth/bearer.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/scheduler.grpc.pb.h"
#include "services/optimizer/scheduler_client.h"

namespace hangar::optimizer {

class GrpcSchedulerClient final : public SchedulerClient {
 public:
  struct Options {
    // Deadline of the unary calls.
    absl::Duration call_timeout = absl::Seconds(10);
    // Attached to every call when set; not owned.
    const auth::AdminToken* admin_token = nullptr;
  };
  GrpcSchedulerClient(std::shared_ptr<grpc::Channel> channel, Options options);

  absl::StatusOr<v1::Job> SubmitJob(const v1::JobSpec& spec,
                                    const std::string& request_id) override;
  absl::StatusOr<v1::Job> GetJob(const std::string& name) override;
  absl::StatusOr<v1::Job> CancelJob(const std::string& name) override;
  absl::Status WatchJob(const std::string& name,
                        const std::function<void(const v1::Job&)>& on_update,
                        absl::Duration timeout) override;

 private:
  void Prepare(grpc::ClientContext& context, absl::Duration timeout) const;
  std::unique_ptr<v1::SchedulerService::Stub> stub_;
  const Options options_;
};

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_GRPC_SCHEDULER_CLIENT_H_
