// What the reconciler asks of the other services, as three small
// interfaces: only the calls it makes, in hangar.v1 messages, with
// absl::Status errors. The gRPC implementations are in grpc_clients.h
// (admin token, deadline, UNAVAILABLE naming the dependency and its
// address); in-memory fakes that count calls are in testing/fake_clients.h.
//
// Every call is idempotent, so a reconciler that crashed between a call and
// recording its result can simply make it again:
//  - PrepareModel shares one preparation per model;
//  - CreateOptimizationJob carries a request id derived from (deployment,
//    revision): a retry returns the job the first call made;
//  - ApplyReplicaSet is keyed by (deployment, revision) at the scheduler:
//    applying the same spec again changes nothing;
//  - DeleteReplicaSet of a set that is gone is OK (nullopt);
//  - ReleaseOptimizationJob of a released hold is OK.
#ifndef HANGAR_SERVICES_DEPLOYMENT_CLIENTS_H_
#define HANGAR_SERVICES_DEPLOYMENT_CLIENTS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hangar/v1/catalog.pb.h"
#include "hangar/v1/optimizer.pb.h"
#include "hangar/v1/scheduler.pb.h"

namespace hangar::deployment {

class CatalogClient {
 public:
  virtual ~CatalogClient() = default;
  // Starts (or joins) the preparation of `model`'s weights and returns its
  // state now. NOT_FOUND when the catalog does not know the model.
  virtual absl::StatusOr<v1::Preparation> PrepareModel(
      const std::string& model) = 0;
};

class OptimizerClient {
 public:
  virtual ~OptimizerClient() = default;
  virtual absl::StatusOr<v1::OptimizationJob> CreateOptimizationJob(
      const v1::CreateOptimizationJobRequest& request) = 0;
  virtual absl::StatusOr<v1::OptimizationJob> GetOptimizationJob(
      const std::string& name) = 0;
  // FAILED_PRECONDITION when the job has already ended.
  virtual absl::Status CancelOptimizationJob(const std::string& name) = 0;
  // Drops the hold `request_id` (a revision's CreateOptimizationJob id) has
  // on its job's artifact, so the optimizer may collect an artifact no
  // revision uses any more. OK when released before; NOT_FOUND when no job
  // was ever made under that id.
  virtual absl::Status ReleaseOptimizationJob(
      const std::string& request_id) = 0;
};

class SchedulerClient {
 public:
  virtual ~SchedulerClient() = default;
  virtual absl::StatusOr<v1::ReplicaSet> ApplyReplicaSet(
      const v1::ReplicaSetSpec& spec) = 0;
  // Every set of `deployment`.
  virtual absl::StatusOr<std::vector<v1::ReplicaSet>> ListReplicaSets(
      const std::string& deployment) = 0;
  // Drains and releases the set; returns its final state, nullopt when it
  // was already gone.
  virtual absl::StatusOr<std::optional<v1::ReplicaSet>> DeleteReplicaSet(
      const std::string& deployment, int64_t revision, int drain_seconds) = 0;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_CLIENTS_H_
