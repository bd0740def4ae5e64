#include "services/catalog/model_store.h"

#include <algorithm>

namespace hangar::catalog {

v1::Model MergeCurated(const v1::Model& current, const v1::Model& curated,
                       const std::vector<std::string>& user_edited) {
  auto edited = [&](const char* field) {
    return std::find(user_edited.begin(), user_edited.end(), field) !=
           user_edited.end();
  };
  v1::Model merged = current;
  if (!edited("display_name")) merged.set_display_name(curated.display_name());
  if (!edited("description")) merged.set_description(curated.description());
  if (!edited("tags")) *merged.mutable_tags() = curated.tags();
  merged.set_family(curated.family());
  merged.set_architecture(curated.architecture());
  merged.set_parameter_count(curated.parameter_count());
  merged.set_context_length(curated.context_length());
  merged.set_license(curated.license());
  merged.set_default_dtype(curated.default_dtype());
  *merged.mutable_weight_sizes() = curated.weight_sizes();
  *merged.mutable_supported_recipes() = curated.supported_recipes();
  merged.set_runs_on_cpu(curated.runs_on_cpu());
  merged.set_hf_repo(curated.hf_repo());
  merged.set_revision(curated.revision());
  merged.set_local_path(curated.local_path());
  return merged;
}

}  // namespace hangar::catalog
