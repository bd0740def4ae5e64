// make-tiny-model: writes a deterministic random Llama-architecture model
// (Hugging Face layout, real byte-level BPE tokenizer) for tests, benchmarks
// and demos; optionally also a GGUF copy. See engine/tiny_model.h.
//
//   make-tiny-model --out /tmp/tiny                  # ~1 M parameters
//   make-tiny-model --out /tmp/m100 --preset base    # ~110 M parameters
//   make-tiny-model --out /tmp/tiny --gguf /tmp/tiny.gguf --gguf_type q8_0
//
// Flags are parsed by the kit (common/config/flags.h): --help lists them
// with their defaults, and HANGAR_MAKE_TINY_MODEL_<FLAG> variables may set
// them.
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "common/config/flags.h"
#include "engine/tiny_model.h"

ABSL_FLAG(std::string, out, "", "Output directory (required).");
ABSL_FLAG(std::string, preset, "tiny",
          "Size preset: tiny (~1M), small (~15M), base (~110M).");
ABSL_FLAG(std::string, architecture, "",
          "llama or qwen2 (q/k/v bias); default: the preset's.");
ABSL_FLAG(int, hidden_size, 0, "Override the preset's hidden size.");
ABSL_FLAG(int, intermediate_size, 0, "Override the preset's MLP size.");
ABSL_FLAG(int, layers, 0, "Override the preset's layer count.");
ABSL_FLAG(int, heads, 0, "Override the preset's attention heads.");
ABSL_FLAG(int, kv_heads, 0, "Override the preset's key/value heads (GQA).");
ABSL_FLAG(int, vocab_size, 0, "Override the preset's embedding rows.");
ABSL_FLAG(int, context, 0, "Override max_position_embeddings.");
ABSL_FLAG(std::string, dtype, "F32", "Weight dtype: F32, F16 or BF16.");
ABSL_FLAG(bool, tie_embeddings, false,
          "Tie lm_head to the embeddings (presets small/base always do).");
ABSL_FLAG(uint64_t, seed, 1, "Random seed.");
ABSL_FLAG(std::string, gguf, "", "Also write a GGUF file here.");
ABSL_FLAG(std::string, gguf_type, "f32",
          "GGUF weight type: f32, f16, q8_0, q4_0.");

int main(int argc, char** argv) {
  hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_MAKE_TINY_MODEL_",
                            "make-tiny-model");
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::cerr << "make-tiny-model: --out is required\n";
    return 2;
  }
  auto preset = hangar::engine::TinyModelPreset(absl::GetFlag(FLAGS_preset));
  if (!preset.ok()) {
    std::cerr << "make-tiny-model: " << preset.status().message() << "\n";
    return 2;
  }
  hangar::engine::TinyModelOptions o = *preset;
  if (!absl::GetFlag(FLAGS_architecture).empty())
    o.architecture = absl::GetFlag(FLAGS_architecture);
  if (absl::GetFlag(FLAGS_hidden_size) > 0)
    o.hidden_size = absl::GetFlag(FLAGS_hidden_size);
  if (absl::GetFlag(FLAGS_intermediate_size) > 0)
    o.intermediate_size = absl::GetFlag(FLAGS_intermediate_size);
  if (absl::GetFlag(FLAGS_layers) > 0)
    o.num_layers = absl::GetFlag(FLAGS_layers);
  if (absl::GetFlag(FLAGS_heads) > 0) o.num_heads = absl::GetFlag(FLAGS_heads);
  if (absl::GetFlag(FLAGS_kv_heads) > 0)
    o.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  if (absl::GetFlag(FLAGS_vocab_size) > 0)
    o.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  if (absl::GetFlag(FLAGS_context) > 0)
    o.max_position_embeddings = absl::GetFlag(FLAGS_context);
  if (absl::GetFlag(FLAGS_tie_embeddings)) o.tie_word_embeddings = true;
  o.dtype = absl::GetFlag(FLAGS_dtype);
  o.seed = absl::GetFlag(FLAGS_seed);
  if (absl::Status s = hangar::engine::WriteTinyModel(o, out); !s.ok()) {
    std::cerr << "make-tiny-model: " << s.message() << "\n";
    return 1;
  }
  std::cerr << "wrote " << out << "\n";
  if (!absl::GetFlag(FLAGS_gguf).empty()) {
    if (absl::Status s = hangar::engine::ConvertToGguf(
            out, absl::GetFlag(FLAGS_gguf), absl::GetFlag(FLAGS_gguf_type));
        !s.ok()) {
      std::cerr << "make-tiny-model: " << s.message() << "\n";
      return 1;
    }
    std::cerr << "wrote " << absl::GetFlag(FLAGS_gguf) << "\n";
  }
  return 0;
}
