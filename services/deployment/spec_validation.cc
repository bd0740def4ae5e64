#include "services/deployment/spec_validation.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/auth/crypto.h"

namespace hangar::deployment {
namespace {

using sampling::FieldViolation;

constexpr char kPrefix[] = "spec.";

// Bytes as "12.3 GiB" for messages.
std::string Gib(int64_t bytes) {
  return absl::StrCat(std::round(bytes / double{1 << 30} * 10) / 10, " GiB");
}

std::string Dollars(int64_t micros, const std::string& currency) {
  return absl::StrCat(micros / 1e6, " ", currency);
}

// Checks an optional int field in [low, high], fills `value` with it or the
// default.
void CheckRange(const char* field, bool has, int32_t given, int low, int high,
                int default_value, int* value,
                std::vector<FieldViolation>* violations) {
  *value = has ? given : default_value;
  if (has && (given < low || given > high)) {
    violations->push_back(
        {absl::StrCat(kPrefix, field),
         absl::StrCat("must be in [", low, ", ", high, "]; was ", given)});
  }
}

bool IsBf16(v1::Quantization quantization) {
  return quantization == v1::QUANTIZATION_BFLOAT16 ||
         quantization == v1::QUANTIZATION_INT8_BFLOAT16;
}

}  // namespace

std::string RecipeKey(const v1::OptimizationRecipe& recipe) {
  if (recipe.engine() == v1::ENGINE_UNSPECIFIED ||
      recipe.engine() == v1::ENGINE_NONE) {
    return "ENGINE_NONE";
  }
  return absl::StrCat(v1::Engine_Name(recipe.engine()), "/",
                      v1::Quantization_Name(recipe.quantization()));
}

bool EngineOffers(v1::Engine engine, v1::Quantization quantization) {
  switch (engine) {
    case v1::ENGINE_UNSPECIFIED:
    case v1::ENGINE_NONE:
      return quantization == v1::QUANTIZATION_UNSPECIFIED;
    case v1::ENGINE_CTRANSLATE2:
      return quantization != v1::QUANTIZATION_UNSPECIFIED &&
             quantization != v1::QUANTIZATION_FP8 &&
             v1::Quantization_IsValid(quantization);
    case v1::ENGINE_VLLM:
      return quantization == v1::QUANTIZATION_FLOAT16 ||
             quantization == v1::QUANTIZATION_BFLOAT16 ||
             quantization == v1::QUANTIZATION_FLOAT32 ||
             quantization == v1::QUANTIZATION_FP8;
    default:
      return false;
  }
}

std::string TermsText(const std::string& model_name,
                      const std::string& license) {
  return absl::StrCat(
      "Hangar deployment terms, version 1.\n"
      "1. You deploy the model \"",
      model_name, "\", published under the license \"",
      license.empty() ? "unknown (see the model's repository)" : license,
      "\". You have read that license and will use the model and its "
      "outputs only as it allows.\n"
      "2. Replicas are charged per second of GPU time at the hourly price of "
      "the hardware offering, from placement until release, and inference "
      "per 1,000 prompt and completion tokens at the configured prices.\n"
      "3. API keys are shown once; whoever holds one can call the "
      "deployment until it is revoked.\n");
}

SpecReview ReviewSpec(const v1::DeploymentSpec& spec, const ModelFacts& model,
                      const OfferingFacts& offering) {
  SpecReview review;
  std::vector<FieldViolation>& violations = review.violations;
  v1::DeploymentSpec& normalized = review.normalized;
  normalized = spec;

  // --- model ---
  if (spec.model().empty()) {
    violations.push_back({"spec.model", "required"});
  } else if (!model.found) {
    violations.push_back(
        {"spec.model", absl::StrCat("no such model in the catalog; was \"",
                                    spec.model(), "\"")});
  } else if (!model.ready) {
    violations.push_back(
        {"spec.model", absl::StrCat("must be READY in the catalog; ",
                                    model.not_ready_reason)});
  }

  // --- optimization ---
  v1::OptimizationRecipe* recipe = normalized.mutable_optimization();
  if (recipe->engine() == v1::ENGINE_UNSPECIFIED) {
    recipe->set_engine(v1::ENGINE_NONE);
  }
  const RecipeFootprint* footprint = nullptr;
  if (!EngineOffers(recipe->engine(), recipe->quantization())) {
    violations.push_back(
        {"spec.optimization.quantization",
         recipe->engine() == v1::ENGINE_NONE
             ? absl::StrCat("must be unset without an engine; was ",
                            v1::Quantization_Name(recipe->quantization()))
             : absl::StrCat(v1::Quantization_Name(recipe->quantization()),
                            " is not offered by ",
                            v1::Engine_Name(recipe->engine()))});
  } else if (model.found) {
    auto found = model.recipes.find(RecipeKey(*recipe));
    if (found == model.recipes.end()) {
      violations.push_back(
          {"spec.optimization",
           absl::StrCat("the model does not support ", RecipeKey(*recipe))});
    } else {
      footprint = &found->second;
    }
  }

  // --- parameters ---
  const int context = model.found ? model.context_length : 0;
  for (FieldViolation& violation : sampling::CheckSamplingParams(
           spec.sampling(), context, "spec.sampling")) {
    violations.push_back(std::move(violation));
  }
  absl::StatusOr<v1::SamplingParams> sampling =
      sampling::NormalizeSamplingParams(spec.sampling(), context,
                                        "spec.sampling");
  if (sampling.ok()) *normalized.mutable_sampling() = *std::move(sampling);

  int batch = 0, min_replicas = 0, max_replicas = 0, up = 0, down = 0;
  CheckRange("inference_batch_size", spec.has_inference_batch_size(),
             spec.inference_batch_size(), 1, kMaxBatchSize, kDefaultBatchSize,
             &batch, &violations);
  CheckRange("min_replicas", spec.has_min_replicas(), spec.min_replicas(), 0,
             kMaxReplicas, kDefaultMinReplicas, &min_replicas, &violations);
  CheckRange("max_replicas", spec.has_max_replicas(), spec.max_replicas(), 1,
             kMaxReplicas, std::max(1, min_replicas), &max_replicas,
             &violations);
  if (spec.has_max_replicas() && spec.has_min_replicas() &&
      spec.min_replicas() > spec.max_replicas() && spec.max_replicas() >= 1) {
    violations.push_back(
        {"spec.min_replicas",
         absl::StrCat("must be at most max_replicas (", spec.max_replicas(),
                      "); was ", spec.min_replicas())});
  }
  CheckRange("scale_up_delay_seconds", spec.has_scale_up_delay_seconds(),
             spec.scale_up_delay_seconds(), 0, kMaxDelaySeconds,
             kDefaultScaleUpDelaySeconds, &up, &violations);
  CheckRange("scale_down_delay_seconds", spec.has_scale_down_delay_seconds(),
             spec.scale_down_delay_seconds(), 0, kMaxDelaySeconds,
             kDefaultScaleDownDelaySeconds, &down, &violations);
  normalized.set_inference_batch_size(batch);
  normalized.set_min_replicas(min_replicas);
  normalized.set_max_replicas(max_replicas);
  normalized.set_scale_up_delay_seconds(up);
  normalized.set_scale_down_delay_seconds(down);
  if (spec.has_min_replicas() && spec.min_replicas() == 0) {
    review.warnings.push_back(
        "min_replicas 0: no replica runs without load, so the first request "
        "after an idle period waits for one to start");
  }

  // --- hardware ---
  if (spec.hardware().empty()) {
    violations.push_back({"spec.hardware", "required"});
  } else if (!offering.found) {
    violations.push_back(
        {"spec.hardware",
         absl::StrCat("no such hardware offering; was \"", spec.hardware(),
                      "\" (SchedulerService.ListHardware lists them)")});
  } else {
    review.currency_code = offering.currency_code;
    review.offering_memory_bytes =
        offering.gpu_memory_bytes * std::max(0, offering.gpu_count);
    review.min_hourly_cost_micros = offering.hourly_price_micros * min_replicas;
    review.max_hourly_cost_micros = offering.hourly_price_micros * max_replicas;
    if (footprint != nullptr) {
      review.replica_memory_bytes =
          footprint->weight_bytes +
          footprint->kv_bytes_per_sequence * static_cast<int64_t>(batch);
      if (review.replica_memory_bytes > review.offering_memory_bytes) {
        violations.push_back(
            {"spec.hardware",
             absl::StrCat(
                 "one replica needs ", Gib(review.replica_memory_bytes),
                 " (weights ", Gib(footprint->weight_bytes),
                 " + KV cache for batch ", batch, " x context ", context, "); ",
                 spec.hardware(), " has ", Gib(review.offering_memory_bytes),
                 ": choose a larger offering, a smaller recipe or "
                 "a smaller inference_batch_size")});
      }
    }
    if (recipe->quantization() == v1::QUANTIZATION_FP8 &&
        !offering.supports_fp8) {
      review.warnings.push_back(absl::StrCat(
          "fp8 on ", offering.gpu_model,
          " is emulated (no FP8 tensor cores): expect lower throughput than "
          "float16"));
    }
    if (IsBf16(recipe->quantization()) && !offering.supports_bf16) {
      review.warnings.push_back(
          absl::StrCat("bfloat16 on ", offering.gpu_model,
                       " is emulated: float16 is faster there"));
    }
    if (min_replicas != max_replicas) {
      review.warnings.push_back(absl::StrCat(
          "autoscaling between ", min_replicas, " and ", max_replicas,
          " replicas: from ",
          Dollars(review.min_hourly_cost_micros, review.currency_code), " to ",
          Dollars(review.max_hourly_cost_micros, review.currency_code),
          " per hour"));
    }
  }

  // --- terms ---
  review.terms = TermsText(spec.model(), model.license);
  review.terms_sha256 = auth::Sha256Hex(review.terms);
  return review;
}

absl::Status CheckTermsAccepted(const v1::DeploymentSpec& spec,
                                const std::string& terms_sha256) {
  if (!spec.accept_terms()) {
    return absl::FailedPreconditionError(
        "spec.accept_terms: must be true; read the terms ValidateDeployment "
        "returns and accept them");
  }
  if (spec.accepted_terms_sha256() != terms_sha256) {
    return absl::FailedPreconditionError(absl::StrCat(
        "spec.accepted_terms_sha256: must be the SHA-256 of the terms "
        "ValidateDeployment returns (",
        terms_sha256, "); was \"", spec.accepted_terms_sha256(),
        "\": validate again and accept the current terms"));
  }
  return absl::OkStatus();
}

absl::Status ViolationsToStatus(
    const std::vector<sampling::FieldViolation>& violations) {
  if (violations.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(
      violations, "; ", [](std::string* out, const FieldViolation& violation) {
        out->append(violation.ToString());
      }));
}

}  // namespace hangar::deployment
