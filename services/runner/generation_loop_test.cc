#include "services/runner/generation_loop.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/testing/fake_clock.h"
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Reads calls the way the gRPC reactor does: Pop what is there, then wait
// for the loop's listener (real time, bounded) instead of polling.
class Reader {
 public:
  std::function<void()> Listener() {
    return [this] {
      absl::MutexLock lock(&mu_);
      ++wakes_;
    };
  }

  // Reads `call` to the end; the events by sequence index.
  std::vector<std::vector<GenerationEvent>> Drain(Call& call) {
    std::vector<std::vector<GenerationEvent>> by_sequence(call.sequences());
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (true) {
      const int seen = wakes();
      GenerationEvent event;
      while (call.Pop(&event)) by_sequence[event.index].push_back(event);
      if (call.Done()) break;
      if (!WaitForWake(seen, deadline)) {
        ADD_FAILURE() << "no event within 60 s";
        break;
      }
    }
    return by_sequence;
  }

  // Waits for the next event of `call`.
  bool Next(Call& call, GenerationEvent* event) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (true) {
      const int seen = wakes();
      if (call.Pop(event)) return true;
      if (call.Done() || !WaitForWake(seen, deadline)) return false;
    }
  }

 private:
  int wakes() {
    absl::MutexLock lock(&mu_);
    return wakes_;
  }
  bool WaitForWake(int seen, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto woken = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return wakes_ != seen;
    };
    return mu_.AwaitWithDeadline(absl::Condition(&woken), deadline);
  }

  absl::Mutex mu_;
  int wakes_ ABSL_GUARDED_BY(mu_) = 0;
};

v1::SamplingOverrides Greedy(int max_tokens) {
  v1::SamplingOverrides sampling;
  sampling.set_temperature(0);
  sampling.set_max_tokens(max_tokens);
  return sampling;
}

int Tokens(const std::vector<GenerationEvent>& events) {
  int tokens = 0;
  for (const GenerationEvent& event : events) {
    tokens += static_cast<int>(event.token_ids.size());
  }
  return tokens;
}

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

  // A loop whose lengths are exact (EOS ignored) and whose deployment allows
  // 500 new tokens.
  std::unique_ptr<GenerationLoop> MakeLoop(GenerationLoopOptions options) {
    options.ignore_eos = true;
    if (!options.sampling.has_max_tokens()) {
      options.sampling.set_max_tokens(
          std::min(500, options.max_context == 0 ? 500 : options.max_context));
    }
    auto loop = GenerationLoop::Create(model_, options);
    EXPECT_THAT(loop, IsOk());
    return loop.ok() ? std::move(loop).value() : nullptr;
  }

  static engine::Model* model_;
  Reader reader_;
};

engine::Model* GenerationLoopTest::model_ = nullptr;

TEST_F(GenerationLoopTest, SequencesOfOneCallFinishIndependently) {
  auto loop = MakeLoop({.max_batch = 4});
  ASSERT_NE(loop, nullptr);
  auto call = loop->Submit(
      {{.id = "a", .prompt = "Once upon a time", .sampling = Greedy(3)},
       {.id = "b", .prompt = "The cat", .sampling = Greedy(9)},
       {.id = "c", .prompt_ids = {5, 6, 7}, .sampling = Greedy(5)}},
      reader_.Listener());
  ASSERT_THAT(call, IsOk());
  auto events = reader_.Drain(**call);
  const int expected[] = {3, 9, 5};
  const char* ids[] = {"a", "b", "c"};
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(events[i].empty()) << i;
    const GenerationEvent& last = events[i].back();
    EXPECT_EQ(last.finish, Finish::kLength) << i;
    EXPECT_EQ(last.sequence_id, ids[i]);
    EXPECT_THAT(last.error, IsOk());
    EXPECT_EQ(last.completion_tokens, expected[i]) << i;
    EXPECT_EQ(Tokens(events[i]), expected[i]) << i;
    for (const GenerationEvent& event : events[i]) {
      EXPECT_EQ(event.sequence_id, ids[i]);
    }
  }
  EXPECT_EQ(events[2].back().prompt_tokens, 3);
}

TEST_F(GenerationLoopTest, GreedyGenerationIsDeterministic) {
  auto loop = MakeLoop({.max_batch = 2});
  ASSERT_NE(loop, nullptr);
  auto run = [&] {
    auto call = loop->Submit(
        {{.id = "x", .prompt = "Hello there", .sampling = Greedy(12)}},
        reader_.Listener());
    EXPECT_THAT(call, IsOk());
    std::vector<int> ids;
    auto events = reader_.Drain(**call);
    for (const auto& event : events[0]) {
      ids.insert(ids.end(), event.token_ids.begin(), event.token_ids.end());
    }
    return ids;
  };
  std::vector<int> first = run();
  EXPECT_EQ(first.size(), 12u);
  // The id is free again once its sequence finished.
  EXPECT_EQ(run(), first);
}

TEST_F(GenerationLoopTest, DeploymentSamplingIsNormalizedAndChecked) {
  auto loop = MakeLoop({.max_batch = 1, .max_context = 64});
  ASSERT_NE(loop, nullptr);
  EXPECT_EQ(loop->sampling().temperature(), 1.0f);
  EXPECT_EQ(loop->sampling().max_tokens(), 64);
  EXPECT_EQ(loop->sampling().top_p(), 1.0f);
  EXPECT_EQ(loop->sampling().top_k(), 0);

  GenerationLoopOptions bad{.max_batch = 1, .max_context = 64};
  bad.sampling.set_top_k(1001);
  EXPECT_THAT(GenerationLoop::Create(model_, bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "sampling.top_k: must be in [0, 1000]; was 1001"));
  bad.sampling.set_top_k(0);
  bad.sampling.set_max_tokens(65);
  EXPECT_THAT(GenerationLoop::Create(model_, bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sampling.max_tokens: must be in [1, 64]")));
}

TEST_F(GenerationLoopTest, InvalidSequencesFinishWithErrorWhileOthersRun) {
  GenerationLoopOptions options{.max_batch = 8, .max_context = 64};
  options.sampling.set_max_tokens(20);
  options.sampling.set_top_p(0.9f);
  auto loop = MakeLoop(options);
  ASSERT_NE(loop, nullptr);
  auto with = [](auto edit) {
    v1::SamplingOverrides sampling = Greedy(6);
    edit(sampling);
    return sampling;
  };
  std::vector<SequenceInput> inputs = {
      {.id = "ok-0", .prompt = "a", .sampling = Greedy(6)},
      {.id = "top-p", .prompt = "b", .sampling = with([](auto& s) {
                                       s.set_top_p(1.5f);
                                     })},
      {.id = "loosen", .prompt = "c", .sampling = with([](auto& s) {
                                        s.set_max_tokens(21);
                                      })},
      {.id = "both", .prompt = "a", .prompt_ids = {1}, .sampling = Greedy(6)},
      {.id = "neither", .sampling = Greedy(6)},
      {.id = "utf8", .prompt = "bad \xC3\x28 utf8", .sampling = Greedy(6)},
      {.id = "long", .prompt_ids = std::vector<int>(64, 5)},
      {.id = "ok-7", .prompt_ids = {1, 2}, .sampling = Greedy(4)},
  };
  auto call = loop->Submit(std::move(inputs), reader_.Listener());
  ASSERT_THAT(call, IsOk());

  // The invalid ones have finished when Submit returns, in order.
  const std::vector<std::pair<int, std::string>> expected_errors = {
      {1, "sequences[1].sampling.top_p: must be in (0, 1]; was 1.5"},
      {2,
       "sequences[2].sampling.max_tokens: must be at most the deployment's 20; "
       "was 21"},
      {3, "sequences[3].prompt: give prompt or prompt_ids, not both"},
      {4, "sequences[4].prompt: one of prompt or prompt_ids is required"},
      {5, "sequences[5].prompt: must be valid UTF-8"},
      {6,
       "sequences[6].prompt_ids: must be shorter than the context of 64 "
       "tokens; was 64 tokens"},
  };
  for (const auto& [index, message] : expected_errors) {
    GenerationEvent event;
    ASSERT_TRUE((*call)->Pop(&event)) << index;
    EXPECT_EQ(event.index, index);
    EXPECT_EQ(event.finish, Finish::kError);
    EXPECT_THAT(event.error,
                StatusIs(absl::StatusCode::kInvalidArgument, message));
  }
  auto events = reader_.Drain(**call);
  EXPECT_EQ(events[0].back().finish, Finish::kLength);
  EXPECT_EQ(Tokens(events[0]), 6);
  EXPECT_EQ(events[7].back().finish, Finish::kLength);
  EXPECT_EQ(Tokens(events[7]), 4);
  for (int i = 1; i <= 6; ++i) EXPECT_THAT(events[i], IsEmpty()) << i;
}

TEST_F(GenerationLoopTest, CallLevelProblemsRefuseTheWholeCall) {
  auto loop = MakeLoop({.max_batch = 2, .max_context = 512});
  ASSERT_NE(loop, nullptr);
  EXPECT_THAT(loop->Submit({}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sequences: must hold 1 to 2 sequences")));
  EXPECT_THAT(loop->Submit({{.id = "a", .prompt = "a"},
                            {.id = "b", .prompt = "b"},
                            {.id = "c", .prompt = "c"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("(the batch capacity); was 3")));
  EXPECT_THAT(loop->Submit({{.id = "", .prompt = "a"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sequences[0].id: must be 1 to 64 printable "
                                 "ASCII characters")));
  EXPECT_THAT(loop->Submit({{.id = "a", .prompt = "a"},
                            {.id = std::string(65, 'i'), .prompt = "b"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sequences[1].id")));
  EXPECT_THAT(loop->Submit({{.id = "tab\there", .prompt = "a"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sequences[0].id")));
  EXPECT_THAT(loop->Submit({{.id = "same", .prompt = "a"},
                            {.id = "same", .prompt = "b"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "sequences[1].id: duplicates sequences[0].id; was "
                       "\"same\""));
  // An id held by a live sequence of another call.
  auto running =
      loop->Submit({{.id = "live", .prompt = "a", .sampling = Greedy(400)}},
                   reader_.Listener());
  ASSERT_THAT(running, IsOk());
  EXPECT_THAT(loop->Submit({{.id = "other", .prompt = "b"},
                            {.id = "live", .prompt = "b"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("sequences[1].id"),
                             HasSubstr("has not finished"))));
  EXPECT_EQ(loop->queued(), 0);
  EXPECT_EQ(loop->active(), 1);
  loop->Cancel(*running);
  auto events = reader_.Drain(**running);
  EXPECT_EQ(events[0].back().finish, Finish::kCancelled);
}

TEST_F(GenerationLoopTest, FullQueueIsResourceExhausted) {
  auto loop = MakeLoop({.max_batch = 3, .max_queue = 0});
  ASSERT_NE(loop, nullptr);
  auto first =
      loop->Submit({{.id = "a", .prompt = "a", .sampling = Greedy(400)},
                    {.id = "b", .prompt = "b", .sampling = Greedy(400)}},
                   reader_.Listener());
  ASSERT_THAT(first, IsOk());
  // One free slot, no queue: two valid sequences do not fit...
  EXPECT_THAT(
      loop->Submit({{.id = "c", .prompt = "c"}, {.id = "d", .prompt = "d"}}),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("queue full")));
  // ...but one valid and one invalid do: the invalid one takes no place.
  v1::SamplingOverrides loosen;
  loosen.set_max_tokens(100000);
  auto second = loop->Submit({{.id = "c", .prompt = "c", .sampling = Greedy(2)},
                              {.id = "d", .prompt = "d", .sampling = loosen}},
                             reader_.Listener());
  ASSERT_THAT(second, IsOk());
  auto events = reader_.Drain(**second);
  EXPECT_EQ(events[0].back().completion_tokens, 2);
  EXPECT_EQ(events[1].back().finish, Finish::kError);
  loop->Cancel(*first);
  reader_.Drain(**first);
}

TEST_F(GenerationLoopTest, CancelByIdStopsOneSequenceWhileOthersContinue) {
  auto loop = MakeLoop({.max_batch = 4, .max_context = 512});
  ASSERT_NE(loop, nullptr);
  auto call =
      loop->Submit({{.id = "keep-1", .prompt = "a", .sampling = Greedy(30)},
                    {.id = "stop-me", .prompt = "b", .sampling = Greedy(400)},
                    {.id = "keep-2", .prompt = "c", .sampling = Greedy(30)}},
                   reader_.Listener());
  ASSERT_THAT(call, IsOk());
  GenerationEvent event;
  ASSERT_TRUE(reader_.Next(**call, &event));
  std::vector<GenerationEvent> early = {event};

  auto cancelled = loop->Cancel({"stop-me", "never-was", "stop-me"});
  ASSERT_THAT(cancelled, IsOk());
  EXPECT_THAT(cancelled->cancelled, ElementsAre("stop-me"));
  EXPECT_THAT(cancelled->not_found, ElementsAre("never-was"));

  auto events = reader_.Drain(**call);
  events[early[0].index].insert(events[early[0].index].begin(), early[0]);
  EXPECT_EQ(events[1].back().finish, Finish::kCancelled);
  EXPECT_THAT(events[1].back().error, IsOk());
  EXPECT_LT(Tokens(events[1]), 400);
  for (int i : {0, 2}) {
    EXPECT_EQ(events[i].back().finish, Finish::kLength) << i;
    EXPECT_EQ(Tokens(events[i]), 30) << i;
  }
  // Finished sequences are no longer held.
  auto again = loop->Cancel({"keep-1", "stop-me"});
  ASSERT_THAT(again, IsOk());
  EXPECT_THAT(again->cancelled, IsEmpty());
  EXPECT_THAT(again->not_found, ElementsAre("keep-1", "stop-me"));
  EXPECT_THAT(
      loop->Cancel(std::vector<std::string>{}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sequence_ids")));
}

TEST_F(GenerationLoopTest, CancelByIdReachesAQueuedSequence) {
  auto loop = MakeLoop({.max_batch = 1, .max_context = 512});
  ASSERT_NE(loop, nullptr);
  auto running =
      loop->Submit({{.id = "r", .prompt = "a", .sampling = Greedy(400)}},
                   reader_.Listener());
  ASSERT_THAT(running, IsOk());
  Reader queued_reader;
  auto queued =
      loop->Submit({{.id = "q", .prompt = "b", .sampling = Greedy(400)}},
                   queued_reader.Listener());
  ASSERT_THAT(queued, IsOk());
  EXPECT_EQ(loop->queued(), 1);

  auto cancelled = loop->Cancel({"q"});
  ASSERT_THAT(cancelled, IsOk());
  EXPECT_THAT(cancelled->cancelled, ElementsAre("q"));
  EXPECT_EQ(loop->queued(), 0);
  auto queued_events = queued_reader.Drain(**queued);
  ASSERT_EQ(queued_events[0].size(), 1u);
  EXPECT_EQ(queued_events[0][0].finish, Finish::kCancelled);
  EXPECT_EQ(queued_events[0][0].sequence_id, "q");
  EXPECT_EQ(queued_events[0][0].completion_tokens, 0);

  loop->Cancel(*running);
  auto running_events = reader_.Drain(**running);
  EXPECT_EQ(running_events[0].back().finish, Finish::kCancelled);
}

TEST_F(GenerationLoopTest, CancelCallStopsRunningAndQueuedSequences) {
  auto loop = MakeLoop({.max_batch = 1, .max_context = 512});
  ASSERT_NE(loop, nullptr);
  auto running =
      loop->Submit({{.id = "a", .prompt = "a", .sampling = Greedy(400)}},
                   reader_.Listener());
  ASSERT_THAT(running, IsOk());
  // With one slot, this one waits in the queue behind `running`.
  Reader queued_reader;
  auto queued =
      loop->Submit({{.id = "b", .prompt = "b", .sampling = Greedy(400)}},
                   queued_reader.Listener());
  ASSERT_THAT(queued, IsOk());

  GenerationEvent event;
  ASSERT_TRUE(reader_.Next(**running, &event));
  loop->Cancel(*queued);
  loop->Cancel(*running);

  auto queued_events = queued_reader.Drain(**queued);
  ASSERT_EQ(queued_events[0].size(), 1u);
  EXPECT_EQ(queued_events[0][0].finish, Finish::kCancelled);
  EXPECT_EQ(queued_events[0][0].completion_tokens, 0);

  auto running_events = reader_.Drain(**running);
  ASSERT_FALSE(running_events[0].empty());
  EXPECT_EQ(running_events[0].back().finish, Finish::kCancelled);
  EXPECT_LT(running_events[0].back().completion_tokens, 400);
  EXPECT_EQ(loop->active(), 0);
}

TEST_F(GenerationLoopTest, TimeoutEndsASequenceWithDeadlineExceeded) {
  hangar::testing::FakeClock clock;
  auto loop = MakeLoop({.max_batch = 2, .max_context = 512, .clock = &clock});
  ASSERT_NE(loop, nullptr);
  auto call =
      loop->Submit({{.id = "slow",
                     .prompt = "a",
                     .sampling = Greedy(400),
                     .timeout = absl::Seconds(10)},
                    {.id = "free", .prompt = "b", .sampling = Greedy(400)}},
                   reader_.Listener());
  ASSERT_THAT(call, IsOk());
  // Both slots are taken: this one waits, with a shorter timeout.
  Reader queued_reader;
  auto queued = loop->Submit({{.id = "waiting",
                               .prompt = "c",
                               .sampling = Greedy(5),
                               .timeout = absl::Seconds(5)}},
                             queued_reader.Listener());
  ASSERT_THAT(queued, IsOk());

  GenerationEvent event;
  ASSERT_TRUE(reader_.Next(**call, &event));
  clock.Advance(absl::Seconds(11));

  auto queued_events = queued_reader.Drain(**queued);
  ASSERT_EQ(queued_events[0].size(), 1u);
  EXPECT_EQ(queued_events[0][0].finish, Finish::kCancelled);
  EXPECT_THAT(queued_events[0][0].error,
              StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));

  // "slow" is stopped at the next token boundary; "free" is not.
  auto cancelled = loop->Cancel({"free"});
  ASSERT_THAT(cancelled, IsOk());
  auto events = reader_.Drain(**call);
  EXPECT_EQ(events[0].back().finish, Finish::kCancelled);
  EXPECT_THAT(events[0].back().error,
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("timeout of 10s")));
  EXPECT_LT(Tokens(events[0]), 400);
  EXPECT_EQ(events[1].back().finish, Finish::kCancelled);
  EXPECT_THAT(events[1].back().error, IsOk());
}

TEST_F(GenerationLoopTest, NonPositiveTimeoutIsAnErrorOfTheSequence) {
  auto loop = MakeLoop({.max_batch = 2});
  ASSERT_NE(loop, nullptr);
  auto call = loop->Submit(
      {{.id = "zero", .prompt = "a", .timeout = absl::ZeroDuration()},
       {.id = "fine", .prompt = "b", .sampling = Greedy(3)}},
      reader_.Listener());
  ASSERT_THAT(call, IsOk());
  auto events = reader_.Drain(**call);
  EXPECT_EQ(events[0].back().finish, Finish::kError);
  EXPECT_THAT(events[0].back().error,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "sequences[0].timeout: must be positive; was 0"));
  EXPECT_EQ(Tokens(events[1]), 3);
}

TEST_F(GenerationLoopTest, StopSequenceEndsOneSequenceWhileOthersContinue) {
  auto loop = MakeLoop({.max_batch = 2});
  ASSERT_NE(loop, nullptr);
  // Learn what greedy decoding produces, then stop on a piece of it.
  // (The probe has the same batch shape as the real run, so the arithmetic,
  // and so the greedy tokens, are the same.)
  auto probe =
      loop->Submit({{.id = "p0", .prompt = "The dog", .sampling = Greedy(16)},
                    {.id = "p1", .prompt = "The dog", .sampling = Greedy(16)}},
                   reader_.Listener());
  ASSERT_THAT(probe, IsOk());
  std::string text;
  auto probe_events = reader_.Drain(**probe);
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

  v1::SamplingOverrides stopping = Greedy(16);
  stopping.add_stop_sequences(stop);
  auto call =
      loop->Submit({{.id = "s0", .prompt = "The dog", .sampling = stopping},
                    {.id = "s1", .prompt = "The dog", .sampling = Greedy(16)}},
                   reader_.Listener());
  ASSERT_THAT(call, IsOk());
  auto events = reader_.Drain(**call);
  std::string stopped;
  for (const auto& event : events[0]) stopped += event.text;
  EXPECT_EQ(events[0].back().finish, Finish::kStop);
  EXPECT_EQ(stopped, text.substr(0, cut));
  EXPECT_EQ(events[1].back().finish, Finish::kLength);
  EXPECT_EQ(events[1].back().completion_tokens, 16);
}

TEST_F(GenerationLoopTest, DestroyingTheLoopEndsHeldSequencesCancelled) {
  auto loop = MakeLoop({.max_batch = 1, .max_context = 512});
  ASSERT_NE(loop, nullptr);
  auto running =
      loop->Submit({{.id = "a", .prompt = "a", .sampling = Greedy(400)}},
                   reader_.Listener());
  ASSERT_THAT(running, IsOk());
  Reader queued_reader;
  auto queued =
      loop->Submit({{.id = "b", .prompt = "b", .sampling = Greedy(400)}},
                   queued_reader.Listener());
  ASSERT_THAT(queued, IsOk());
  loop.reset();
  auto running_events = reader_.Drain(**running);
  EXPECT_EQ(running_events[0].back().finish, Finish::kCancelled);
  auto queued_events = queued_reader.Drain(**queued);
  EXPECT_EQ(queued_events[0].back().finish, Finish::kCancelled);
}

}  // namespace
}  // namespace hangar::runner
