// hangar-generate: try a model outside the suite (like llama.cpp's CLI).
//
//   hangar-generate --model /models/tiny --prompt "Once upon a time" \
//       --max-tokens 32 --temperature 0
//   hangar-generate --model tiny.gguf --prompt-ids 0,5,9 --print-ids --batch 4
//
// Tokens are printed as they are produced (with --batch N > 1, sequence 0
// streams and the others are printed when done); prompt and decode speed go
// to stderr. Flags use the spelling of issue 3 (dashes: --max-tokens); they
// are defined with underscores (absl flags must be identifiers) and parsed by
// the kit (common/config/flags.h), so --help lists them with their defaults
// and HANGAR_GENERATE_<FLAG> variables may set them. Either spelling works
// on the command line; --stop may be repeated.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/config/flags.h"
#include "engine/batch_decoder.h"
#include "engine/kernels.h"
#include "engine/model.h"

ABSL_FLAG(
    std::string, model, "",
    "Hugging Face directory, GGUF file or optimized artifact (required).");
ABSL_FLAG(std::string, prompt, "",
          "Prompt text (BOS added as the tokenizer says).");
ABSL_FLAG(std::string, prompt_ids, "",
          "Prompt as comma-separated token ids (--prompt-ids works too).");
ABSL_FLAG(int, max_tokens, 64, "Tokens to generate (--max-tokens works too).");
ABSL_FLAG(double, temperature, 0.8, "Sampling temperature; 0 = greedy.");
ABSL_FLAG(int, top_k, 40, "Top-k sampling; 0 = off (--top-k works too).");
ABSL_FLAG(double, top_p, 0.95,
          "Nucleus sampling, in (0, 1] (--top-p works too).");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt,
          "Random seed; unset: random.");
ABSL_FLAG(std::vector<std::string>, stop, {},
          "Stop sequence; repeat --stop for several (the environment variable "
          "takes a comma-separated list).");
ABSL_FLAG(int, threads, 0, "Kernel threads; 0 = all cores.");
ABSL_FLAG(int, batch, 1,
          "Decode N copies of the prompt together, in [1, 256].");
ABSL_FLAG(bool, print_ids, false,
          "Print generated token ids instead of text (--print-ids works too).");
ABSL_FLAG(
    bool, ignore_eos, false,
    "Keep generating past end-of-sequence tokens (--ignore-eos works too).");

namespace {

// The command line with dashed flag names spelled with underscores and the
// --stop values taken out (each one whole, commas included), checked for
// unknown flags and stray arguments. False with `error` set on bad input.
bool Normalize(int argc, char** argv, std::vector<std::string>* args,
               std::vector<std::string>* stops, std::string* error) {
  static const std::set<std::string> kValued = {
      "model", "prompt", "prompt_ids", "max_tokens", "temperature", "top_k",
      "top_p", "seed",   "stop",       "threads",    "batch"};
  static const std::set<std::string> kBool = {"print_ids", "ignore_eos", "help",
                                              "helpshort", "helpfull"};
  args->push_back(argv[0]);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h") a = "--help";
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
    const std::string spelled = name;
    name = absl::StrReplaceAll(name, {{"-", "_"}});
    if (kBool.count(name) > 0) {
      args->push_back("--" + name + (has_value ? "=" + value : ""));
      continue;
    }
    if (kValued.count(name) == 0) {
      *error = "unknown flag --" + spelled;
      return false;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        *error = "--" + spelled + " needs a value";
        return false;
      }
      value = argv[++i];
    }
    if (name == "stop") {
      stops->push_back(value);
    } else {
      args->push_back("--" + name + "=" + value);
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
  std::vector<std::string> normalized;
  std::vector<std::string> stops;
  std::string error;
  if (!Normalize(argc, argv, &normalized, &stops, &error)) {
    std::cerr << "hangar-generate: " << error << " (see --help)\n";
    return 2;
  }
  std::vector<char*> parse_argv;
  for (std::string& arg : normalized) parse_argv.push_back(arg.data());
  hangar::ParseFlagsWithEnv(static_cast<int>(parse_argv.size()),
                            parse_argv.data(), "HANGAR_GENERATE_",
                            "hangar-generate");
  if (stops.empty()) stops = absl::GetFlag(FLAGS_stop);
  const std::string model_path = absl::GetFlag(FLAGS_model);
  const std::string prompt_text = absl::GetFlag(FLAGS_prompt);
  const std::string prompt_ids = absl::GetFlag(FLAGS_prompt_ids);
  if (model_path.empty() || (prompt_text.empty() && prompt_ids.empty())) {
    std::cerr << "hangar-generate: --model and --prompt or --prompt-ids are "
                 "required (see --help)\n";
    return 2;
  }
  const int max_tokens = absl::GetFlag(FLAGS_max_tokens);
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = absl::GetFlag(FLAGS_batch);
  const int top_k = absl::GetFlag(FLAGS_top_k);
  const float temperature =
      static_cast<float>(absl::GetFlag(FLAGS_temperature));
  const float top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  if (batch < 1 || batch > 256) return Fail("--batch: must be in [1, 256]");

  auto t0 = std::chrono::steady_clock::now();
  auto model_or = Model::Load(model_path, {.threads = threads});
  if (!model_or.ok()) return Fail(std::string(model_or.status().message()));
  std::unique_ptr<Model> model = std::move(model_or).value();
  const auto& info = model->info();
  double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  std::cerr << "model: " << info.architecture << " (" << info.format << "), "
            << info.parameters / 1e6 << "M parameters, " << info.quantization
            << ", context " << info.context_length << ", " << model->threads()
            << " threads, kernels "
            << hangar::engine::KernelIsaName(hangar::engine::ActiveKernelIsa())
            << ", loaded in " << load_s << " s\n";

  std::vector<int> prompt;
  if (!prompt_ids.empty()) {
    for (absl::string_view part :
         absl::StrSplit(prompt_ids, ',', absl::SkipEmpty())) {
      int id;
      if (!absl::SimpleAtoi(part, &id))
        return Fail("--prompt-ids: '" + std::string(part) +
                    "' is not an integer");
      prompt.push_back(id);
    }
  } else {
    auto ids = model->tokenizer().Encode(prompt_text);
    if (!ids.ok()) return Fail(std::string(ids.status().message()));
    prompt = *ids;
  }
  hangar::engine::SamplingParams sp;
  sp.temperature = temperature;
  sp.top_k = top_k;
  sp.top_p = top_p;
  sp.max_new_tokens = max_tokens;
  sp.stop = stops;
  sp.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  if (const std::optional<uint64_t> seed = absl::GetFlag(FLAGS_seed);
      seed.has_value()) {
    sp.seed = *seed;
    sp.has_seed = true;
  }
  int context =
      std::min<int>(model->context_length(), int(prompt.size()) + max_tokens);
  auto decoder_or = BatchDecoder::Create(
      model.get(),
      {.max_batch = batch,
       .max_context = context,
       .prefill_chunk = std::max<int>(256, int(prompt.size()) * batch)});
  if (!decoder_or.ok()) return Fail(std::string(decoder_or.status().message()));
  auto decoder = std::move(decoder_or).value();
  const bool print_ids = absl::GetFlag(FLAGS_print_ids);
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
        std::string piece = print_ids ? std::to_string(e.token) + " " : e.text;
        if (e.id == ids[0]) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        } else {
          outputs[e.id] += piece;
        }
      }
      if (e.finished)
        reasons[e.id] = hangar::engine::FinishReasonName(e.reason);
    }
    if (prefill_s == 0 && first_tokens == batch) {
      prefill_s = std::chrono::duration<double>(
                      std::chrono::steady_clock::now() - start)
                      .count();
    }
  }
  double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::printf("\n");
  for (size_t b = 1; b < ids.size(); ++b)
    std::printf("[seq %zu] %s\n", b, outputs[ids[b]].c_str());
  int decode_tokens = generated - batch;
  double decode_s = total_s - prefill_s;
  std::fprintf(stderr, "finish: %s\n", reasons[ids[0]].c_str());
  std::fprintf(stderr, "prompt: %zu tokens x %d in %.3f s (%.1f tokens/s)\n",
               prompt.size(), batch, prefill_s,
               prefill_s > 0 ? double(prompt.size()) * batch / prefill_s : 0.0);
  std::fprintf(stderr, "decode: %d tokens in %.3f s (%.1f tokens/s)\n",
               decode_tokens, decode_s,
               decode_s > 0 ? decode_tokens / decode_s : 0.0);
  return 0;
}
