#include "common/sampling/sampling.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::sampling {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int kContext = 512;

// The float just above / below `x`.
float Up(float x) { return std::nextafter(x, kInf); }
float Down(float x) { return std::nextafter(x, -kInf); }

std::vector<std::string> Stops(int count, int bytes = 3) {
  std::vector<std::string> stops;
  for (int i = 0; i < count; ++i) {
    std::string stop(bytes, 'x');
    stop[0] = static_cast<char>('A' + i % 26);
    stops.push_back(stop);
  }
  return stops;
}

// ---------------------------------------------------------------------------
// The deployment's values: absolute bounds.

struct ParamsCase {
  std::string name;
  std::function<void(v1::SamplingParams&)> edit;
  // Empty: valid. Otherwise the one violation expected.
  std::string field;
  std::string rule;  // the exact rule, or empty to check only the field
};

class SamplingParamsBoundsTest : public ::testing::TestWithParam<ParamsCase> {};

TEST_P(SamplingParamsBoundsTest, ChecksTheBound) {
  const ParamsCase& c = GetParam();
  v1::SamplingParams params;
  c.edit(params);
  std::vector<FieldViolation> violations =
      CheckSamplingParams(params, kContext);
  if (c.field.empty()) {
    EXPECT_THAT(violations, IsEmpty());
    EXPECT_THAT(NormalizeSamplingParams(params, kContext), IsOk());
    return;
  }
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].field, c.field);
  if (!c.rule.empty()) EXPECT_EQ(violations[0].rule, c.rule);
  EXPECT_THAT(
      NormalizeSamplingParams(params, kContext),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field + ": ")));
}

std::vector<ParamsCase> BoundsCases() {
  using P = v1::SamplingParams;
  return {
      {"Empty", [](P&) {}},
      // temperature: finite, [0, 2]
      {"TemperatureZero", [](P& p) { p.set_temperature(0); }},
      {"TemperatureTwo", [](P& p) { p.set_temperature(2); }},
      {"TemperatureBelowZero", [](P& p) { p.set_temperature(Down(0)); },
       "sampling.temperature"},
      {"TemperatureAboveTwo", [](P& p) { p.set_temperature(Up(2)); },
       "sampling.temperature"},
      {"TemperatureNaN", [](P& p) { p.set_temperature(kNaN); },
       "sampling.temperature", "must be finite and in [0, 2]; was nan"},
      {"TemperatureInf", [](P& p) { p.set_temperature(kInf); },
       "sampling.temperature", "must be finite and in [0, 2]; was inf"},
      {"TemperatureMinusInf", [](P& p) { p.set_temperature(-kInf); },
       "sampling.temperature"},
      {"Temperature1e30", [](P& p) { p.set_temperature(1e30f); },
       "sampling.temperature", "must be finite and in [0, 2]; was 1e+30"},
      // max_tokens: [1, context]
      {"MaxTokensOne", [](P& p) { p.set_max_tokens(1); }},
      {"MaxTokensContext", [](P& p) { p.set_max_tokens(kContext); }},
      {"MaxTokensZero", [](P& p) { p.set_max_tokens(0); },
       "sampling.max_tokens",
       "must be in [1, 512] (the context length); was 0"},
      {"MaxTokensNegative", [](P& p) { p.set_max_tokens(-1); },
       "sampling.max_tokens"},
      {"MaxTokensPastContext", [](P& p) { p.set_max_tokens(kContext + 1); },
       "sampling.max_tokens"},
      {"MaxTokensBillion", [](P& p) { p.set_max_tokens(1'000'000'000); },
       "sampling.max_tokens",
       "must be in [1, 512] (the context length); was 1000000000"},
      // top_p: (0, 1]
      {"TopPOne", [](P& p) { p.set_top_p(1); }},
      {"TopPSmallestPositive", [](P& p) { p.set_top_p(Up(0)); }},
      {"TopPZero", [](P& p) { p.set_top_p(0); }, "sampling.top_p",
       "must be in (0, 1]; was 0"},
      {"TopPAboveOne", [](P& p) { p.set_top_p(Up(1)); }, "sampling.top_p"},
      {"TopPOneAndAHalf", [](P& p) { p.set_top_p(1.5f); }, "sampling.top_p",
       "must be in (0, 1]; was 1.5"},
      {"TopPNaN", [](P& p) { p.set_top_p(kNaN); }, "sampling.top_p"},
      {"TopPNegative", [](P& p) { p.set_top_p(-0.5f); }, "sampling.top_p"},
      // top_k: [0, 1000]
      {"TopKZero", [](P& p) { p.set_top_k(0); }},
      {"TopKThousand", [](P& p) { p.set_top_k(1000); }},
      {"TopKNegative", [](P& p) { p.set_top_k(-1); }, "sampling.top_k",
       "must be in [0, 1000]; was -1"},
      {"TopK1001", [](P& p) { p.set_top_k(1001); }, "sampling.top_k",
       "must be in [0, 1000]; was 1001"},
      // stop sequences: at most 16 of 1 to 64 bytes of UTF-8
      {"SixteenStops",
       [](P& p) {
         for (const std::string& s : Stops(16)) p.add_stop_sequences(s);
       }},
      {"SeventeenStops",
       [](P& p) {
         for (const std::string& s : Stops(17)) p.add_stop_sequences(s);
       },
       "sampling.stop_sequences", "at most 16; was 17"},
      {"OneByteStop", [](P& p) { p.add_stop_sequences("."); }},
      {"SixtyFourByteStop",
       [](P& p) { p.add_stop_sequences(std::string(64, 's')); }},
      {"SixtyFiveByteStop",
       [](P& p) {
         p.add_stop_sequences("ok");
         p.add_stop_sequences("ok too");
         p.add_stop_sequences("fine");
         p.add_stop_sequences(std::string(65, 's'));
       },
       "sampling.stop_sequences[3]", "must be 1 to 64 bytes; was 65"},
      {"EmptyStop", [](P& p) { p.add_stop_sequences(""); },
       "sampling.stop_sequences[0]", "must be 1 to 64 bytes; was 0"},
      {"MultibyteStop",
       [](P& p) {
         p.add_stop_sequences("\xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80");
       }},
      {"InvalidUtf8Stop", [](P& p) { p.add_stop_sequences("ab\xC3\x28"); },
       "sampling.stop_sequences[0]",
       "must be valid UTF-8; was invalid at byte 2"},
      {"OverlongUtf8Stop", [](P& p) { p.add_stop_sequences("\xC0\xAF"); },
       "sampling.stop_sequences[0]"},
      {"SurrogateStop", [](P& p) { p.add_stop_sequences("\xED\xA0\x80"); },
       "sampling.stop_sequences[0]"},
      {"TruncatedUtf8Stop", [](P& p) { p.add_stop_sequences("a\xE2\x82"); },
       "sampling.stop_sequences[0]"},
      // seed: any
      {"SeedMax",
       [](P& p) { p.set_seed(std::numeric_limits<uint64_t>::max()); }},
      {"SeedZero", [](P& p) { p.set_seed(0); }},
  };
}

INSTANTIATE_TEST_SUITE_P(Bounds, SamplingParamsBoundsTest,
                         ::testing::ValuesIn(BoundsCases()),
                         [](const ::testing::TestParamInfo<ParamsCase>& info) {
                           return info.param.name;
                         });

TEST(NormalizeSamplingParamsTest, FillsDefaults) {
  auto normalized = NormalizeSamplingParams({}, 2048);
  ASSERT_THAT(normalized, IsOk());
  EXPECT_TRUE(normalized->has_temperature());
  EXPECT_EQ(normalized->temperature(), 1.0f);
  EXPECT_EQ(normalized->max_tokens(), 256);
  EXPECT_EQ(normalized->top_p(), 1.0f);
  EXPECT_TRUE(normalized->has_top_k());
  EXPECT_EQ(normalized->top_k(), 0);
  EXPECT_EQ(normalized->stop_sequences_size(), 0);
  EXPECT_FALSE(normalized->has_seed());
}

TEST(NormalizeSamplingParamsTest, DefaultMaxTokensFitsASmallContext) {
  auto normalized = NormalizeSamplingParams({}, 100);
  ASSERT_THAT(normalized, IsOk());
  EXPECT_EQ(normalized->max_tokens(), 100);
}

TEST(NormalizeSamplingParamsTest, KeepsGivenValues) {
  v1::SamplingParams params;
  params.set_temperature(0);
  params.set_max_tokens(12);
  params.set_top_p(0.5f);
  params.set_top_k(7);
  params.add_stop_sequences("\n\n");
  params.set_seed(42);
  auto normalized = NormalizeSamplingParams(params, 2048);
  ASSERT_THAT(normalized, IsOk());
  EXPECT_EQ(normalized->SerializeAsString(), params.SerializeAsString());
}

TEST(NormalizeSamplingParamsTest, UnknownContextBoundsMaxTokensOnlyBelow) {
  v1::SamplingParams params;
  params.set_max_tokens(100000);
  EXPECT_THAT(NormalizeSamplingParams(params, 0), IsOk());
  params.set_max_tokens(0);
  EXPECT_THAT(NormalizeSamplingParams(params, 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "sampling.max_tokens: must be at least 1; was 0"));
}

TEST(CheckSamplingParamsTest, ReportsEveryViolationAtOnce) {
  v1::SamplingParams params;
  params.set_temperature(3);
  params.set_max_tokens(0);
  params.set_top_p(0);
  params.set_top_k(1001);
  for (const std::string& s : Stops(17)) params.add_stop_sequences(s);
  params.set_stop_sequences(5, std::string(65, 'z'));
  EXPECT_THAT(
      CheckSamplingParams(params, 1024, "spec.sampling"),
      ElementsAre(
          Field(&FieldViolation::field, "spec.sampling.temperature"),
          Field(&FieldViolation::field, "spec.sampling.max_tokens"),
          Field(&FieldViolation::field, "spec.sampling.top_p"),
          Field(&FieldViolation::field, "spec.sampling.top_k"),
          Field(&FieldViolation::field, "spec.sampling.stop_sequences"),
          Field(&FieldViolation::field, "spec.sampling.stop_sequences[5]")));
}

TEST(CheckSamplingParamsTest, EmptyPrefixNamesTheBareField) {
  v1::SamplingParams params;
  params.set_top_p(1.5f);
  EXPECT_THAT(NormalizeSamplingParams(params, kContext, ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "top_p: must be in (0, 1]; was 1.5"));
}

// ---------------------------------------------------------------------------
// Overrides: tighten only.

v1::SamplingParams Deployment() {
  v1::SamplingParams d;
  d.set_temperature(0.7f);
  d.set_max_tokens(100);
  d.set_top_p(0.9f);
  d.set_top_k(40);
  d.add_stop_sequences("END");
  auto normalized = NormalizeSamplingParams(d, kContext);
  EXPECT_THAT(normalized, IsOk());
  return *normalized;
}

struct OverrideCase {
  std::string name;
  std::function<void(v1::SamplingOverrides&)> edit;
  int prompt_tokens = 10;
  std::string field;  // empty: valid
  std::string rule;   // exact, or empty
  // Edits the deployment before the check (e.g. top_k off).
  std::function<void(v1::SamplingParams&)> deployment_edit = nullptr;
};

class SamplingOverridesTest : public ::testing::TestWithParam<OverrideCase> {};

TEST_P(SamplingOverridesTest, AppliesTheRule) {
  const OverrideCase& c = GetParam();
  v1::SamplingParams deployment = Deployment();
  if (c.deployment_edit) c.deployment_edit(deployment);
  v1::SamplingOverrides overrides;
  c.edit(overrides);
  std::vector<FieldViolation> violations =
      CheckSamplingOverrides(deployment, overrides, c.prompt_tokens, kContext);
  auto effective =
      ApplySamplingOverrides(deployment, overrides, c.prompt_tokens, kContext);
  if (c.field.empty()) {
    EXPECT_THAT(violations, IsEmpty());
    EXPECT_THAT(effective, IsOk());
    return;
  }
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].field, c.field);
  if (!c.rule.empty()) EXPECT_EQ(violations[0].rule, c.rule);
  EXPECT_THAT(effective, StatusIs(absl::StatusCode::kInvalidArgument,
                                  violations[0].ToString()));
}

std::vector<OverrideCase> OverrideCases() {
  using O = v1::SamplingOverrides;
  auto top_k_off = [](v1::SamplingParams& d) { d.set_top_k(0); };
  return {
      {"Empty", [](O&) {}},
      // temperature <= the deployment's 0.7, within [0, 2]
      {"TemperatureEqual", [](O& o) { o.set_temperature(0.7f); }},
      {"TemperatureGreedy", [](O& o) { o.set_temperature(0); }},
      {"TemperatureLooser", [](O& o) { o.set_temperature(Up(0.7f)); }, 10,
       "sampling.temperature"},
      {"TemperatureOne", [](O& o) { o.set_temperature(1); }, 10,
       "sampling.temperature", "must be at most the deployment's 0.7; was 1"},
      {"TemperatureNegative", [](O& o) { o.set_temperature(Down(0)); }, 10,
       "sampling.temperature"},
      {"TemperatureNaN", [](O& o) { o.set_temperature(kNaN); }, 10,
       "sampling.temperature", "must be finite and in [0, 2]; was nan"},
      {"TemperatureInf", [](O& o) { o.set_temperature(kInf); }, 10,
       "sampling.temperature", "must be finite and in [0, 2]; was inf"},
      {"Temperature1e30", [](O& o) { o.set_temperature(1e30f); }, 10,
       "sampling.temperature", "must be finite and in [0, 2]; was 1e+30"},
      // max_tokens <= the deployment's 100 and <= context - prompt
      {"MaxTokensEqual", [](O& o) { o.set_max_tokens(100); }},
      {"MaxTokensOne", [](O& o) { o.set_max_tokens(1); }},
      {"MaxTokensLooser", [](O& o) { o.set_max_tokens(101); }, 10,
       "sampling.max_tokens", "must be at most the deployment's 100; was 101"},
      {"MaxTokensZero", [](O& o) { o.set_max_tokens(0); }, 10,
       "sampling.max_tokens"},
      {"MaxTokensPastContext", [](O& o) { o.set_max_tokens(kContext + 1); }, 10,
       "sampling.max_tokens"},
      {"MaxTokensBillion", [](O& o) { o.set_max_tokens(1'000'000'000); }, 10,
       "sampling.max_tokens",
       "must be in [1, 512] (the context length); was 1000000000"},
      {"MaxTokensFillsTheRoom", [](O& o) { o.set_max_tokens(62); }, 450},
      {"MaxTokensPastTheRoom", [](O& o) { o.set_max_tokens(63); }, 450,
       "sampling.max_tokens",
       "must be at most 62 (the context length 512 minus 450 prompt tokens); "
       "was 63"},
      {"MaxTokensPromptUnknown", [](O& o) { o.set_max_tokens(100); }, -1},
      {"PromptFillsTheContext", [](O&) {}, kContext, "sampling.max_tokens"},
      {"PromptLeavesOneToken", [](O&) {}, kContext - 1},
      // top_p <= the deployment's 0.9, within (0, 1]
      {"TopPEqual", [](O& o) { o.set_top_p(0.9f); }},
      {"TopPSmallestPositive", [](O& o) { o.set_top_p(Up(0)); }},
      {"TopPLooser", [](O& o) { o.set_top_p(Up(0.9f)); }, 10, "sampling.top_p"},
      {"TopPOne", [](O& o) { o.set_top_p(1); }, 10, "sampling.top_p",
       "must be at most the deployment's 0.9; was 1"},
      {"TopPZero", [](O& o) { o.set_top_p(0); }, 10, "sampling.top_p",
       "must be in (0, 1]; was 0"},
      {"TopPOneAndAHalf", [](O& o) { o.set_top_p(1.5f); }, 10, "sampling.top_p",
       "must be in (0, 1]; was 1.5"},
      // top_k in [1, the deployment's 40]
      {"TopKOne", [](O& o) { o.set_top_k(1); }},
      {"TopKEqual", [](O& o) { o.set_top_k(40); }},
      {"TopKOff", [](O& o) { o.set_top_k(0); }, 10, "sampling.top_k",
       "must be in [1, the deployment's 40]; was 0"},
      {"TopKLooser", [](O& o) { o.set_top_k(41); }, 10, "sampling.top_k"},
      {"TopK1001", [](O& o) { o.set_top_k(1001); }, 10, "sampling.top_k",
       "must be in [0, 1000]; was 1001"},
      // top_k when the deployment's is off: [0, 1000]
      {"TopKOffDeploymentZero", [](O& o) { o.set_top_k(0); }, 10, "", "",
       top_k_off},
      {"TopKOffDeploymentThousand", [](O& o) { o.set_top_k(1000); }, 10, "", "",
       top_k_off},
      {"TopKOffDeployment1001", [](O& o) { o.set_top_k(1001); }, 10,
       "sampling.top_k", "must be in [0, 1000]; was 1001", top_k_off},
      {"TopKOffDeploymentNegative", [](O& o) { o.set_top_k(-1); }, 10,
       "sampling.top_k", "", top_k_off},
      // stop sequences: added, at most 16 in all (the deployment has 1)
      {"FifteenMoreStops",
       [](O& o) {
         for (const std::string& s : Stops(15)) o.add_stop_sequences(s);
       }},
      {"SixteenMoreStops",
       [](O& o) {
         for (const std::string& s : Stops(16)) o.add_stop_sequences(s);
       },
       10, "sampling.stop_sequences",
       "at most 16 in all with the deployment's 1; was 17"},
      {"SeventeenStopsNoDeploymentStops",
       [](O& o) {
         for (const std::string& s : Stops(17)) o.add_stop_sequences(s);
       },
       10, "sampling.stop_sequences", "at most 16; was 17",
       [](v1::SamplingParams& d) { d.clear_stop_sequences(); }},
      {"SixtyFourByteStop",
       [](O& o) { o.add_stop_sequences(std::string(64, 'q')); }},
      {"SixtyFiveByteStop",
       [](O& o) { o.add_stop_sequences(std::string(65, 'q')); }, 10,
       "sampling.stop_sequences[0]", "must be 1 to 64 bytes; was 65"},
      {"InvalidUtf8Stop",
       [](O& o) {
         o.add_stop_sequences("fine");
         o.add_stop_sequences("\xFF");
       },
       10, "sampling.stop_sequences[1]",
       "must be valid UTF-8; was invalid at byte 0"},
      // seed: any
      {"SeedAny",
       [](O& o) { o.set_seed(std::numeric_limits<uint64_t>::max()); }},
  };
}

INSTANTIATE_TEST_SUITE_P(
    Tighten, SamplingOverridesTest, ::testing::ValuesIn(OverrideCases()),
    [](const ::testing::TestParamInfo<OverrideCase>& info) {
      return info.param.name;
    });

TEST(ApplySamplingOverridesTest, UnsetOverridesTakeTheDeploymentsValues) {
  v1::SamplingParams deployment = Deployment();
  deployment.set_seed(9);
  auto effective = ApplySamplingOverrides(deployment, {}, 10, kContext);
  ASSERT_THAT(effective, IsOk());
  EXPECT_EQ(effective->temperature, 0.7f);
  EXPECT_EQ(effective->max_tokens, 100);
  EXPECT_EQ(effective->top_p, 0.9f);
  EXPECT_EQ(effective->top_k, 40);
  EXPECT_THAT(effective->stop, ElementsAre("END"));
  EXPECT_THAT(effective->seed, Optional(9u));
}

TEST(ApplySamplingOverridesTest, SetOverridesWin) {
  v1::SamplingOverrides overrides;
  overrides.set_temperature(0);
  overrides.set_max_tokens(5);
  overrides.set_top_p(0.5f);
  overrides.set_top_k(3);
  overrides.add_stop_sequences("\n");
  overrides.set_seed(77);
  auto effective =
      ApplySamplingOverrides(Deployment(), overrides, 10, kContext);
  ASSERT_THAT(effective, IsOk());
  EXPECT_EQ(effective->temperature, 0.0f);
  EXPECT_EQ(effective->max_tokens, 5);
  EXPECT_EQ(effective->top_p, 0.5f);
  EXPECT_EQ(effective->top_k, 3);
  EXPECT_THAT(effective->stop, ElementsAre("END", "\n"));
  EXPECT_THAT(effective->seed, Optional(77u));
}

TEST(ApplySamplingOverridesTest, NoSeedAnywhereStaysUnset) {
  auto effective = ApplySamplingOverrides(Deployment(), {}, 10, kContext);
  ASSERT_THAT(effective, IsOk());
  EXPECT_FALSE(effective->seed.has_value());
}

TEST(ApplySamplingOverridesTest, UnsetMaxTokensIsCutToTheRoomLeft) {
  auto effective = ApplySamplingOverrides(Deployment(), {}, 480, kContext);
  ASSERT_THAT(effective, IsOk());
  EXPECT_EQ(effective->max_tokens, 32);
  // Unknown prompt: the deployment's value.
  effective = ApplySamplingOverrides(Deployment(), {}, -1, kContext);
  ASSERT_THAT(effective, IsOk());
  EXPECT_EQ(effective->max_tokens, 100);
}

TEST(ApplySamplingOverridesTest, MessageNamesTheDeploymentsValue) {
  auto deployment = NormalizeSamplingParams({}, 4096);
  ASSERT_THAT(deployment, IsOk());
  v1::SamplingOverrides overrides;
  overrides.set_max_tokens(1000);
  EXPECT_THAT(
      ApplySamplingOverrides(*deployment, overrides, 3, 4096),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "sampling.max_tokens: must be at most the deployment's 256; "
               "was 1000"));
  EXPECT_THAT(ApplySamplingOverrides(*deployment, overrides, 3, 4096,
                                     "sequences[1].sampling"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sequences[1].sampling.max_tokens: ")));
}

TEST(ApplySamplingOverridesTest, ReportsEveryViolationAtOnce) {
  v1::SamplingOverrides overrides;
  overrides.set_temperature(1.5f);
  overrides.set_top_p(1.5f);
  overrides.set_top_k(1001);
  EXPECT_THAT(CheckSamplingOverrides(Deployment(), overrides, 10, kContext),
              ElementsAre(Field(&FieldViolation::field, "sampling.temperature"),
                          Field(&FieldViolation::field, "sampling.top_p"),
                          Field(&FieldViolation::field, "sampling.top_k")));
}

TEST(IsValidUtf8Test, AcceptsWellFormedAndRefusesMalformed) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("\xE2\x82\xAC \xF4\x8F\xBF\xBF"));  // €, U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));              // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\x80"));                  // overlong
  EXPECT_FALSE(IsValidUtf8("\x80"));  // lone continuation
}

}  // namespace
}  // namespace hangar::sampling
