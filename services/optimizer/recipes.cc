#include "services/optimizer/recipes.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "engine/quantize.h"

namespace hangar::optimizer {

std::string RecipeName::Slug() const {
  return absl::AsciiStrToLower(engine) + "-" + quantization;
}

absl::StatusOr<RecipeName> ParseRecipe(const std::string& text) {
  size_t slash = text.find('/');
  if (slash == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "recipe: must be ENGINE/quantization (e.g. CTRANSLATE2/int8); was '",
        text, "'"));
  }
  RecipeName r{absl::AsciiStrToUpper(text.substr(0, slash)),
               text.substr(slash + 1)};
  RETURN_IF_ERROR(engine::ValidateRecipe(r.engine, r.quantization));
  return r;
}

double MaxLogitErrorBound(const RecipeName& r) {
  const std::string& q = r.quantization;
  if (q == "float32") return 1e-4;
  if (q == "int16") return 0.05;
  if (q == "float16") return 0.1;
  if (q == "bfloat16") return 0.5;
  if (q == "fp8") return 2.0;
  return 1.0;  // int8, int8_float32, int8_float16, int8_bfloat16
}

std::vector<RecipeName> AllRecipes() {
  std::vector<RecipeName> out;
  for (const char* q : {"int8", "int8_float32", "int8_float16", "int8_bfloat16",
                        "int16", "float16", "bfloat16", "float32"}) {
    out.push_back({"CTRANSLATE2", q});
  }
  for (const char* q : {"float16", "bfloat16", "float32", "fp8"})
    out.push_back({"VLLM", q});
  return out;
}

}  // namespace hangar::optimizer
