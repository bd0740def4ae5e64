// Helpers shared by the engine's tests: temporary directories, and the
// logits of every position of a prompt run through a model in one Forward.
#ifndef HANGAR_ENGINE_TEST_UTIL_H_
#define HANGAR_ENGINE_TEST_UTIL_H_

#include <vector>

#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/model.h"
#include "gtest/gtest.h"

namespace hangar::engine::testing {

using ::hangar::testing::MakeTempDir;

// Logits of every position of `ids` (one sequence, prefilled in one Forward
// call): out[i] holds the vocab_size logits after ids[0..i].
inline std::vector<std::vector<float>> AllPositionLogits(
    const Model& model, const std::vector<int>& ids) {
  auto state = model.NewState(1, int(ids.size()), int(ids.size()));
  EXPECT_TRUE(state.ok()) << state.status();
  std::vector<ForwardRow> rows;
  for (size_t i = 0; i < ids.size(); ++i)
    rows.push_back({0, int(i), ids[i], true});
  std::vector<float> flat(ids.size() * size_t(model.vocab_size()));
  EXPECT_OK(model.Forward(rows, state->get(), flat.data()));
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < ids.size(); ++i)
    out.emplace_back(flat.begin() + long(i * size_t(model.vocab_size())),
                     flat.begin() + long((i + 1) * size_t(model.vocab_size())));
  return out;
}

}  // namespace hangar::engine::testing

#endif  // HANGAR_ENGINE_TEST_UTIL_H_
