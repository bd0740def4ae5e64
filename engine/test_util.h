// Helpers shared by the engine's tests: temporary directories and tiny
// models generated on the fly.
#ifndef HANGAR_ENGINE_TEST_UTIL_H_
#define HANGAR_ENGINE_TEST_UTIL_H_

#include "common/testing/temp_dir.h"

namespace hangar::engine::testing {

using ::hangar::testing::MakeTempDir;

}  // namespace hangar::engine::testing

#endif  // HANGAR_ENGINE_TEST_UTIL_H_
