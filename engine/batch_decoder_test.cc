#include "engine/batch_decoder.h"

#include <atomic>
#include <cmath>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/file_util.h"
#include "engine/test_util.h"
#include "engine/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::engine {
namespace {

using ::hangar::engine::testing::MakeTempDir;
using ::hangar::testing::StatusIs;
using ::testing::HasSubstr;

struct Output {
  std::vector<int> tokens;
  std::string text;
  FinishReason reason = FinishReason::kNone;
};

// Runs the decoder until idle, collecting per-sequence outputs.
std::map<SequenceId, Output> Drain(BatchDecoder& d) {
  std::map<SequenceId, Output> out;
  for (int guard = 0; d.HasWork() && guard < 10000; ++guard) {
    auto events = d.Step();
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) break;
    for (const SequenceEvent& e : *events) {
      if (e.token >= 0) out[e.id].tokens.push_back(e.token);
      out[e.id].text += e.text;
      if (e.finished) out[e.id].reason = e.reason;
    }
  }
  return out;
}

SamplingParams Greedy(int max_new_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = max_new_tokens;
  p.ignore_eos = true;
  return p;
}

class BatchDecoderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("decoder"));
    TinyModelOptions o;
    o.num_layers = 2;
    ASSERT_OK(WriteTinyModel(o, *dir_));
  }
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(model_, Model::Load(*dir_, {.threads = 2}));
  }
  std::vector<int> Ids(const std::string& text) {
    return *model_->tokenizer().Encode(text);
  }
  Output RunAlone(const std::vector<int>& prompt, const SamplingParams& p) {
    auto d = *BatchDecoder::Create(model_.get(), {.max_batch = 1});
    SequenceId id = *d->Add({prompt, p});
    return Drain(*d)[id];
  }

  static std::string* dir_;
  std::unique_ptr<Model> model_;
};
std::string* BatchDecoderTest::dir_ = nullptr;

TEST_F(BatchDecoderTest, GreedyIsDeterministicAndBatchingDoesNotChangeIt) {
  std::vector<std::vector<int>> prompts = {Ids("Once upon a time"),
                                           Ids("The pilot checked the fuel"),
                                           Ids("Numbers like 42")};
  std::vector<Output> alone;
  for (const auto& p : prompts) alone.push_back(RunAlone(p, Greedy(12)));
  EXPECT_EQ(RunAlone(prompts[0], Greedy(12)).tokens, alone[0].tokens);
  ASSERT_OK_AND_ASSIGN(auto d,
                       BatchDecoder::Create(model_.get(), {.max_batch = 4}));
  std::vector<SequenceId> ids;
  for (const auto& p : prompts) ids.push_back(*d->Add({p, Greedy(12)}));
  auto out = Drain(*d);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(out[ids[i]].tokens, alone[i].tokens) << i;
    EXPECT_EQ(out[ids[i]].tokens.size(), 12u);
    EXPECT_EQ(out[ids[i]].reason, FinishReason::kLength);
    EXPECT_EQ(out[ids[i]].text, model_->tokenizer().Decode(alone[i].tokens));
  }
}

TEST_F(BatchDecoderTest, SequencesJoinAtTokenBoundaries) {
  std::vector<int> a = Ids("The hangar doors opened"), b = Ids("Lily was sad");
  Output a_alone = RunAlone(a, Greedy(10)), b_alone = RunAlone(b, Greedy(6));
  ASSERT_OK_AND_ASSIGN(
      auto d,
      BatchDecoder::Create(model_.get(), {.max_batch = 2, .prefill_chunk = 3}));
  SequenceId ia = *d->Add({a, Greedy(10)});
  std::map<SequenceId, Output> out;
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK_AND_ASSIGN(std::vector<SequenceEvent> events, d->Step());
    for (const auto& e : events) {
      if (e.token >= 0) out[e.id].tokens.push_back(e.token);
    }
  }
  SequenceId ib = *d->Add({b, Greedy(6)});
  for (auto& [id, o] : Drain(*d))
    out[id].tokens.insert(out[id].tokens.end(), o.tokens.begin(),
                          o.tokens.end());
  EXPECT_EQ(out[ia].tokens, a_alone.tokens);
  EXPECT_EQ(out[ib].tokens, b_alone.tokens);
}

TEST_F(BatchDecoderTest, StopEosAndLengthEndOneSequenceWhileOthersContinue) {
  std::vector<int> prompt = Ids("Once upon a time");
  Output ref = RunAlone(prompt, Greedy(12));
  ASSERT_EQ(ref.tokens.size(), 12u);
  // A stop sequence: the text of generated tokens 4 and 5.
  std::string stop = model_->tokenizer().Decode({ref.tokens[4], ref.tokens[5]});
  ASSERT_FALSE(stop.empty());
  std::string before = model_->tokenizer().Decode(
      std::vector<int>(ref.tokens.begin(), ref.tokens.begin() + 4));
  ASSERT_EQ(before.find(stop), std::string::npos) << "pick another stop";

  ASSERT_OK_AND_ASSIGN(auto d,
                       BatchDecoder::Create(model_.get(), {.max_batch = 3}));
  SamplingParams with_stop = Greedy(12);
  with_stop.stop = {stop};
  SequenceId s_stop = *d->Add({prompt, with_stop});
  SequenceId s_len = *d->Add({prompt, Greedy(3)});
  SequenceId s_full = *d->Add({prompt, Greedy(12)});
  auto out = Drain(*d);
  EXPECT_EQ(out[s_stop].reason, FinishReason::kStop);
  EXPECT_EQ(
      out[s_stop].text,
      model_->tokenizer()
          .Decode(std::vector<int>(ref.tokens.begin(), ref.tokens.begin() + 6))
          .substr(0, out[s_stop].text.size()));
  EXPECT_EQ(out[s_stop].text.find(stop), std::string::npos);
  EXPECT_EQ(out[s_len].reason, FinishReason::kLength);
  EXPECT_EQ(out[s_len].tokens.size(), 3u);
  EXPECT_EQ(out[s_full].reason, FinishReason::kLength);
  EXPECT_EQ(out[s_full].tokens, ref.tokens);
}

TEST_F(BatchDecoderTest, EosEndsTheSequence) {
  std::vector<int> prompt = Ids("Once upon a time");
  Output ref = RunAlone(prompt, Greedy(8));
  // Declare the 4th greedy token an end-of-sequence token.
  std::string dir = MakeTempDir("eos");
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json",
                        "tokenizer_config.json"}) {
    ASSERT_OK(
        WriteStringToFile(dir + "/" + f, *ReadFileToString(*dir_ + "/" + f)));
  }
  int eos = ref.tokens[3];
  if (std::find(ref.tokens.begin(), ref.tokens.begin() + 3, eos) !=
      ref.tokens.begin() + 3)
    GTEST_SKIP();
  ASSERT_OK(
      WriteStringToFile(dir + "/generation_config.json",
                        absl::StrCat(R"({"eos_token_id": [1, )", eos, "]}")));
  ASSERT_OK_AND_ASSIGN(auto model, Model::Load(dir, {.threads = 1}));
  ASSERT_OK_AND_ASSIGN(auto d,
                       BatchDecoder::Create(model.get(), {.max_batch = 2}));
  SamplingParams p = Greedy(8);
  p.ignore_eos = false;
  SequenceId stops = *d->Add({prompt, p});
  SequenceId ignores = *d->Add({prompt, Greedy(8)});
  auto out = Drain(*d);
  EXPECT_EQ(out[stops].reason, FinishReason::kEos);
  EXPECT_EQ(out[stops].tokens,
            std::vector<int>(ref.tokens.begin(), ref.tokens.begin() + 4));
  EXPECT_EQ(out[stops].text, model->tokenizer().Decode(std::vector<int>(
                                 ref.tokens.begin(), ref.tokens.begin() + 3)));
  EXPECT_EQ(out[ignores].tokens, ref.tokens);
}

TEST_F(BatchDecoderTest, ContextLengthBoundsPromptPlusOutput) {
  ASSERT_OK_AND_ASSIGN(
      auto d,
      BatchDecoder::Create(model_.get(), {.max_batch = 1, .max_context = 12}));
  std::vector<int> prompt = Ids("The pilot");
  SequenceId id = *d->Add({prompt, Greedy(100)});
  auto out = Drain(*d);
  EXPECT_EQ(out[id].reason, FinishReason::kLength);
  EXPECT_EQ(prompt.size() + out[id].tokens.size(), 12u);
  std::vector<int> long_prompt(12, 5);
  EXPECT_THAT(d->Add({long_prompt, Greedy(1)}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("leave no room in the context of 12")));
}

TEST_F(BatchDecoderTest, SeededSamplingIsReproducible) {
  std::vector<int> prompt = Ids("Once upon a time");
  SamplingParams p;
  p.temperature = 1.2f;
  p.top_k = 50;
  p.top_p = 0.9f;
  p.has_seed = true;
  p.seed = 1234;
  p.max_new_tokens = 16;
  p.ignore_eos = true;
  Output a = RunAlone(prompt, p), b = RunAlone(prompt, p);
  EXPECT_EQ(a.tokens, b.tokens);
  p.seed = 99;
  EXPECT_NE(RunAlone(prompt, p).tokens, a.tokens);
  // top_k = 1 is greedy at any temperature.
  p.top_k = 1;
  EXPECT_EQ(RunAlone(prompt, p).tokens, RunAlone(prompt, Greedy(16)).tokens);
}

TEST_F(BatchDecoderTest, ValidatesRequests) {
  ASSERT_OK_AND_ASSIGN(auto d,
                       BatchDecoder::Create(model_.get(), {.max_batch = 1}));
  EXPECT_GT(d->kv_cache_bytes(), 0);
  std::vector<int> prompt = Ids("hi");
  auto with = [&](auto mutate) {
    SamplingParams p;
    mutate(p);
    return d->Add({prompt, p});
  };
  EXPECT_THAT(with([](SamplingParams& p) { p.temperature = NAN; }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("temperature: must be a finite number >= 0")));
  EXPECT_THAT(
      with([](SamplingParams& p) { p.temperature = -1; }),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("temperature")));
  EXPECT_THAT(with([](SamplingParams& p) { p.top_p = 1.5f; }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("top_p: must be in (0, 1]; was 1.5")));
  EXPECT_THAT(with([](SamplingParams& p) { p.top_p = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p")));
  EXPECT_THAT(with([](SamplingParams& p) { p.top_k = -1; }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("top_k: must be >= 0; was -1")));
  EXPECT_THAT(with([](SamplingParams& p) { p.max_new_tokens = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_new_tokens")));
  EXPECT_THAT(
      with([](SamplingParams& p) { p.stop = {""}; }),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stop[0]")));
  EXPECT_THAT(
      d->Add({{}, SamplingParams{}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt")));
  EXPECT_THAT(d->Add({{1, 1 << 20}, SamplingParams{}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the vocabulary")));
  ASSERT_OK_AND_ASSIGN(SequenceId id, d->Add({prompt, Greedy(5)}));
  EXPECT_THAT(
      d->Add({prompt, Greedy(5)}),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("slots")));
  // Cancel frees the slot with a final event.
  EXPECT_OK(d->Cancel(id));
  auto events = *d->Step();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].finished);
  EXPECT_EQ(events[0].reason, FinishReason::kCancelled);
  EXPECT_EQ(std::string(FinishReasonName(events[0].reason)), "cancelled");
  EXPECT_THAT(d->Cancel(id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("not active")));
  EXPECT_FALSE(d->HasWork());
  EXPECT_OK(d->Add({prompt, Greedy(5)}).status());
  EXPECT_THAT(BatchDecoder::Create(model_.get(), {.max_batch = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_batch: must be in [1, 256]; was 0")));
}

TEST_F(BatchDecoderTest, AddAndCancelFromOtherThreadsWhileStepping) {
  ASSERT_OK_AND_ASSIGN(auto d,
                       BatchDecoder::Create(model_.get(), {.max_batch = 4}));
  std::vector<int> prompt = Ids("The pilot");
  Output ref = RunAlone(prompt, Greedy(6));
  constexpr int kSequences = 24;
  std::atomic<int> added{0};
  std::vector<SequenceId> ids(kSequences);
  std::vector<bool> cancelled(kSequences, false);
  std::thread producer([&] {
    for (int i = 0; i < kSequences;) {
      // Every fifth is cancelled; give it room so it is still running.
      auto id = d->Add({prompt, Greedy((i + 1) % 5 == 0 ? 400 : 6)});
      if (id.ok()) {
        ids[size_t(i++)] = *id;
        added.fetch_add(1);
        // NOT_FOUND only if it already ended (a very slow producer).
        if (i % 5 == 0) cancelled[size_t(i - 1)] = d->Cancel(*id).ok();
      } else {
        ASSERT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
        std::this_thread::yield();
      }
    }
  });
  std::map<SequenceId, Output> out;
  int finished = 0;
  while (finished < kSequences) {
    ASSERT_OK_AND_ASSIGN(auto events, d->Step());
    for (const auto& e : events) {
      if (e.token >= 0) out[e.id].tokens.push_back(e.token);
      if (e.finished) {
        out[e.id].reason = e.reason;
        ++finished;
      }
    }
    if (events.empty()) std::this_thread::yield();
  }
  producer.join();
  EXPECT_EQ(added.load(), kSequences);
  for (int i = 0; i < kSequences; ++i) {
    const Output& o = out[ids[size_t(i)]];
    if ((i + 1) % 5 == 0) {
      EXPECT_EQ(o.reason, cancelled[size_t(i)] ? FinishReason::kCancelled
                                               : FinishReason::kLength)
          << i;
    } else {
      EXPECT_EQ(o.reason, FinishReason::kLength) << i;
      EXPECT_EQ(o.tokens, ref.tokens) << i;
    }
  }
  EXPECT_FALSE(d->HasWork());
}

}  // namespace
}  // namespace hangar::engine
