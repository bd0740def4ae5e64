// A fresh, uniquely named directory for one test, under the test's temporary
// directory ($TEST_TMPDIR, else $TMPDIR, else /tmp). Tests that need files
// (models, key files, model stores) write them here.
#ifndef HANGAR_COMMON_TESTING_TEMP_DIR_H_
#define HANGAR_COMMON_TESTING_TEMP_DIR_H_

#include <stdlib.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace hangar::testing {

inline std::string MakeTempDir(const std::string& name) {
  std::string pattern =
      absl::StrCat(::testing::TempDir(), "/", name, "-XXXXXX");
  EXPECT_NE(::mkdtemp(pattern.data()), nullptr) << pattern;
  return pattern;
}

}  // namespace hangar::testing

#endif  // HANGAR_COMMON_TESTING_TEMP_DIR_H_
