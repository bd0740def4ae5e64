// The gRPC adapter of OptimizerService: admin check, unpack, the
// Optimizer, ToGrpcStatus. WatchOptimizationJob runs on the callback API
// (WatchReactor over the ChangeNotifier the Optimizer notifies); it ends OK
// after writing a job that has ended.
#ifndef HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_SERVICE_H_
#define HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_SERVICE_H_

#include "common/auth/bearer.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/optimizer.grpc.pb.h"
#include "services/optimizer/optimizer.h"

namespace hangar::optimizer {

class OptimizerServiceImpl final
    : public v1::OptimizerService::WithCallbackMethod_WatchOptimizationJob<
          v1::OptimizerService::Service> {
 public:
  // Not owned; must outlive the service. A null `admin_token` turns the
  // check off.
  OptimizerServiceImpl(Optimizer* optimizer, ChangeNotifier* notifier,
                       const auth::AdminToken* admin_token)
      : optimizer_(optimizer), notifier_(notifier), admin_token_(admin_token) {}

  grpc::Status CreateOptimizationJob(
      grpc::ServerContext* context,
      const v1::CreateOptimizationJobRequest* request,
      v1::OptimizationJob* response) override;
  grpc::Status GetOptimizationJob(grpc::ServerContext* context,
                                  const v1::GetOptimizationJobRequest* request,
                                  v1::OptimizationJob* response) override;
  grpc::Status ListOptimizationJobs(
      grpc::ServerContext* context,
      const v1::ListOptimizationJobsRequest* request,
      v1::ListOptimizationJobsResponse* response) override;
  grpc::Status CancelOptimizationJob(
      grpc::ServerContext* context,
      const v1::CancelOptimizationJobRequest* request,
      v1::OptimizationJob* response) override;
  grpc::ServerWriteReactor<v1::OptimizationJob>* WatchOptimizationJob(
      grpc::CallbackServerContext* context,
      const v1::WatchOptimizationJobRequest* request) override;
  grpc::Status ListArtifacts(grpc::ServerContext* context,
                             const v1::ListArtifactsRequest* request,
                             v1::ListArtifactsResponse* response) override;
  grpc::Status ReleaseOptimizationJob(
      grpc::ServerContext* context,
      const v1::ReleaseOptimizationJobRequest* request,
      v1::OptimizationJob* response) override;
  grpc::Status GarbageCollectArtifacts(
      grpc::ServerContext* context,
      const v1::GarbageCollectArtifactsRequest* request,
      v1::GarbageCollectArtifactsResponse* response) override;

 private:
  Optimizer* optimizer_;
  ChangeNotifier* notifier_;
  const auth::AdminToken* admin_token_;
};

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_OPTIMIZER_SERVICE_H_
