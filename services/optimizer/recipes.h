// Optimization recipes as the optimizer names them, and the one table of
// quality bounds.
//
// A recipe is written "ENGINE/quantization" on the hangar-optimize command
// line ("CTRANSLATE2/int8", "VLLM/fp8"; the engine is case-insensitive) and
// is an (Engine, Quantization) pair in the API. The allowed pairs are the
// engine's (engine/quantize.h, DESIGN.md §3/§4); anything else is
// INVALID_ARGUMENT naming the allowed values.
//
// Quality bounds: a conversion whose max |artifact logit - source logit|
// over the fixed prompts exceeds its recipe's bound fails its job (the
// report is kept so a user sees why). The bounds, in logits:
//
//   recipe                         max_abs_logit_error bound
//   float32 (both engines)         1e-4   (the same numbers, re-encoded)
//   CTRANSLATE2 int16              0.05   (15-bit per-row weights)
//   float16 (both engines)         0.1    (10-bit mantissa)
//   bfloat16 (both engines)        0.5    (7-bit mantissa)
//   CTRANSLATE2 int8, int8_float32 1.0    (7-bit per-row weights)
//   CTRANSLATE2 int8_float16       1.0
//   CTRANSLATE2 int8_bfloat16      1.0
//   VLLM fp8                       2.0    (3-bit mantissa E4M3 weights)
//
// The figures the report also carries (mean absolute error, mean KL,
// greedy agreement over 32 tokens per prompt, size ratio) are reported, not
// gated: they vary more with the model than the logit error does.
#ifndef HANGAR_SERVICES_OPTIMIZER_RECIPES_H_
#define HANGAR_SERVICES_OPTIMIZER_RECIPES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hangar::optimizer {

struct RecipeName {
  // "CTRANSLATE2" or "VLLM".
  std::string engine;
  // Lower case, as in engine/quantize.h ("int8_float16", "fp8").
  std::string quantization;

  // "CTRANSLATE2/int8".
  std::string ToString() const { return engine + "/" + quantization; }
  // "ctranslate2-int8": the artifact directory suffix.
  std::string Slug() const;
  bool operator==(const RecipeName&) const = default;
};

// Parses "ENGINE/quantization" and validates the pair.
absl::StatusOr<RecipeName> ParseRecipe(const std::string& text);

// The recipe's max_abs_logit_error bound (table above). The recipe must be
// valid.
double MaxLogitErrorBound(const RecipeName& recipe);

// Every allowed recipe, CTranslate2's then vLLM's.
std::vector<RecipeName> AllRecipes();

}  // namespace hangar::optimizer

#endif  // HANGAR_SERVICES_OPTIMIZER_RECIPES_H_
