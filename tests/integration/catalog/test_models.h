// Tiny model files for the catalog's tests, generated in memory:
// config.json, a safetensors file with deterministic pseudo-random weights
// of a 2-layer Llama (or Qwen2), a tokenizer.json stub, and a GGUF file with
// the same architecture numbers (metadata and tensor infos only).
#ifndef HANGAR_TESTS_INTEGRATION_CATALOG_TEST_MODELS_H_
#define HANGAR_TESTS_INTEGRATION_CATALOG_TEST_MODELS_H_

#include <cstdint>
#include <map>
#include <string>

namespace hangar::testing {

// The architecture numbers every tiny model uses.
inline constexpr int kTinyLayers = 2;
inline constexpr int kTinyHidden = 64;
inline constexpr int kTinyHeads = 4;
inline constexpr int kTinyKvHeads = 2;
inline constexpr int kTinyIntermediate = 128;
inline constexpr int kTinyVocab = 512;
inline constexpr int kTinyContext = 512;

// config.json of a tiny model of `architecture`.
std::string TinyConfigJson(
    const std::string& architecture = "LlamaForCausalLM");

// A safetensors file holding every tensor of the tiny model (float32), with
// bytes derived from `seed`. `parameters` receives the tensor element count.
std::string TinySafetensors(const std::string& architecture, uint32_t seed,
                            int64_t* parameters = nullptr);

// The files of a Hub repository / local directory for the tiny model.
std::map<std::string, std::string> TinyModelFiles(
    const std::string& architecture = "LlamaForCausalLM", uint32_t seed = 1);

// Writes TinyModelFiles() into `directory` (created).
void WriteTinyModelDir(const std::string& directory,
                       const std::string& architecture = "LlamaForCausalLM");

// Writes a GGUF v3 file (llama architecture, F32 tensor infos, no data).
void WriteTinyGguf(const std::string& path);

}  // namespace hangar::testing

#endif  // HANGAR_TESTS_INTEGRATION_CATALOG_TEST_MODELS_H_
