#include "services/runner/generation_loop.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::runner {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

class GenerationLoopTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string dir = hangar::testing::MakeTempDir("runner-tiny");
    engine::TinyModelOptions options;  // ~1 M parameters
    ASSERT_THAT(engine::WriteTinyModel(options, dir), IsOk());
    auto model = engine::Model::Load(dir, {.threads = 1});
    ASSERT_THAT(model, IsOk());
    model_ = std::move(model).value().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }

  std::unique_ptr<GenerationLoop> MakeLoop(GenerationLoopOptions options) {
    auto loop = GenerationLoop::Create(model_, options);
    EXPECT_THAT(loop, IsOk());
    return loop.ok() ? std::move(loop).value() : nullptr;
  }

  // Reads a call to the end; returns the events by sequence.
  static std::vector<std::vector<GenerationEvent>> Drain(Call& call) {
    std::vector<std::vector<GenerationEvent>> by_sequence(call.sequences());
    GenerationEvent event;
    while (true) {
      Call::NextResult next = call.Next(&event, absl::Seconds(60));
      if (next == Call::kDone) break;
      EXPECT_EQ(next, Call::kEvent) << "no event within 60 s";
      if (next != Call::kEvent) break;
      by_sequence[event.index].push_back(event);
    }
    return by_sequence;
  }

  static engine::SamplingParams Greedy(int max_tokens) {
    return {.temperature = 0, .max_new_tokens = max_tokens, .ignore_eos = true};
  }

  static engine::Model* model_;
};

engine::Model* GenerationLoopTest::model_ = nullptr;

TEST_F(GenerationLoopTest, SequencesOfOneCallFinishIndependently) {
  auto loop = MakeLoop({.max_batch = 4});
  ASSERT_NE(loop, nullptr);
  auto call = loop->Submit({{.prompt = "Once upon a time", .sampling = Greedy(3)},
                            {.prompt = "The cat", .sampling = Greedy(9)},
                            {.prompt_ids = {5, 6, 7}, .sampling = Greedy(5)}});
  ASSERT_THAT(call, IsOk());
  auto events = Drain(**call);
  const int expected[] = {3, 9, 5};
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(events[i].empty()) << i;
    const GenerationEvent& last = events[i].back();
    EXPECT_TRUE(last.finished) << i;
    EXPECT_EQ(last.reason, engine::FinishReason::kLength) << i;
    EXPECT_EQ(last.completion_tokens, expected[i]) << i;
    int tokens = 0;
    for (const GenerationEvent& event : events[i]) {
      tokens += static_cast<int>(event.token_ids.size());
    }
    EXPECT_EQ(tokens, expected[i]) << i;
  }
  EXPECT_EQ(events[2].back().prompt_tokens, 3);
}

TEST_F(GenerationLoopTest, GreedyGenerationIsDeterministic) {
  auto loop = MakeLoop({.max_batch = 2});
  ASSERT_NE(loop, nullptr);
  auto run = [&] {
    auto call = loop->Submit({{.prompt = "Hello there", .sampling = Greedy(12)}});
    EXPECT_THAT(call, IsOk());
    std::vector<int> ids;
    auto events = Drain(**call);
    for (const auto& event : events[0]) {
      ids.insert(ids.end(), event.token_ids.begin(), event.token_ids.end());
    }
    return ids;
  };
  std::vector<int> first = run();
  EXPECT_EQ(first.size(), 12u);
  EXPECT_EQ(run(), first);
}

TEST_F(GenerationLoopTest, BadInputIsRefusedNamingSequenceAndField) {
  auto loop = MakeLoop({.max_batch = 2, .max_context = 64});
  ASSERT_NE(loop, nullptr);
  auto ok = engine::SamplingParams{.temperature = 0.5f};
  auto with = [&](auto change) {
    engine::SamplingParams params = ok;
    change(params);
    return params;
  };
  EXPECT_THAT(
      loop->Submit({{.prompt = "a", .sampling = ok},
                    {.prompt = "b", .sampling = with([](auto& p) {
                       p.top_p = 1.5f;
                     })}}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("sequences[1]"), HasSubstr("top_p"))));
  EXPECT_THAT(loop->Submit({{.prompt = "a", .sampling = with([](auto& p) {
                               p.temperature =
                                   std::numeric_limits<float>::quiet_NaN();
                             })}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("temperature")));
  EXPECT_THAT(loop->Submit({{.prompt = "a", .sampling = with([](auto& p) {
                               p.top_k = -1;
                             })}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_k")));
  EXPECT_THAT(loop->Submit({{.prompt = "bad \xC3\x28 utf8", .sampling = ok}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
  EXPECT_THAT(loop->Submit({{.sampling = ok}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sequences[0].prompt")));
  EXPECT_THAT(loop->Submit({{.prompt = "a", .prompt_ids = {1}, .sampling = ok}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not both")));
  EXPECT_THAT(loop->Submit({{.prompt_ids = {1, 1 << 30}, .sampling = ok}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("prompt_ids")));
  std::vector<int> long_prompt(64, 5);
  EXPECT_THAT(loop->Submit({{.prompt_ids = long_prompt, .sampling = ok}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("context")));
  EXPECT_THAT(loop->Submit({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("sequences")));
  // Nothing of the refused calls was queued.
  EXPECT_EQ(loop->queued(), 0);
  EXPECT_EQ(loop->active(), 0);
}

TEST_F(GenerationLoopTest, FullQueueIsResourceExhausted) {
  auto loop = MakeLoop({.max_batch = 1, .max_queue = 1});
  ASSERT_NE(loop, nullptr);
  EXPECT_THAT(loop->Submit({{.prompt = "a", .sampling = Greedy(2)},
                            {.prompt = "b", .sampling = Greedy(2)},
                            {.prompt = "c", .sampling = Greedy(2)}}),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("queue full")));
  // One slot plus one queue place: two fit.
  auto call = loop->Submit({{.prompt = "a", .sampling = Greedy(2)},
                            {.prompt = "b", .sampling = Greedy(2)}});
  ASSERT_THAT(call, IsOk());
  auto events = Drain(**call);
  EXPECT_EQ(events[0].back().completion_tokens, 2);
  EXPECT_EQ(events[1].back().completion_tokens, 2);
}

TEST_F(GenerationLoopTest, CancelStopsRunningAndQueuedSequences) {
  auto loop = MakeLoop({.max_batch = 1, .max_context = 512});
  ASSERT_NE(loop, nullptr);
  auto running = loop->Submit({{.prompt = "a", .sampling = Greedy(400)}});
  ASSERT_THAT(running, IsOk());
  // With one slot, this one waits in the queue behind `running`.
  auto queued = loop->Submit({{.prompt = "b", .sampling = Greedy(400)}});
  ASSERT_THAT(queued, IsOk());

  GenerationEvent event;
  ASSERT_EQ((*running)->Next(&event, absl::Seconds(60)), Call::kEvent);
  loop->Cancel(*queued);
  loop->Cancel(*running);

  auto queued_events = Drain(**queued);
  ASSERT_EQ(queued_events[0].size(), 1u);
  EXPECT_EQ(queued_events[0][0].reason, engine::FinishReason::kCancelled);
  EXPECT_EQ(queued_events[0][0].completion_tokens, 0);

  auto running_events = Drain(**running);
  ASSERT_FALSE(running_events[0].empty());
  EXPECT_EQ(running_events[0].back().reason, engine::FinishReason::kCancelled);
  EXPECT_LT(running_events[0].back().completion_tokens, 400);
  EXPECT_EQ(loop->active(), 0);
}

TEST_F(GenerationLoopTest, StopSequenceEndsOneSequenceWhileOthersContinue) {
  auto loop = MakeLoop({.max_batch = 2});
  ASSERT_NE(loop, nullptr);
  // Learn what greedy decoding produces, then stop on a piece of it.
  // (The probe has the same batch shape as the real run, so the arithmetic,
  // and so the greedy tokens, are the same.)
  auto probe = loop->Submit({{.prompt = "The dog", .sampling = Greedy(16)},
                             {.prompt = "The dog", .sampling = Greedy(16)}});
  ASSERT_THAT(probe, IsOk());
  std::string text;
  auto probe_events = Drain(**probe);
  for (const auto& event : probe_events[0]) text += event.text;
  ASSERT_GE(text.size(), 4u);
  // Two ASCII bytes from the second half (a stop must be whole UTF-8).
  size_t at = text.size() / 2;
  while (at + 1 < text.size() &&
         (static_cast<unsigned char>(text[at]) >= 0x80 ||
          static_cast<unsigned char>(text[at + 1]) >= 0x80)) {
    ++at;
  }
  ASSERT_LT(at + 1, text.size()) << "no ASCII pair in: " << text;
  std::string stop = text.substr(at, 2);
  size_t cut = text.find(stop);

  engine::SamplingParams stopping = Greedy(16);
  stopping.stop = {stop};
  auto call = loop->Submit({{.prompt = "The dog", .sampling = stopping},
                            {.prompt = "The dog", .sampling = Greedy(16)}});
  ASSERT_THAT(call, IsOk());
  auto events = Drain(**call);
  std::string stopped;
  for (const auto& event : events[0]) stopped += event.text;
  EXPECT_EQ(events[0].back().reason, engine::FinishReason::kStop);
  EXPECT_EQ(stopped, text.substr(0, cut));
  EXPECT_EQ(events[1].back().reason, engine::FinishReason::kLength);
  EXPECT_EQ(events[1].back().completion_tokens, 16);
}

}  // namespace
}  // namespace hangar::runner
