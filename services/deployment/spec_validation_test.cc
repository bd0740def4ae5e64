#include "services/deployment/spec_validation.h"

#include <functional>
#include <limits>

#include "common/auth/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::deployment {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr int64_t kGib = int64_t{1} << 30;

ModelFacts SmallModel() {
  ModelFacts model;
  model.found = true;
  model.ready = true;
  model.context_length = 2048;
  model.license = "apache-2.0";
  v1::OptimizationRecipe none;
  none.set_engine(v1::ENGINE_NONE);
  model.recipes[RecipeKey(none)] = {.weight_bytes = 2 * kGib,
                                    .kv_bytes_per_sequence = kGib / 4};
  v1::OptimizationRecipe int8;
  int8.set_engine(v1::ENGINE_CTRANSLATE2);
  int8.set_quantization(v1::QUANTIZATION_INT8);
  model.recipes[RecipeKey(int8)] = {.weight_bytes = kGib,
                                    .kv_bytes_per_sequence = kGib / 4};
  v1::OptimizationRecipe fp8;
  fp8.set_engine(v1::ENGINE_VLLM);
  fp8.set_quantization(v1::QUANTIZATION_FP8);
  model.recipes[RecipeKey(fp8)] = {.weight_bytes = kGib,
                                   .kv_bytes_per_sequence = kGib / 4};
  return model;
}

OfferingFacts T4() {
  return {.found = true,
          .gpu_model = "NVIDIA T4",
          .gpu_count = 1,
          .gpu_memory_bytes = 16 * kGib,
          .hourly_price_micros = 1'128'000,
          .supports_fp8 = false,
          .supports_bf16 = false};
}

v1::DeploymentSpec ValidSpec() {
  v1::DeploymentSpec spec;
  spec.set_model("hangar/tiny");
  spec.set_hardware("t4-1x");
  return spec;
}

TEST(ReviewSpecTest, AValidSpecIsNormalizedWithEveryDefault) {
  SpecReview review = ReviewSpec(ValidSpec(), SmallModel(), T4());
  EXPECT_THAT(review.violations, IsEmpty());
  const v1::DeploymentSpec& spec = review.normalized;
  EXPECT_EQ(spec.optimization().engine(), v1::ENGINE_NONE);
  EXPECT_EQ(spec.inference_batch_size(), 8);
  EXPECT_EQ(spec.min_replicas(), 1);
  EXPECT_EQ(spec.max_replicas(), 1);
  EXPECT_EQ(spec.scale_up_delay_seconds(), 30);
  EXPECT_EQ(spec.scale_down_delay_seconds(), 300);
  EXPECT_TRUE(spec.sampling().has_temperature());
  EXPECT_EQ(spec.sampling().max_tokens(), 256);
  EXPECT_EQ(spec.sampling().top_p(), 1.0f);
  // 2 GiB of weights + 8 x 0.25 GiB of KV cache.
  EXPECT_EQ(review.replica_memory_bytes, 4 * kGib);
  EXPECT_EQ(review.offering_memory_bytes, 16 * kGib);
  EXPECT_EQ(review.min_hourly_cost_micros, 1'128'000);
  EXPECT_EQ(review.max_hourly_cost_micros, 1'128'000);
}

TEST(ReviewSpecTest, CostsAtMinAndMaxReplicas) {
  v1::DeploymentSpec spec = ValidSpec();
  spec.set_min_replicas(2);
  spec.set_max_replicas(5);
  SpecReview review = ReviewSpec(spec, SmallModel(), T4());
  EXPECT_THAT(review.violations, IsEmpty());
  EXPECT_EQ(review.min_hourly_cost_micros, 2 * 1'128'000);
  EXPECT_EQ(review.max_hourly_cost_micros, 5 * 1'128'000);
  EXPECT_THAT(review.warnings,
              Contains(HasSubstr("autoscaling between 2 and 5")));
}

TEST(ReviewSpecTest, MaxReplicasDefaultsToMinReplicas) {
  v1::DeploymentSpec spec = ValidSpec();
  spec.set_min_replicas(3);
  SpecReview review = ReviewSpec(spec, SmallModel(), T4());
  EXPECT_THAT(review.violations, IsEmpty());
  EXPECT_EQ(review.normalized.max_replicas(), 3);
}

struct RuleCase {
  const char* name;
  std::function<void(v1::DeploymentSpec&)> mutate;
  const char* field;
  const char* rule;
};

class SpecRuleTest : public ::testing::TestWithParam<RuleCase> {};

TEST_P(SpecRuleTest, IsReportedWithItsFieldAndRule) {
  v1::DeploymentSpec spec = ValidSpec();
  GetParam().mutate(spec);
  SpecReview review = ReviewSpec(spec, SmallModel(), T4());
  EXPECT_THAT(
      review.violations,
      Contains(AllOf(
          Field(&sampling::FieldViolation::field, GetParam().field),
          Field(&sampling::FieldViolation::rule, HasSubstr(GetParam().rule)))))
      << ViolationsToStatus(review.violations);
}

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

INSTANTIATE_TEST_SUITE_P(
    EveryRule, SpecRuleTest,
    ::testing::Values(
        RuleCase{"ModelRequired", [](auto& s) { s.clear_model(); },
                 "spec.model", "required"},
        RuleCase{"HardwareRequired", [](auto& s) { s.clear_hardware(); },
                 "spec.hardware", "required"},
        RuleCase{"TemperatureNaN",
                 [](auto& s) { s.mutable_sampling()->set_temperature(kNaN); },
                 "spec.sampling.temperature", "finite"},
        RuleCase{"TemperatureInf",
                 [](auto& s) { s.mutable_sampling()->set_temperature(kInf); },
                 "spec.sampling.temperature", "finite"},
        RuleCase{"TemperatureNegative",
                 [](auto& s) { s.mutable_sampling()->set_temperature(-0.1f); },
                 "spec.sampling.temperature", "[0, 2]"},
        RuleCase{"TopPZero",
                 [](auto& s) { s.mutable_sampling()->set_top_p(0); },
                 "spec.sampling.top_p", "(0, 1]"},
        RuleCase{"TopK1001",
                 [](auto& s) { s.mutable_sampling()->set_top_k(1001); },
                 "spec.sampling.top_k", "[0, 1000]"},
        RuleCase{"MaxTokensOverContext",
                 [](auto& s) { s.mutable_sampling()->set_max_tokens(4096); },
                 "spec.sampling.max_tokens", "2048"},
        RuleCase{"BatchZero", [](auto& s) { s.set_inference_batch_size(0); },
                 "spec.inference_batch_size", "[1, 256]; was 0"},
        RuleCase{"Batch257", [](auto& s) { s.set_inference_batch_size(257); },
                 "spec.inference_batch_size", "[1, 256]; was 257"},
        RuleCase{"MinNegative", [](auto& s) { s.set_min_replicas(-1); },
                 "spec.min_replicas", "[0, 64]; was -1"},
        RuleCase{"MaxZero", [](auto& s) { s.set_max_replicas(0); },
                 "spec.max_replicas", "[1, 64]; was 0"},
        RuleCase{"Max65", [](auto& s) { s.set_max_replicas(65); },
                 "spec.max_replicas", "[1, 64]; was 65"},
        RuleCase{"MinOverMax",
                 [](auto& s) {
                   s.set_min_replicas(3);
                   s.set_max_replicas(2);
                 },
                 "spec.min_replicas", "at most max_replicas (2); was 3"},
        RuleCase{"UpDelayNegative",
                 [](auto& s) { s.set_scale_up_delay_seconds(-1); },
                 "spec.scale_up_delay_seconds", "[0, 86400]; was -1"},
        RuleCase{"DownDelayOverADay",
                 [](auto& s) { s.set_scale_down_delay_seconds(86'401); },
                 "spec.scale_down_delay_seconds", "[0, 86400]; was 86401"},
        RuleCase{"QuantizationWithoutEngine",
                 [](auto& s) {
                   s.mutable_optimization()->set_quantization(
                       v1::QUANTIZATION_INT8);
                 },
                 "spec.optimization.quantization", "must be unset"},
        RuleCase{"Fp8IsNotACTranslate2Recipe",
                 [](auto& s) {
                   s.mutable_optimization()->set_engine(v1::ENGINE_CTRANSLATE2);
                   s.mutable_optimization()->set_quantization(
                       v1::QUANTIZATION_FP8);
                 },
                 "spec.optimization.quantization",
                 "not offered by ENGINE_CTRANSLATE2"},
        RuleCase{
            "Int8IsNotAVllmRecipe",
            [](auto& s) {
              s.mutable_optimization()->set_engine(v1::ENGINE_VLLM);
              s.mutable_optimization()->set_quantization(v1::QUANTIZATION_INT8);
            },
            "spec.optimization.quantization", "not offered by ENGINE_VLLM"},
        RuleCase{"EngineWithoutQuantization",
                 [](auto& s) {
                   s.mutable_optimization()->set_engine(v1::ENGINE_VLLM);
                 },
                 "spec.optimization.quantization", "not offered"},
        RuleCase{"RecipeTheModelDoesNotSupport",
                 [](auto& s) {
                   s.mutable_optimization()->set_engine(v1::ENGINE_CTRANSLATE2);
                   s.mutable_optimization()->set_quantization(
                       v1::QUANTIZATION_INT16);
                 },
                 "spec.optimization", "does not support"},
        RuleCase{"DoesNotFitTheGpu",
                 [](auto& s) { s.set_inference_batch_size(256); },
                 "spec.hardware", "one replica needs 66 GiB"}),
    [](const ::testing::TestParamInfo<RuleCase>& info) {
      return info.param.name;
    });

TEST(ReviewSpecTest, EveryViolationComesBackAtOnce) {
  v1::DeploymentSpec spec = ValidSpec();
  spec.mutable_sampling()->set_top_p(1.5f);
  spec.set_inference_batch_size(0);
  spec.set_max_replicas(0);
  spec.set_scale_up_delay_seconds(-5);
  spec.set_hardware("no-such-gpu");
  SpecReview review = ReviewSpec(spec, SmallModel(), OfferingFacts{});
  EXPECT_THAT(review.violations, SizeIs(5));
  absl::Status status = ViolationsToStatus(review.violations);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("spec.sampling.top_p"));
  EXPECT_THAT(status.message(), HasSubstr("spec.hardware: no such hardware"));
}

TEST(ReviewSpecTest, UnknownAndUnreadyModels) {
  SpecReview unknown = ReviewSpec(ValidSpec(), ModelFacts{}, T4());
  EXPECT_THAT(unknown.violations,
              Contains(Field(&sampling::FieldViolation::rule,
                             HasSubstr("no such model"))));
  ModelFacts importing = SmallModel();
  importing.ready = false;
  importing.not_ready_reason = "it is IMPORTING";
  SpecReview unready = ReviewSpec(ValidSpec(), importing, T4());
  EXPECT_THAT(
      unready.violations,
      Contains(Field(&sampling::FieldViolation::rule,
                     HasSubstr("READY in the catalog; it is IMPORTING"))));
}

TEST(ReviewSpecTest, EmulatedPrecisionsAndColdStartsAreWarnings) {
  v1::DeploymentSpec spec = ValidSpec();
  spec.mutable_optimization()->set_engine(v1::ENGINE_VLLM);
  spec.mutable_optimization()->set_quantization(v1::QUANTIZATION_FP8);
  spec.set_min_replicas(0);
  SpecReview review = ReviewSpec(spec, SmallModel(), T4());
  EXPECT_THAT(review.violations, IsEmpty());
  EXPECT_THAT(review.warnings,
              Contains(HasSubstr("fp8 on NVIDIA T4 is emulated")));
  EXPECT_THAT(review.warnings, Contains(HasSubstr("min_replicas 0")));
  EXPECT_EQ(review.min_hourly_cost_micros, 0);
  EXPECT_EQ(review.max_hourly_cost_micros, 1'128'000);
}

TEST(ReviewSpecTest, TermsNameTheModelAndLicenseAndCarryTheirHash) {
  SpecReview review = ReviewSpec(ValidSpec(), SmallModel(), T4());
  EXPECT_THAT(review.terms, HasSubstr("\"hangar/tiny\""));
  EXPECT_THAT(review.terms, HasSubstr("\"apache-2.0\""));
  EXPECT_EQ(review.terms_sha256, auth::Sha256Hex(review.terms));
  EXPECT_EQ(review.terms_sha256.size(), 64u);
}

TEST(CheckTermsAcceptedTest, NeedsTheFlagAndTheHashOfTheTextShown) {
  const std::string hash = auth::Sha256Hex("terms");
  v1::DeploymentSpec spec = ValidSpec();
  absl::Status not_accepted = CheckTermsAccepted(spec, hash);
  EXPECT_EQ(not_accepted.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(not_accepted.message(), HasSubstr("spec.accept_terms"));

  spec.set_accept_terms(true);
  spec.set_accepted_terms_sha256(auth::Sha256Hex("older terms"));
  absl::Status stale = CheckTermsAccepted(spec, hash);
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.message(), HasSubstr("spec.accepted_terms_sha256"));

  spec.set_accepted_terms_sha256(hash);
  EXPECT_TRUE(CheckTermsAccepted(spec, hash).ok());
}

TEST(EngineOffersTest, TheTwoPublishedLists) {
  const v1::Quantization ct2[] = {
      v1::QUANTIZATION_INT8,         v1::QUANTIZATION_INT8_FLOAT32,
      v1::QUANTIZATION_INT8_FLOAT16, v1::QUANTIZATION_INT8_BFLOAT16,
      v1::QUANTIZATION_INT16,        v1::QUANTIZATION_FLOAT16,
      v1::QUANTIZATION_BFLOAT16,     v1::QUANTIZATION_FLOAT32};
  for (v1::Quantization q : ct2) {
    EXPECT_TRUE(EngineOffers(v1::ENGINE_CTRANSLATE2, q))
        << v1::Quantization_Name(q);
  }
  EXPECT_FALSE(EngineOffers(v1::ENGINE_CTRANSLATE2, v1::QUANTIZATION_FP8));
  const v1::Quantization vllm[] = {
      v1::QUANTIZATION_FLOAT16, v1::QUANTIZATION_BFLOAT16,
      v1::QUANTIZATION_FLOAT32, v1::QUANTIZATION_FP8};
  for (v1::Quantization q : vllm) {
    EXPECT_TRUE(EngineOffers(v1::ENGINE_VLLM, q)) << v1::Quantization_Name(q);
  }
  EXPECT_FALSE(EngineOffers(v1::ENGINE_VLLM, v1::QUANTIZATION_INT16));
  EXPECT_TRUE(EngineOffers(v1::ENGINE_NONE, v1::QUANTIZATION_UNSPECIFIED));
}

}  // namespace
}  // namespace hangar::deployment
