// The gRPC face of the scheduler: a thin adapter from
// hangar.v1.SchedulerService to the Scheduler domain class (scheduler.h).
// Unary methods run on the sync API: admin check, unpack, call the domain,
// ToGrpcStatus at the edge.
//
// When an admin token is configured every call must carry
// `authorization: Bearer <admin token>` (UNAUTHENTICATED otherwise).
//
// The three Watch methods run on the callback API with WatchReactor
// (common/watch/watch_reactor.h), fed by the ChangeNotifier the scheduler
// announces every change on — no thread per stream, no polling:
//  - WatchJob writes the job, then every change, and ends OK after a final
//    state (SUCCEEDED, FAILED, CANCELLED); NOT_FOUND for an unknown job.
//  - WatchReplicaSets and WatchRoutes write a KIND_SNAPSHOT of everything
//    first, then differences against what the stream last sent: KIND_UPSERT
//    with the sets (routes) added or changed, KIND_DELETE with those gone. A
//    change that both adds and removes (rare; coalesced under a slow
//    reader) is sent as a fresh KIND_SNAPSHOT, which replaces what the
//    watcher held. Route deletes carry only deployment and revision.
// Every stream ends with UNAVAILABLE when the server drains.
#ifndef HANGAR_SERVICES_SCHEDULER_SCHEDULER_SERVICE_H_
#define HANGAR_SERVICES_SCHEDULER_SCHEDULER_SERVICE_H_

#include "common/auth/bearer.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/scheduler.grpc.pb.h"
#include "services/scheduler/scheduler.h"

namespace hangar::scheduler {

class SchedulerServiceImpl final
    : public v1::SchedulerService::WithCallbackMethod_WatchReplicaSets<
          v1::SchedulerService::WithCallbackMethod_WatchJob<
              v1::SchedulerService::WithCallbackMethod_WatchRoutes<
                  v1::SchedulerService::Service>>> {
 public:
  // Not owned; must outlive the service. A null `admin_token` turns the
  // check off.
  SchedulerServiceImpl(Scheduler* scheduler, ChangeNotifier* notifier,
                       const auth::AdminToken* admin_token)
      : scheduler_(scheduler), notifier_(notifier), admin_token_(admin_token) {}

  grpc::Status ListHardware(grpc::ServerContext* context,
                            const v1::ListHardwareRequest* request,
                            v1::ListHardwareResponse* response) override;
  grpc::Status ListPools(grpc::ServerContext* context,
                         const v1::ListPoolsRequest* request,
                         v1::ListPoolsResponse* response) override;
  grpc::Status GetPoolStatus(grpc::ServerContext* context,
                             const v1::GetPoolStatusRequest* request,
                             v1::PoolStatus* response) override;
  grpc::Status ApplyReplicaSet(grpc::ServerContext* context,
                               const v1::ApplyReplicaSetRequest* request,
                               v1::ReplicaSet* response) override;
  grpc::Status GetReplicaSet(grpc::ServerContext* context,
                             const v1::GetReplicaSetRequest* request,
                             v1::ReplicaSet* response) override;
  grpc::Status ListReplicaSets(grpc::ServerContext* context,
                               const v1::ListReplicaSetsRequest* request,
                               v1::ListReplicaSetsResponse* response) override;
  grpc::Status DeleteReplicaSet(grpc::ServerContext* context,
                                const v1::DeleteReplicaSetRequest* request,
                                v1::ReplicaSet* response) override;
  grpc::ServerWriteReactor<v1::ReplicaSetEvent>* WatchReplicaSets(
      grpc::CallbackServerContext* context,
      const v1::WatchReplicaSetsRequest* request) override;
  grpc::Status SubmitJob(grpc::ServerContext* context,
                         const v1::SubmitJobRequest* request,
                         v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext* context,
                      const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context,
                        const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context,
                         const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  grpc::ServerWriteReactor<v1::Job>* WatchJob(
      grpc::CallbackServerContext* context,
      const v1::WatchJobRequest* request) override;
  grpc::ServerWriteReactor<v1::RouteEvent>* WatchRoutes(
      grpc::CallbackServerContext* context,
      const v1::WatchRoutesRequest* request) override;
  grpc::Status ReportLoad(grpc::ServerContext* context,
                          const v1::ReportLoadRequest* request,
                          v1::ReportLoadResponse* response) override;

 private:
  Scheduler* const scheduler_;
  ChangeNotifier* const notifier_;
  const auth::AdminToken* const admin_token_;
};

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_SCHEDULER_SERVICE_H_
