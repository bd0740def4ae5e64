// The event feeds behind the two event watches (event_watch_reactor.h).
// Each is a stateful function object: every call reads the current state
// and returns what the client needs to catch up from what it was sent.
//
//  - ApiKeyFeed (WatchApiKeys): the first call returns KIND_SNAPSHOT with
//    every active key; later calls KIND_ADDED with new keys and
//    KIND_REVOKED with keys gone (each only when not empty).
//  - DeploymentFeed (WatchDeployments without a name): the first call
//    returns every live deployment; later calls every deployment whose etag
//    changed since it was sent (a DELETED one once, then never again).
#ifndef HANGAR_SERVICES_DEPLOYMENT_WATCH_FEEDS_H_
#define HANGAR_SERVICES_DEPLOYMENT_WATCH_FEEDS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hangar/v1/deployment.pb.h"
#include "services/deployment/deployments.h"

namespace hangar::deployment {

class ApiKeyFeed {
 public:
  explicit ApiKeyFeed(Deployments* deployments) : deployments_(deployments) {}
  absl::StatusOr<std::vector<v1::ApiKeyEvent>> operator()();

 private:
  Deployments* deployments_;
  bool snapshot_sent_ = false;
  // The active keys the client holds, by key name.
  std::map<std::string, v1::ApiKeyEvent::Entry> sent_;
};

class DeploymentFeed {
 public:
  explicit DeploymentFeed(Deployments* deployments)
      : deployments_(deployments) {}
  absl::StatusOr<std::vector<v1::Deployment>> operator()();

 private:
  Deployments* deployments_;
  bool first_ = true;
  // Deployment id -> the etag last sent.
  std::map<std::string, std::string> sent_;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_WATCH_FEEDS_H_
