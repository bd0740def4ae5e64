#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "common/util/file.h"
#include "common/util/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::MakeTempDir;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kAbcSha256[] =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kEmptySha256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex("abc"), kAbcSha256);
  EXPECT_EQ(Sha256Hex(""), kEmptySha256);
  EXPECT_EQ(Sha256Digest("abc").size(), 32);
}

TEST(Sha256Test, IncrementalEqualsWhole) {
  Sha256 hash;
  hash.Update("a");
  hash.Update("");
  hash.Update("bc");
  EXPECT_EQ(hash.FinishHex(), kAbcSha256);
}

TEST(Sha256Test, OfFilesHashesTheConcatenation) {
  std::string dir = MakeTempDir("sha256");
  ASSERT_THAT(WriteStringToFile(dir + "/a", "a"), IsOk());
  ASSERT_THAT(WriteStringToFile(dir + "/bc", "bc"), IsOk());
  ASSERT_THAT(WriteStringToFile(dir + "/big", std::string(3 << 20, 'x')),
              IsOk());
  EXPECT_THAT(Sha256OfFiles({dir + "/a", dir + "/bc"}),
              IsOkAndHolds(kAbcSha256));
  EXPECT_THAT(Sha256OfFile(dir + "/big"),
              IsOkAndHolds(Sha256Hex(std::string(3 << 20, 'x'))));
  EXPECT_THAT(
      Sha256OfFiles({dir + "/a", dir + "/missing"}),
      StatusIs(absl::StatusCode::kNotFound, dir + "/missing: no such file"));
}

TEST(FileTest, RoundTrip) {
  std::string dir = MakeTempDir("file");
  std::string data("binary\0data\n", 12);
  ASSERT_THAT(WriteStringToFile(dir + "/f", data), IsOk());
  EXPECT_THAT(ReadFileToString(dir + "/f"), IsOkAndHolds(data));
  ASSERT_THAT(WriteStringToFile(dir + "/f", "short"), IsOk());  // truncates
  EXPECT_THAT(ReadFileToString(dir + "/f"), IsOkAndHolds("short"));
  ASSERT_THAT(WriteStringToFile(dir + "/empty", ""), IsOk());
  EXPECT_THAT(ReadFileToString(dir + "/empty"), IsOkAndHolds(""));
}

TEST(FileTest, ErrorsNameThePath) {
  std::string dir = MakeTempDir("file");
  EXPECT_THAT(
      ReadFileToString(dir + "/missing"),
      StatusIs(absl::StatusCode::kNotFound, dir + "/missing: no such file"));
  EXPECT_THAT(ReadFileToString(dir + "/missing/below"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no such file")));
  EXPECT_THAT(
      ReadFileToString(dir),
      StatusIs(absl::StatusCode::kInvalidArgument, dir + ": is a directory"));
  EXPECT_THAT(WriteStringToFile(dir + "/missing/below", "x"),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr(dir + "/missing/below: cannot create")));
}

TEST(FileTest, UnreadableIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads every file";
  std::string dir = MakeTempDir("file");
  ASSERT_THAT(WriteStringToFile(dir + "/secret", "x"), IsOk());
  ASSERT_EQ(::chmod((dir + "/secret").c_str(), 0), 0);
  EXPECT_THAT(ReadFileToString(dir + "/secret"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       dir + "/secret: permission denied"));
}

TEST(FileTest, MaxBytes) {
  std::string dir = MakeTempDir("file");
  ASSERT_THAT(WriteStringToFile(dir + "/f", std::string(100, 'x')), IsOk());
  EXPECT_THAT(ReadFileToString(dir + "/f", 100),
              IsOkAndHolds(std::string(100, 'x')));
  EXPECT_THAT(ReadFileToString(dir + "/f", 99),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       dir + "/f: larger than 99 bytes"));
}

}  // namespace
}  // namespace hangar
