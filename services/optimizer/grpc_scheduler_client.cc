#include "services/optimizer/grpc_scheduler_client.h"

#include <chrono>

#include "common/api/job_state.h"
#include "common/server/admin_auth.h"
#include "common/status/grpc_status.h"

namespace hangar::optimizer {

GrpcSchedulerClient::GrpcSchedulerClient(std::shared_ptr<grpc::Channel> channel,
                                         Options options)
    : stub_(v1::SchedulerService::NewStub(std::move(channel))),
      options_(options) {}

void GrpcSchedulerClient::Prepare(grpc::ClientContext& context,
                                  absl::Duration timeout) const {
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(timeout));
  AttachAdminToken(options_.admin_token, &context);
}

absl::StatusOr<v1::Job> GrpcSchedulerClient::SubmitJob(
    const v1::JobSpec& spec, const std::string& request_id) {
  grpc::ClientContext context;
  Prepare(context, options_.call_timeout);
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  request.set_request_id(request_id);
  v1::Job job;
  grpc::Status s = stub_->SubmitJob(&context, request, &job);
  if (!s.ok()) return FromGrpcStatus(s, "scheduler.SubmitJob");
  return job;
}

absl::StatusOr<v1::Job> GrpcSchedulerClient::GetJob(const std::string& name) {
  grpc::ClientContext context;
  Prepare(context, options_.call_timeout);
  v1::GetJobRequest request;
  request.set_name(name);
  v1::Job job;
  grpc::Status s = stub_->GetJob(&context, request, &job);
  if (!s.ok()) return FromGrpcStatus(s, "scheduler.GetJob");
  return job;
}

absl::StatusOr<v1::Job> GrpcSchedulerClient::CancelJob(
    const std::string& name) {
  grpc::ClientContext context;
  Prepare(context, options_.call_timeout);
  v1::CancelJobRequest request;
  request.set_name(name);
  v1::Job job;
  grpc::Status s = stub_->CancelJob(&context, request, &job);
  if (!s.ok()) return FromGrpcStatus(s, "scheduler.CancelJob");
  return job;
}

absl::Status GrpcSchedulerClient::WatchJob(
    const std::string& name,
    const std::function<void(const v1::Job&)>& on_update,
    absl::Duration timeout) {
  grpc::ClientContext context;
  Prepare(context, timeout);
  v1::WatchJobRequest request;
  request.set_name(name);
  std::unique_ptr<grpc::ClientReader<v1::Job>> reader =
      stub_->WatchJob(&context, request);
  v1::Job job;
  bool ended = false;
  while (reader->Read(&job)) {
    on_update(job);
    ended = IsTerminalJobState(job.state());
  }
  grpc::Status s = reader->Finish();
  if (ended) return absl::OkStatus();
  if (s.ok())
    return absl::UnavailableError(
        "scheduler.WatchJob: the stream ended before the job did");
  return FromGrpcStatus(s, "scheduler.WatchJob");
}

}  // namespace hangar::optimizer
