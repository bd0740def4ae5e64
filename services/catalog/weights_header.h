// What the catalog learns about a model's files without reading its
// weights, through the engine's own parsers (engine/safetensors.h,
// engine/gguf.h, engine/model_config.h), so that "the catalog accepts it"
// and "the engine runs it" are one answer.
//
// The catalog inspects Hugging Face repositories over the network: it reads
// the first 8 bytes of each safetensors shard, then exactly the header
// (two HTTP range requests). This file is the small adapter for those bytes:
// SafetensorsHeaderLength and SummarizeSafetensorsHeader hand them to
// SafetensorsFile::HeaderLength / ParseHeader and summarize the tensors
// (parameters per Hangar dtype). Local files are read whole by the engine
// (mapped, not copied). config.json goes through ParseHuggingFaceConfig and
// GGUF metadata through ModelConfigFromGguf; the catalog adds only its own
// naming (the Hugging Face class "LlamaForCausalLM" for the model_type
// "llama").
//
// Every function returns INVALID_ARGUMENT naming the file for malformed or
// hostile input and never reads past what it was given; the libFuzzer target
// services/catalog/fuzz/weights_header_fuzzer.cc holds the network adapter
// to that.
#ifndef HANGAR_SERVICES_CATALOG_WEIGHTS_HEADER_H_
#define HANGAR_SERVICES_CATALOG_WEIGHTS_HEADER_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/catalog/memory_estimate.h"

namespace hangar::catalog {

struct WeightsSummary {
  int64_t tensors = 0;
  int64_t parameters = 0;
  // Parameters per Hangar dtype name ("bfloat16", "float16", "float32",
  // "q8_0", ...).
  std::map<std::string, int64_t> parameters_by_dtype;

  // Adds another file's summary (shards).
  void Merge(const WeightsSummary& other);
  // The dtype holding most parameters ("" when empty).
  std::string MainDtype() const;
};

// --- Network bytes (the fuzzed adapter) ---

// The header length from the first 8 bytes of a safetensors file.
absl::StatusOr<int64_t> SafetensorsHeaderLength(absl::string_view first_8_bytes,
                                                absl::string_view file_name);
// Summarizes a safetensors JSON header (without the 8-byte length).
absl::StatusOr<WeightsSummary> SummarizeSafetensorsHeader(
    const std::string& header_json, absl::string_view file_name);

// What config.json says, in the catalog's terms.
struct ConfigSummary {
  ArchitectureSpec spec;
  // config.json's torch_dtype when it is a float type, else "".
  std::string torch_dtype;
};
// Reads config.json's text: `architectures[0]` (when given) must be a class
// the engine runs, and the numbers are the engine's reading of the file.
absl::StatusOr<ConfigSummary> SummarizeConfigJson(const std::string& text,
                                                  absl::string_view file_name);

// --- Local files ---

// Summarizes a local safetensors file.
absl::StatusOr<WeightsSummary> ReadSafetensorsFile(const std::string& path);

struct GgufSummary {
  ArchitectureSpec spec;  // architecture mapped to the HF class name
  WeightsSummary weights;
  // "float32", "float16", "q8_0", "q4_0", ... (the dominant tensor type).
  std::string dtype;
  std::string name;     // general.name, when present
  std::string license;  // general.license, when present
};

// Reads a local GGUF file's metadata and tensor infos; the architecture must
// be one the engine runs (llama, mistral, qwen2).
absl::StatusOr<GgufSummary> ReadGgufFile(const std::string& path);

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_WEIGHTS_HEADER_H_
