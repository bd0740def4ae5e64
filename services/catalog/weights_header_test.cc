#include "services/catalog/weights_header.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::catalog {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

std::string LengthPrefix(uint64_t length) {
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &length, 8);
  return bytes;
}

TEST(SafetensorsTest, CountsParametersPerDtype) {
  absl::StatusOr<WeightsSummary> summary = SummarizeSafetensorsHeader(
      R"({"__metadata__": {"format": "pt"},
          "a": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, 64]},
          "b": {"dtype": "F32", "shape": [8], "data_offsets": [64, 96]},
          "c": {"dtype": "BF16", "shape": [], "data_offsets": [96, 98]}})",
      "m.safetensors");
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->tensors, 3);
  EXPECT_EQ(summary->parameters, 32 + 8 + 1);
  EXPECT_EQ(summary->parameters_by_dtype.at("bfloat16"), 33);
  EXPECT_EQ(summary->MainDtype(), "bfloat16");
}

TEST(SafetensorsTest, RefusesHostileHeaders) {
  EXPECT_THAT(SafetensorsHeaderLength("short", "f"),
              StatusIs(kInvalid, HasSubstr("f")));
  EXPECT_THAT(SafetensorsHeaderLength(LengthPrefix(uint64_t{1} << 40), "f"),
              StatusIs(kInvalid, HasSubstr("100 MiB")));
  EXPECT_THAT(SafetensorsHeaderLength(LengthPrefix(~uint64_t{0}), "f"),
              StatusIs(kInvalid, HasSubstr("100 MiB")));
  EXPECT_THAT(SafetensorsHeaderLength(LengthPrefix(1), "f"),
              StatusIs(kInvalid, HasSubstr("below 2")));
  EXPECT_THAT(SafetensorsHeaderLength(LengthPrefix(100), "f"), IsOk());
  for (const char* header :
       {"[1, 2]", "{\"a\": 1}", "{\"a\": {\"dtype\": \"BF16\"}}",
        "{\"a\": {\"dtype\": \"XX\", \"shape\": [1]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1099511627776, "
        "1099511627776], \"data_offsets\": [0, 4]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], "
        "\"data_offsets\": [0, 4]}}",
        "{not json"}) {
    EXPECT_THAT(SummarizeSafetensorsHeader(header, "m.safetensors"),
                StatusIs(kInvalid, HasSubstr("m.safetensors")))
        << header;
  }
}

class GgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("weights_header_test_" + std::to_string(getpid()) + ".gguf"))
                .string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  void Write(const std::string& bytes) {
    std::ofstream(path_, std::ios::binary) << bytes;
  }
  std::string path_;
};

TEST_F(GgufTest, RefusesMalformedFiles) {
  Write("GGUX");
  EXPECT_THAT(ReadGgufFile(path_), StatusIs(kInvalid, HasSubstr(path_)));
  std::string header = "GGUF";
  uint32_t version = 3;
  header.append(reinterpret_cast<char*>(&version), 4);
  Write(header);  // Truncated after the version.
  EXPECT_THAT(ReadGgufFile(path_), StatusIs(kInvalid, HasSubstr(path_)));
  uint64_t huge = uint64_t{1} << 40;
  std::string counts = header;
  counts.append(reinterpret_cast<char*>(&huge), 8);
  counts.append(reinterpret_cast<char*>(&huge), 8);
  Write(counts);
  EXPECT_THAT(ReadGgufFile(path_), StatusIs(kInvalid, HasSubstr(path_)));
  // One metadata entry whose key claims to be 2^40 bytes long.
  std::string key = header;
  uint64_t zero = 0, one = 1;
  key.append(reinterpret_cast<char*>(&zero), 8);
  key.append(reinterpret_cast<char*>(&one), 8);
  key.append(reinterpret_cast<char*>(&huge), 8);
  Write(key);
  EXPECT_THAT(ReadGgufFile(path_), StatusIs(kInvalid, HasSubstr(path_)));
  EXPECT_THAT(ReadGgufFile(path_ + ".missing"), Not(IsOk()));
}

TEST_F(GgufTest, RefusesUnsupportedArchitectures) {
  std::string bytes = "GGUF";
  auto u32 = [&](uint32_t v) { bytes.append(reinterpret_cast<char*>(&v), 4); };
  auto u64 = [&](uint64_t v) { bytes.append(reinterpret_cast<char*>(&v), 8); };
  u32(3);
  u64(0);
  u64(1);
  u64(20);
  bytes += "general.architecture";
  u32(8);
  u64(5);
  bytes += "gpt2x";
  Write(bytes);
  EXPECT_THAT(
      ReadGgufFile(path_),
      StatusIs(kInvalid, HasSubstr("architecture 'gpt2x' is not supported")));
}

}  // namespace
}  // namespace hangar::catalog
