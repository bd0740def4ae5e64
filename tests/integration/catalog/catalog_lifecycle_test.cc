// The catalog across restarts, against a real PostgreSQL: a user's edits of
// curated models survive restarts and new versions of the curated list;
// DeleteModel removes the prepared files; a delete a crash interrupted is
// finished at the next start; the start-up sweep removes what no row names,
// inside the model store only. And WatchModel on the callback API: a change
// arrives within 50 ms, and the drain ends the stream with UNAVAILABLE.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/catalog/catalog_test_base.h"
#include "tests/integration/catalog/test_models.h"

namespace hangar::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kCurated[] = "TinyLlama/TinyLlama-1.1B-Chat-v1.0";

v1::ImportModelRequest HubImport(const std::string& repo) {
  v1::ImportModelRequest request;
  request.mutable_hugging_face()->set_repo(repo);
  return request;
}

grpc::Status Update(v1::CatalogService::Stub& stub, const v1::Model& changes,
                    const std::vector<std::string>& paths, v1::Model* out) {
  v1::UpdateModelRequest request;
  *request.mutable_model() = changes;
  for (const std::string& path : paths) {
    request.mutable_update_mask()->add_paths(path);
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  return stub.UpdateModel(&context, request, out);
}

TEST_F(CatalogTest, UserEditsOfCuratedModelsSurviveRestartsAndNewLists) {
  v1::Model changes;
  changes.set_name(kCurated);
  changes.set_description("our notes on TinyLlama");
  changes.add_tags("team-a");
  v1::Model edited;
  ASSERT_TRUE(Update(stub(), changes, {"description", "tags"}, &edited).ok());

  StartServer();  // The same list again: the edits stay.
  v1::Model model;
  ASSERT_TRUE(Get(kCurated, &model).ok());
  EXPECT_EQ(model.description(), "our notes on TinyLlama");
  EXPECT_THAT(model.tags(), ElementsAre("team-a"));
  EXPECT_EQ(model.etag(), edited.etag());

  // A new version of the list changes the description, the display name and
  // the license: only the fields the user did not edit follow it.
  std::ifstream in(HANGAR_CURATED_MODELS_PATH);
  nlohmann::json list = nlohmann::json::parse(in);
  for (nlohmann::json& entry : list["models"]) {
    if (entry["name"] != kCurated) continue;
    entry["description"] = "the curators' new description";
    entry["display_name"] = "TinyLlama (new name)";
    entry["tags"] = {"curated-tag"};
    entry["license"] = "mit";
  }
  const std::string new_list = dir_ + "/curated_v2.json";
  std::ofstream(new_list) << list.dump(1);
  StartServer([&](catalog::CatalogServer::Options& options) {
    options.curated_models = new_list;
  });
  ASSERT_TRUE(Get(kCurated, &model).ok());
  EXPECT_EQ(model.description(), "our notes on TinyLlama");
  EXPECT_THAT(model.tags(), ElementsAre("team-a"));
  EXPECT_EQ(model.display_name(), "TinyLlama (new name)");
  EXPECT_EQ(model.license(), "mit");
  EXPECT_NE(model.etag(), edited.etag());
  // A model nobody edited follows the list entirely.
  v1::Model other;
  ASSERT_TRUE(Get("Qwen/Qwen2.5-0.5B-Instruct", &other).ok());
  EXPECT_FALSE(other.description().empty());
}

TEST_F(CatalogTest, DeleteModelRemovesItsPreparedFiles) {
  hub_->AddRepo(TinyRepo("acme/doomed"));
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/doomed"), &model).ok());
  ASSERT_EQ(WaitForState("acme/doomed", v1::MODEL_STATE_READY).state(),
            v1::MODEL_STATE_READY);
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("acme/doomed", &preparation).ok());
  model = WaitForPreparation("acme/doomed", v1::PREPARATION_STATE_PREPARED);
  const std::string directory = model.preparation().local_path();
  ASSERT_TRUE(fs::exists(directory + "/model.safetensors"));

  usage_.SetUsers({"prod-chat"});  // Still deployed: refused, files kept.
  EXPECT_EQ(Delete("acme/doomed").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(fs::exists(directory + "/model.safetensors"));
  usage_.SetUsers({});
  ASSERT_TRUE(Delete("acme/doomed").ok());
  EXPECT_FALSE(fs::exists(directory));
  EXPECT_FALSE(fs::exists(model_store_ + "/acme"));  // Empty parents too.
  EXPECT_EQ(Get("acme/doomed", &model).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(fs::exists(dir_ + "/secret.key"));
}

TEST_F(CatalogTest, AnInterruptedDeleteIsFinishedAtTheNextStart) {
  hub_->AddRepo(TinyRepo("acme/half"));
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/half"), &model).ok());
  ASSERT_EQ(WaitForState("acme/half", v1::MODEL_STATE_READY).state(),
            v1::MODEL_STATE_READY);
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("acme/half", &preparation).ok());
  model = WaitForPreparation("acme/half", v1::PREPARATION_STATE_PREPARED);
  const std::string directory = model.preparation().local_path();
  StopServer();
  // As a crash mid-delete leaves it: the row marked, half the files gone.
  {
    pqxx::connection db(conninfo());
    pqxx::work tx(db);
    tx.exec(
        "UPDATE catalog.models SET deleting = true WHERE name = "
        "'acme/half'");
    tx.commit();
  }
  fs::remove(directory + "/config.json");
  StartServer();
  EXPECT_EQ(Get("acme/half", &model).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(fs::exists(directory));
  {
    pqxx::connection db(conninfo());
    pqxx::work tx(db);
    EXPECT_EQ(tx.exec("SELECT count(*) FROM catalog.models WHERE name = "
                      "'acme/half'")[0][0]
                  .as<int>(),
              0);
  }
}

TEST_F(CatalogTest, StartupSweepRemovesOrphansInsideTheStoreOnly) {
  hub_->AddRepo(TinyRepo("acme/kept"));
  v1::Model model;
  ASSERT_TRUE(Import(HubImport("acme/kept"), &model).ok());
  ASSERT_EQ(WaitForState("acme/kept", v1::MODEL_STATE_READY).state(),
            v1::MODEL_STATE_READY);
  v1::Preparation preparation;
  ASSERT_TRUE(Prepare("acme/kept", &preparation).ok());
  model = WaitForPreparation("acme/kept", v1::PREPARATION_STATE_PREPARED);
  StopServer();
  // Files no row names, and a link to files outside the store.
  fs::create_directories(model_store_ + "/ghost/repo/abc");
  std::ofstream(model_store_ + "/ghost/repo/abc/model.safetensors") << "x";
  fs::create_directories(dir_ + "/outside");
  std::ofstream(dir_ + "/outside/precious") << "keep me";
  fs::create_directory_symlink(dir_ + "/outside", model_store_ + "/evil");
  std::vector<std::string> lines;
  catalog::EventLog log(
      [&](const std::string& line) { lines.push_back(line); });
  StartServer(
      [&](catalog::CatalogServer::Options& options) { options.log = &log; });
  EXPECT_FALSE(fs::exists(model_store_ + "/ghost"));
  EXPECT_FALSE(fs::exists(model_store_ + "/evil"));
  EXPECT_TRUE(fs::exists(dir_ + "/outside/precious"));
  EXPECT_TRUE(
      fs::exists(model.preparation().local_path() + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir_ + "/secret.key"));
  EXPECT_THAT(lines, Contains(HasSubstr("orphans_removed=\"2\"")));
  StopServer();  // Before `log` goes.
}

TEST_F(CatalogTest,
       WatchModelReportsAChangeWithin50MsAndEndsUnavailableOnDrain) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  v1::WatchModelRequest request;
  request.set_name(kCurated);
  auto reader = stub().WatchModel(&context, request);
  v1::Model model;
  ASSERT_TRUE(reader->Read(&model));  // The model now.

  v1::Model changes;
  changes.set_name(kCurated);
  changes.set_description("watched change");
  v1::Model updated;
  const absl::Time sent = absl::Now();
  ASSERT_TRUE(Update(stub(), changes, {"description"}, &updated).ok());
  ASSERT_TRUE(reader->Read(&model));
  const absl::Duration latency = absl::Now() - sent;
  EXPECT_EQ(model.description(), "watched change");
  // From the call's start: the update's own round trip is inside it.
  EXPECT_LT(latency, absl::Milliseconds(50));

  std::thread drain([&] { server_->Shutdown(); });
  EXPECT_FALSE(reader->Read(&model));
  grpc::Status status = reader->Finish();
  drain.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
}

}  // namespace
}  // namespace hangar::testing
