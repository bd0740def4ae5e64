// The optimizer's view of the scheduler's job API (SchedulerService
// SubmitJob / GetJob / CancelJob / WatchJob): an interface, so the domain
// is tested with testing/fake_scheduler_client.h and runs against
// grpc_scheduler_client.h.
#ifndef HANGAR_SERVICES_OPTIMIZER_SCHEDULER_CLIENT_H_
#define HANGAR_SERVICES_OPTIMIZER_SCHEDULER_CLIENT_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hangar/v1/scheduler.pb.h"

namespace hangar::optimizer {

class SchedulerClient {
 public:
  virtual ~SchedulerClient() = default;
  // Idempotent on request_id: a retry returns the same job.
  virtual absl::StatusOr<v1::Job> SubmitJob(const v1::JobSpec& spec,
                                            const std::string& request_id) = 0;
  virtual absl::StatusOr<v1::Job> GetJob(const std::string& name) = 0;
  virtual absl::StatusOr<v1::Job> CancelJob(const std::string& name) = 0;
  // Calls `on_update` with the job now and after every change, until the
  // job ends (returns OK after its final state), the stream breaks (its
  // error), or `timeout` passes (DEADLINE_EXCEEDED; the caller watches
  // again, which bounds how long a shutdown waits for a watch).
  virtual absl::Status WatchJob(
      const std::string& name,
      const std::function<void(const v1::Job&)>& on_update,
      absl::Duration timeout) = 0;
};

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_SCHEDULER_CLIENT_H_
