// Unit tests of the Catalog facade on the in-memory fakes: the start-up
// work (curated seed keeping user edits, interrupted deletes, orphan sweep)
// and DeleteModel removing the model's files.
#include "services/catalog/catalog.h"

#include <filesystem>
#include <fstream>

#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/catalog/testing/catalog_fixture.h"

namespace hangar::catalog {
namespace {

namespace fs = std::filesystem;
using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ScriptedUsage final : public DeploymentUsage {
 public:
  absl::StatusOr<std::vector<std::string>> DeploymentsUsing(
      const std::string&) override {
    return users;
  }
  std::vector<std::string> users;
};

v1::Model Curated(const std::string& description) {
  v1::Model model;
  model.set_name("acme/curated");
  model.set_display_name("Curated");
  model.set_description(description);
  model.add_tags("chat");
  model.set_source(v1::MODEL_SOURCE_CURATED);
  model.set_state(v1::MODEL_STATE_READY);
  model.set_license("apache-2.0");
  return model;
}

class CatalogFacadeTest : public testing::CatalogFixture {
 protected:
  void SetUp() override {
    CatalogFixture::SetUp();
    store_ = hangar::testing::MakeTempDir("catalog_facade_test");
  }
  void TearDown() override {
    catalog_.reset();
    CatalogFixture::TearDown();
    fs::remove_all(store_);
  }

  absl::Status Start(std::vector<v1::Model> curated) {
    catalog_.reset();
    absl::StatusOr<std::unique_ptr<Catalog>> catalog =
        Catalog::Create({.model_store = store_,
                         .curated_models = std::move(curated),
                         .models = &models_,
                         .connections = &connection_store_,
                         .hub = &hub_,
                         .deployment_usage = &usage_,
                         .secrets = secrets_.get(),
                         .notifier = &notifier_,
                         .log = &log_,
                         .clock = &clock_});
    if (!catalog.ok()) return catalog.status();
    catalog_ = *std::move(catalog);
    return absl::OkStatus();
  }

  // An imported model whose files are "prepared" in the store.
  std::string AddPrepared(const std::string& name) {
    const std::string directory =
        store_ + "/" + name + "/" + std::string(40, 'a');
    fs::create_directories(directory);
    std::ofstream(directory + "/model.safetensors") << "weights";
    v1::Model model;
    model.set_name(name);
    model.set_source(v1::MODEL_SOURCE_HUGGING_FACE);
    model.set_state(v1::MODEL_STATE_READY);
    model.set_hf_repo(name);
    model.set_resolved_revision(std::string(40, 'a'));
    model.mutable_preparation()->set_state(v1::PREPARATION_STATE_PREPARED);
    model.mutable_preparation()->set_local_path(directory);
    EXPECT_THAT(models_.CreateModel(model).status(), IsOk());
    return directory;
  }

  std::string store_;
  ScriptedUsage usage_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(CatalogFacadeTest, UserEditsOfCuratedModelsOutliveNewLists) {
  ASSERT_THAT(Start({Curated("v1")}), IsOk());
  v1::UpdateModelRequest request;
  request.mutable_model()->set_name("acme/curated");
  request.mutable_model()->add_tags("ours");
  request.mutable_update_mask()->add_paths("tags");
  ASSERT_THAT(catalog_->UpdateModel(request).status(), IsOk());
  EXPECT_THAT(models_.UserEdited("acme/curated"), ElementsAre("tags"));

  ASSERT_THAT(Start({Curated("v2")}), IsOk());  // A new list.
  absl::StatusOr<v1::Model> model = catalog_->GetModel("acme/curated");
  ASSERT_THAT(model.status(), IsOk());
  EXPECT_EQ(model->description(), "v2");            // Not edited: follows.
  EXPECT_THAT(model->tags(), ElementsAre("ours"));  // Edited: kept.
}

TEST_F(CatalogFacadeTest, UpdateModelRefusesOtherPathsAndStaleEtags) {
  ASSERT_THAT(Start({Curated("v1")}), IsOk());
  v1::UpdateModelRequest request;
  request.mutable_model()->set_name("acme/curated");
  request.mutable_update_mask()->add_paths("license");
  EXPECT_THAT(
      catalog_->UpdateModel(request).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("update_mask")));
  request.mutable_update_mask()->set_paths(0, "description");
  request.mutable_model()->set_etag("999");
  EXPECT_THAT(catalog_->UpdateModel(request).status(),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("model.etag")));
}

TEST_F(CatalogFacadeTest, DeleteModelRemovesItsFilesOnceNoDeploymentUsesIt) {
  ASSERT_THAT(Start({}), IsOk());
  const std::string directory = AddPrepared("acme/doomed");
  v1::DeleteModelRequest request;
  request.set_name("acme/doomed");
  usage_.users = {"prod"};
  EXPECT_THAT(
      catalog_->DeleteModel(request),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("prod")));
  EXPECT_TRUE(fs::exists(directory));
  usage_.users = {};
  ASSERT_THAT(catalog_->DeleteModel(request), IsOk());
  EXPECT_FALSE(fs::exists(store_ + "/acme"));
  EXPECT_THAT(models_.GetModel("acme/doomed").status(),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(log_lines(), Contains(HasSubstr("event=model_files_removed")));
}

TEST_F(CatalogFacadeTest, StartFinishesInterruptedDeletesAndSweepsOrphans) {
  ASSERT_THAT(Start({}), IsOk());
  const std::string kept = AddPrepared("acme/kept");
  const std::string half = AddPrepared("acme/half");
  ASSERT_THAT(
      models_
          .MarkDeleting("acme/half",
                        [](const v1::Model&) { return absl::OkStatus(); })
          .status(),
      IsOk());
  fs::create_directories(store_ + "/ghost/repo/abc");
  std::ofstream(store_ + "/.catalog-secret.key") << "key";
  ASSERT_THAT(Start({}), IsOk());
  EXPECT_FALSE(fs::exists(half));
  EXPECT_THAT(models_.ListNamesDeleting().value(), ::testing::IsEmpty());
  EXPECT_FALSE(fs::exists(store_ + "/ghost"));
  EXPECT_TRUE(fs::exists(kept + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(store_ + "/.catalog-secret.key"));
  EXPECT_THAT(log_lines(), Contains(HasSubstr("orphans_removed=\"1\"")));
}

TEST_F(CatalogFacadeTest, NeverSweepsADirectoryThatWasNotAnEmptyStore) {
  // --model_store pointed by mistake at a directory with other content.
  std::ofstream(store_ + "/notes.txt") << "someone's notes";
  fs::create_directories(store_ + "/photos/2026/05");
  ASSERT_THAT(Start({}), IsOk());
  ASSERT_THAT(Start({}), IsOk());
  EXPECT_TRUE(fs::exists(store_ + "/notes.txt"));
  EXPECT_TRUE(fs::exists(store_ + "/photos/2026/05"));
  EXPECT_FALSE(fs::exists(store_ + "/.hangar-model-store"));
  EXPECT_THAT(log_lines(), Contains(HasSubstr("event=store_sweep_skipped")));
}

}  // namespace
}  // namespace hangar::catalog
