#include "services/deployment/deployments.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/api/page_token.h"
#include "common/api/time.h"
#include "common/auth/api_key.h"
#include "common/auth/crypto.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "common/util/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

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
  // A retry is answered from what the first call stored.
  ASSIGN_OR_RETURN(std::optional<RequestRecord> known,
                   options_.store->FindRequest("create", request.request_id()));
  if (known.has_value()) {
    if (known->fingerprint != fingerprint) {
      return absl::InvalidArgumentError(
          "request_id: was already used for a different request; use a new "
          "request_id for a new request");
    }
    return options_.store->Get(known->resource);
  }

  std::vector<FieldViolation> violations =
      MetadataViolations(request.display_name(), request.description(),
                         request.tags(), /*allow_empty_display_name=*/true);
  ASSIGN_OR_RETURN(SpecReview review, Review(request.spec()));
  violations.insert(violations.end(), review.violations.begin(),
                    review.violations.end());
  RETURN_IF_ERROR(ViolationsToStatus(violations));
  RETURN_IF_ERROR(CheckTermsAccepted(request.spec(), review.terms_sha256));

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
