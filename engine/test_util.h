// Helpers shared by the engine's tests: temporary directories and tiny
// models generated on the fly.
#ifndef HANGAR_ENGINE_TEST_UTIL_H_
#define HANGAR_ENGINE_TEST_UTIL_H_

#include <stdlib.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace hangar::engine::testing {

// A fresh directory under the test's temporary directory.
inline std::string MakeTempDir(const std::string& name) {
  std::string tmpl = absl::StrCat(::testing::TempDir(), "/", name, "-XXXXXX");
  char* dir = ::mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  return tmpl;
}

}  // namespace hangar::engine::testing

#endif  // HANGAR_ENGINE_TEST_UTIL_H_
