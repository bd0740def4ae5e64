#include "services/deployment/watch_feeds.h"

#include <utility>

#include "common/status/status_macros.h"

namespace hangar::deployment {

absl::StatusOr<std::vector<v1::ApiKeyEvent>> ApiKeyFeed::operator()() {
  ASSIGN_OR_RETURN(std::vector<v1::ApiKeyEvent::Entry> active,
                   deployments_->ActiveApiKeys());
  std::map<std::string, v1::ApiKeyEvent::Entry> now;
  for (v1::ApiKeyEvent::Entry& entry : active) {
    now[entry.key_name()] = std::move(entry);
  }
  std::vector<v1::ApiKeyEvent> events;
  if (!snapshot_sent_) {
    snapshot_sent_ = true;
    v1::ApiKeyEvent snapshot;
    snapshot.set_kind(v1::ApiKeyEvent::KIND_SNAPSHOT);
    for (const auto& [name, entry] : now) *snapshot.add_entries() = entry;
    events.push_back(std::move(snapshot));
  } else {
    v1::ApiKeyEvent added;
    added.set_kind(v1::ApiKeyEvent::KIND_ADDED);
    for (const auto& [name, entry] : now) {
      if (!sent_.contains(name)) *added.add_entries() = entry;
    }
    v1::ApiKeyEvent revoked;
    revoked.set_kind(v1::ApiKeyEvent::KIND_REVOKED);
    for (const auto& [name, entry] : sent_) {
      if (!now.contains(name)) *revoked.add_entries() = entry;
    }
    if (added.entries_size() > 0) events.push_back(std::move(added));
    if (revoked.entries_size() > 0) events.push_back(std::move(revoked));
  }
  sent_ = std::move(now);
  return events;
}

absl::StatusOr<std::vector<v1::Deployment>> DeploymentFeed::operator()() {
  ASSIGN_OR_RETURN(std::vector<v1::Deployment> all,
                   deployments_->AllDeployments(/*include_deleted=*/!first_));
  std::vector<v1::Deployment> changed;
  for (v1::Deployment& deployment : all) {
    auto sent = sent_.find(deployment.name());
    if (sent != sent_.end() && sent->second == deployment.etag()) continue;
    // A deployment deleted before this stream saw it is not news.
    if (sent == sent_.end() &&
        deployment.state() == v1::DEPLOYMENT_STATE_DELETED) {
      continue;
    }
    sent_[deployment.name()] = deployment.etag();
    changed.push_back(std::move(deployment));
  }
  first_ = false;
  return changed;
}

}  // namespace hangar::deployment
