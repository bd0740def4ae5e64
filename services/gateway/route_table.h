// Where the gateway may send a deployment's requests: a copy of the
// scheduler's routes, kept by its WatchRoutes stream (a snapshot, then
// upserts and deletes per deployment revision).
//
// A request names a deployment by id ("dep-...") or display name. Resolve()
// answers with the revision that serves it (the one whose route has
// `serving` set; during a redeploy the old revision serves until the
// deployment service flips the flag) and its READY replicas. DRAINING
// replicas are listed separately: they get no new work but finish what they
// hold, so a revision switch fails no in-flight request. Every revision
// known for a deployment is kept until the scheduler deletes its route.
//
//   table.Apply(event);   // from the WatchRoutes stream
//   ASSIGN_OR_RETURN(ResolvedRoute route, table.Resolve("my-llm"));
//
// Thread-safe. Plain C++ over the generated scheduler messages.
#ifndef HANGAR_SERVICES_GATEWAY_ROUTE_TABLE_H_
#define HANGAR_SERVICES_GATEWAY_ROUTE_TABLE_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "hangar/v1/scheduler.pb.h"

namespace hangar::gateway {

// The serving revision of one deployment, as a request needs it.
struct ResolvedRoute {
  std::string deployment;
  std::string display_name;
  int64_t revision = 0;
  int32_t inference_batch_size = 1;
  int32_t context_length = 0;
  v1::SamplingParams sampling;
  // Replicas that take new work.
  std::vector<v1::RouteReplica> ready;
  // Replicas finishing what they hold.
  std::vector<v1::RouteReplica> draining;
};

class RouteTable {
 public:
  // Applies one WatchRoutes event: a snapshot replaces everything, an
  // upsert adds or replaces the listed revisions' routes, a delete removes
  // them.
  void Apply(const v1::RouteEvent& event);

  // Whether a snapshot has arrived.
  bool loaded() const;

  // The serving route of the deployment named `name` (id or display name).
  // NOT_FOUND "deployment \"x\" not found" when no route names it;
  // UNAVAILABLE when it exists but no revision serves or the serving one
  // has no READY replica (it is starting or scaled to zero); UNAVAILABLE
  // before the first snapshot.
  absl::StatusOr<ResolvedRoute> Resolve(absl::string_view name) const;

  // Every route now, in (deployment, revision) order.
  std::vector<v1::Route> Routes() const;

  // -------------------------------------------------------------------------
 private:
  using Key = std::pair<std::string, int64_t>;  // (deployment, revision)

  mutable absl::Mutex mu_;  // Protects everything below.
  bool loaded_ ABSL_GUARDED_BY(mu_) = false;
  std::map<Key, v1::Route> routes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::gateway

#endif  // HANGAR_SERVICES_GATEWAY_ROUTE_TABLE_H_
