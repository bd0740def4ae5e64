// FanOutEventSink: one DeploymentEventSink that tells several, in order, so
// the reconciler's single `events` option can feed the webhooks and
// whatever else listens (a test's recorder). Null sinks are skipped.
#ifndef HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_EVENT_FAN_OUT_H_
#define HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_EVENT_FAN_OUT_H_

#include <utility>
#include <vector>

#include "services/deployment/deployment_events.h"

namespace hangar::deployment::webhooks {

class FanOutEventSink final : public DeploymentEventSink {
 public:
  // Not owned; each must outlive this.
  explicit FanOutEventSink(std::vector<DeploymentEventSink*> sinks)
      : sinks_(std::move(sinks)) {}

  void OnDeploymentStateChanged(const v1::Deployment& deployment) override {
    for (DeploymentEventSink* sink : sinks_) {
      if (sink != nullptr) sink->OnDeploymentStateChanged(deployment);
    }
  }

 private:
  const std::vector<DeploymentEventSink*> sinks_;
};

}  // namespace hangar::deployment::webhooks

#endif  // HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_EVENT_FAN_OUT_H_
