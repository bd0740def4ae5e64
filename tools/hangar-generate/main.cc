// hangar-generate: try a model outside the suite (like llama.cpp's CLI).
//
//   hangar-generate --model /models/tiny --prompt "Once upon a time" \
//       --max-tokens 32 --temperature 0
//   hangar-generate --model tiny.gguf --prompt-ids 0,5,9 --print-ids --batch 4
//
// Tokens are printed as they are produced (with --batch N > 1, sequence 0
// streams and the others are printed when done); prompt and decode speed go
// to stderr. Flags use the spelling of issue 3 (dashes), so they are parsed
// here rather than with absl::flags.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/batch_decoder.h"
#include "engine/kernels.h"
#include "engine/model.h"

namespace {

constexpr char kUsage[] = R"(usage: hangar-generate --model PATH (--prompt TEXT | --prompt-ids 1,2,3) [options]
  --model PATH        Hugging Face directory, GGUF file or optimized artifact
  --prompt TEXT       prompt text (BOS added as the tokenizer says)
  --prompt-ids LIST   prompt as comma-separated token ids
  --max-tokens N      tokens to generate (default 64)
  --temperature T     0 = greedy (default 0.8)
  --top-k K           0 = off (default 40)
  --top-p P           in (0, 1] (default 0.95)
  --seed S            random seed (default: random)
  --stop TEXT         stop sequence (repeatable)
  --threads N         kernel threads (default: all cores)
  --batch N           decode N copies of the prompt together (default 1)
  --print-ids         print generated token ids instead of text
  --ignore-eos        keep generating past end-of-sequence tokens
)";

struct Args {
  std::map<std::string, std::string> values;
  std::vector<std::string> stops;
  bool print_ids = false;
  bool ignore_eos = false;
};

bool Parse(int argc, char** argv, Args* args, std::string* error) {
  static const char* kValued[] = {"model", "prompt", "prompt-ids", "max-tokens", "temperature", "top-k",
                                  "top-p", "seed", "stop", "threads", "batch"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      *error = "";
      return false;
    }
    if (a.rfind("--", 0) != 0) {
      *error = "unexpected argument '" + a + "'";
      return false;
    }
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "print-ids") {
      args->print_ids = true;
      continue;
    }
    if (name == "ignore-eos") {
      args->ignore_eos = true;
      continue;
    }
    bool known = false;
    for (const char* k : kValued) known = known || name == k;
    if (!known) {
      *error = "unknown flag --" + name;
      return false;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        *error = "--" + name + " needs a value";
        return false;
      }
      value = argv[++i];
    }
    if (name == "stop") {
      args->stops.push_back(value);
    } else {
      args->values[name] = value;
    }
  }
  return true;
}

int Fail(const std::string& msg) {
  std::cerr << "hangar-generate: " << msg << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using hangar::engine::BatchDecoder;
  using hangar::engine::Model;
  Args args;
  std::string error;
  if (!Parse(argc, argv, &args, &error)) {
    if (!error.empty()) std::cerr << "hangar-generate: " << error << "\n";
    std::cerr << kUsage;
    return error.empty() ? 0 : 2;
  }
  auto get = [&](const std::string& k, const std::string& def) {
    auto it = args.values.find(k);
    return it == args.values.end() ? def : it->second;
  };
  if (get("model", "").empty() || (get("prompt", "").empty() && get("prompt-ids", "").empty())) {
    std::cerr << "hangar-generate: --model and --prompt or --prompt-ids are required\n" << kUsage;
    return 2;
  }
  int max_tokens, threads, batch, top_k;
  float temperature, top_p;
  if (!absl::SimpleAtoi(get("max-tokens", "64"), &max_tokens) || !absl::SimpleAtoi(get("threads", "0"), &threads) ||
      !absl::SimpleAtoi(get("batch", "1"), &batch) || !absl::SimpleAtoi(get("top-k", "40"), &top_k) ||
      !absl::SimpleAtof(get("temperature", "0.8"), &temperature) ||
      !absl::SimpleAtof(get("top-p", "0.95"), &top_p)) {
    return Fail("a numeric flag has a value that is not a number");
  }
  if (batch < 1 || batch > 256) return Fail("--batch: must be in [1, 256]");

  auto t0 = std::chrono::steady_clock::now();
  auto model_or = Model::Load(get("model", ""), {.threads = threads});
  if (!model_or.ok()) return Fail(std::string(model_or.status().message()));
  std::unique_ptr<Model> model = std::move(model_or).value();
  const auto& info = model->info();
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "model: " << info.architecture << " (" << info.format << "), " << info.parameters / 1e6
            << "M parameters, " << info.quantization << ", context " << info.context_length << ", "
            << model->threads() << " threads, kernels " << hangar::engine::KernelIsaName(hangar::engine::ActiveKernelIsa())
            << ", loaded in " << load_s << " s\n";

  std::vector<int> prompt;
  if (!get("prompt-ids", "").empty()) {
    for (absl::string_view part : absl::StrSplit(get("prompt-ids", ""), ',', absl::SkipEmpty())) {
      int id;
      if (!absl::SimpleAtoi(part, &id)) return Fail("--prompt-ids: '" + std::string(part) + "' is not an integer");
      prompt.push_back(id);
    }
  } else {
    auto ids = model->tokenizer().Encode(get("prompt", ""));
    if (!ids.ok()) return Fail(std::string(ids.status().message()));
    prompt = *ids;
  }
  hangar::engine::SamplingParams sp;
  sp.temperature = temperature;
  sp.top_k = top_k;
  sp.top_p = top_p;
  sp.max_new_tokens = max_tokens;
  sp.stop = args.stops;
  sp.ignore_eos = args.ignore_eos;
  if (!get("seed", "").empty()) {
    if (!absl::SimpleAtoi(get("seed", ""), &sp.seed)) return Fail("--seed: not an integer");
    sp.has_seed = true;
  }
  int context = std::min<int>(model->context_length(), int(prompt.size()) + max_tokens);
  auto decoder_or = BatchDecoder::Create(model.get(), {.max_batch = batch, .max_context = context,
                                                       .prefill_chunk = std::max<int>(256, int(prompt.size()) * batch)});
  if (!decoder_or.ok()) return Fail(std::string(decoder_or.status().message()));
  auto decoder = std::move(decoder_or).value();
  std::vector<uint64_t> ids;
  for (int b = 0; b < batch; ++b) {
    auto id = decoder->Add({.prompt_ids = prompt, .sampling = sp});
    if (!id.ok()) return Fail(std::string(id.status().message()));
    ids.push_back(*id);
  }
  std::map<uint64_t, std::string> outputs;
  std::map<uint64_t, std::string> reasons;
  int generated = 0, first_tokens = 0;
  double prefill_s = 0;
  auto start = std::chrono::steady_clock::now();
  while (decoder->HasWork()) {
    auto events = decoder->Step();
    if (!events.ok()) return Fail(std::string(events.status().message()));
    for (const auto& e : *events) {
      if (e.token >= 0) {
        ++generated;
        if (e.generated_tokens == 1) ++first_tokens;
        std::string piece = args.print_ids ? std::to_string(e.token) + " " : e.text;
        if (e.id == ids[0]) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        } else {
          outputs[e.id] += piece;
        }
      }
      if (e.finished) reasons[e.id] = hangar::engine::FinishReasonName(e.reason);
    }
    if (prefill_s == 0 && first_tokens == batch) {
      prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  }
  double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\n");
  for (size_t b = 1; b < ids.size(); ++b) std::printf("[seq %zu] %s\n", b, outputs[ids[b]].c_str());
  int decode_tokens = generated - batch;
  double decode_s = total_s - prefill_s;
  std::fprintf(stderr, "finish: %s\n", reasons[ids[0]].c_str());
  std::fprintf(stderr, "prompt: %zu tokens x %d in %.3f s (%.1f tokens/s)\n", prompt.size(), batch, prefill_s,
               prefill_s > 0 ? double(prompt.size()) * batch / prefill_s : 0.0);
  std::fprintf(stderr, "decode: %d tokens in %.3f s (%.1f tokens/s)\n", decode_tokens, decode_s,
               decode_s > 0 ? decode_tokens / decode_s : 0.0);
  return 0;
}
