// Where the deployment service learns what it validates a spec against: the
// model (the catalog's GetModel) and the hardware offering (the scheduler's
// ListHardware). Two small interfaces, so the domain never sees gRPC; the
// gRPC implementations are in grpc_facts.h, in-memory fakes in
// testing/fake_facts.h.
//
// Contract of both: an unknown name is not an error (facts with found =
// false, which ReviewSpec reports as a violation of the field); a
// dependency that cannot be asked is UNAVAILABLE naming it ("catalog
// (127.0.0.1:7101): ..."), so the caller can retry.
#ifndef HANGAR_SERVICES_DEPLOYMENT_FACTS_H_
#define HANGAR_SERVICES_DEPLOYMENT_FACTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "hangar/v1/catalog.pb.h"
#include "hangar/v1/scheduler.pb.h"
#include "services/deployment/spec_validation.h"

namespace hangar::deployment {

class ModelFactsSource {
 public:
  virtual ~ModelFactsSource() = default;
  virtual absl::StatusOr<ModelFacts> GetModelFacts(
      const std::string& model) = 0;
};

class OfferingFactsSource {
 public:
  virtual ~OfferingFactsSource() = default;
  virtual absl::StatusOr<OfferingFacts> GetOfferingFacts(
      const std::string& offering) = 0;
};

// The catalog's model as facts: context length, license, READY or why not,
// and per supported recipe a footprint (weights = the weight size of the
// recipe's storage type, else the recipe's whole min_gpu_memory_bytes; KV
// cache of one sequence = min_gpu_memory_bytes minus the weights).
ModelFacts ModelFactsFromProto(const v1::Model& model);

// The scheduler's offering as facts.
OfferingFacts OfferingFactsFromProto(const v1::HardwareOffering& offering);

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_FACTS_H_
