#include "services/deployment/facts.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace hangar::deployment {
namespace {

// The weight_sizes dtype a recipe stores weights in; empty: the model's
// default dtype.
std::string StorageDtype(const v1::OptimizationRecipe& recipe) {
  if (recipe.engine() == v1::ENGINE_UNSPECIFIED ||
      recipe.engine() == v1::ENGINE_NONE) {
    return "";
  }
  switch (recipe.quantization()) {
    case v1::QUANTIZATION_INT8:
    case v1::QUANTIZATION_INT8_FLOAT32:
    case v1::QUANTIZATION_INT8_FLOAT16:
    case v1::QUANTIZATION_INT8_BFLOAT16:
      return "int8";
    case v1::QUANTIZATION_INT16:
      return "int16";
    case v1::QUANTIZATION_FLOAT16:
      return "float16";
    case v1::QUANTIZATION_BFLOAT16:
      return "bfloat16";
    case v1::QUANTIZATION_FLOAT32:
      return "float32";
    case v1::QUANTIZATION_FP8:
      return "fp8";
    default:
      return "";
  }
}

}  // namespace

ModelFacts ModelFactsFromProto(const v1::Model& model) {
  ModelFacts facts;
  facts.found = true;
  facts.ready = model.state() == v1::MODEL_STATE_READY;
  if (!facts.ready) {
    facts.not_ready_reason =
        model.state() == v1::MODEL_STATE_FAILED
            ? absl::StrCat("its import failed: ", model.failure_reason())
            : absl::StrCat("it is ", v1::ModelState_Name(model.state()));
  }
  facts.context_length = model.context_length();
  facts.license = model.license();
  for (const v1::RecipeSupport& support : model.supported_recipes()) {
    std::string dtype = StorageDtype(support.recipe());
    if (dtype.empty()) dtype = model.default_dtype();
    RecipeFootprint footprint;
    footprint.weight_bytes = support.min_gpu_memory_bytes();
    for (const v1::WeightSize& size : model.weight_sizes()) {
      if (size.dtype() == dtype && size.bytes() > 0 &&
          size.bytes() <= support.min_gpu_memory_bytes()) {
        footprint.weight_bytes = size.bytes();
      }
    }
    footprint.kv_bytes_per_sequence = std::max<int64_t>(
        0, support.min_gpu_memory_bytes() - footprint.weight_bytes);
    facts.recipes[RecipeKey(support.recipe())] = footprint;
  }
  return facts;
}

OfferingFacts OfferingFactsFromProto(const v1::HardwareOffering& offering) {
  OfferingFacts facts;
  facts.found = true;
  facts.gpu_model = offering.gpu_model();
  facts.gpu_count = offering.gpu_count();
  facts.gpu_memory_bytes = offering.gpu_memory_bytes();
  if (!offering.hourly_price().currency_code().empty()) {
    facts.currency_code = offering.hourly_price().currency_code();
  }
  facts.hourly_price_micros = offering.hourly_price().micros();
  facts.supports_fp8 = offering.supports_fp8();
  facts.supports_bf16 = offering.supports_bf16();
  return facts;
}

}  // namespace hangar::deployment
