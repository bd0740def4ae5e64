#include "services/optimizer/optimizer_service.h"

#include "common/api/job_state.h"
#include "common/server/admin_auth.h"
#include "common/status/grpc_status.h"
#include "common/watch/watch_reactor.h"

namespace hangar::optimizer {
grpc::Status OptimizerServiceImpl::CreateOptimizationJob(
    grpc::ServerContext* context,
    const v1::CreateOptimizationJobRequest* request,
    v1::OptimizationJob* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok())
    return denied;
  return ReplyWith(optimizer_->CreateJob(*request), response);
}

grpc::Status OptimizerServiceImpl::GetOptimizationJob(
    grpc::ServerContext* context, const v1::GetOptimizationJobRequest* request,
    v1::OptimizationJob* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok())
    return denied;
  return ReplyWith(optimizer_->GetJob(request->name()), response);
}

grpc::Status OptimizerServiceImpl::ListOptimizationJobs(
    grpc::ServerContext* context,
    const v1::ListOptimizationJobsRequest* request,
    v1::ListOptimizationJobsResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok())
    return denied;
  return ReplyWith(optimizer_->ListJobs(*request), response);
}

grpc::Status OptimizerServiceImpl::CancelOptimizationJob(
    grpc::ServerContext* context,
    const v1::CancelOptimizationJobRequest* request,
    v1::OptimizationJob* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok())
    return denied;
  return ReplyWith(optimizer_->CancelJob(request->name()), response);
}

grpc::ServerWriteReactor<v1::OptimizationJob>*
OptimizerServiceImpl::WatchOptimizationJob(
    grpc::CallbackServerContext* context,
    const v1::WatchOptimizationJobRequest* request) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return FinishedWriteReactor<v1::OptimizationJob>(denied);
  }
  return WatchReactor<v1::OptimizationJob>::Start(
      context,
      {.notifier = notifier_,
       .key = request->name(),
       .read = [optimizer = optimizer_,
                name = request->name()] { return optimizer->GetJob(name); },
       .is_final =
           [](const v1::OptimizationJob& job) {
             return IsTerminalJobState(job.state());
           }});
}

grpc::Status OptimizerServiceImpl::ListArtifacts(
    grpc::ServerContext* context, const v1::ListArtifactsRequest* request,
    v1::ListArtifactsResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok())
    return denied;
  return ReplyWith(optimizer_->ListArtifacts(*request), response);
}

grpc::Status OptimizerServiceImpl::ReleaseOptimizationJob(
    grpc::ServerContext* context,
    const v1::ReleaseOptimizationJobRequest* request,
    v1::OptimizationJob* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok())
    return denied;
  return ReplyWith(optimizer_->ReleaseJob(*request), response);
}

grpc::Status OptimizerServiceImpl::GarbageCollectArtifacts(
    grpc::ServerContext* context,
    const v1::GarbageCollectArtifactsRequest* request,
    v1::GarbageCollectArtifactsResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok())
    return denied;
  return ReplyWith(optimizer_->CollectGarbage(*request), response);
}

}  // namespace hangar::optimizer
