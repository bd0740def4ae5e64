// The curated ("hosted") model list: a JSON data file loaded at start.
//
// Format (services/catalog/data/curated_models.json):
//
//   {"models": [{
//      "name": "meta-llama/Llama-3.1-8B-Instruct",   // catalog id, required
//      "display_name": "Llama 3.1 8B Instruct",       // required
//      "description": "...",                          // optional
//      "family": "llama",                             // required
//      "license": "llama3.1",                         // required, SPDX-style
//      "default_dtype": "bfloat16",                   //
//      float32|bfloat16|float16 "context_length": 131072, // required, > 0
//      "tags": ["chat", "instruct"],                  // optional
//      "hf_repo": "...",       // optional; default: the name
//      "revision": "main",     // optional; default "main"
//      "local_path": "...",    // optional; relative to --local_model_root:
//                              // the model is served from there, not the Hub
//      "engines": ["NONE", "CTRANSLATE2", "VLLM"],   // optional; default all
//      "config": { ...the repository's config.json numbers... }  // required
//   }]}
//
// Everything a user sees about sizes is COMPUTED from "config" (see
// memory_estimate.h): parameter count, weight size per dtype, and the
// minimum GPU memory of every recipe.
//
// Loading validates every entry and fails with INVALID_ARGUMENT naming the
// file, the entry (index and name) and the field:
//
//   curated_models.json: models[3] ("Qwen/Qwen2.5-7B-Instruct"): "license":
//   required
#ifndef HANGAR_SERVICES_CATALOG_CURATED_MODELS_H_
#define HANGAR_SERVICES_CATALOG_CURATED_MODELS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hangar/v1/catalog.pb.h"

namespace hangar::catalog {

struct CuratedModelsOptions {
  // Models with at most this many parameters run on the built-in CPU engine
  // (Model.runs_on_cpu).
  int64_t cpu_max_parameters = 2'000'000'000;
};

// Parses and validates the file's text; `file_name` prefixes messages.
absl::StatusOr<std::vector<v1::Model>> ParseCuratedModels(
    absl::string_view text, absl::string_view file_name,
    const CuratedModelsOptions& options = {});

// Reads `path` and parses it. NOT_FOUND when the file is missing.
absl::StatusOr<std::vector<v1::Model>> LoadCuratedModels(
    const std::string& path, const CuratedModelsOptions& options = {});

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_CURATED_MODELS_H_
