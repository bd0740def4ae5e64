// Deployments: the domain of the deployment service's RPCs, without gRPC.
//
// What it does today (see README.md for what is not built yet):
//  - Validate: the wizard's Review step. Asks the catalog about the model
//    and the scheduler about the offering (facts.h), runs ReviewSpec and
//    returns every violation at once, the normalized spec, costs, warnings
//    and the terms with their SHA-256.
//  - CreateDeployment: the same review must find no violation (metadata
//    included: display name, description, tags), the terms must be
//    accepted with the hash of the text shown, and the request id makes it
//    idempotent: the same id with the same request returns the same
//    deployment, with another request INVALID_ARGUMENT. A retry is answered
//    from the stored request before any check, so it succeeds even if the
//    model or offering changed since. The new deployment is PENDING with
//    reason "accepted": the reconciler that drives it further is not built
//    yet.
//  - Get (by id or display name) and List (filters, pages).
//  - UpdateDeployment: display_name, description and tags through a
//    FieldMask; an etag, when given, must be current (ABORTED otherwise).
//    Makes no revision.
//  - Redeploy: a new spec or an old revision's (rollback) becomes revision
//    N+1 (PENDING, "accepted"), with the fields changed against N, the
//    author and the revision it was rolled back from. The etag is required;
//    the request id makes it idempotent (a retry returns the deployment even
//    though its etag has moved on).
//  - UndeployDeployment: UNDEPLOYED at once (no revision serves; the
//    reconciler releases every replica set and cancels jobs); config,
//    history, keys and usage stay, and Redeploy serves it again.
//  - DeleteDeployment: of a deployment that does not serve and is not on
//    its way (UNDEPLOYED, or FAILED with nothing serving), or of any with
//    `force`: DELETING at once, in the transaction that revokes its keys;
//    the reconciler releases what runs and makes it DELETED. Revisions,
//    keys and usage stay. Deleting a DELETING or DELETED deployment returns
//    it (OK).
//  - ListRevisions (newest first, pages) and GetEndpoint (how to call it).
//  - RecordUsage: the gateway's token reports, appended once per report id
//    (a retried batch is counted once). GetUsage: token rows per day, key
//    and deployment with their cost at the configured per-1k prices, and
//    totals over the whole range; replica rows (recorded by the reconciler)
//    per day, deployment and offering, priced at the offering's hourly
//    price from the scheduler.
//  - API keys: CreateApiKey (the plaintext is returned once; a retry with
//    the same request id returns the key without it), ListApiKeys,
//    RevokeApiKey, and ActiveApiKeys for the gateway's watch. Every key
//    change is announced on the notifier under kApiKeysWatchKey after it
//    commits. Keys are stored as SHA-256 plus a display prefix; the
//    plaintext is never stored or logged.
#ifndef HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENTS_H_
#define HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENTS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/sampling/sampling.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/deployment.pb.h"
#include "services/deployment/deployment_store.h"
#include "services/deployment/facts.h"

namespace hangar::deployment {

// The notifier key of every API key change.
inline constexpr char kApiKeysWatchKey[] = "api-keys";

inline constexpr int kMaxDescriptionChars = 1000;
inline constexpr int kMaxTags = 16;
inline constexpr int kMaxNameChars = 63;
inline constexpr int kMaxRequestIdChars = 64;
// Reports in one RecordUsage call, and characters of its report id.
inline constexpr int kMaxUsageReports = 10'000;
inline constexpr int kMaxReportIdChars = 128;

// Violations of a deployment's metadata: display_name (empty allowed when
// `allow_empty_display_name`), description, tags.
std::vector<sampling::FieldViolation> MetadataViolations(
    const std::string& display_name, const std::string& description,
    const google::protobuf::RepeatedPtrField<std::string>& tags,
    bool allow_empty_display_name);

// The display name derived from a model name: its last path segment,
// lower-cased, with runs of other characters turned into '-'
// ("HuggingFaceTB/SmolLM2-135M-Instruct" -> "smollm2-135m-instruct").
std::string DisplayNameFromModel(const std::string& model);

// The spec fields that differ between `before` and `after`, as dotted
// paths ("sampling.temperature", "hardware"), sorted; the terms fields are
// not counted (they change with the text, not the deployment).
std::vector<std::string> ChangedFields(const v1::DeploymentSpec& before,
                                       const v1::DeploymentSpec& after);

// The method clients call through the gateway.
inline constexpr char kGenerateMethod[] = "hangar.v1.InferenceService/Generate";

class Deployments {
 public:
  struct Options {
    // The gateway address shown to users (Deployment.endpoint). Required.
    std::string gateway_endpoint;
    // Who makes revisions (Revision.author).
    std::string author = "admin";
    // Inference prices: per 1000 prompt and per 1000 completion tokens, in
    // micros of `currency_code`; each >= 0.
    int64_t prompt_price_per_1k_micros = 0;
    int64_t completion_price_per_1k_micros = 0;
    std::string currency_code = "USD";

    // Optional: called with the deployment's id after every write that
    // changes what should run (create, redeploy, undeploy, delete), so the
    // reconciler looks at it at once.
    std::function<void(const std::string&)> on_change;

    // --- Injected (not owned; must outlive this) ---
    DeploymentStore* store = nullptr;
    ModelFactsSource* models = nullptr;
    OfferingFactsSource* offerings = nullptr;
    ChangeNotifier* notifier = nullptr;
    Clock* clock = Clock::Real();
  };

  static absl::StatusOr<std::unique_ptr<Deployments>> Create(Options options);

  absl::StatusOr<v1::ValidateDeploymentResponse> Validate(
      const v1::DeploymentSpec& spec);
  absl::StatusOr<v1::Deployment> CreateDeployment(
      const v1::CreateDeploymentRequest& request);
  absl::StatusOr<v1::Deployment> Get(const std::string& name);
  absl::StatusOr<v1::ListDeploymentsResponse> List(
      const v1::ListDeploymentsRequest& request);
  // Every deployment (DELETED ones too when asked), by id: the feed of
  // WatchDeployments without a name.
  absl::StatusOr<std::vector<v1::Deployment>> AllDeployments(
      bool include_deleted);

  absl::StatusOr<v1::Deployment> Update(
      const v1::UpdateDeploymentRequest& request);
  absl::StatusOr<v1::Deployment> Redeploy(const v1::RedeployRequest& request);
  absl::StatusOr<v1::Deployment> Undeploy(
      const v1::UndeployDeploymentRequest& request);
  absl::StatusOr<v1::Deployment> Delete(
      const v1::DeleteDeploymentRequest& request);
  absl::StatusOr<v1::ListRevisionsResponse> ListRevisions(
      const v1::ListRevisionsRequest& request);
  absl::StatusOr<v1::Endpoint> GetEndpoint(const std::string& name);

  absl::Status RecordUsage(const v1::RecordUsageRequest& request);
  absl::StatusOr<v1::GetUsageResponse> GetUsage(
      const v1::GetUsageRequest& request);

  absl::StatusOr<v1::CreateApiKeyResponse> CreateApiKey(
      const v1::CreateApiKeyRequest& request);
  absl::StatusOr<v1::ListApiKeysResponse> ListApiKeys(
      const v1::ListApiKeysRequest& request);
  absl::StatusOr<v1::ApiKey> RevokeApiKey(const std::string& name);
  absl::StatusOr<std::vector<v1::ApiKeyEvent::Entry>> ActiveApiKeys();

 private:
  explicit Deployments(Options options) : options_(std::move(options)) {}

  // Gathers the facts and reviews the spec; UNAVAILABLE when a dependency
  // cannot be asked.
  absl::StatusOr<SpecReview> Review(const v1::DeploymentSpec& spec);

  const Options options_;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_DEPLOYMENTS_H_
