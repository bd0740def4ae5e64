// Token metering off the request path: each finished request adds its
// token counts to the open window of its (key, deployment, revision); the
// gateway's reporter thread periodically takes a batch (closing the window)
// and sends it to DeploymentService.RecordUsage, then acknowledges it.
//
// Delivery is at-least-once on the wire and exactly-once in the ledger: a
// batch keeps its report id ("<reporter>-<sequence>") until acknowledged,
// and NextBatch() hands the same batch (same id, same rows) back until then,
// so a retried RecordUsage is counted once by the deployment service.
// Requests that finish meanwhile go into the next window; nothing is lost
// and nothing is sent twice under two ids. On SIGTERM the gateway flushes:
// it calls NextBatch() until it returns nothing or the deadline passes.
//
//   meter.Record({.key_name = "key-1", .deployment = "dep-1", .revision = 2},
//                prompt_tokens, completion_tokens);
//   ...
//   if (std::optional<UsageBatch> batch = meter.NextBatch()) {
//     if (client.RecordUsage(batch->request).ok())
//     meter.Acknowledge(batch->request.report_id());
//   }
//
// Thread-safe. Reads the injected clock for window boundaries.
#ifndef HANGAR_SERVICES_GATEWAY_USAGE_METER_H_
#define HANGAR_SERVICES_GATEWAY_USAGE_METER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "hangar/v1/deployment.pb.h"

namespace hangar::gateway {

// Whose tokens: the key's id (never its secret) and what it called.
struct UsageKey {
  std::string key_name;
  std::string deployment;
  int64_t revision = 0;

  bool operator<(const UsageKey& other) const {
    return std::tie(key_name, deployment, revision) <
           std::tie(other.key_name, other.deployment, other.revision);
  }
};

struct UsageBatch {
  // report_id set, one report per UsageKey of the window.
  v1::RecordUsageRequest request;
};

class UsageMeter {
 public:
  struct Options {
    // This gateway instance, 1 to 100 characters: the report ids' prefix.
    std::string reporter_id;

    // --- injected ---
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<UsageMeter>> Create(Options options);

  // Adds one finished request.
  void Record(const UsageKey& key, int64_t prompt_tokens,
              int64_t completion_tokens);

  // The batch to send: the unacknowledged one if there is one, else the
  // open window (closed now) if it holds anything, else nothing.
  std::optional<UsageBatch> NextBatch();

  // The deployment service has recorded `report_id`; unknown ids are
  // ignored.
  void Acknowledge(const std::string& report_id);

  // Requests recorded but not yet acknowledged, for metrics and the flush.
  int64_t unreported_requests() const;

  // -------------------------------------------------------------------------
 private:
  struct Counts {
    int64_t requests = 0;
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
  };

  explicit UsageMeter(Options options)
      : options_(std::move(options)), window_start_(options_.clock->Now()) {}

  const Options options_;

  mutable absl::Mutex mu_;  // Protects everything below.
  absl::Time window_start_ ABSL_GUARDED_BY(mu_);
  std::map<UsageKey, Counts> open_ ABSL_GUARDED_BY(mu_);
  std::optional<UsageBatch> pending_ ABSL_GUARDED_BY(mu_);
  int64_t pending_requests_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace hangar::gateway

#endif  // HANGAR_SERVICES_GATEWAY_USAGE_METER_H_
