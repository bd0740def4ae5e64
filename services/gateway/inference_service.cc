#include "services/gateway/inference_service.h"

#include <atomic>
#include <deque>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/sampling/sampling.h"
#include "common/status/grpc_status.h"

namespace hangar::gateway {
namespace {

using Options = InferenceServiceImpl::Options;

constexpr size_t kMaxPromptBytes = 1 << 20;
constexpr size_t kMaxRequestIdLength = 64;
constexpr char kUnknownDeployment[] = "unknown";

std::optional<absl::string_view> Metadata(
    const grpc::CallbackServerContext& context, const char* name) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(name);
  if (it == metadata.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

// Step 1 of the header's admission: the caller's key.
absl::StatusOr<Principal> Authenticate(
    const Options& options, const grpc::CallbackServerContext& context) {
  absl::StatusOr<std::string> key = ExtractApiKey(
      Metadata(context, "authorization"), Metadata(context, "x-api-key"));
  if (!key.ok()) {
    if (options.metrics != nullptr) options.metrics->AuthFailure("missing");
    return key.status();
  }
  absl::StatusOr<Principal> principal = options.keys->Authenticate(*key);
  if (!principal.ok() && options.metrics != nullptr) {
    options.metrics->AuthFailure(
        absl::IsUnavailable(principal.status()) ? "not_loaded" : "invalid");
  }
  return principal;
}

std::string NewRequestId() {
  static const uint64_t start =
      static_cast<uint64_t>(absl::ToUnixMicros(absl::Now()));
  static std::atomic<uint64_t> counter{0};
  return absl::StrFormat("req-%x-%d", start, counter.fetch_add(1) + 1);
}

absl::Status ValidateRequest(const v1::GenerateRequest& request) {
  if (request.deployment().empty()) {
    return absl::InvalidArgumentError("deployment: required");
  }
  if (request.input_case() != v1::GenerateRequest::kPrompt) {
    return absl::InvalidArgumentError("prompt: required");
  }
  const std::string& prompt = request.prompt();
  if (prompt.empty() || prompt.size() > kMaxPromptBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt: must be 1 byte to 1 MiB; was ", prompt.size(), " bytes"));
  }
  if (!sampling::IsValidUtf8(prompt)) {
    return absl::InvalidArgumentError("prompt: must be valid UTF-8");
  }
  const std::string& id = request.request_id();
  bool printable = true;
  for (char c : id) printable = printable && c >= 0x20 && c <= 0x7e;
  if (id.size() > kMaxRequestIdLength || !printable) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request_id: must be 1 to 64 printable ASCII characters; was ",
        id.size(), printable ? " characters" : " characters, not printable"));
  }
  return absl::OkStatus();
}

// What an admitted call holds.
struct Admitted {
  Principal principal;
  ResolvedRoute route;
  ConcurrencyLimiter::Lease lease;
  std::string request_id;
  absl::Time deadline;
};

// Steps 1 to 5 of the header. `deployment` is set as soon as it is known.
absl::StatusOr<Admitted> Admit(const Options& options,
                               const grpc::CallbackServerContext& context,
                               const v1::GenerateRequest& request,
                               std::string* deployment) {
  Admitted admitted;
  absl::StatusOr<Principal> principal = Authenticate(options, context);
  if (!principal.ok()) return principal.status();
  admitted.principal = *std::move(principal);
  if (absl::Status valid = ValidateRequest(request); !valid.ok()) return valid;
  absl::StatusOr<ResolvedRoute> route =
      options.routes->Resolve(request.deployment());
  if (!route.ok()) return route.status();
  admitted.route = *std::move(route);
  *deployment = admitted.route.deployment;
  if (admitted.route.deployment != admitted.principal.deployment) {
    if (options.metrics != nullptr) {
      options.metrics->AuthFailure("wrong_deployment");
    }
    return absl::PermissionDeniedError(
        "this API key may not call this deployment");
  }
  absl::StatusOr<v1::SamplingParams> normalized =
      sampling::NormalizeSamplingParams(admitted.route.sampling,
                                        admitted.route.context_length);
  if (!normalized.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the deployment's sampling values are invalid: ",
                     normalized.status().message()));
  }
  std::vector<sampling::FieldViolation> violations =
      sampling::CheckSamplingOverrides(*normalized, request.sampling(),
                                       /*prompt_tokens=*/-1,
                                       admitted.route.context_length);
  if (!violations.empty()) {
    return absl::InvalidArgumentError(violations.front().ToString());
  }
  absl::StatusOr<ConcurrencyLimiter::Lease> lease =
      options.limiter->Acquire(admitted.principal.key_name);
  if (!lease.ok()) return lease.status();
  admitted.lease = *std::move(lease);
  admitted.request_id =
      request.request_id().empty() ? NewRequestId() : request.request_id();
  const absl::Time now = options.clock->Now();
  admitted.deadline = now + options.default_timeout;
  if (context.deadline() != std::chrono::system_clock::time_point::max()) {
    admitted.deadline =
        std::min(admitted.deadline, absl::FromChrono(context.deadline()));
  }
  return admitted;
}

SubmitRequest MakeSubmit(const Admitted& admitted,
                         const v1::GenerateRequest& request,
                         RequestObserver* observer) {
  SubmitRequest submit;
  submit.deployment = admitted.route.deployment;
  submit.revision = admitted.route.revision;
  submit.sequence.set_prompt(request.prompt());
  *submit.sequence.mutable_sampling() = request.sampling();
  submit.deadline = admitted.deadline;
  submit.usage_key.key_name = admitted.principal.key_name;
  submit.observer = observer;
  return submit;
}

// Base of both Generate reactors: admission, submission, cancellation and
// the request metrics. `Finish` of the concrete reactor is the last thing
// either does.
class CallState {
 protected:
  CallState(const Options& options, grpc::CallbackServerContext* context)
      : options_(options), context_(context), start_(options.clock->Now()) {}

  // Admits and submits; returns the status to answer at once on failure.
  absl::Status Begin(const v1::GenerateRequest& request,
                     RequestObserver* observer) {
    absl::StatusOr<Admitted> admitted =
        Admit(options_, *context_, request, &deployment_);
    if (!admitted.ok()) return admitted.status();
    request_id_ = admitted->request_id;
    revision_ = admitted->route.revision;
    lease_ = std::move(admitted->lease);
    absl::Duration retry_after = absl::ZeroDuration();
    absl::StatusOr<uint64_t> id = options_.dispatcher->Submit(
        MakeSubmit(*admitted, request, observer), &retry_after);
    if (!id.ok()) {
      if (absl::IsResourceExhausted(id.status())) {
        context_->AddTrailingMetadata(
            "retry-after-ms", absl::StrCat(std::max<int64_t>(
                                  1, absl::ToInt64Milliseconds(retry_after))));
      }
      return id.status();
    }
    absl::MutexLock lock(&mu_);
    id_ = *id;
    return absl::OkStatus();
  }

  // For OnCancel.
  void CancelSubmitted() {
    uint64_t id = 0;
    {
      absl::MutexLock lock(&mu_);
      if (answered_) return;
      id = id_;
    }
    if (id != 0) options_.dispatcher->Cancel(id);
  }

  // Counts the answer and releases the key's slot; returns the status for
  // Finish. `handle`: the deployment's metric handles when the dispatcher
  // answered (else they are looked up by name, off the fast path).
  grpc::Status Answered(const absl::Status& status,
                        GatewayMetrics::Deployment* handle = nullptr) {
    {
      absl::MutexLock lock(&mu_);
      answered_ = true;
    }
    lease_ = ConcurrencyLimiter::Lease();
    if (options_.metrics != nullptr) {
      const absl::Duration latency = options_.clock->Now() - start_;
      if (handle != nullptr) {
        handle->RequestDone(status.code(), latency);
      } else {
        options_.metrics->RequestDone(
            deployment_.empty() ? kUnknownDeployment : deployment_,
            status.code(), latency);
      }
    }
    return ToGrpcStatus(status);
  }

  const Options& options_;
  grpc::CallbackServerContext* const context_;
  const absl::Time start_;
  std::string deployment_;
  std::string request_id_;
  int64_t revision_ = 0;
  ConcurrencyLimiter::Lease lease_;

  absl::Mutex mu_;
  uint64_t id_ ABSL_GUARDED_BY(mu_) = 0;
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
};

class GenerateCall final : public grpc::ServerUnaryReactor,
                           public RequestObserver,
                           private CallState {
 public:
  GenerateCall(const Options& options, grpc::CallbackServerContext* context,
               v1::GenerateResponse* response)
      : CallState(options, context), response_(response) {}

  void Start(const v1::GenerateRequest& request) {
    if (absl::Status status = Begin(request, this); !status.ok()) {
      Finish(Answered(status));
    }
  }

  void OnDelta(const std::string& delta) override {
    absl::MutexLock lock(&text_mu_);
    text_ += delta;
  }
  bool Restart() override {
    absl::MutexLock lock(&text_mu_);
    text_.clear();
    return true;
  }
  void OnFinish(const absl::Status& status,
                const GenerateOutcome& outcome) override {
    if (status.ok()) {
      absl::MutexLock lock(&text_mu_);
      response_->set_text(std::move(text_));
      response_->set_finish_reason(outcome.finish_reason);
      *response_->mutable_usage() = outcome.usage;
      response_->set_deployment(outcome.deployment);
      response_->set_revision(outcome.revision);
      response_->set_request_id(request_id_);
    }
    Finish(Answered(status, outcome.metrics));
  }

  void OnCancel() override { CancelSubmitted(); }
  void OnDone() override { delete this; }

 private:
  v1::GenerateResponse* const response_;
  absl::Mutex text_mu_;
  std::string text_ ABSL_GUARDED_BY(text_mu_);
};

class StreamCall final
    : public grpc::ServerWriteReactor<v1::GenerateStreamResponse>,
      public RequestObserver,
      private CallState {
 public:
  StreamCall(const Options& options, grpc::CallbackServerContext* context)
      : CallState(options, context) {}

  void Start(const v1::GenerateRequest& request) {
    if (absl::Status status = Begin(request, this); !status.ok()) {
      Finish(Answered(status));
    }
  }

  void OnDelta(const std::string& delta) override {
    absl::MutexLock lock(&write_mu_);
    v1::GenerateStreamResponse& message = pending_.emplace_back();
    message.set_delta(delta);
    message.set_deployment(deployment_);
    message.set_revision(revision_);
    message.set_request_id(request_id_);
    delivered_ = true;
    WriteNextLocked();
  }
  bool Restart() override {
    absl::MutexLock lock(&write_mu_);
    return !delivered_;
  }
  void OnFinish(const absl::Status& status,
                const GenerateOutcome& outcome) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&write_mu_);
      if (status.ok()) {
        v1::GenerateStreamResponse& message = pending_.emplace_back();
        message.set_finish_reason(outcome.finish_reason);
        *message.mutable_usage() = outcome.usage;
        message.set_deployment(outcome.deployment);
        message.set_revision(outcome.revision);
        message.set_request_id(request_id_);
      }
      final_ = Answered(status, outcome.metrics);
      finish = WriteNextLocked();
    }
    if (finish) Finish(*finish);
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&write_mu_);
      writing_ = false;
      if (!ok) pending_.clear();  // The client is gone; OnCancel follows.
      finish = WriteNextLocked();
    }
    if (finish) Finish(*finish);
  }

  void OnCancel() override { CancelSubmitted(); }
  void OnDone() override { delete this; }

 private:
  // Starts the next write, or returns the status to Finish with once
  // everything is written.
  std::optional<grpc::Status> WriteNextLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    if (writing_) return std::nullopt;
    if (!pending_.empty()) {
      writing_ = true;
      current_ = std::move(pending_.front());
      pending_.pop_front();
      StartWrite(&current_);
      return std::nullopt;
    }
    if (final_.has_value() && !finished_) {
      finished_ = true;
      return final_;
    }
    return std::nullopt;
  }

  absl::Mutex write_mu_;
  std::deque<v1::GenerateStreamResponse> pending_ ABSL_GUARDED_BY(write_mu_);
  v1::GenerateStreamResponse current_ ABSL_GUARDED_BY(write_mu_);
  bool writing_ ABSL_GUARDED_BY(write_mu_) = false;
  bool delivered_ ABSL_GUARDED_BY(write_mu_) = false;
  std::optional<grpc::Status> final_ ABSL_GUARDED_BY(write_mu_);
  bool finished_ ABSL_GUARDED_BY(write_mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* InferenceServiceImpl::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request,
    v1::GenerateResponse* response) {
  auto* call = new GenerateCall(options_, context, response);
  call->Start(*request);
  return call;
}

grpc::ServerWriteReactor<v1::GenerateStreamResponse>*
InferenceServiceImpl::GenerateStream(grpc::CallbackServerContext* context,
                                     const v1::GenerateRequest* request) {
  auto* call = new StreamCall(options_, context);
  call->Start(*request);
  return call;
}

grpc::ServerUnaryReactor* InferenceServiceImpl::ListDeployments(
    grpc::CallbackServerContext* context,
    const v1::ListInferenceDeploymentsRequest* request,
    v1::ListInferenceDeploymentsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Principal> principal = Authenticate(options_, *context);
  if (!principal.ok()) {
    reactor->Finish(ToGrpcStatus(principal.status()));
    return reactor;
  }
  if (request->page_size() < 0 || request->page_size() > 1000) {
    reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "page_size: must be in [0, 1000]; was ", request->page_size()))));
    return reactor;
  }
  if (!request->page_token().empty()) {
    // A key sees one deployment, so there is never a second page.
    reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError(
        "page_token: must be a token from a previous response")));
    return reactor;
  }
  for (const v1::Route& route : options_.routes->Routes()) {
    if (route.deployment() != principal->deployment || !route.serving()) {
      continue;
    }
    v1::InferenceDeployment* deployment = response->add_deployments();
    deployment->set_name(route.deployment());
    deployment->set_display_name(route.display_name());
    deployment->set_revision(route.revision());
    deployment->set_context_length(route.context_length());
    absl::StatusOr<v1::SamplingParams> sampling =
        sampling::NormalizeSamplingParams(route.sampling(),
                                          route.context_length());
    *deployment->mutable_sampling() =
        sampling.ok() ? *sampling : route.sampling();
    bool ready = false;
    for (const v1::RouteReplica& replica : route.replicas()) {
      ready = ready || replica.state() == v1::REPLICA_STATE_READY;
    }
    deployment->set_ready(ready);
    break;
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace hangar::gateway
