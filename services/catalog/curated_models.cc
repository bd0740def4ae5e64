#include "services/catalog/curated_models.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"
#include "common/util/file.h"
#include "nlohmann/json.hpp"
#include "services/catalog/memory_estimate.h"
#include "services/catalog/model_validation.h"

namespace hangar::catalog {
namespace {

using ::nlohmann::json;

// Builds errors that name the file, the entry and the field.
class EntryErrors {
 public:
  EntryErrors(absl::string_view file, size_t index, std::string name)
      : prefix_(absl::StrCat(
            file, ": models[", index, "]",
            name.empty() ? "" : absl::StrCat(" (\"", name, "\")"))) {}
  absl::Status Field(absl::string_view field, absl::string_view rule) const {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix_, ": \"", field, "\": ", rule));
  }
  absl::Status Wrap(const absl::Status& status) const {
    return PrefixStatus(prefix_, status);
  }

 private:
  std::string prefix_;
};

absl::StatusOr<std::string> RequiredString(const json& entry, const char* field,
                                           const EntryErrors& errors) {
  auto it = entry.find(field);
  if (it == entry.end()) return errors.Field(field, "required");
  if (!it->is_string() || it->get<std::string>().empty()) {
    return errors.Field(field, "must be a non-empty string");
  }
  return it->get<std::string>();
}

absl::StatusOr<std::string> OptionalString(const json& entry, const char* field,
                                           const EntryErrors& errors,
                                           std::string fallback = "") {
  auto it = entry.find(field);
  if (it == entry.end()) return fallback;
  if (!it->is_string()) return errors.Field(field, "must be a string");
  return it->get<std::string>();
}

absl::StatusOr<v1::Model> ParseEntry(const json& entry, size_t index,
                                     absl::string_view file,
                                     const CuratedModelsOptions& options) {
  std::string name;
  if (entry.is_object() && entry.contains("name") &&
      entry["name"].is_string()) {
    name = entry["name"].get<std::string>();
  }
  EntryErrors errors(file, index, name);
  if (!entry.is_object()) return errors.Field("", "entry must be an object");
  for (const auto& [key, value] : entry.items()) {
    static const std::set<std::string> kKnown = {
        "name",          "display_name",   "description", "family",  "license",
        "default_dtype", "context_length", "tags",        "hf_repo", "revision",
        "local_path",    "engines",        "config"};
    if (!kKnown.count(key)) return errors.Field(key, "unknown field");
  }

  v1::Model model;
  model.set_source(v1::MODEL_SOURCE_CURATED);
  model.set_state(v1::MODEL_STATE_READY);
  {
    auto value = RequiredString(entry, "name", errors);
    if (!value.ok()) return value.status();
    if (absl::Status s = ValidateModelName("name", *value); !s.ok()) {
      return errors.Wrap(s);
    }
    model.set_name(*value);
  }
  for (auto [field, setter] : std::initializer_list<
           std::pair<const char*, void (v1::Model::*)(const std::string&)>>{
           {"display_name", &v1::Model::set_display_name},
           {"family", &v1::Model::set_family},
           {"license", &v1::Model::set_license},
           {"default_dtype", &v1::Model::set_default_dtype}}) {
    auto value = RequiredString(entry, field, errors);
    if (!value.ok()) return value.status();
    (model.*setter)(*value);
  }
  if (!IsFloatDtype(model.default_dtype())) {
    return errors.Field(
        "default_dtype",
        absl::StrCat("must be float32, bfloat16 or float16; was \"",
                     model.default_dtype(), "\""));
  }
  {
    auto value = OptionalString(entry, "description", errors);
    if (!value.ok()) return value.status();
    if (absl::Status s =
            ValidateText("description", *value, kMaxDescriptionLength);
        !s.ok()) {
      return errors.Wrap(s);
    }
    model.set_description(*value);
  }
  auto context = entry.find("context_length");
  if (context == entry.end()) return errors.Field("context_length", "required");
  if (!context->is_number_integer() || context->get<int64_t>() <= 0 ||
      context->get<int64_t>() > (int64_t{1} << 24)) {
    return errors.Field("context_length",
                        "must be an integer in [1, 16777216]");
  }
  model.set_context_length(context->get<int32_t>());

  if (auto tags = entry.find("tags"); tags != entry.end()) {
    if (!tags->is_array())
      return errors.Field("tags", "must be a list of strings");
    std::vector<std::string> values;
    for (const json& tag : *tags) {
      if (!tag.is_string())
        return errors.Field("tags", "must be a list of strings");
      values.push_back(tag.get<std::string>());
    }
    if (absl::Status s = ValidateTags("tags", values); !s.ok())
      return errors.Wrap(s);
    for (const std::string& tag : values) model.add_tags(tag);
  }

  auto local_path = OptionalString(entry, "local_path", errors);
  if (!local_path.ok()) return local_path.status();
  if (!local_path->empty()) {
    if (local_path->front() == '/' ||
        local_path->find("..") != std::string::npos ||
        local_path->find('\0') != std::string::npos) {
      return errors.Field(
          "local_path",
          "must be relative to --local_model_root, without \"..\"");
    }
    model.set_local_path(*local_path);
  } else {
    auto repo = OptionalString(entry, "hf_repo", errors, model.name());
    if (!repo.ok()) return repo.status();
    if (absl::Status s = ValidateRepoId("hf_repo", *repo); !s.ok()) {
      return errors.Wrap(s);
    }
    model.set_hf_repo(*repo);
    auto revision = OptionalString(entry, "revision", errors, "main");
    if (!revision.ok()) return revision.status();
    if (absl::Status s = ValidateRevision("revision", *revision); !s.ok()) {
      return errors.Wrap(s);
    }
    model.set_revision(*revision);
  }

  std::vector<v1::Engine> engines = {v1::ENGINE_NONE, v1::ENGINE_CTRANSLATE2,
                                     v1::ENGINE_VLLM};
  if (auto list = entry.find("engines"); list != entry.end()) {
    engines.clear();
    if (!list->is_array() || list->empty()) {
      return errors.Field("engines", "must be a non-empty list");
    }
    for (const json& item : *list) {
      v1::Engine engine;
      if (!item.is_string() ||
          !v1::Engine_Parse(absl::StrCat("ENGINE_", item.get<std::string>()),
                            &engine) ||
          engine == v1::ENGINE_UNSPECIFIED) {
        return errors.Field("engines",
                            "entries must be NONE, CTRANSLATE2 or VLLM");
      }
      engines.push_back(engine);
    }
  }

  auto config = entry.find("config");
  if (config == entry.end()) return errors.Field("config", "required");
  absl::StatusOr<ArchitectureSpec> spec = ArchitectureSpecFromConfig(*config);
  if (!spec.ok()) return errors.Wrap(spec.status());
  model.set_architecture(spec->architecture);
  FillComputedFields(*spec, engines, &model);
  model.set_runs_on_cpu(model.parameter_count() <= options.cpu_max_parameters);
  model.mutable_preparation()->set_state(v1::PREPARATION_STATE_NOT_PREPARED);
  return model;
}

}  // namespace

absl::StatusOr<std::vector<v1::Model>> ParseCuratedModels(
    absl::string_view text, absl::string_view file_name,
    const CuratedModelsOptions& options) {
  json root = json::parse(text.begin(), text.end(), nullptr,
                          /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": not valid JSON"));
  }
  if (!root.is_object() || !root.contains("models") ||
      !root["models"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": must be an object with a \"models\" list"));
  }
  std::vector<v1::Model> models;
  std::set<std::string> names;
  const json& entries = root["models"];
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::StatusOr<v1::Model> model =
        ParseEntry(entries[i], i, file_name, options);
    if (!model.ok()) return model.status();
    if (!names.insert(model->name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_name, ": models[", i, "] (\"", model->name(),
                       "\"): \"name\": duplicate of an earlier entry"));
    }
    models.push_back(*std::move(model));
  }
  return models;
}

absl::StatusOr<std::vector<v1::Model>> LoadCuratedModels(
    const std::string& path, const CuratedModelsOptions& options) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return PrefixStatus("curated models file", text.status());
  return ParseCuratedModels(*text, path, options);
}

}  // namespace hangar::catalog
