#include "services/scheduler/hardware_config.h"

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::scheduler {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Line numbers below count from the first line of kValid.
constexpr char kValid[] = R"txt(pools {
  name: "t4"
  gpu_model: "NVIDIA T4"
  gpu_memory_bytes: 17179869184
  gpus_per_node: 4
  node_count: 2
  executor: LOCAL
}
offerings {
  id: "t4-1x"
  display_name: "NVIDIA T4 x1"
  pool: "t4"
  gpu_count: 1
  hourly_price_usd_micros: 1128000
}
)txt";

std::string Replace(absl::string_view from, absl::string_view to) {
  std::string text = absl::StrReplaceAll(kValid, {{from, to}});
  EXPECT_NE(text, kValid) << "pattern not found: " << from;
  return text;
}

TEST(HardwareConfigTest, ValidTextParses) {
  ASSERT_OK_AND_ASSIGN(config::HardwareConfig config,
                       ParseHardwareConfig(kValid));
  ASSERT_EQ(config.pools_size(), 1);
  EXPECT_EQ(config.pools(0).gpus_per_node(), 4);
  EXPECT_EQ(config.pools(0).executor(), config::LOCAL);
  ASSERT_EQ(config.offerings_size(), 1);
  EXPECT_EQ(config.offerings(0).hourly_price_usd_micros(), 1128000);
  EXPECT_NE(FindPool(config, "t4"), nullptr);
  EXPECT_EQ(FindPool(config, "a10g"), nullptr);
  EXPECT_NE(FindOffering(config, "t4-1x"), nullptr);
  EXPECT_EQ(FindOffering(config, "t4-2x"), nullptr);
}

TEST(HardwareConfigTest, RepositoryFileHasThePublishedRates) {
  ASSERT_OK_AND_ASSIGN(config::HardwareConfig config,
                       LoadHardwareConfig(HANGAR_HARDWARE_CONFIG_PATH));
  const std::pair<const char*, int64_t> kRates[] = {
      {"a10g-1x", 1'818'000}, {"a10g-4x", 8'508'000}, {"a10g-8x", 24'432'000},
      {"t4-1x", 1'128'000},   {"t4-4x", 5'868'000},   {"t4-8x", 11'736'000},
      {"a100-8x", 48'000'000}};
  for (const auto& [id, micros] : kRates) {
    const config::OfferingConfig* offering = FindOffering(config, id);
    ASSERT_NE(offering, nullptr) << id;
    EXPECT_EQ(offering->hourly_price_usd_micros(), micros) << id;
    const config::PoolConfig* pool = FindPool(config, offering->pool());
    ASSERT_NE(pool, nullptr) << id;
    EXPECT_LE(offering->gpu_count(), pool->gpus_per_node()) << id;
  }
  EXPECT_EQ(config.offerings_size(), 7);
  EXPECT_TRUE(FindPool(config, "a10g")->supports_bf16());
  EXPECT_FALSE(FindPool(config, "t4")->supports_bf16());
}

TEST(HardwareConfigTest, SyntaxErrorNamesLineAndColumn) {
  std::string text = Replace("gpus_per_node: 4", "gpus_per_node: four");
  EXPECT_THAT(ParseHardwareConfig(text, "hw.textproto"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("hw.textproto:5:18: ")));
  EXPECT_THAT(ParseHardwareConfig("pools { name: \"x\"\n", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("f:")));
  EXPECT_THAT(ParseHardwareConfig("pool { }", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("f:1:")));
}

TEST(HardwareConfigTest, RuleViolationsNameTheLineAndField) {
  struct Case {
    std::string text;
    std::string message;
  };
  const Case kCases[] = {
      {Replace("pool: \"t4\"", "pool: \"a10g\""),
       "<text>:12:3: offerings[0].pool: must name a declared pool; was "
       "\"a10g\""},
      {Replace("gpu_count: 1", "gpu_count: 8"),
       "<text>:13:3: offerings[0].gpu_count: must be in [1, 4] (GPUs per "
       "node of pool t4); was 8"},
      {Replace("gpu_count: 1", "gpu_count: 0"),
       "offerings[0].gpu_count: must be in [1, 4]"},
      {Replace("node_count: 2", "node_count: 0"),
       "<text>:6:3: pools[0].node_count: must be in [1, 10000]; was 0"},
      {Replace("hourly_price_usd_micros: 1128000",
               "hourly_price_usd_micros: -1"),
       "<text>:14:3: offerings[0].hourly_price_usd_micros: must be >= 0; "
       "was -1"},
      {Replace("name: \"t4\"", "name: \"T4\""),
       "<text>:2:3: pools[0].name: must be 1 to 63 characters of [a-z0-9-] "
       "starting with a letter; was \"T4\""},
      {Replace("name: \"t4\"", "name: \"4t\""), "pools[0].name: must be"},
      {Replace("name: \"t4\"", "name: \"t_4\""), "pools[0].name: must be"},
      {Replace("id: \"t4-1x\"", "id: \"\""), "offerings[0].id: must be"},
      {Replace("gpu_memory_bytes: 17179869184", "gpu_memory_bytes: 0"),
       "pools[0].gpu_memory_bytes: must be in (0, "},
      {Replace("gpus_per_node: 4", "gpus_per_node: 65"),
       "pools[0].gpus_per_node: must be in [1, 64]; was 65"},
      {Replace("  executor: LOCAL\n", ""),
       "pools[0].executor: must be LOCAL or KUBERNETES; was unset"},
      {Replace("  gpu_model: \"NVIDIA T4\"\n", ""),
       "pools[0].gpu_model: must be 1 to 200 printable characters"},
      {Replace("display_name: \"NVIDIA T4 x1\"", "display_name: \"\""),
       "offerings[0].display_name: must be"},
      {absl::StrCat(kValid, "offerings {\n  id: \"t4-1x\"\n}\n"),
       "<text>:17:3: offerings[1].id: duplicate offering id \"t4-1x\""},
      {absl::StrCat(kValid, "pools {\n  name: \"t4\"\n}\n"),
       "<text>:17:3: pools[1].name: duplicate pool name \"t4\""},
      {"offerings { id: \"x\" }", "<text>: pools: at least one pool"},
      {"pools { name: \"t4\" gpu_model: \"T4\" gpu_memory_bytes: 1 "
       "gpus_per_node: 1 node_count: 1 executor: KUBERNETES }",
       "<text>: offerings: at least one offering"},
  };
  for (const Case& c : kCases) {
    EXPECT_THAT(
        ParseHardwareConfig(c.text),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.text;
  }
}

TEST(HardwareConfigTest, ValidateWithoutTextHasNoLineNumbers) {
  ASSERT_OK_AND_ASSIGN(config::HardwareConfig config,
                       ParseHardwareConfig(kValid));
  EXPECT_THAT(ValidateHardwareConfig(config), IsOk());
  config.mutable_offerings(0)->set_gpu_count(5);
  EXPECT_THAT(ValidateHardwareConfig(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("offerings[0].gpu_count: must be in")));
}

TEST(HardwareConfigTest, LoadReportsMissingAndMalformedFiles) {
  const std::string dir = ::hangar::testing::MakeTempDir("hardware");
  EXPECT_THAT(LoadHardwareConfig(dir + "/absent.textproto"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent")));
  const std::string path = dir + "/hardware.textproto";
  {
    std::ofstream file(path);
    file << "# comment\npools {\n  name: \"t4\"\n  gpus_per_node: 4,,\n}\n";
  }
  EXPECT_THAT(LoadHardwareConfig(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith(absl::StrCat(path, ":4:"))));
  {
    std::ofstream file(path);
    file << kValid;
  }
  EXPECT_THAT(LoadHardwareConfig(path), IsOk());
}

TEST(HardwareConfigTest, NameRule) {
  EXPECT_TRUE(IsValidHardwareName("a10g-4x"));
  EXPECT_TRUE(IsValidHardwareName(std::string(63, 'a')));
  EXPECT_FALSE(IsValidHardwareName(std::string(64, 'a')));
  EXPECT_FALSE(IsValidHardwareName(""));
  EXPECT_FALSE(IsValidHardwareName("-a"));
  EXPECT_FALSE(IsValidHardwareName("a.b"));
  EXPECT_FALSE(IsValidHardwareName("a/b"));
}

}  // namespace
}  // namespace hangar::scheduler
