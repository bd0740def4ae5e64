#include "services/deployment/deployments.h"

#include <cmath>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/api/etag.h"
#include "common/api/field_mask.h"
#include "common/api/page_token.h"
#include "common/api/time.h"
#include "common/auth/api_key.h"
#include "common/auth/crypto.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "common/util/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/message_differencer.h"

namespace hangar::deployment {
namespace {

using sampling::FieldViolation;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

bool IsTagChar(char c) {
  return IsNameChar(c) || c == '_' || c == '.' || c == ':';
}

// UTF-8 code points (proto3 strings are valid UTF-8).
int64_t CharCount(const std::string& text) {
  int64_t count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80;
  return count;
}

// A request's identity for idempotency: SHA-256 of its deterministic
// serialization with the request id cleared.
template <typename Request>
std::string Fingerprint(Request request) {
  request.clear_request_id();
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    request.SerializeToCodedStream(&coded);
  }
  return Sha256Hex(bytes);
}

absl::Status CheckRequestId(const std::string& request_id) {
  if (request_id.empty() || request_id.size() > kMaxRequestIdChars) {
    return InvalidField("request_id",
                        absl::StrCat("required, 1 to ", kMaxRequestIdChars,
                                     " characters (a UUID is typical); was ",
                                     request_id.size(), " characters"));
  }
  return absl::OkStatus();
}

// `prefix` + 12 lowercase base32 characters from the CSPRNG.
absl::StatusOr<std::string> NewId(const char* prefix) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  ASSIGN_OR_RETURN(std::string bytes, auth::RandomBytes(8));
  uint64_t bits = 0;
  for (unsigned char c : bytes) bits = (bits << 8) | c;
  std::string id = prefix;
  for (int i = 0; i < 12; ++i) {
    id.push_back(kAlphabet[bits & 31]);
    bits >>= 5;
  }
  return id;
}

v1::Money MakeMoney(const std::string& currency, int64_t micros) {
  v1::Money money;
  money.set_currency_code(currency);
  money.set_micros(micros);
  return money;
}

}  // namespace

std::vector<FieldViolation> MetadataViolations(
    const std::string& display_name, const std::string& description,
    const google::protobuf::RepeatedPtrField<std::string>& tags,
    bool allow_empty_display_name) {
  std::vector<FieldViolation> violations;
  if (!(display_name.empty() && allow_empty_display_name)) {
    bool valid = !display_name.empty() &&
                 display_name.size() <= static_cast<size_t>(kMaxNameChars);
    for (char c : display_name) valid = valid && IsNameChar(c);
    if (!valid) {
      violations.push_back(
          {"display_name", absl::StrCat("must be 1 to ", kMaxNameChars,
                                        " characters of [a-z0-9-]; was \"",
                                        display_name.size() > 80
                                            ? display_name.substr(0, 80) + "..."
                                            : display_name,
                                        "\"")});
    }
  }
  if (int64_t chars = CharCount(description); chars > kMaxDescriptionChars) {
    violations.push_back(
        {"description", absl::StrCat("must be at most ", kMaxDescriptionChars,
                                     " characters; was ", chars)});
  }
  if (tags.size() > kMaxTags) {
    violations.push_back({"tags", absl::StrCat("at most ", kMaxTags,
                                               " tags; was ", tags.size())});
  } else {
    for (int i = 0; i < tags.size(); ++i) {
      const std::string& tag = tags[i];
      bool valid =
          !tag.empty() && tag.size() <= static_cast<size_t>(kMaxNameChars);
      for (char c : tag) valid = valid && IsTagChar(c);
      if (!valid) {
        violations.push_back(
            {absl::StrCat("tags[", i, "]"),
             absl::StrCat("must be 1 to ", kMaxNameChars,
                          " characters of [a-z0-9-_.:]; was \"",
                          tag.size() > 80 ? tag.substr(0, 80) + "..." : tag,
                          "\"")});
      }
    }
  }
  return violations;
}

std::string DisplayNameFromModel(const std::string& model) {
  std::string last = model.substr(model.rfind('/') + 1);
  std::string name;
  for (char c : absl::AsciiStrToLower(last)) {
    if (IsNameChar(c) && c != '-') {
      name.push_back(c);
    } else if (!name.empty() && name.back() != '-') {
      name.push_back('-');
    }
  }
  // Room for a "-NNN" suffix that makes it unique.
  if (name.size() > 56) name.resize(56);
  while (!name.empty() && name.back() == '-') name.pop_back();
  return name.empty() ? "deployment" : name;
}

absl::StatusOr<std::unique_ptr<Deployments>> Deployments::Create(
    Options options) {
  if (options.gateway_endpoint.empty()) {
    return absl::InvalidArgumentError(
        "gateway_endpoint: required (the address shown to users)");
  }
  if (options.prompt_price_per_1k_micros < 0 ||
      options.completion_price_per_1k_micros < 0) {
    return absl::InvalidArgumentError(
        "prompt/completion price per 1k tokens: must be >= 0");
  }
  if (options.store == nullptr || options.models == nullptr ||
      options.offerings == nullptr || options.notifier == nullptr ||
      options.clock == nullptr) {
    return absl::InvalidArgumentError(
        "Deployments: store, models, offerings, notifier and clock are "
        "required");
  }
  return std::unique_ptr<Deployments>(new Deployments(std::move(options)));
}

absl::StatusOr<SpecReview> Deployments::Review(const v1::DeploymentSpec& spec) {
  ModelFacts model;
  if (!spec.model().empty()) {
    ASSIGN_OR_RETURN(model, options_.models->GetModelFacts(spec.model()));
  }
  OfferingFacts offering;
  if (!spec.hardware().empty()) {
    ASSIGN_OR_RETURN(offering,
                     options_.offerings->GetOfferingFacts(spec.hardware()));
  }
  return ReviewSpec(spec, model, offering);
}

absl::StatusOr<v1::ValidateDeploymentResponse> Deployments::Validate(
    const v1::DeploymentSpec& spec) {
  ASSIGN_OR_RETURN(SpecReview review, Review(spec));
  v1::ValidateDeploymentResponse response;
  response.set_valid(review.violations.empty());
  for (const FieldViolation& violation : review.violations) {
    v1::FieldViolation* out = response.add_violations();
    out->set_field(violation.field);
    out->set_rule(violation.rule);
  }
  *response.mutable_normalized_spec() = review.normalized;
  *response.mutable_min_hourly_cost() =
      MakeMoney(review.currency_code, review.min_hourly_cost_micros);
  *response.mutable_max_hourly_cost() =
      MakeMoney(review.currency_code, review.max_hourly_cost_micros);
  for (const std::string& warning : review.warnings) {
    response.add_warnings(warning);
  }
  response.set_terms(review.terms);
  response.set_terms_sha256(review.terms_sha256);
  response.set_replica_memory_bytes(review.replica_memory_bytes);
  response.set_offering_memory_bytes(review.offering_memory_bytes);
  return response;
}

absl::StatusOr<v1::Deployment> Deployments::CreateDeployment(
    const v1::CreateDeploymentRequest& request) {
  RETURN_IF_ERROR(CheckRequestId(request.request_id()));
  const std::string fingerprint = Fingerprint(request);
  // A retry is answered from what the first call stored: by the store's
  // create itself (one transaction) when the request still passes review,
  // else here, so a retry is answered even while the catalog is down or
  // after the model was withdrawn.
  auto answer_retry =
      [&](const absl::Status& rejected) -> absl::StatusOr<v1::Deployment> {
    ASSIGN_OR_RETURN(
        std::optional<RequestRecord> known,
        options_.store->FindRequest("create", request.request_id()));
    if (!known.has_value()) return rejected;
    if (known->fingerprint != fingerprint) {
      return absl::InvalidArgumentError(
          "request_id: was already used for a different request; use a new "
          "request_id for a new request");
    }
    return options_.store->Get(known->resource);
  };

  std::vector<FieldViolation> violations =
      MetadataViolations(request.display_name(), request.description(),
                         request.tags(), /*allow_empty_display_name=*/true);
  absl::StatusOr<SpecReview> reviewed = Review(request.spec());
  if (!reviewed.ok()) return answer_retry(reviewed.status());
  SpecReview& review = *reviewed;
  violations.insert(violations.end(), review.violations.begin(),
                    review.violations.end());
  if (absl::Status status = ViolationsToStatus(violations); !status.ok()) {
    return answer_retry(status);
  }
  if (absl::Status status =
          CheckTermsAccepted(request.spec(), review.terms_sha256);
      !status.ok()) {
    return answer_retry(status);
  }

  const absl::Time now = options_.clock->Now();
  CreateRecord record;
  record.request_id = request.request_id();
  record.fingerprint = fingerprint;
  record.now = now;
  record.display_name_explicit = !request.display_name().empty();

  v1::Deployment& deployment = record.deployment;
  ASSIGN_OR_RETURN(std::string name, NewId("dep-"));
  deployment.set_name(name);
  deployment.set_display_name(
      record.display_name_explicit
          ? request.display_name()
          : DisplayNameFromModel(request.spec().model()));
  deployment.set_description(request.description());
  *deployment.mutable_tags() = request.tags();
  *deployment.mutable_spec() = review.normalized;
  deployment.set_state(v1::DEPLOYMENT_STATE_PENDING);
  deployment.set_state_reason("accepted");
  deployment.set_latest_revision(1);
  deployment.set_desired_replicas(review.normalized.min_replicas());
  deployment.set_endpoint(options_.gateway_endpoint);
  // No replica runs yet, so nothing is charged per hour.
  *deployment.mutable_hourly_cost() = MakeMoney(review.currency_code, 0);
  *deployment.mutable_create_time() = ToProtoTimestamp(now);
  *deployment.mutable_update_time() = ToProtoTimestamp(now);

  v1::Revision& revision = record.revision;
  revision.set_number(1);
  *revision.mutable_spec() = review.normalized;
  revision.set_state(v1::DEPLOYMENT_STATE_PENDING);
  revision.set_state_reason("accepted");
  revision.set_author(options_.author);
  *revision.mutable_create_time() = ToProtoTimestamp(now);

  ASSIGN_OR_RETURN(v1::Deployment created, options_.store->Create(record));
  options_.notifier->Notify(created.name());
  if (options_.on_change) options_.on_change(created.name());
  return created;
}

absl::StatusOr<v1::Deployment> Deployments::Get(const std::string& name) {
  if (name.empty()) return InvalidField("name", "required");
  return options_.store->Get(name);
}

absl::StatusOr<v1::ListDeploymentsResponse> Deployments::List(
    const v1::ListDeploymentsRequest& request) {
  ASSIGN_OR_RETURN(int limit, ResolvePageSize(request.page_size()));
  const std::string filters = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), filters));
  DeploymentFilter filter{.model = request.model(),
                          .state = request.state(),
                          .tag = request.tag(),
                          .show_deleted = request.show_deleted()};
  ASSIGN_OR_RETURN(std::vector<v1::Deployment> rows,
                   options_.store->List(filter, after, limit + 1));
  v1::ListDeploymentsResponse response;
  const bool more = static_cast<int>(rows.size()) > limit;
  if (more) rows.resize(limit);
  if (more && !rows.empty()) {
    response.set_next_page_token(EncodePageToken(rows.back().name(), filters));
  }
  for (v1::Deployment& row : rows) *response.add_deployments() = std::move(row);
  return response;
}

absl::StatusOr<std::vector<v1::Deployment>> Deployments::AllDeployments(
    bool include_deleted) {
  std::vector<v1::Deployment> all;
  std::string after;
  for (;;) {
    ASSIGN_OR_RETURN(
        std::vector<v1::Deployment> page,
        options_.store->List({.show_deleted = include_deleted}, after, 1000));
    if (page.empty()) break;
    after = page.back().name();
    for (v1::Deployment& deployment : page)
      all.push_back(std::move(deployment));
  }
  return all;
}

absl::StatusOr<v1::CreateApiKeyResponse> Deployments::CreateApiKey(
    const v1::CreateApiKeyRequest& request) {
  RETURN_IF_ERROR(CheckRequestId(request.request_id()));
  if (request.display_name().empty() ||
      CharCount(request.display_name()) > kMaxNameChars) {
    return InvalidField(
        "display_name",
        absl::StrCat("required, 1 to ", kMaxNameChars, " characters; was ",
                     CharCount(request.display_name())));
  }
  if (request.deployment().empty())
    return InvalidField("deployment", "required");
  // Keys hang off the deployment's id, whichever name the caller used.
  ASSIGN_OR_RETURN(v1::Deployment deployment,
                   options_.store->Get(request.deployment()));
  ASSIGN_OR_RETURN(auth::ApiKey secret, auth::GenerateApiKey());
  ASSIGN_OR_RETURN(std::string name, NewId("key-"));
  StoredApiKey stored;
  stored.key.set_name(name);
  stored.key.set_deployment(deployment.name());
  stored.key.set_display_name(request.display_name());
  stored.key.set_prefix(secret.display_prefix);
  *stored.key.mutable_create_time() = ToProtoTimestamp(options_.clock->Now());
  stored.sha256 = secret.hash;
  ASSIGN_OR_RETURN(auto result,
                   options_.store->CreateApiKey(request.request_id(),
                                                Fingerprint(request), stored));
  v1::CreateApiKeyResponse response;
  *response.mutable_api_key() = result.first;
  if (result.second) {
    response.set_plaintext(secret.plaintext);
    options_.notifier->Notify(kApiKeysWatchKey);
  }
  return response;
}

absl::StatusOr<v1::ListApiKeysResponse> Deployments::ListApiKeys(
    const v1::ListApiKeysRequest& request) {
  ASSIGN_OR_RETURN(int limit, ResolvePageSize(request.page_size()));
  const std::string filters = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), filters));
  if (request.deployment().empty())
    return InvalidField("deployment", "required");
  ASSIGN_OR_RETURN(v1::Deployment deployment,
                   options_.store->Get(request.deployment()));
  ASSIGN_OR_RETURN(
      std::vector<v1::ApiKey> keys,
      options_.store->ListApiKeys(deployment.name(), request.show_revoked(),
                                  after, limit + 1));
  v1::ListApiKeysResponse response;
  const bool more = static_cast<int>(keys.size()) > limit;
  if (more) keys.resize(limit);
  if (more && !keys.empty()) {
    response.set_next_page_token(EncodePageToken(keys.back().name(), filters));
  }
  for (v1::ApiKey& key : keys) *response.add_api_keys() = std::move(key);
  return response;
}

absl::StatusOr<v1::ApiKey> Deployments::RevokeApiKey(const std::string& name) {
  if (name.empty()) return InvalidField("name", "required");
  ASSIGN_OR_RETURN(v1::ApiKey key,
                   options_.store->RevokeApiKey(name, options_.clock->Now()));
  options_.notifier->Notify(kApiKeysWatchKey);
  return key;
}

absl::StatusOr<std::vector<v1::ApiKeyEvent::Entry>>
Deployments::ActiveApiKeys() {
  return options_.store->ActiveApiKeys();
}

}  // namespace hangar::deployment

namespace hangar::deployment {
namespace {

bool IsLive(const v1::Deployment& deployment) {
  return deployment.state() != v1::DEPLOYMENT_STATE_DELETED &&
         deployment.state() != v1::DEPLOYMENT_STATE_DELETING;
}

absl::Status NotLive(const v1::Deployment& deployment) {
  return absl::FailedPreconditionError(absl::StrCat(
      "deployment \"", deployment.name(), "\" is ",
      v1::DeploymentState_Name(deployment.state()), "; it cannot be changed"));
}

// Collects the dotted paths of differing fields.
class PathReporter
    : public google::protobuf::util::MessageDifferencer::Reporter {
 public:
  explicit PathReporter(std::set<std::string>* paths) : paths_(paths) {}
  void ReportAdded(
      const google::protobuf::Message&, const google::protobuf::Message&,
      const std::vector<
          google::protobuf::util::MessageDifferencer::SpecificField>& path)
      override {
    Add(path);
  }
  void ReportDeleted(
      const google::protobuf::Message&, const google::protobuf::Message&,
      const std::vector<
          google::protobuf::util::MessageDifferencer::SpecificField>& path)
      override {
    Add(path);
  }
  void ReportModified(
      const google::protobuf::Message&, const google::protobuf::Message&,
      const std::vector<
          google::protobuf::util::MessageDifferencer::SpecificField>& path)
      override {
    Add(path);
  }

 private:
  void Add(const std::vector<
           google::protobuf::util::MessageDifferencer::SpecificField>& path) {
    std::string joined;
    for (const auto& field : path) {
      if (field.field == nullptr) continue;
      if (!joined.empty()) joined.push_back('.');
      joined += field.field->name();
    }
    if (!joined.empty()) paths_->insert(joined);
  }
  std::set<std::string>* paths_;
};

}  // namespace

std::vector<std::string> ChangedFields(const v1::DeploymentSpec& before,
                                       const v1::DeploymentSpec& after) {
  std::set<std::string> paths;
  {
    PathReporter reporter(&paths);
    google::protobuf::util::MessageDifferencer differencer;
    const google::protobuf::Descriptor* descriptor =
        v1::DeploymentSpec::descriptor();
    differencer.IgnoreField(descriptor->FindFieldByName("accept_terms"));
    differencer.IgnoreField(
        descriptor->FindFieldByName("accepted_terms_sha256"));
    differencer.ReportDifferencesTo(&reporter);
    differencer.Compare(before, after);
  }
  // A message field is reported with the fields inside it that changed;
  // keep the innermost paths only.
  std::vector<std::string> changed;
  for (const std::string& path : paths) {
    auto next = paths.upper_bound(path);
    if (next != paths.end() && absl::StartsWith(*next, path + ".")) continue;
    changed.push_back(path);
  }
  return changed;
}

absl::StatusOr<v1::Deployment> Deployments::Update(
    const v1::UpdateDeploymentRequest& request) {
  RETURN_IF_ERROR(ValidateFieldMask(request.update_mask(),
                                    {"display_name", "description", "tags"},
                                    v1::Deployment::descriptor()));
  const v1::Deployment& given = request.deployment();
  if (given.name().empty()) return InvalidField("deployment.name", "required");
  // Check what the mask takes before touching the database.
  v1::Deployment probe;
  probe.set_display_name("x");
  ApplyFieldMask(given, request.update_mask(), &probe);
  std::vector<FieldViolation> violations =
      MetadataViolations(probe.display_name(), probe.description(),
                         probe.tags(), /*allow_empty_display_name=*/false);
  for (FieldViolation& violation : violations) {
    violation.field = absl::StrCat("deployment.", violation.field);
  }
  RETURN_IF_ERROR(ViolationsToStatus(violations));
  const absl::Time now = options_.clock->Now();
  ASSIGN_OR_RETURN(
      v1::Deployment updated,
      options_.store->Update(
          given.name(), std::nullopt,
          [&](const v1::Deployment& current) -> absl::StatusOr<Mutation> {
            RETURN_IF_ERROR(CheckEtag(given.etag(), current.etag(), false,
                                      "deployment.etag"));
            if (!IsLive(current)) return NotLive(current);
            Mutation mutation{.deployment = current, .now = now};
            ApplyFieldMask(given, request.update_mask(), &mutation.deployment);
            *mutation.deployment.mutable_update_time() = ToProtoTimestamp(now);
            return mutation;
          }));
  options_.notifier->Notify(updated.name());
  return updated;
}

absl::StatusOr<v1::Deployment> Deployments::Redeploy(
    const v1::RedeployRequest& request) {
  if (request.name().empty()) return InvalidField("name", "required");
  RETURN_IF_ERROR(CheckRequestId(request.request_id()));
  if (request.etag().empty()) return InvalidField("etag", "required");
  const std::string fingerprint = Fingerprint(request);
  ASSIGN_OR_RETURN(
      std::optional<RequestRecord> known,
      options_.store->FindRequest("redeploy", request.request_id()));
  if (known.has_value()) {
    if (known->fingerprint != fingerprint) {
      return absl::InvalidArgumentError(
          "request_id: was already used for a different request; use a new "
          "request_id for a new request");
    }
    return options_.store->Get(known->resource);
  }
  ASSIGN_OR_RETURN(v1::Deployment current, options_.store->Get(request.name()));
  RETURN_IF_ERROR(CheckEtag(request.etag(), current.etag(), true));
  if (!IsLive(current)) return NotLive(current);

  v1::DeploymentSpec spec;
  int64_t rolled_back_from = 0;
  switch (request.source_case()) {
    case v1::RedeployRequest::kSpec:
      spec = request.spec();
      break;
    case v1::RedeployRequest::kFromRevision: {
      if (request.from_revision() < 1 ||
          request.from_revision() > current.latest_revision()) {
        return InvalidField(
            "from_revision",
            absl::StrCat("must be in [1, ", current.latest_revision(),
                         "]; was ", request.from_revision()));
      }
      ASSIGN_OR_RETURN(
          v1::Revision old,
          options_.store->GetRevision(current.name(), request.from_revision()));
      spec = old.spec();
      rolled_back_from = old.number();
      break;
    }
    default:
      return InvalidField("source", "required: spec or from_revision");
  }
  ASSIGN_OR_RETURN(SpecReview review, Review(spec));
  RETURN_IF_ERROR(ViolationsToStatus(review.violations));
  RETURN_IF_ERROR(CheckTermsAccepted(spec, review.terms_sha256));

  const absl::Time now = options_.clock->Now();
  ASSIGN_OR_RETURN(
      v1::Deployment updated,
      options_.store->Update(
          current.name(),
          RequestClaim{"redeploy", request.request_id(), fingerprint, now},
          [&](const v1::Deployment& row) -> absl::StatusOr<Mutation> {
            // The row may have moved on since it was read above.
            RETURN_IF_ERROR(CheckEtag(request.etag(), row.etag(), true));
            if (!IsLive(row)) return NotLive(row);
            Mutation mutation{.deployment = row, .now = now};
            v1::Revision revision;
            revision.set_number(row.latest_revision() + 1);
            *revision.mutable_spec() = review.normalized;
            revision.set_state(v1::DEPLOYMENT_STATE_PENDING);
            revision.set_state_reason("accepted");
            for (std::string& field :
                 ChangedFields(row.spec(), review.normalized)) {
              revision.add_changed_fields(std::move(field));
            }
            revision.set_author(options_.author);
            revision.set_rolled_back_from(rolled_back_from);
            *revision.mutable_create_time() = ToProtoTimestamp(now);
            v1::Deployment& next = mutation.deployment;
            *next.mutable_spec() = review.normalized;
            next.set_state(v1::DEPLOYMENT_STATE_PENDING);
            next.set_state_reason("accepted");
            next.set_latest_revision(revision.number());
            next.set_desired_replicas(review.normalized.min_replicas());
            *next.mutable_update_time() = ToProtoTimestamp(now);
            mutation.new_revision = std::move(revision);
            return mutation;
          }));
  options_.notifier->Notify(updated.name());
  if (options_.on_change) options_.on_change(updated.name());
  return updated;
}

absl::StatusOr<v1::Deployment> Deployments::Undeploy(
    const v1::UndeployDeploymentRequest& request) {
  if (request.name().empty()) return InvalidField("name", "required");
  const absl::Time now = options_.clock->Now();
  bool wrote = false;
  ASSIGN_OR_RETURN(
      v1::Deployment undeployed,
      options_.store->Update(
          request.name(), std::nullopt,
          [&](const v1::Deployment& current) -> absl::StatusOr<Mutation> {
            RETURN_IF_ERROR(CheckEtag(request.etag(), current.etag()));
            if (!IsLive(current)) return NotLive(current);
            Mutation mutation{.deployment = current, .now = now};
            if (current.state() == v1::DEPLOYMENT_STATE_UNDEPLOYED) {
              mutation.write = false;  // Undeploying twice: the same answer.
              return mutation;
            }
            v1::Deployment& next = mutation.deployment;
            next.set_state(v1::DEPLOYMENT_STATE_UNDEPLOYED);
            next.set_state_reason("undeployed: releasing replicas");
            next.set_serving_revision(0);
            next.set_ready_replicas(0);
            next.set_desired_replicas(0);
            next.clear_progress();
            next.mutable_hourly_cost()->set_micros(0);
            *next.mutable_update_time() = ToProtoTimestamp(now);
            wrote = true;
            return mutation;
          }));
  if (wrote) {
    options_.notifier->Notify(undeployed.name());
    if (options_.on_change) options_.on_change(undeployed.name());
  }
  return undeployed;
}

absl::StatusOr<v1::Deployment> Deployments::Delete(
    const v1::DeleteDeploymentRequest& request) {
  if (request.name().empty()) return InvalidField("name", "required");
  const absl::Time now = options_.clock->Now();
  bool revoked = false;
  ASSIGN_OR_RETURN(
      v1::Deployment deleted,
      options_.store->Update(
          request.name(), std::nullopt,
          [&](const v1::Deployment& current) -> absl::StatusOr<Mutation> {
            Mutation mutation{.deployment = current, .now = now};
            if (current.state() == v1::DEPLOYMENT_STATE_DELETED ||
                current.state() == v1::DEPLOYMENT_STATE_DELETING) {
              mutation.write = false;  // Deleting twice: the same answer.
              return mutation;
            }
            RETURN_IF_ERROR(CheckEtag(request.etag(), current.etag()));
            const bool at_rest =
                current.serving_revision() == 0 &&
                (current.state() == v1::DEPLOYMENT_STATE_UNDEPLOYED ||
                 current.state() == v1::DEPLOYMENT_STATE_FAILED);
            if (!at_rest && !request.force()) {
              return absl::FailedPreconditionError(absl::StrCat(
                  "deployment \"", current.name(), "\" is ",
                  v1::DeploymentState_Name(current.state()),
                  current.serving_revision() > 0
                      ? absl::StrCat(" and revision ",
                                     current.serving_revision(), " serves")
                      : std::string(),
                  "; undeploy it first (UndeployDeployment) or delete with "
                  "force"));
            }
            v1::Deployment& next = mutation.deployment;
            next.set_state(v1::DEPLOYMENT_STATE_DELETING);
            next.set_state_reason("deleting: releasing replicas");
            next.set_serving_revision(0);
            next.clear_progress();
            *next.mutable_update_time() = ToProtoTimestamp(now);
            mutation.revoke_keys = true;
            revoked = true;
            return mutation;
          }));
  if (revoked) {
    options_.notifier->Notify(kApiKeysWatchKey);
    options_.notifier->Notify(deleted.name());
    if (options_.on_change) options_.on_change(deleted.name());
  }
  return deleted;
}

absl::StatusOr<v1::ListRevisionsResponse> Deployments::ListRevisions(
    const v1::ListRevisionsRequest& request) {
  ASSIGN_OR_RETURN(int limit, ResolvePageSize(request.page_size()));
  const std::string filters = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), filters));
  int64_t before = 0;
  if (!after.empty() && (!absl::SimpleAtoi(after, &before) || before < 1)) {
    return InvalidField("page_token", "malformed");
  }
  if (request.deployment().empty()) {
    return InvalidField("deployment", "required");
  }
  ASSIGN_OR_RETURN(v1::Deployment deployment,
                   options_.store->Get(request.deployment()));
  ASSIGN_OR_RETURN(
      std::vector<v1::Revision> revisions,
      options_.store->ListRevisions(deployment.name(), before, limit + 1));
  v1::ListRevisionsResponse response;
  const bool more = static_cast<int>(revisions.size()) > limit;
  if (more) revisions.resize(limit);
  if (more && !revisions.empty()) {
    response.set_next_page_token(
        EncodePageToken(absl::StrCat(revisions.back().number()), filters));
  }
  for (v1::Revision& revision : revisions) {
    revision.set_serving(revision.number() == deployment.serving_revision() &&
                         deployment.serving_revision() > 0);
    *response.add_revisions() = std::move(revision);
  }
  return response;
}

absl::StatusOr<v1::Endpoint> Deployments::GetEndpoint(const std::string& name) {
  if (name.empty()) return InvalidField("deployment", "required");
  ASSIGN_OR_RETURN(v1::Deployment deployment, options_.store->Get(name));
  ASSIGN_OR_RETURN(ModelFacts model,
                   options_.models->GetModelFacts(deployment.spec().model()));
  ASSIGN_OR_RETURN(int keys,
                   options_.store->CountActiveApiKeys(deployment.name()));
  v1::Endpoint endpoint;
  endpoint.set_deployment(deployment.name());
  endpoint.set_display_name(deployment.display_name());
  endpoint.set_address(options_.gateway_endpoint);
  endpoint.set_method(kGenerateMethod);
  const std::string& address = options_.gateway_endpoint;
  const std::string body = absl::StrCat(
      "{\"deployment\": \"", deployment.name(), "\", \"prompt\": \"Hello\"}");
  const std::string hangarctl =
      absl::StrCat("hangarctl call --api_key=<YOUR_API_KEY> ", address, " ",
                   kGenerateMethod, " '", body, "'");
  const std::string grpcurl = absl::StrCat(
      "grpcurl -plaintext -H 'authorization: Bearer <YOUR_API_KEY>' -d '", body,
      "' ", address, " ", kGenerateMethod);
  const std::string python = absl::StrCat(
      "import grpc\n"
      "from hangar.v1 import inference_pb2, inference_pb2_grpc\n"
      "\n"
      "channel = grpc.insecure_channel(\"",
      address,
      "\")\n"
      "stub = inference_pb2_grpc.InferenceServiceStub(channel)\n"
      "request = inference_pb2.GenerateRequest(deployment=\"",
      deployment.name(),
      "\", prompt=\"Hello\")\n"
      "response = stub.Generate(\n"
      "    request, metadata=[(\"authorization\", \"Bearer "
      "<YOUR_API_KEY>\")])\n"
      "print(response.text)\n");
  endpoint.set_example(absl::StrCat(hangarctl, "\n", grpcurl, "\n"));
  endpoint.set_hangarctl_example(hangarctl);
  endpoint.set_grpcurl_example(grpcurl);
  endpoint.set_python_example(python);
  endpoint.set_ready(deployment.serving_revision() > 0);
  endpoint.set_serving_revision(deployment.serving_revision());
  endpoint.set_ready_replicas(deployment.ready_replicas());
  endpoint.set_api_keys(keys);
  *endpoint.mutable_sampling() = deployment.spec().sampling();
  endpoint.set_context_length(model.found ? model.context_length : 0);
  return endpoint;
}

}  // namespace hangar::deployment

namespace hangar::deployment {
namespace {

absl::Status CheckDate(const char* field, const std::string& date) {
  if (date.empty()) return absl::OkStatus();
  absl::Time parsed;
  std::string error;
  if (date.size() != 10 ||
      !absl::ParseTime("%Y-%m-%d", date, absl::UTCTimeZone(), &parsed,
                       &error)) {
    return InvalidField(field, absl::StrCat("must be a date YYYY-MM-DD; was \"",
                                            date.substr(0, 40), "\""));
  }
  return absl::OkStatus();
}

// tokens / 1000 x price, rounded to the nearest micro.
int64_t TokenCost(int64_t tokens, int64_t price_per_1k_micros) {
  const __int128 product =
      static_cast<__int128>(tokens) * price_per_1k_micros + 500;
  return static_cast<int64_t>(product / 1000);
}

}  // namespace

absl::Status Deployments::RecordUsage(const v1::RecordUsageRequest& request) {
  if (request.report_id().empty() ||
      request.report_id().size() > static_cast<size_t>(kMaxReportIdChars)) {
    return InvalidField(
        "report_id",
        absl::StrCat("required, 1 to ", kMaxReportIdChars, " characters; was ",
                     request.report_id().size()));
  }
  if (request.reports_size() > kMaxUsageReports) {
    return InvalidField(
        "reports", absl::StrCat("at most ", kMaxUsageReports, " per call; was ",
                                request.reports_size()));
  }
  std::vector<FieldViolation> violations;
  for (int i = 0; i < request.reports_size(); ++i) {
    const v1::TokenUsageReport& report = request.reports(i);
    const std::string at = absl::StrCat("reports[", i, "].");
    if (report.api_key().empty()) {
      violations.push_back({at + "api_key", "required"});
    }
    if (report.deployment().empty()) {
      violations.push_back({at + "deployment", "required"});
    }
    if (report.revision() < 0) {
      violations.push_back({at + "revision", absl::StrCat("must be >= 0; was ",
                                                          report.revision())});
    }
    if (!report.has_start_time() || !report.has_end_time() ||
        FromProtoTimestamp(report.end_time()) <
            FromProtoTimestamp(report.start_time())) {
      violations.push_back({at + "end_time",
                            "start_time and end_time are required, "
                            "start_time <= end_time"});
    }
    for (const auto& [name, value] :
         {std::pair<const char*, int64_t>{"requests", report.requests()},
          {"tokens.prompt_tokens", report.tokens().prompt_tokens()},
          {"tokens.completion_tokens", report.tokens().completion_tokens()}}) {
      if (value < 0) {
        violations.push_back(
            {at + name, absl::StrCat("must be >= 0; was ", value)});
      }
    }
    if (violations.size() >= 16) break;  // Enough to act on.
  }
  RETURN_IF_ERROR(ViolationsToStatus(violations));
  std::vector<v1::TokenUsageReport> reports(request.reports().begin(),
                                            request.reports().end());
  return options_.store
      ->RecordUsage(request.report_id(), reports, options_.clock->Now())
      .status();
}

absl::StatusOr<v1::GetUsageResponse> Deployments::GetUsage(
    const v1::GetUsageRequest& request) {
  ASSIGN_OR_RETURN(int limit, ResolvePageSize(request.page_size()));
  const std::string filters = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string cursor,
                   DecodePageToken(request.page_token(), filters));
  // The cursor holds both row kinds' positions: "<tokens>\n<replicas>".
  std::string after = cursor;
  std::string replica_after;
  if (size_t split = cursor.find('\n'); split != std::string::npos) {
    after = cursor.substr(0, split);
    replica_after = cursor.substr(split + 1);
  }
  RETURN_IF_ERROR(CheckDate("range.start_date", request.range().start_date()));
  RETURN_IF_ERROR(CheckDate("range.end_date", request.range().end_date()));
  UsageQuery query{.start_date = request.range().start_date(),
                   .end_date = request.range().end_date()};
  if (!request.deployment().empty()) {
    ASSIGN_OR_RETURN(v1::Deployment deployment,
                     options_.store->Get(request.deployment()));
    query.deployment = deployment.name();
  }
  ASSIGN_OR_RETURN(std::vector<TokenUsageRow> rows,
                   options_.store->TokenUsage(query, after, limit + 1));
  ASSIGN_OR_RETURN(TokenUsageRow total, options_.store->TokenUsageTotal(query));
  ASSIGN_OR_RETURN(
      std::vector<ReplicaUsageRow> replica_rows,
      options_.store->ReplicaUsage(query, replica_after, limit + 1));
  ASSIGN_OR_RETURN(std::vector<ReplicaUsageRow> by_hardware,
                   options_.store->ReplicaUsageByHardware(query));
  // The scheduler's current hourly price of every offering billed here.
  std::map<std::string, int64_t> hourly;
  for (const ReplicaUsageRow& row : by_hardware) {
    ASSIGN_OR_RETURN(OfferingFacts offering,
                     options_.offerings->GetOfferingFacts(row.hardware));
    hourly[row.hardware] = offering.found ? offering.hourly_price_micros : 0;
  }
  auto replica_cost = [&](const ReplicaUsageRow& row) {
    return static_cast<int64_t>(
        std::llround(row.replica_seconds / 3600.0 * hourly[row.hardware]));
  };

  const std::string& currency = options_.currency_code;
  const int64_t prompt_price = options_.prompt_price_per_1k_micros;
  const int64_t completion_price = options_.completion_price_per_1k_micros;
  v1::GetUsageResponse response;
  const bool more = static_cast<int>(rows.size()) > limit;
  if (more) rows.resize(limit);
  for (const TokenUsageRow& row : rows) {
    v1::KeyTokenUsage* out = response.add_token_usage();
    out->set_date(row.date);
    out->set_deployment(row.deployment);
    out->set_api_key(row.api_key);
    out->set_requests(row.requests);
    out->mutable_tokens()->set_prompt_tokens(row.prompt_tokens);
    out->mutable_tokens()->set_completion_tokens(row.completion_tokens);
    *out->mutable_cost() = MakeMoney(
        currency, TokenCost(row.prompt_tokens, prompt_price) +
                      TokenCost(row.completion_tokens, completion_price));
  }
  const bool more_replicas = static_cast<int>(replica_rows.size()) > limit;
  if (more_replicas) replica_rows.resize(limit);
  for (const ReplicaUsageRow& row : replica_rows) {
    v1::ReplicaUsage* out = response.add_replica_usage();
    out->set_date(row.date);
    out->set_deployment(row.deployment);
    out->set_hardware(row.hardware);
    out->set_replica_seconds(row.replica_seconds);
    *out->mutable_cost() = MakeMoney(currency, replica_cost(row));
  }
  if (more || more_replicas) {
    // A kind without more rows keeps its last position (its next page is
    // empty); the other moves on.
    std::string token_position = after;
    if (!rows.empty()) {
      const TokenUsageRow& last = rows.back();
      token_position =
          absl::StrCat(last.date, "|", last.deployment, "|", last.api_key);
    }
    std::string replica_position = replica_after;
    if (!replica_rows.empty()) {
      const ReplicaUsageRow& last = replica_rows.back();
      replica_position =
          absl::StrCat(last.date, "|", last.deployment, "|", last.hardware);
    }
    if (!more) token_position = "9999-12-31~";  // Past every row.
    if (!more_replicas) replica_position = "9999-12-31~";
    response.set_next_page_token(EncodePageToken(
        absl::StrCat(token_position, "\n", replica_position), filters));
  }
  const int64_t token_cost =
      TokenCost(total.prompt_tokens, prompt_price) +
      TokenCost(total.completion_tokens, completion_price);
  int64_t replica_total = 0;
  for (const ReplicaUsageRow& row : by_hardware) {
    replica_total += replica_cost(row);
  }
  for (const auto& [hardware, price] : hourly) {
    (*response.mutable_prices()->mutable_hourly())[hardware] =
        MakeMoney(currency, price);
  }
  *response.mutable_replica_cost() = MakeMoney(currency, replica_total);
  *response.mutable_token_cost() = MakeMoney(currency, token_cost);
  *response.mutable_total_cost() =
      MakeMoney(currency, token_cost + replica_total);
  *response.mutable_prices()->mutable_prompt_per_1k_tokens() =
      MakeMoney(currency, prompt_price);
  *response.mutable_prices()->mutable_completion_per_1k_tokens() =
      MakeMoney(currency, completion_price);
  return response;
}

}  // namespace hangar::deployment
