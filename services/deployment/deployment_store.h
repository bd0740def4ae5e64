// The deployment service's state behind one small interface: deployments
// with their revisions, idempotency keys, and API keys. PgDeploymentStore
// (pg_deployment_store.h) is the real one.
//
// Contract every implementation keeps:
//  - Create is atomic: the request id, the deployment and revision 1 are
//    written together or not at all. A request id already used returns the
//    deployment it made when the fingerprint matches, INVALID_ARGUMENT
//    "request_id: ..." when it does not; concurrent creates with one request
//    id make one deployment.
//  - Display names are unique among live (not DELETED) deployments: an
//    explicit one that is taken is ALREADY_EXISTS; a derived one gets the
//    first free "-2", "-3", ... suffix.
//  - Every write bumps the deployment's version; the etag returned is
//    MakeEtag(version).
//  - An unreachable database is UNAVAILABLE.
#ifndef HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_STORE_H_
#define HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_STORE_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hangar/v1/deployment.pb.h"

namespace hangar::deployment {

// What an idempotency key made.
struct RequestRecord {
  // Of the request that first used the key.
  std::string fingerprint;
  // The resource it made ("dep-...", "key-...").
  std::string resource;
};

struct CreateRecord {
  std::string request_id;
  std::string fingerprint;
  // False: deployment.display_name is a base to make unique.
  bool display_name_explicit = false;
  // Without etag; version 1.
  v1::Deployment deployment;
  v1::Revision revision;
  absl::Time now;
};

struct DeploymentFilter {
  std::string model;
  v1::DeploymentState state = v1::DEPLOYMENT_STATE_UNSPECIFIED;
  std::string tag;
  bool show_deleted = false;
};

// A key as stored: the message (no secret) and its hash.
struct StoredApiKey {
  v1::ApiKey key;
  std::string sha256;
};

// An idempotency key an Update claims together with its write.
struct RequestClaim {
  std::string kind;
  std::string request_id;
  std::string fingerprint;
  absl::Time now;
};

// What an Update writes: the deployment's new state (its etag is ignored;
// the version is bumped), optionally a new revision, and whether every key
// of the deployment is revoked in the same transaction.
struct Mutation {
  v1::Deployment deployment;
  std::optional<v1::Revision> new_revision;
  bool revoke_keys = false;
  absl::Time now;
  // False: nothing is written and the current row is returned.
  bool write = true;
  // Existing revisions rewritten in the same transaction (the reconciler's
  // progress: state, job, artifact, ready and retire times).
  std::vector<v1::Revision> revision_updates;
  // When set, the write happens only while this reconciler holds the
  // deployment's lease (ABORTED otherwise): a reconciler whose lease
  // expired and was taken over never overwrites the new holder's work.
  std::string lease_owner;
};

// Decides the mutation from the current row (etag set), inside the
// transaction that holds the row locked. An error aborts the write.
using MutateFn =
    std::function<absl::StatusOr<Mutation>(const v1::Deployment& current)>;

// Token usage of one key on one deployment on one UTC day.
struct TokenUsageRow {
  std::string date;  // "YYYY-MM-DD"
  std::string deployment;
  std::string api_key;
  int64_t requests = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

struct UsageQuery {
  // Empty: every deployment.
  std::string deployment;
  // Inclusive "YYYY-MM-DD" bounds; empty: unbounded.
  std::string start_date;
  std::string end_date;
};

// One replica's cumulative replica-seconds as the scheduler reported them
// (Replica.replica_seconds), with what the usage row is charged to.
struct ReplicaSample {
  std::string deployment;
  int64_t revision = 0;
  std::string hardware;
  // The replica's identity: its name and create time (a replica name is
  // reused when a set scales down and up again).
  std::string replica;
  int64_t replica_create_micros = 0;
  double cumulative_seconds = 0;
};

// Replica time of one deployment on one offering on one UTC day.
struct ReplicaUsageRow {
  std::string date;  // "YYYY-MM-DD"
  std::string deployment;
  std::string hardware;
  double replica_seconds = 0;
};

class DeploymentStore {
 public:
  virtual ~DeploymentStore() = default;

  // Idempotency keys of `kind` ("create", "api_key").
  virtual absl::StatusOr<std::optional<RequestRecord>> FindRequest(
      const std::string& kind, const std::string& request_id) = 0;

  virtual absl::StatusOr<v1::Deployment> Create(const CreateRecord& record) = 0;

  // By id ("dep-...") or, failing that, by the display name of a live
  // deployment. NOT_FOUND otherwise.
  virtual absl::StatusOr<v1::Deployment> Get(const std::string& name) = 0;

  // Deployments matching `filter` with name > `after`, by name, at most
  // `limit`.
  virtual absl::StatusOr<std::vector<v1::Deployment>> List(
      const DeploymentFilter& filter, const std::string& after, int limit) = 0;

  // Locks the deployment (by id or live display name), calls `mutate` and
  // writes what it returns, atomically. With a `claim`: when its request id
  // is already known, `mutate` is not called and the deployment the first
  // request wrote is returned (INVALID_ARGUMENT when the fingerprint
  // differs). ALREADY_EXISTS when a new display name is taken.
  virtual absl::StatusOr<v1::Deployment> Update(
      const std::string& name, const std::optional<RequestClaim>& claim,
      const MutateFn& mutate) = 0;

  // Revision `number` of a deployment (by id). NOT_FOUND when absent.
  virtual absl::StatusOr<v1::Revision> GetRevision(
      const std::string& deployment, int64_t number) = 0;

  // Revisions of a deployment (by id), newest first, number < `before`
  // (0: from the newest), at most `limit`.
  virtual absl::StatusOr<std::vector<v1::Revision>> ListRevisions(
      const std::string& deployment, int64_t before, int limit) = 0;

  // Keys of a deployment (by id) not revoked.
  virtual absl::StatusOr<int> CountActiveApiKeys(
      const std::string& deployment) = 0;

  // Appends `reports` under `report_id` unless that id was recorded before
  // (then nothing is written). Returns whether this call wrote them. Keys'
  // last-used times move to the end of their windows.
  virtual absl::StatusOr<bool> RecordUsage(
      const std::string& report_id,
      const std::vector<v1::TokenUsageReport>& reports, absl::Time now) = 0;

  // Per (date, deployment, key) sums matching `query`, ordered by that
  // triple, after `after` (a row's "date|deployment|key"; empty: from the
  // start), at most `limit`.
  virtual absl::StatusOr<std::vector<TokenUsageRow>> TokenUsage(
      const UsageQuery& query, const std::string& after, int limit) = 0;

  // Sums over every row matching `query`.
  virtual absl::StatusOr<TokenUsageRow> TokenUsageTotal(
      const UsageQuery& query) = 0;

  // Inserts `key` (of a live deployment) under the idempotency key
  // ("api_key", request_id). Returns the stored key and whether this call
  // made it (false: a retry, the key made before). INVALID_ARGUMENT when
  // the request id was used with another fingerprint; FAILED_PRECONDITION
  // when the deployment is being deleted or deleted; NOT_FOUND when absent.
  virtual absl::StatusOr<std::pair<v1::ApiKey, bool>> CreateApiKey(
      const std::string& request_id, const std::string& fingerprint,
      const StoredApiKey& key) = 0;

  // The keys of a deployment, by name, name > `after`, at most `limit`.
  virtual absl::StatusOr<std::vector<v1::ApiKey>> ListApiKeys(
      const std::string& deployment, bool show_revoked,
      const std::string& after, int limit) = 0;

  // Marks a key revoked at `now` (a revoked key stays revoked, with its
  // first revoke time). NOT_FOUND when absent.
  virtual absl::StatusOr<v1::ApiKey> RevokeApiKey(const std::string& name,
                                                  absl::Time now) = 0;

  // Every key not revoked: name, deployment, sha256.
  virtual absl::StatusOr<std::vector<v1::ApiKeyEvent::Entry>>
  ActiveApiKeys() = 0;

  // --- The reconciler's ---

  // Takes (or renews) the lease of deployment `name` (an id) for `owner`
  // until `expiry`, when it is free, expired at `now`, or already
  // `owner`'s. Returns whether `owner` holds it now. NOT_FOUND when absent.
  virtual absl::StatusOr<bool> AcquireLease(const std::string& name,
                                            const std::string& owner,
                                            absl::Time now,
                                            absl::Time expiry) = 0;
  // Gives the lease up when `owner` holds it (no-op otherwise).
  virtual absl::Status ReleaseLease(const std::string& name,
                                    const std::string& owner) = 0;

  // Appends replica time: for each sample, the seconds its cumulative value
  // grew past the largest one recorded for that replica (first sample: all
  // of it), on the UTC day of `now`. Append-only and idempotent: a sample
  // seen again (after a restart, or from a second reconciler) adds nothing.
  virtual absl::Status RecordReplicaUsage(
      const std::vector<ReplicaSample>& samples, absl::Time now) = 0;

  // Per (date, deployment, hardware) sums matching `query`, ordered by that
  // triple, after `after` ("date|deployment|hardware"; empty: from the
  // start), at most `limit`.
  virtual absl::StatusOr<std::vector<ReplicaUsageRow>> ReplicaUsage(
      const UsageQuery& query, const std::string& after, int limit) = 0;
  // Per hardware sums over every row matching `query` (date and deployment
  // empty).
  virtual absl::StatusOr<std::vector<ReplicaUsageRow>> ReplicaUsageByHardware(
      const UsageQuery& query) = 0;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENT_STORE_H_
