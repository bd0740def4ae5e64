// generation_loop_bench: the runner's batching gain without gRPC. The load
// of gateway_bench's section (a) — closed-loop clients, one greedy sequence
// of "Once upon a time" and `--tokens` new tokens each — submitted straight
// to a GenerationLoop over the "small" preset, at max_batch 1 and 8, side by
// side in one run. Comparing its ratio with gateway_bench's "direct to the
// runner" ratio separates the loop and engine from the gRPC layer.
//
//   generation_loop_bench [--seconds=3] [--clients=32] [--tokens=32]
//                         [--batches=1,8]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/model.h"
#include "engine/tiny_model.h"
#include "services/runner/generation_loop.h"

namespace hangar::runner {
namespace {

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "generation_loop_bench: %s\n", message.c_str());
  std::exit(1);
}

struct Result {
  // Completion tokens that arrived inside the measuring window (after a
  // warm-up), per second of the window: the loop's steady throughput.
  double window_tokens_per_s = 0;
  // gateway_bench's way: every token of every call started before the end,
  // over the nominal duration (calls still queued at the end finish later
  // and count too, which favours the deepest queue, i.e. small batches).
  double started_tokens_per_s = 0;
  // Every token over the time until the last call finished.
  double drained_tokens_per_s = 0;
};

Result Drive(const engine::Model* model, int max_batch, int clients, int tokens,
             absl::Duration duration) {
  GenerationLoopOptions options{.max_batch = max_batch};
  options.sampling.set_max_tokens(256);
  auto loop = GenerationLoop::Create(model, options);
  if (!loop.ok()) Die(std::string(loop.status().message()));
  std::atomic<int64_t> window_tokens{0};
  std::atomic<int64_t> total_tokens{0};
  std::atomic<int64_t> next_id{0};
  const absl::Duration warmup = absl::Milliseconds(500);
  const absl::Time begin = absl::Now();
  const absl::Time window_start = begin + warmup;
  const absl::Time end = window_start + duration;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      // Shared with the listener, which may run after this thread moved on.
      struct Wake {
        absl::Mutex mu;
        bool woken ABSL_GUARDED_BY(mu) = false;
      };
      auto wake = std::make_shared<Wake>();
      while (absl::Now() < end) {
        SequenceInput input{.id = absl::StrCat("s", next_id.fetch_add(1)),
                            .prompt = "Once upon a time"};
        input.sampling.set_temperature(0);
        input.sampling.set_max_tokens(tokens);
        std::vector<SequenceInput> inputs;
        inputs.push_back(std::move(input));
        auto call = (*loop)->Submit(std::move(inputs), [wake] {
          absl::MutexLock lock(&wake->mu);
          wake->woken = true;
        });
        if (!call.ok()) Die(std::string(call.status().message()));
        while (true) {
          GenerationEvent event;
          while ((*call)->Pop(&event)) {
            const int64_t n = static_cast<int64_t>(event.token_ids.size());
            const absl::Time now = absl::Now();
            if (now >= window_start && now < end) window_tokens += n;
            total_tokens += n;
          }
          if ((*call)->Done()) break;
          absl::MutexLock lock(&wake->mu);
          wake->mu.Await(absl::Condition(&wake->woken));
          wake->woken = false;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const double drained = absl::ToDoubleSeconds(absl::Now() - begin);
  const double seconds = absl::ToDoubleSeconds(duration);
  return {.window_tokens_per_s = window_tokens / seconds,
          .started_tokens_per_s = total_tokens / (seconds + 0.5),
          .drained_tokens_per_s = total_tokens / drained};
}

// Median milliseconds of one decoder step: `batch` sequences that each
// prefill a `prompt`-token prompt in one step (prefill), then decode.
void StepTimes(const engine::Model* model, const std::vector<int>& prompt,
               int batch) {
  std::vector<double> prefill, decode;
  for (int round = 0; round < 7; ++round) {
    auto decoder = engine::BatchDecoder::Create(model, {.max_batch = batch});
    if (!decoder.ok()) Die(std::string(decoder.status().message()));
    for (int b = 0; b < batch; ++b) {
      if (!(*decoder)
               ->Add({.prompt_ids = prompt,
                      .sampling = {.temperature = 0,
                                   .max_new_tokens = 64,
                                   .ignore_eos = true}})
               .ok()) {
        Die("add failed");
      }
    }
    absl::Time start = absl::Now();
    (void)(*decoder)->Step();
    prefill.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    for (int i = 0; i < 16; ++i) (void)(*decoder)->Step();  // warm-up
    start = absl::Now();
    for (int i = 0; i < 32; ++i) (void)(*decoder)->Step();
    decode.push_back(absl::ToDoubleMilliseconds(absl::Now() - start) / 32);
  }
  std::sort(prefill.begin(), prefill.end());
  std::sort(decode.begin(), decode.end());
  std::printf(
      "  batch %2d: prefill step (%2d x %zu rows) %6.2f ms, decode step "
      "%6.2f ms\n",
      batch, batch, prompt.size(), prefill[prefill.size() / 2],
      decode[decode.size() / 2]);
}

int Main(int argc, char** argv) {
  int seconds = 3, clients = 32, tokens = 32;
  std::vector<int> batches = {1, 8};
  bool steps = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](absl::string_view flag) -> std::string {
      return arg.substr(flag.size());
    };
    bool ok = true;
    if (arg.rfind("--seconds=", 0) == 0) {
      ok = absl::SimpleAtoi(value("--seconds="), &seconds);
    } else if (arg.rfind("--clients=", 0) == 0) {
      ok = absl::SimpleAtoi(value("--clients="), &clients);
    } else if (arg.rfind("--tokens=", 0) == 0) {
      ok = absl::SimpleAtoi(value("--tokens="), &tokens);
    } else if (arg == "--steps") {
      steps = true;
    } else if (arg.rfind("--batches=", 0) == 0) {
      batches.clear();
      for (absl::string_view b : absl::StrSplit(value("--batches="), ',')) {
        int n = 0;
        ok = ok && absl::SimpleAtoi(b, &n);
        batches.push_back(n);
      }
    } else {
      ok = false;
    }
    if (!ok) {
      Die("usage: generation_loop_bench [--seconds=N] [--clients=N] "
          "[--tokens=N] [--batches=1,8]");
    }
  }
  char dir[] = "/tmp/generation-loop-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) Die("mkdtemp failed");
  auto preset = engine::TinyModelPreset("small");
  if (!preset.ok() || !engine::WriteTinyModel(*preset, dir).ok()) {
    Die("cannot write the small model");
  }
  auto model = engine::Model::Load(dir, {});
  if (!model.ok()) Die(std::string(model.status().message()));
  auto prompt = (*model)->tokenizer().Encode("Once upon a time");
  std::printf(
      "small preset, prompt of %zu tokens, %d clients, %d tokens each\n",
      prompt.ok() ? prompt->size() : size_t{0}, clients, tokens);
  if (steps) {
    for (int batch : batches) StepTimes(model->get(), *prompt, batch);
    return 0;
  }
  std::vector<Result> results;
  for (int batch : batches) {
    results.push_back(
        Drive(model->get(), batch, clients, tokens, absl::Seconds(seconds)));
    const Result& r = results.back();
    std::printf(
        "  max_batch %3d: %7.0f tokens/s in the window, %7.0f drained, "
        "%7.0f counted as gateway_bench does\n",
        batch, r.window_tokens_per_s, r.drained_tokens_per_s,
        r.started_tokens_per_s);
  }
  for (size_t i = 1; i < results.size(); ++i) {
    const Result &a = results[0], &b = results[i];
    std::printf(
        "  ratio %d vs %d: %.2fx in the window, %.2fx drained, %.2fx counted "
        "as gateway_bench does\n",
        batches[i], batches[0],
        b.window_tokens_per_s / std::max(a.window_tokens_per_s, 1e-9),
        b.drained_tokens_per_s / std::max(a.drained_tokens_per_s, 1e-9),
        b.started_tokens_per_s / std::max(a.started_tokens_per_s, 1e-9));
  }
  return 0;
}

}  // namespace
}  // namespace hangar::runner

int main(int argc, char** argv) { return hangar::runner::Main(argc, argv); }
