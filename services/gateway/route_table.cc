#include "services/gateway/route_table.h"

#include "absl/strings/str_cat.h"

namespace hangar::gateway {

void RouteTable::Apply(const v1::RouteEvent& event) {
  absl::MutexLock lock(&mu_);
  switch (event.kind()) {
    case v1::RouteEvent::KIND_SNAPSHOT:
      routes_.clear();
      loaded_ = true;
      [[fallthrough]];
    case v1::RouteEvent::KIND_UPSERT:
      for (const v1::Route& route : event.routes()) {
        routes_[{route.deployment(), route.revision()}] = route;
      }
      break;
    case v1::RouteEvent::KIND_DELETE:
      for (const v1::Route& route : event.routes()) {
        routes_.erase({route.deployment(), route.revision()});
      }
      break;
    default:
      break;
  }
}

bool RouteTable::loaded() const {
  absl::MutexLock lock(&mu_);
  return loaded_;
}

absl::StatusOr<ResolvedRoute> RouteTable::Resolve(
    absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  if (!loaded_) {
    return absl::UnavailableError(
        "routes not loaded yet from the scheduler; retry");
  }
  const v1::Route* serving = nullptr;
  bool known = false;
  for (const auto& [key, route] : routes_) {
    if (route.deployment() != name && route.display_name() != name) continue;
    known = true;
    // The newest serving revision wins if two briefly claim it.
    if (route.serving()) serving = &route;
  }
  if (!known) {
    return absl::NotFoundError(
        absl::StrCat("deployment \"", name, "\" not found"));
  }
  if (serving == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "deployment \"", name, "\" has no serving revision yet; retry"));
  }
  ResolvedRoute resolved{
      .deployment = serving->deployment(),
      .display_name = serving->display_name(),
      .revision = serving->revision(),
      .inference_batch_size = serving->inference_batch_size(),
      .context_length = serving->context_length(),
      .sampling = serving->sampling()};
  for (const v1::RouteReplica& replica : serving->replicas()) {
    if (replica.state() == v1::REPLICA_STATE_READY) {
      resolved.ready.push_back(replica);
    } else if (replica.state() == v1::REPLICA_STATE_DRAINING) {
      resolved.draining.push_back(replica);
    }
  }
  if (resolved.ready.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "deployment \"", name, "\" revision ", resolved.revision,
        " has no ready replica (starting or scaled to zero); retry"));
  }
  return resolved;
}

std::vector<v1::Route> RouteTable::Routes() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Route> routes;
  routes.reserve(routes_.size());
  for (const auto& [key, route] : routes_) routes.push_back(route);
  return routes;
}

}  // namespace hangar::gateway
