// What the reconciler tells the rest of the deployment service after a
// deployment's state change has committed: the webhook notifier (and anything
// else that reacts to states) implements DeploymentEventSink.
//
// Delivery is at least once: the reconciler calls the sink after every
// committed transition, and the server calls it once more at start for every
// deployment's current state, so a crash between the commit and the call
// loses nothing. A sink therefore deduplicates by (deployment, revision,
// state) and must not block: it records what it needs and returns (the
// reconciler's loop waits on it).
#ifndef HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_EVENTS_H_
#define HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_EVENTS_H_

#include "hangar/v1/deployment.pb.h"

namespace hangar::deployment {

class DeploymentEventSink {
 public:
  virtual ~DeploymentEventSink() = default;

  // `deployment` as GetDeployment returns it right after the change
  // (state, state_reason, latest_revision, serving_revision, ...).
  virtual void OnDeploymentStateChanged(
      const hangar::v1::Deployment& deployment) = 0;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_EVENTS_H_
