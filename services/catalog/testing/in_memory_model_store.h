// An in-memory ModelStore for domain unit tests: the same contract as
// PgModelStore (etags that change on metadata updates only, user-edited
// fields kept by UpsertCurated, rows marked deleting hidden from reads),
// with no database. `SetUnavailable(true)` makes every call fail the way a
// stopped PostgreSQL does.
//
//   testing::InMemoryModelStore store;
//   ModelImporter importer({.models = &store, ...});
#ifndef HANGAR_SERVICES_CATALOG_TESTING_IN_MEMORY_MODEL_STORE_H_
#define HANGAR_SERVICES_CATALOG_TESTING_IN_MEMORY_MODEL_STORE_H_

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/api/etag.h"
#include "services/catalog/model_store.h"

namespace hangar::catalog::testing {

class InMemoryModelStore final : public ModelStore {
 public:
  void SetUnavailable(bool unavailable) {
    absl::MutexLock lock(&mu_);
    unavailable_ = unavailable;
  }
  // The user-edited fields of a row (for tests of UpdateModel).
  std::set<std::string> UserEdited(const std::string& name) {
    absl::MutexLock lock(&mu_);
    auto it = rows_.find(name);
    return it == rows_.end() ? std::set<std::string>() : it->second.edited;
  }

  absl::Status UpsertCurated(const std::vector<v1::Model>& models) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    for (const v1::Model& curated : models) {
      auto it = rows_.find(curated.name());
      if (it == rows_.end()) {
        InsertLocked(curated);
        continue;
      }
      Row& row = it->second;
      if (row.model.source() != v1::MODEL_SOURCE_CURATED || row.deleting) {
        continue;
      }
      v1::Model merged = MergeCurated(row.model, curated,
                                      {row.edited.begin(), row.edited.end()});
      if (merged.SerializeAsString() != row.model.SerializeAsString()) {
        row.model = merged;
        BumpLocked(row);
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::Model> CreateModel(const v1::Model& model) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    if (rows_.count(model.name()) > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("name: model \"", model.name(), "\" already exists"));
    }
    return InsertLocked(model);
  }

  absl::StatusOr<v1::Model> GetModel(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    auto it = rows_.find(name);
    if (it == rows_.end() || it->second.deleting) return NotFound(name);
    return it->second.model;
  }

  absl::StatusOr<ModelPage> ListModels(const ModelFilter& filter,
                                       const std::string& after_name,
                                       int limit) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    ModelPage page;
    for (const auto& [name, row] : rows_) {
      if (row.deleting || !Matches(filter, row.model)) continue;
      ++page.total;
      if (name <= after_name) continue;
      if (static_cast<int>(page.models.size()) == limit) {
        page.more = true;
        continue;
      }
      page.models.push_back(row.model);
    }
    return page;
  }

  absl::StatusOr<std::vector<std::string>> ListNamesInState(
      v1::ModelState state) override {
    return Names([&](const Row& row) { return row.model.state() == state; });
  }
  absl::StatusOr<std::vector<std::string>> ListNamesPreparing(
      v1::PreparationState state) override {
    return Names([&](const Row& row) {
      return row.model.preparation().state() == state;
    });
  }

  absl::StatusOr<v1::Model> UpdateModel(
      const std::string& name,
      const std::function<absl::Status(v1::Model&)>& mutate,
      const std::vector<std::string>& user_edited) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    auto it = rows_.find(name);
    if (it == rows_.end() || it->second.deleting) return NotFound(name);
    v1::Model model = it->second.model;
    if (absl::Status status = mutate(model); !status.ok()) return status;
    // The preparation and the store's fields are not the caller's to set.
    *model.mutable_preparation() = it->second.model.preparation();
    model.set_name(name);
    it->second.model = model;
    it->second.edited.insert(user_edited.begin(), user_edited.end());
    BumpLocked(it->second);
    return it->second.model;
  }

  absl::Status SetPreparation(const std::string& name,
                              const v1::Preparation& preparation) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    auto it = rows_.find(name);
    if (it == rows_.end()) return NotFound(name);
    *it->second.model.mutable_preparation() = preparation;
    return absl::OkStatus();
  }

  absl::StatusOr<v1::Model> MarkDeleting(
      const std::string& name,
      const std::function<absl::Status(const v1::Model&)>& check) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    auto it = rows_.find(name);
    if (it == rows_.end() || it->second.deleting) return NotFound(name);
    if (absl::Status status = check(it->second.model); !status.ok()) {
      return status;
    }
    it->second.deleting = true;
    return it->second.model;
  }

  absl::Status FinishDelete(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    auto it = rows_.find(name);
    if (it == rows_.end() || !it->second.deleting) return NotFound(name);
    rows_.erase(it);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ListNamesDeleting() override {
    return Names([](const Row& row) { return row.deleting; },
                 /*include_deleting=*/true);
  }

  absl::StatusOr<std::vector<StoredPath>> ListPreparationPaths() override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    std::vector<StoredPath> paths;
    for (const auto& [name, row] : rows_) {
      paths.push_back({.name = name,
                       .path = row.model.preparation().local_path(),
                       .hf_repo = row.model.hf_repo(),
                       .resolved_revision = row.model.resolved_revision(),
                       .deleting = row.deleting});
    }
    return paths;
  }

  absl::StatusOr<std::map<v1::ModelState, int64_t>> CountByState() override {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    std::map<v1::ModelState, int64_t> counts;
    for (const auto& [name, row] : rows_) {
      if (!row.deleting) ++counts[row.model.state()];
    }
    return counts;
  }

 private:
  struct Row {
    v1::Model model;
    std::set<std::string> edited;
    bool deleting = false;
    int64_t version = 1;
  };

  static absl::Status Down() {
    return absl::UnavailableError("database unavailable (in-memory fake)");
  }
  static absl::Status NotFound(const std::string& name) {
    return absl::NotFoundError(absl::StrCat("model \"", name, "\" not found"));
  }

  v1::Model InsertLocked(const v1::Model& model)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Row row;
    row.model = model;
    row.model.set_etag(MakeEtag(row.version));
    rows_[model.name()] = row;
    return row.model;
  }
  static void BumpLocked(Row& row) {
    row.model.set_etag(MakeEtag(++row.version));
  }

  static bool Matches(const ModelFilter& filter, const v1::Model& model) {
    if (filter.source != v1::MODEL_SOURCE_UNSPECIFIED &&
        model.source() != filter.source) {
      return false;
    }
    if (!filter.family.empty() && model.family() != filter.family) {
      return false;
    }
    if (!filter.tag.empty() &&
        std::find(model.tags().begin(), model.tags().end(), filter.tag) ==
            model.tags().end()) {
      return false;
    }
    if (!filter.query.empty() &&
        !absl::StrContains(absl::AsciiStrToLower(absl::StrCat(
                               model.name(), " ", model.display_name(), " ",
                               model.description())),
                           absl::AsciiStrToLower(filter.query))) {
      return false;
    }
    if (filter.supports_engine != v1::ENGINE_UNSPECIFIED ||
        filter.fits_gpu_memory_bytes > 0) {
      bool any = false;
      for (const v1::RecipeSupport& support : model.supported_recipes()) {
        if (filter.supports_engine != v1::ENGINE_UNSPECIFIED &&
            support.recipe().engine() != filter.supports_engine) {
          continue;
        }
        if (filter.fits_gpu_memory_bytes > 0 &&
            support.min_gpu_memory_bytes() > filter.fits_gpu_memory_bytes) {
          continue;
        }
        any = true;
      }
      if (!any) return false;
    }
    return !filter.runs_on_cpu || model.runs_on_cpu();
  }

  template <typename Predicate>
  absl::StatusOr<std::vector<std::string>> Names(
      Predicate predicate, bool include_deleting = false) {
    absl::MutexLock lock(&mu_);
    if (unavailable_) return Down();
    std::vector<std::string> names;
    for (const auto& [name, row] : rows_) {
      if ((include_deleting || !row.deleting) && predicate(row)) {
        names.push_back(name);
      }
    }
    return names;
  }

  absl::Mutex mu_;  // Protects everything below.
  std::map<std::string, Row> rows_ ABSL_GUARDED_BY(mu_);
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hangar::catalog::testing

#endif  // HANGAR_SERVICES_CATALOG_TESTING_IN_MEMORY_MODEL_STORE_H_
