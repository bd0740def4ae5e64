// Just enough of the safetensors and GGUF formats to describe a model
// without reading its weights: tensor counts, parameters, storage type, and
// for GGUF the architecture numbers from the metadata.
//
// safetensors: an 8-byte little-endian header length N, then N bytes of JSON
// {"tensor name": {"dtype": "BF16", "shape": [..], "data_offsets": [..]},
// "__metadata__": {...}}. The Hub client reads exactly these bytes with two
// HTTP range requests; local files are read the same way.
//
// GGUF (v2/v3): magic "GGUF", version, tensor count, metadata key/values,
// tensor infos. Read from a local file only.
//
// Every parser bounds what it reads (kMaxSafetensorsHeaderBytes, string and
// array lengths) and returns INVALID_ARGUMENT naming the file for malformed
// input, never crashing on hostile bytes.
#ifndef HANGAR_SERVICES_CATALOG_WEIGHTS_HEADER_H_
#define HANGAR_SERVICES_CATALOG_WEIGHTS_HEADER_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/catalog/memory_estimate.h"

namespace hangar::catalog {

// The safetensors format's own limit on the header.
inline constexpr int64_t kMaxSafetensorsHeaderBytes = 100 << 20;

struct WeightsSummary {
  int64_t tensors = 0;
  int64_t parameters = 0;
  // Parameters per Hangar dtype name ("bfloat16", "float16", "float32", ...).
  std::map<std::string, int64_t> parameters_by_dtype;

  // Adds another file's summary (shards).
  void Merge(const WeightsSummary& other);
  // The dtype holding most parameters ("" when empty).
  std::string MainDtype() const;
};

// Reads the header length from the first 8 bytes of a safetensors file.
// INVALID_ARGUMENT when it exceeds kMaxSafetensorsHeaderBytes.
absl::StatusOr<int64_t> SafetensorsHeaderLength(absl::string_view first_8_bytes,
                                                absl::string_view file_name);

// Summarizes a safetensors JSON header.
absl::StatusOr<WeightsSummary> ParseSafetensorsHeader(
    absl::string_view header_json, absl::string_view file_name);

// Reads and summarizes the header of a local safetensors file.
absl::StatusOr<WeightsSummary> ReadSafetensorsFile(const std::string& path);

struct GgufSummary {
  ArchitectureSpec spec;  // architecture mapped to the HF class name
  WeightsSummary weights;
  // "float32", "float16", "q8_0", "q4_0", ... (the dominant tensor type).
  std::string dtype;
  std::string name;     // general.name, when present
  std::string license;  // general.license, when present
};

// Reads a local GGUF file's metadata and tensor infos. The architecture must
// be one the engine supports ("llama" -> LlamaForCausalLM, "qwen2" ->
// Qwen2ForCausalLM).
absl::StatusOr<GgufSummary> ReadGgufFile(const std::string& path);

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_WEIGHTS_HEADER_H_
