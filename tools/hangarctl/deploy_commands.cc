// deploy validate|create|get|list|watch|redeploy|rollback|history|update|
// undeploy|delete and endpoint: the deployment service's DeploymentService
// through its generated stub.
//
// The spec flags (--model, --hardware, --engine, ...) build a
// DeploymentSpec the way the deploy dialog does: create starts from an empty
// spec, redeploy from the deployment's current one, and only the flags given
// change it. Creating or redeploying first calls ValidateDeployment (the
// Review step) and needs --accept_terms to echo the terms' SHA-256.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "tools/hangarctl/commands.h"
#include "tools/hangarctl/output.h"

namespace hangar::ctl {
namespace {

std::unique_ptr<v1::DeploymentService::Stub> Deployments(Invocation& in) {
  return v1::DeploymentService::NewStub(in.Channel(Service::kDeployment));
}

std::string StateName(v1::DeploymentState state) {
  return EnumName(v1::DeploymentState_descriptor(), state);
}

std::string SamplingText(const v1::SamplingParams& sampling) {
  std::vector<std::string> parts;
  if (sampling.has_temperature()) {
    parts.push_back(absl::StrCat("temperature ", sampling.temperature()));
  }
  if (sampling.has_max_tokens()) {
    parts.push_back(absl::StrCat("max_tokens ", sampling.max_tokens()));
  }
  if (sampling.has_top_p()) {
    parts.push_back(absl::StrCat("top_p ", sampling.top_p()));
  }
  if (sampling.has_top_k()) {
    parts.push_back(absl::StrCat("top_k ", sampling.top_k()));
  }
  if (!sampling.stop_sequences().empty()) {
    parts.push_back(absl::StrCat(
        "stop [\"", absl::StrJoin(sampling.stop_sequences(), "\", \""), "\"]"));
  }
  if (sampling.has_seed())
    parts.push_back(absl::StrCat("seed ", sampling.seed()));
  return parts.empty() ? "defaults" : absl::StrJoin(parts, ", ");
}

// The flags that build a spec; shared by validate, create and redeploy.
std::vector<Flag> SpecFlags() {
  return {
      {"model", FlagType::kString, "MODEL", "catalog model name (required)"},
      {"hardware", FlagType::kString, "ID",
       "hardware offering id from `hangarctl hardware list` (required)"},
      {"engine", FlagType::kString, "ENGINE",
       "optimization engine: none, ctranslate2 or vllm", "none"},
      {"quantization", FlagType::kString, "TYPE",
       "int8, int8_float32, int8_float16, int8_bfloat16, int16, float16, "
       "bfloat16, float32 or fp8 (with --engine)"},
      {"batch_size", FlagType::kInt, "N",
       "requests per batch sent to one replica, in [1, 256]", "8"},
      {"min_replicas", FlagType::kInt, "N", "replicas kept ready", "1"},
      {"max_replicas", FlagType::kInt, "N", "autoscaling upper bound",
       "max(1, min_replicas)"},
      {"scale_up_delay_seconds", FlagType::kInt, "N",
       "load must call for more replicas this long", "30"},
      {"scale_down_delay_seconds", FlagType::kInt, "N",
       "load must call for fewer replicas this long", "300"},
      {"temperature", FlagType::kDouble, "T", "sampling temperature in [0, 2]",
       "1"},
      {"max_tokens", FlagType::kInt, "N", "new tokens per request", "256"},
      {"top_p", FlagType::kDouble, "P", "nucleus sampling mass in (0, 1]", "1"},
      {"top_k", FlagType::kInt, "K", "top-k sampling in [0, 1000]; 0 off", "0"},
      {"stop", FlagType::kStrings, "TEXT", "stop sequence"},
      {"seed", FlagType::kInt, "N", "fixed sampling seed"},
  };
}

// Applies the spec flags given to `spec`; "" or the usage problem.
std::string ApplySpecFlags(const Invocation& in, v1::DeploymentSpec* spec) {
  if (in.Has("model")) spec->set_model(in.String("model"));
  if (in.Has("hardware")) spec->set_hardware(in.String("hardware"));
  if (in.Has("engine")) {
    v1::Engine engine;
    if (!v1::Engine_Parse(
            "ENGINE_" + absl::AsciiStrToUpper(in.String("engine")), &engine) ||
        engine == v1::ENGINE_UNSPECIFIED) {
      return "--engine: must be none, ctranslate2 or vllm; was \"" +
             in.String("engine") + "\"";
    }
    spec->mutable_optimization()->set_engine(engine);
    if (engine == v1::ENGINE_NONE) {
      spec->mutable_optimization()->clear_quantization();
    }
  }
  if (in.Has("quantization")) {
    v1::Quantization quantization;
    if (!v1::Quantization_Parse(
            "QUANTIZATION_" + absl::AsciiStrToUpper(in.String("quantization")),
            &quantization) ||
        quantization == v1::QUANTIZATION_UNSPECIFIED) {
      return "--quantization: must be one of int8, int8_float32, "
             "int8_float16, int8_bfloat16, int16, float16, bfloat16, float32, "
             "fp8; was \"" +
             in.String("quantization") + "\"";
    }
    spec->mutable_optimization()->set_quantization(quantization);
  }
  if (in.Has("batch_size")) {
    spec->set_inference_batch_size(static_cast<int32_t>(in.Int("batch_size")));
  }
  if (in.Has("min_replicas")) {
    spec->set_min_replicas(static_cast<int32_t>(in.Int("min_replicas")));
  }
  if (in.Has("max_replicas")) {
    spec->set_max_replicas(static_cast<int32_t>(in.Int("max_replicas")));
  }
  if (in.Has("scale_up_delay_seconds")) {
    spec->set_scale_up_delay_seconds(
        static_cast<int32_t>(in.Int("scale_up_delay_seconds")));
  }
  if (in.Has("scale_down_delay_seconds")) {
    spec->set_scale_down_delay_seconds(
        static_cast<int32_t>(in.Int("scale_down_delay_seconds")));
  }
  v1::SamplingParams& sampling = *spec->mutable_sampling();
  if (in.Has("temperature")) {
    sampling.set_temperature(static_cast<float>(in.Double("temperature")));
  }
  if (in.Has("max_tokens")) {
    sampling.set_max_tokens(static_cast<int32_t>(in.Int("max_tokens")));
  }
  if (in.Has("top_p")) {
    sampling.set_top_p(static_cast<float>(in.Double("top_p")));
  }
  if (in.Has("top_k")) {
    sampling.set_top_k(static_cast<int32_t>(in.Int("top_k")));
  }
  if (in.Has("stop")) {
    sampling.clear_stop_sequences();
    for (const std::string& stop : in.Strings("stop")) {
      if (!stop.empty()) sampling.add_stop_sequences(stop);
    }
  }
  if (in.Has("seed")) sampling.set_seed(static_cast<uint64_t>(in.Int("seed")));
  return "";
}

std::string ViolationsText(const v1::ValidateDeploymentResponse& review) {
  std::vector<std::string> parts;
  for (const v1::FieldViolation& violation : review.violations()) {
    parts.push_back(absl::StrCat(violation.field(), ": ", violation.rule()));
  }
  return absl::StrJoin(parts, "; ");
}

// The Review step, for people.
void PrintReview(const v1::ValidateDeploymentResponse& review,
                 bool with_terms) {
  const v1::DeploymentSpec& spec = review.normalized_spec();
  Details details;
  details.Add("Model", OrDash(spec.model()));
  details.Add("Hardware", OrDash(spec.hardware()));
  details.Add("Optimization", FormatRecipe(spec.optimization()));
  details.Add("Batch size", absl::StrCat(spec.inference_batch_size()));
  details.Add("Replicas",
              absl::StrCat(spec.min_replicas(), " to ", spec.max_replicas()));
  details.Add("Scale delays",
              absl::StrCat("up ", spec.scale_up_delay_seconds(), "s, down ",
                           spec.scale_down_delay_seconds(), "s"));
  details.Add("Sampling", SamplingText(spec.sampling()));
  if (review.replica_memory_bytes() > 0) {
    details.Add("GPU memory",
                absl::StrCat(FormatBytes(review.replica_memory_bytes()),
                             " per replica of ",
                             FormatBytes(review.offering_memory_bytes())));
  }
  auto replicas = [](int32_t count) {
    return absl::StrCat(count, count == 1 ? " replica" : " replicas");
  };
  details.Add("Hourly cost",
              spec.min_replicas() == spec.max_replicas()
                  ? absl::StrCat(FormatMoney(review.min_hourly_cost()), " (",
                                 replicas(spec.min_replicas()), ")")
                  : absl::StrCat(FormatMoney(review.min_hourly_cost()), " at ",
                                 replicas(spec.min_replicas()), " to ",
                                 FormatMoney(review.max_hourly_cost()), " at ",
                                 replicas(spec.max_replicas())));
  details.Add("Terms SHA-256", OrDash(review.terms_sha256()));
  details.Add("Valid", review.valid() ? "yes" : "no");
  details.Print();
  if (!review.warnings().empty()) {
    std::cout << "Warnings:\n";
    for (const std::string& warning : review.warnings()) {
      std::cout << "  - " << warning << "\n";
    }
  }
  if (!review.violations().empty()) {
    std::cout << "Violations:\n";
    for (const v1::FieldViolation& violation : review.violations()) {
      std::cout << "  - " << violation.field() << ": " << violation.rule()
                << "\n";
    }
  }
  if (with_terms && !review.terms().empty()) {
    std::cout << "Terms:\n" << review.terms();
    if (review.terms().back() != '\n') std::cout << "\n";
  }
}

grpc::Status Validate(Invocation& in, const v1::DeploymentSpec& spec,
                      v1::ValidateDeploymentResponse* review) {
  v1::ValidateDeploymentRequest request;
  *request.mutable_spec() = spec;
  request.mutable_spec()->clear_accept_terms();
  request.mutable_spec()->clear_accepted_terms_sha256();
  return Deployments(in)->ValidateDeployment(in.Context().get(), request,
                                             review);
}

// Reviews `spec` and, when it is valid and --accept_terms was given, marks
// the terms accepted. Returns an exit code, or -1 to go on.
int ReviewAndAccept(Invocation& in, v1::DeploymentSpec* spec) {
  v1::ValidateDeploymentResponse review;
  grpc::Status status = Validate(in, *spec, &review);
  if (!status.ok()) return Fail(status);
  if (!review.valid()) {
    if (!in.json()) PrintReview(review, /*with_terms=*/false);
    return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             ViolationsText(review)));
  }
  if (!in.Bool("accept_terms")) {
    if (!in.json()) PrintReview(review, /*with_terms=*/true);
    return UsageError(
        in.command(),
        in.command().path + ": review the terms and add --accept_terms");
  }
  if (!in.json()) PrintReview(review, /*with_terms=*/false);
  spec->set_accept_terms(true);
  spec->set_accepted_terms_sha256(review.terms_sha256());
  return -1;
}

void PrintDeployment(const v1::Deployment& deployment) {
  const v1::DeploymentSpec& spec = deployment.spec();
  Details details;
  details.Add("Name", deployment.name());
  details.Add("Display name", deployment.display_name());
  details.Add("Description", OrDash(deployment.description()));
  details.Add("Tags", OrDash(absl::StrJoin(deployment.tags(), ", ")));
  details.Add("State", StateName(deployment.state()));
  details.Add("Reason", OrDash(deployment.state_reason()));
  if (deployment.progress().total() > 0 ||
      !deployment.progress().message().empty()) {
    details.Add("Progress", absl::StrCat(deployment.progress().done(), "/",
                                         deployment.progress().total(), " ",
                                         deployment.progress().message()));
  }
  details.Add("Model", spec.model());
  details.Add("Hardware", spec.hardware());
  details.Add("Optimization", FormatRecipe(spec.optimization()));
  details.Add("Batch size", absl::StrCat(spec.inference_batch_size()));
  details.Add(
      "Replicas",
      absl::StrCat(deployment.ready_replicas(), " ready of ",
                   deployment.desired_replicas(), " desired (",
                   spec.min_replicas(), " to ", spec.max_replicas(), ")"));
  details.Add("Sampling", SamplingText(spec.sampling()));
  details.Add("Revision",
              absl::StrCat(deployment.latest_revision(), " (serving ",
                           deployment.serving_revision() == 0
                               ? std::string("none")
                               : absl::StrCat(deployment.serving_revision()),
                           ")"));
  details.Add("Endpoint", OrDash(deployment.endpoint()));
  details.Add("Hourly cost", FormatMoney(deployment.hourly_cost()));
  details.Add("Webhook", OrDash(deployment.webhook_url()));
  if (!deployment.webhook_secret().empty()) {
    details.Add("Webhook secret",
                deployment.webhook_secret() + " (shown once: store it)");
  }
  details.Add("Created", FormatTime(deployment.create_time()));
  details.Add("Updated", FormatTime(deployment.update_time()));
  details.Print();
}

// One line after a change ("deployment dep-x (my-chat) PENDING: accepted").
void PrintOutcome(const v1::Deployment& deployment, const std::string& verb) {
  std::cout << "deployment " << deployment.name() << " ("
            << deployment.display_name() << ") " << verb << ": "
            << StateName(deployment.state());
  if (!deployment.state_reason().empty()) {
    std::cout << " (" << deployment.state_reason() << ")";
  }
  std::cout << "\n";
  if (!deployment.webhook_secret().empty()) {
    std::cout << "webhook secret: " << deployment.webhook_secret()
              << " (shown once: store it)\n";
  }
}

// The end of a command that changed one deployment: the status as one
// line, else the deployment as JSON or its outcome line.
int ReportChange(Invocation& in, const grpc::Status& status,
                 const v1::Deployment& deployment, const std::string& verb) {
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(deployment);
  } else {
    PrintOutcome(deployment, verb);
  }
  return kExitOk;
}

bool Terminal(const v1::Deployment& deployment) {
  switch (deployment.state()) {
    case v1::DEPLOYMENT_STATE_DEPLOYED:
      return deployment.serving_revision() == deployment.latest_revision();
    case v1::DEPLOYMENT_STATE_FAILED:
    case v1::DEPLOYMENT_STATE_UNDEPLOYED:
    case v1::DEPLOYMENT_STATE_DELETED:
      return true;
    default:
      return false;
  }
}

// Follows the deployment until DEPLOYED (exit 0) or FAILED, UNDEPLOYED or
// DELETED (exit 3); prints progress and the final deployment.
int Watch(Invocation& in, const std::string& name) {
  auto context = in.Context(Auth::kAdmin, WatchTimeout(in));
  v1::WatchDeploymentsRequest request;
  request.set_name(name);
  auto reader = Deployments(in)->WatchDeployments(context.get(), request);
  v1::Deployment deployment;
  bool seen = false;
  bool done = false;
  {
    std::ostream& out = in.json() ? std::cerr : std::cout;
    ProgressDisplay progress(in.stdout_is_tty() && !in.json(), out);
    while (reader->Read(&deployment)) {
      seen = true;
      const v1::Progress& p = deployment.progress();
      std::string message = p.message();
      if (message.empty()) message = deployment.state_reason();
      progress.Update(
          StateName(deployment.state()), p.done(), p.total(),
          /*bytes=*/deployment.state() == v1::DEPLOYMENT_STATE_FETCHING,
          absl::StrCat("revision ", deployment.latest_revision(), ", ",
                       deployment.ready_replicas(), "/",
                       deployment.desired_replicas(), " ready",
                       message.empty() ? "" : ", ", message));
      if (Terminal(deployment)) {
        done = true;
        break;
      }
    }
  }
  if (done) {
    context->TryCancel();
    reader->Finish().IgnoreError();
  } else {
    grpc::Status status = reader->Finish();
    if (!status.ok()) return Fail(status);
    if (!seen) {
      return Fail(
          grpc::Status(grpc::StatusCode::ABORTED,
                       "deployment " + name + ": the watch ended early"));
    }
    // The stream ends OK once the deployment is DELETED.
  }
  if (in.json()) {
    PrintJson(deployment);
  } else {
    PrintOutcome(deployment, "is");
  }
  if (deployment.state() == v1::DEPLOYMENT_STATE_DEPLOYED) return kExitOk;
  std::cerr << "hangarctl: deployment " << deployment.name() << " ended "
            << StateName(deployment.state())
            << (deployment.state_reason().empty()
                    ? ""
                    : ": " + deployment.state_reason())
            << std::endl;
  return kExitEndedBadly;
}

grpc::Status Get(Invocation& in, const std::string& name,
                 v1::Deployment* deployment) {
  v1::GetDeploymentRequest request;
  request.set_name(name);
  return Deployments(in)->GetDeployment(in.Context().get(), request,
                                        deployment);
}

int DeployValidate(Invocation& in) {
  v1::DeploymentSpec spec;
  if (std::string problem = ApplySpecFlags(in, &spec); !problem.empty()) {
    return UsageError(in.command(), problem);
  }
  v1::ValidateDeploymentResponse review;
  grpc::Status status = Validate(in, spec, &review);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(review);
  } else {
    PrintReview(review, /*with_terms=*/true);
  }
  if (!review.valid()) {
    return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             ViolationsText(review)));
  }
  return kExitOk;
}

int DeployCreate(Invocation& in) {
  v1::CreateDeploymentRequest request;
  v1::DeploymentSpec& spec = *request.mutable_spec();
  if (std::string problem = ApplySpecFlags(in, &spec); !problem.empty()) {
    return UsageError(in.command(), problem);
  }
  if (spec.model().empty() || spec.hardware().empty()) {
    return UsageError(in.command(),
                      "deploy create: --model and --hardware are required");
  }
  if (int code = ReviewAndAccept(in, &spec); code >= 0) return code;
  request.set_display_name(in.arg(0));
  request.set_description(in.String("description"));
  for (const std::string& tag : in.Strings("tag")) request.add_tags(tag);
  request.set_webhook_url(in.String("webhook_url"));
  request.set_request_id(in.String("request_id", RandomUuid()));
  v1::Deployment deployment;
  grpc::Status status = Deployments(in)->CreateDeployment(in.Context().get(),
                                                          request, &deployment);
  if (!status.ok()) return Fail(status);
  if (!in.Bool("wait")) {
    if (in.json()) {
      PrintJson(deployment);
    } else {
      PrintOutcome(deployment, "created");
    }
    return kExitOk;
  }
  if (!in.json()) PrintOutcome(deployment, "created");
  return Watch(in, deployment.name());
}

int DeployGet(Invocation& in) {
  v1::Deployment deployment;
  grpc::Status status = Get(in, in.arg(0), &deployment);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(deployment);
  } else {
    PrintDeployment(deployment);
  }
  return kExitOk;
}

int DeployList(Invocation& in) {
  v1::ListDeploymentsRequest request;
  request.set_model(in.String("model"));
  request.set_tag(in.String("tag"));
  request.set_show_deleted(in.Bool("show_deleted"));
  if (in.Has("state")) {
    v1::DeploymentState state;
    if (!v1::DeploymentState_Parse(
            "DEPLOYMENT_STATE_" + absl::AsciiStrToUpper(in.String("state")),
            &state)) {
      return UsageError(in.command(),
                        "--state: not a deployment state; was \"" +
                            in.String("state") + "\"");
    }
    request.set_state(state);
  }
  v1::ListDeploymentsResponse all;
  grpc::Status status = FetchAllPages(
      [&](const std::string& token, v1::ListDeploymentsResponse* page) {
        request.set_page_token(token);
        return Deployments(in)->ListDeployments(in.Context().get(), request,
                                                page);
      },
      &all);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(all);
    return kExitOk;
  }
  if (all.deployments().empty()) {
    std::cerr << "No deployments found.\n";
    return kExitOk;
  }
  Table table({"NAME", "DISPLAY NAME", "MODEL", "HARDWARE", "STATE", "READY",
               "REVISION", "AGE"});
  for (const v1::Deployment& deployment : all.deployments()) {
    table.AddRow({deployment.name(), deployment.display_name(),
                  deployment.spec().model(), deployment.spec().hardware(),
                  StateName(deployment.state()),
                  absl::StrCat(deployment.ready_replicas(), "/",
                               deployment.desired_replicas()),
                  absl::StrCat(deployment.latest_revision()),
                  FormatAge(deployment.create_time())});
  }
  table.Print();
  return kExitOk;
}

int DeployWatch(Invocation& in) { return Watch(in, in.arg(0)); }

// Ends a redeploy or rollback: prints it, or watches it with --wait.
int AfterRedeploy(Invocation& in, const v1::Deployment& deployment,
                  const std::string& verb) {
  if (in.Bool("wait")) {
    if (!in.json()) PrintOutcome(deployment, verb);
    return Watch(in, deployment.name());
  }
  return ReportChange(in, grpc::Status::OK, deployment, verb);
}

int DeployRedeploy(Invocation& in) {
  v1::Deployment current;
  grpc::Status status = Get(in, in.arg(0), &current);
  if (!status.ok()) return Fail(status);
  v1::RedeployRequest request;
  request.set_name(current.name());
  request.set_etag(current.etag());
  request.set_request_id(in.String("request_id", RandomUuid()));
  v1::DeploymentSpec& spec = *request.mutable_spec();
  spec = current.spec();
  if (std::string problem = ApplySpecFlags(in, &spec); !problem.empty()) {
    return UsageError(in.command(), problem);
  }
  if (int code = ReviewAndAccept(in, &spec); code >= 0) return code;
  v1::Deployment deployment;
  status = Deployments(in)->Redeploy(in.Context().get(), request, &deployment);
  if (!status.ok()) return Fail(status);
  return AfterRedeploy(
      in, deployment,
      absl::StrCat("redeployed as revision ", deployment.latest_revision()));
}

int DeployRollback(Invocation& in) {
  v1::Deployment current;
  grpc::Status status = Get(in, in.arg(0), &current);
  if (!status.ok()) return Fail(status);
  const int64_t target = in.Has("to_revision") ? in.Int("to_revision")
                                               : current.latest_revision() - 1;
  if (target < 1 || target > current.latest_revision()) {
    return UsageError(in.command(),
                      absl::StrCat("deploy rollback: no revision ", target,
                                   " to roll back "
                                   "to (the deployment has 1 to ",
                                   current.latest_revision(), ")"));
  }
  v1::RedeployRequest request;
  request.set_name(current.name());
  request.set_etag(current.etag());
  request.set_from_revision(target);
  request.set_request_id(in.String("request_id", RandomUuid()));
  v1::Deployment deployment;
  status = Deployments(in)->Redeploy(in.Context().get(), request, &deployment);
  if (!status.ok()) return Fail(status);
  return AfterRedeploy(
      in, deployment,
      absl::StrCat("rolled back to revision ", target, " as revision ",
                   deployment.latest_revision()));
}

int DeployHistory(Invocation& in) {
  v1::ListRevisionsRequest request;
  request.set_deployment(in.arg(0));
  v1::ListRevisionsResponse all;
  grpc::Status status = FetchAllPages(
      [&](const std::string& token, v1::ListRevisionsResponse* page) {
        request.set_page_token(token);
        return Deployments(in)->ListRevisions(in.Context().get(), request,
                                              page);
      },
      &all);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(all);
    return kExitOk;
  }
  Table table({"REVISION", "STATE", "SERVING", "CHANGED", "AUTHOR",
               "ROLLBACK OF", "CREATED"});
  for (const v1::Revision& revision : all.revisions()) {
    table.AddRow({absl::StrCat(revision.number()), StateName(revision.state()),
                  revision.serving() ? "yes" : "no",
                  OrDash(absl::StrJoin(revision.changed_fields(), ",")),
                  OrDash(revision.author()),
                  revision.rolled_back_from() == 0
                      ? "-"
                      : absl::StrCat(revision.rolled_back_from()),
                  FormatTime(revision.create_time())});
  }
  table.Print();
  return kExitOk;
}

int DeployUpdate(Invocation& in) {
  v1::UpdateDeploymentRequest request;
  v1::Deployment& deployment = *request.mutable_deployment();
  if (in.Has("display_name")) {
    deployment.set_display_name(in.String("display_name"));
    request.mutable_update_mask()->add_paths("display_name");
  }
  if (in.Has("description")) {
    deployment.set_description(in.String("description"));
    request.mutable_update_mask()->add_paths("description");
  }
  if (in.Has("tag")) {
    for (const std::string& tag : in.Strings("tag")) {
      if (!tag.empty()) deployment.add_tags(tag);
    }
    request.mutable_update_mask()->add_paths("tags");
  }
  if (in.Has("webhook_url")) {
    deployment.set_webhook_url(in.String("webhook_url"));
    request.mutable_update_mask()->add_paths("webhook_url");
  }
  if (request.update_mask().paths().empty()) {
    return UsageError(in.command(),
                      "deploy update: nothing to change (--display_name, "
                      "--description, --tag or --webhook_url)");
  }
  // The id and etag read now: a concurrent change is ABORTED, not lost.
  v1::Deployment current;
  grpc::Status status = Get(in, in.arg(0), &current);
  if (!status.ok()) return Fail(status);
  deployment.set_name(current.name());
  deployment.set_etag(current.etag());
  v1::Deployment updated;
  status =
      Deployments(in)->UpdateDeployment(in.Context().get(), request, &updated);
  return ReportChange(in, status, updated, "updated");
}

int DeployUndeploy(Invocation& in) {
  v1::UndeployDeploymentRequest request;
  request.set_name(in.arg(0));
  v1::Deployment deployment;
  grpc::Status status = Deployments(in)->UndeployDeployment(
      in.Context().get(), request, &deployment);
  return ReportChange(in, status, deployment, "undeployed");
}

int DeployDelete(Invocation& in) {
  v1::DeleteDeploymentRequest request;
  request.set_name(in.arg(0));
  request.set_force(in.Bool("force"));
  v1::Deployment deployment;
  grpc::Status status = Deployments(in)->DeleteDeployment(in.Context().get(),
                                                          request, &deployment);
  return ReportChange(in, status, deployment, "deleted");
}

int Endpoint(Invocation& in) {
  v1::GetEndpointRequest request;
  request.set_deployment(in.arg(0));
  v1::Endpoint endpoint;
  grpc::Status status =
      Deployments(in)->GetEndpoint(in.Context().get(), request, &endpoint);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(endpoint);
    return kExitOk;
  }
  Details details;
  details.Add("Deployment", absl::StrCat(endpoint.deployment(), " (",
                                         endpoint.display_name(), ")"));
  details.Add("Address", endpoint.address());
  details.Add("Method", endpoint.method());
  details.Add("Ready",
              endpoint.ready()
                  ? absl::StrCat("yes (revision ", endpoint.serving_revision(),
                                 ", ", endpoint.ready_replicas(), " replicas)")
                  : "no");
  details.Add("API keys", absl::StrCat(endpoint.api_keys(), " active"));
  details.Add("Context length", absl::StrCat(endpoint.context_length()));
  details.Add("Sampling", SamplingText(endpoint.sampling()));
  details.Print();
  const std::string format = in.String("format", "all");
  auto show = [&](const std::string& name, const std::string& text) {
    if (text.empty() || (format != "all" && format != name)) return;
    std::cout << "\n" << name << ":\n" << text;
    if (text.back() != '\n') std::cout << "\n";
  };
  show("hangarctl", endpoint.hangarctl_example());
  show("grpcurl", endpoint.grpcurl_example().empty()
                      ? endpoint.example()
                      : endpoint.grpcurl_example());
  show("python", endpoint.python_example());
  return kExitOk;
}

Flag Wait() {
  return {"wait", FlagType::kBool, "",
          "watch until DEPLOYED (exit 0) or FAILED (exit 3)"};
}
Flag AcceptTerms() {
  return {"accept_terms", FlagType::kBool, "",
          "accept the model's license and the service terms shown by the "
          "review"};
}
Flag RequestId() {
  return {"request_id", FlagType::kString, "ID",
          "idempotency key: a retry with the same id changes nothing twice",
          "a random UUID"};
}

std::vector<Flag> With(std::vector<Flag> flags, std::vector<Flag> more) {
  flags.insert(flags.end(), more.begin(), more.end());
  return flags;
}

}  // namespace

std::vector<Command> DeployCommands() {
  return {
      {.path = "deploy validate",
       .summary = "Review a spec: defaults, hourly cost, warnings, terms",
       .details = "Calls ValidateDeployment; creates nothing. Prints the "
                  "normalized spec, the hourly cost at min and max replicas, "
                  "warnings, every violation and the terms with their "
                  "SHA-256. Exit 0 when valid, 1 (INVALID_ARGUMENT, the "
                  "violations on one line) when not.\n\n"
                  "Example:\n  hangarctl deploy validate --model "
                  "HuggingFaceTB/SmolLM2-135M-Instruct --hardware cpu-1x "
                  "--engine ctranslate2 --quantization int8\n",
       .flags = SpecFlags(),
       .run = DeployValidate},
      {.path = "deploy create",
       .arguments = "[DISPLAY_NAME]",
       .max_args = 1,
       .summary = "Create a deployment (revision 1)",
       .details =
           "Reviews the spec first (deploy validate) and prints the review; "
           "without --accept_terms it shows the terms and exits 2. "
           "DISPLAY_NAME defaults to one derived from the model. --wait "
           "follows it to DEPLOYED with a progress bar (exit 0) or FAILED "
           "(exit 3).\n\n"
           "Example:\n  hangarctl deploy create my-chat --model "
           "HuggingFaceTB/SmolLM2-135M-Instruct --hardware cpu-1x \\\n"
           "    --engine ctranslate2 --quantization int8 --batch_size 8 "
           "--min_replicas 1 --max_replicas 3 --accept_terms --wait\n",
       .flags = With(SpecFlags(),
                     {{"description", FlagType::kString, "TEXT", "description"},
                      {"tag", FlagType::kStrings, "TAG", "tag"},
                      {"webhook_url", FlagType::kString, "URL",
                       "POST DEPLOYED/FAILED/UNDEPLOYED events here"},
                      AcceptTerms(),
                      RequestId(),
                      Wait(),
                      WatchTimeoutFlag()}),
       .run = DeployCreate},
      {.path = "deploy get",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Show a deployment (by dep-... id or display name)",
       .run = DeployGet},
      {.path = "deploy list",
       .summary = "List deployments",
       .flags = {{"model", FlagType::kString, "MODEL", "only of this model"},
                 {"state", FlagType::kString, "STATE",
                  "only in this state (pending, deployed, failed, ...)"},
                 {"tag", FlagType::kStrings, "TAG", "only with this tag"},
                 {"show_deleted", FlagType::kBool, "",
                  "include DELETED deployments"}},
       .run = DeployList},
      {.path = "deploy watch",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Follow a deployment until DEPLOYED or FAILED",
       .details = "A progress bar on a terminal (state, download bytes, "
                  "optimization progress, replicas), one line per change "
                  "otherwise. Exit 0 once the newest revision is DEPLOYED "
                  "and serving; 3 when it ends FAILED, UNDEPLOYED or "
                  "DELETED; 1 when the watch fails (DEADLINE_EXCEEDED after "
                  "--watch_timeout_seconds).\n",
       .flags = {WatchTimeoutFlag()},
       .run = DeployWatch},
      {.path = "deploy redeploy",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Make a new revision from the current spec and the flags "
                  "given",
       .details = "Starts from the deployment's spec, changes what the spec "
                  "flags say, reviews it and needs --accept_terms. The new "
                  "revision comes up beside the serving one and takes the "
                  "traffic when ready.\n\n"
                  "Example:\n  hangarctl deploy redeploy my-chat "
                  "--temperature 0.7 --accept_terms --wait\n",
       .flags = With(SpecFlags(),
                     {AcceptTerms(), RequestId(), Wait(), WatchTimeoutFlag()}),
       .run = DeployRedeploy},
      {.path = "deploy rollback",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Serve an earlier revision's spec again (as a new "
                  "revision)",
       .details = "Copies revision --to_revision (default: the one before "
                  "the newest) into a new revision; same weights, same "
                  "parameters.\n",
       .flags = {{"to_revision", FlagType::kInt, "N", "the revision to copy",
                  "newest - 1"},
                 RequestId(),
                 Wait(),
                 WatchTimeoutFlag()},
       .run = DeployRollback},
      {.path = "deploy history",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "List a deployment's revisions, newest first",
       .run = DeployHistory},
      {.path = "deploy update",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Edit metadata (no new revision)",
       .details = "--tag replaces the tags (--tag= clears them). A new "
                  "--webhook_url prints its signing secret once.\n\n"
                  "Example:\n  hangarctl deploy update my-chat --description "
                  "\"support bot\" --tag prod --tag chat\n",
       .flags = {{"display_name", FlagType::kString, "NAME", "new name"},
                 {"description", FlagType::kString, "TEXT", "description"},
                 {"tag", FlagType::kStrings, "TAG", "tag"},
                 {"webhook_url", FlagType::kString, "URL",
                  "webhook URL (empty: none)"}},
       .run = DeployUpdate},
      {.path = "deploy undeploy",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Stop serving and release every replica (keeps the "
                  "configuration, keys and usage)",
       .run = DeployUndeploy},
      {.path = "deploy delete",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Delete a deployment (revokes its keys)",
       .details = "A deployment that still serves needs --force (which "
                  "undeploys it first); otherwise FAILED_PRECONDITION.\n",
       .flags = {{"force", FlagType::kBool, "",
                  "undeploy first when it still serves"}},
       .run = DeployDelete},
      {.path = "endpoint",
       .arguments = "DEPLOYMENT",
       .min_args = 1,
       .max_args = 1,
       .summary = "Show where and how to call a deployment",
       .details = "The gateway address, the method, readiness, limits and "
                  "ready-to-paste calls (hangarctl, grpcurl, Python).\n",
       .flags = {{"format", FlagType::kString, "FORMAT",
                  "which example: all, hangarctl, grpcurl or python", "all"}},
       .run = Endpoint},
  };
}

}  // namespace hangar::ctl
