// In-memory facts sources for tests: models and offerings the test sets,
// and a switch that makes every call UNAVAILABLE naming the dependency, as
// a stopped catalog or scheduler does.
#ifndef HANGAR_SERVICES_DEPLOYMENT_TESTING_FAKE_FACTS_H_
#define HANGAR_SERVICES_DEPLOYMENT_TESTING_FAKE_FACTS_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "services/deployment/facts.h"

namespace hangar::deployment::testing {

class FakeModelFacts final : public ModelFactsSource {
 public:
  void Set(const std::string& model, ModelFacts facts) {
    absl::MutexLock lock(&mu_);
    facts.found = true;
    models_[model] = std::move(facts);
  }
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }
  absl::StatusOr<ModelFacts> GetModelFacts(const std::string& model) override {
    absl::MutexLock lock(&mu_);
    if (down_) return absl::UnavailableError("catalog (fake): down");
    auto found = models_.find(model);
    if (found == models_.end()) return ModelFacts{};
    return found->second;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, ModelFacts> models_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
};

class FakeOfferingFacts final : public OfferingFactsSource {
 public:
  void Set(const std::string& offering, OfferingFacts facts) {
    absl::MutexLock lock(&mu_);
    facts.found = true;
    offerings_[offering] = std::move(facts);
  }
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }
  absl::StatusOr<OfferingFacts> GetOfferingFacts(
      const std::string& offering) override {
    absl::MutexLock lock(&mu_);
    if (down_) return absl::UnavailableError("scheduler (fake): down");
    auto found = offerings_.find(offering);
    if (found == offerings_.end()) return OfferingFacts{};
    return found->second;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, OfferingFacts> offerings_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hangar::deployment::testing

#endif  // HANGAR_SERVICES_DEPLOYMENT_TESTING_FAKE_FACTS_H_
