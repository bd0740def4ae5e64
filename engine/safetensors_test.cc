#include "engine/safetensors.h"

#include <cstring>
#include <string>

#include "common/testing/status_matchers.h"
#include "engine/gguf.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::engine {
namespace {

using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

std::string File(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + std::string(data_bytes, '\x01');
}

absl::Status Parse(const std::string& bytes) {
  return SafetensorsFile::Parse(reinterpret_cast<const uint8_t*>(bytes.data()),
                                bytes.size())
      .status();
}

TEST(SafetensorsTest, ParsesValidFile) {
  std::string f = File(
      R"({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}})",
      24);
  ASSERT_OK_AND_ASSIGN(
      auto st, SafetensorsFile::Parse(
                   reinterpret_cast<const uint8_t*>(f.data()), f.size()));
  const SafetensorsTensor* a = st->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->elements(), 6);
  EXPECT_EQ(a->nbytes, 24);
  EXPECT_EQ(st->metadata().at("format"), "pt");
}

TEST(SafetensorsTest, RejectsLyingHeaders) {
  EXPECT_THAT(Parse("abc"), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("shorter than")));
  std::string huge(8, '\xff');
  EXPECT_THAT(Parse(huge + "{}"), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("header length")));
  EXPECT_THAT(Parse(File("{not json", 0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON")));
  EXPECT_THAT(
      Parse(File(
          R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 80]}})",
          8)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("outside the data region")));
  EXPECT_THAT(
      Parse(File(
          R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
          8)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("spans 8 bytes but")));
  EXPECT_THAT(
      Parse(File(
          R"({"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}})",
          8)),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("unknown dtype 'Q7'")));
  EXPECT_THAT(
      Parse(File(
          R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
          8)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absurd shape")));
  EXPECT_THAT(
      Parse(File(
          R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}})",
          8)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
  EXPECT_THAT(
      Parse(File(
          R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})",
          8)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
}

TEST(SafetensorsHeaderTest, ReadsAHeaderWithoutItsData) {
  // What the catalog fetches with two range requests: the length, then the
  // JSON; the data region is unknown, so offsets past "the file" are fine.
  auto file = SafetensorsFile::ParseHeader(
      R"({"a": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [1000, 1064]}})");
  ASSERT_TRUE(file.ok()) << file.status();
  const SafetensorsTensor* a = (*file)->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->data, nullptr);
  EXPECT_EQ(a->nbytes, 64);
  EXPECT_EQ(a->elements(), 32);
  // Everything else is checked as in Parse.
  EXPECT_THAT(
      SafetensorsFile::ParseHeader(
          R"({"a": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, 63]}})")
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("spans 63 bytes")));
  EXPECT_THAT(SafetensorsFile::ParseHeader("[1]").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a JSON object")));
  const uint8_t big[8] = {0, 0, 0, 0, 0, 1, 0, 0};  // 2^40
  EXPECT_THAT(
      SafetensorsFile::HeaderLength(big, 8).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("100 MiB")));
  const uint8_t small[8] = {16, 0, 0, 0, 0, 0, 0, 0};
  auto length = SafetensorsFile::HeaderLength(small, 8);
  ASSERT_TRUE(length.ok());
  EXPECT_EQ(*length, 16u);
  EXPECT_FALSE(SafetensorsFile::HeaderLength(small, 7).ok());
}

TEST(GgufParseTest, RejectsTruncatedAndLyingFiles) {
  auto parse = [](const std::string& b) {
    return GgufFile::Parse(reinterpret_cast<const uint8_t*>(b.data()), b.size())
        .status();
  };
  EXPECT_THAT(parse("GGU"), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("truncated")));
  EXPECT_THAT(parse("GGML\3\0\0\0"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("magic")));
  std::string v1 = std::string("GGUF") + std::string("\1\0\0\0", 4);
  EXPECT_THAT(parse(v1), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("version 1")));
  std::string head = std::string("GGUF") + std::string("\3\0\0\0", 4);
  std::string counts(16, '\0');
  counts[0] = 1;  // one tensor, no metadata... but nothing follows
  EXPECT_THAT(parse(head + counts), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("exceed the file")));
  // A string that claims more bytes than remain.
  std::string kv(16, '\0');
  kv[8] = 1;  // one KV
  std::string key_len(8, '\xff');
  EXPECT_THAT(
      parse(head + kv + key_len + std::string(16, 'x')),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("claims")));
}

}  // namespace
}  // namespace hangar::engine
