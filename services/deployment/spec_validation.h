// The deploy dialog's rules: one pure function that checks a DeploymentSpec
// against what the catalog says of the model and what the scheduler says of
// the hardware, and returns the spec normalized, EVERY violation at once,
// warnings, the hourly cost at min and max replicas and the terms to accept.
// It is the Review step (ValidateDeployment) and the gate of
// CreateDeployment and Redeploy. No gRPC types beyond the generated
// messages; no I/O: the service gathers the facts and passes them in.
//
// The rules (field paths as in the request, prefixed "spec."):
//   model                  required; known to the catalog and READY
//   optimization           engine UNSPECIFIED/NONE with quantization
//                          UNSPECIFIED, or an engine with one of its
//                          quantizations (CTranslate2: int8, int8_float32,
//                          int8_float16, int8_bfloat16, int16, float16,
//                          bfloat16, float32; vLLM: float16, bfloat16,
//                          float32, fp8) that the model supports
//   sampling.*             the shared validator (common/sampling), with the
//                          model's context length
//   inference_batch_size   in [1, 256]; default 8
//   min_replicas           in [0, 64], at most max_replicas; default 1
//   max_replicas           in [1, 64]; default max(1, min_replicas)
//   scale_up_delay_seconds / scale_down_delay_seconds
//                          in [0, 86400]; defaults 30 and 300
//   hardware               required; an offering the scheduler lists, whose
//                          GPUs hold the model after quantization plus its
//                          KV cache for batch x context (one replica)
//
// Terms: the text names the model and its license; its SHA-256 is what
// CreateDeployment must see in spec.accepted_terms_sha256 with
// accept_terms = true (CheckTermsAccepted), so acceptance proves which text
// was accepted.
//
//   SpecReview review = ReviewSpec(request.spec(), model_facts, offering);
//   if (!review.violations.empty()) ... INVALID_ARGUMENT listing them all
#ifndef HANGAR_SERVICES_DEPLOYMENT_SPEC_VALIDATION_H_
#define HANGAR_SERVICES_DEPLOYMENT_SPEC_VALIDATION_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/sampling/sampling.h"
#include "hangar/v1/deployment.pb.h"

namespace hangar::deployment {

inline constexpr int kMaxBatchSize = 256;
inline constexpr int kMaxReplicas = 64;
inline constexpr int kMaxDelaySeconds = 86'400;
inline constexpr int kDefaultBatchSize = 8;
inline constexpr int kDefaultMinReplicas = 1;
inline constexpr int kDefaultScaleUpDelaySeconds = 30;
inline constexpr int kDefaultScaleDownDelaySeconds = 300;

// What one recipe costs one replica of the model, from the catalog's
// estimates.
struct RecipeFootprint {
  // Weights after the recipe, bytes.
  int64_t weight_bytes = 0;
  // KV cache of one sequence at the full context length, bytes.
  int64_t kv_bytes_per_sequence = 0;
};

// What the catalog knows of the model. `found` false: unknown model.
struct ModelFacts {
  bool found = false;
  // IMPORTING or FAILED models cannot be deployed yet; the reason is shown.
  bool ready = false;
  std::string not_ready_reason;
  int context_length = 0;
  // SPDX-style id ("apache-2.0"); empty when unknown.
  std::string license;
  // The recipes the model supports (ENGINE_NONE included) and their
  // footprints, keyed by RecipeKey().
  std::map<std::string, RecipeFootprint> recipes;
};

// What the scheduler knows of the offering. `found` false: unknown id.
struct OfferingFacts {
  bool found = false;
  std::string gpu_model;
  int gpu_count = 0;
  // Memory of one GPU.
  int64_t gpu_memory_bytes = 0;
  std::string currency_code = "USD";
  int64_t hourly_price_micros = 0;
  bool supports_fp8 = true;
  bool supports_bf16 = true;
};

// The result of the Review step.
struct SpecReview {
  // Every violated rule; empty means the spec may be created.
  std::vector<sampling::FieldViolation> violations;
  // The spec with every default filled in (as far as the input allowed).
  v1::DeploymentSpec normalized;
  std::vector<std::string> warnings;
  // Replica count x the offering's price.
  int64_t min_hourly_cost_micros = 0;
  int64_t max_hourly_cost_micros = 0;
  std::string currency_code = "USD";
  // Estimated memory of one replica, and what the offering's GPUs hold.
  int64_t replica_memory_bytes = 0;
  int64_t offering_memory_bytes = 0;
  // The text to accept and its SHA-256 (hex).
  std::string terms;
  std::string terms_sha256;
};

// "ENGINE_CTRANSLATE2/QUANTIZATION_INT8"-style key of a recipe; ENGINE_NONE
// (and UNSPECIFIED) is "ENGINE_NONE".
std::string RecipeKey(const v1::OptimizationRecipe& recipe);

// Whether the engine offers the quantization at all (the lists above).
bool EngineOffers(v1::Engine engine, v1::Quantization quantization);

// The terms text for `model_name` under `license`.
std::string TermsText(const std::string& model_name,
                      const std::string& license);

SpecReview ReviewSpec(const v1::DeploymentSpec& spec, const ModelFacts& model,
                      const OfferingFacts& offering);

// FAILED_PRECONDITION unless spec.accept_terms is true and
// spec.accepted_terms_sha256 equals `terms_sha256` (naming the field and
// what to do).
absl::Status CheckTermsAccepted(const v1::DeploymentSpec& spec,
                                const std::string& terms_sha256);

// INVALID_ARGUMENT listing every violation ("spec.top_p: ...; spec.hardware:
// ..."), or OK when there are none.
absl::Status ViolationsToStatus(
    const std::vector<sampling::FieldViolation>& violations);

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_SPEC_VALIDATION_H_
