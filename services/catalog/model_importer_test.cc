// Unit tests of ModelImporter, written as the example for the domain tests
// of every Hangar service: in-memory fakes of each seam (stores, Hub), the
// fake clock, a real TaskGroup and ChangeNotifier, and waits on conditions
// (AwaitModel), never sleeps. Each test states one behaviour a user relies
// on; the stores and the Hub are checked through their fakes.
#include "services/catalog/model_importer.h"

#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "engine/gguf.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "services/catalog/testing/catalog_fixture.h"

namespace hangar::catalog {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "hf_SecretTokenValue1234567890";

std::string Config(const std::string& architecture = "LlamaForCausalLM",
                   const std::string& model_type = "llama") {
  return nlohmann::json{
      {"architectures", {architecture}}, {"model_type", model_type},
      {"num_hidden_layers", 2},          {"hidden_size", 64},
      {"num_attention_heads", 4},        {"num_key_value_heads", 2},
      {"intermediate_size", 128},        {"vocab_size", 32},
      {"max_position_embeddings", 512},  {"torch_dtype", "bfloat16"}}
      .dump();
}

// A safetensors file: two BF16 tensors of 32 x 64 and 64 elements.
std::string Safetensors() {
  const std::string header =
      R"({"model.embed_tokens.weight": {"dtype": "BF16", "shape": [32, 64],)"
      R"( "data_offsets": [0, 4096]}, "model.norm.weight": {"dtype": "BF16",)"
      R"( "shape": [64], "data_offsets": [4096, 4224]}})";
  std::string bytes(8, '\0');
  const uint64_t length = header.size();
  std::memcpy(bytes.data(), &length, 8);
  return bytes + header + std::string(4224, '\x01');
}

bool Settled(const v1::Model& model) {
  return model.state() != v1::MODEL_STATE_IMPORTING;
}

class ModelImporterTest : public testing::CatalogFixture {
 protected:
  void SetUp() override {
    CatalogFixture::SetUp();
    local_root_ = hangar::testing::MakeTempDir("importer_test");
    auto importer = ModelImporter::Create({.local_model_root = local_root_,
                                           .cpu_max_parameters = 1'000'000,
                                           .context = Context()});
    ASSERT_THAT(importer.status(), IsOk());
    importer_ = *std::move(importer);
    hub_.SetFile("config.json", Config());
    hub_.SetFile("model.safetensors", Safetensors());
  }
  void TearDown() override {
    tasks_->Shutdown();
    std::filesystem::remove_all(local_root_);
  }

  static v1::ImportModelRequest FromHub(const std::string& repo,
                                        const std::string& connection = "") {
    v1::ImportModelRequest request;
    request.mutable_hugging_face()->set_repo(repo);
    request.mutable_hugging_face()->set_connection(connection);
    request.set_description("imported for a test");
    return request;
  }

  std::string local_root_;
  std::unique_ptr<ModelImporter> importer_;
};

TEST_F(ModelImporterTest, HubImportReturnsImportingThenReadsHeadersToReady) {
  absl::StatusOr<v1::Model> created = importer_->Import(FromHub("acme/tiny"));
  ASSERT_THAT(created.status(), IsOk());
  EXPECT_EQ(created->state(), v1::MODEL_STATE_IMPORTING);
  EXPECT_EQ(created->resolved_revision(), std::string(40, 'a'));

  v1::Model model = AwaitModel("acme/tiny", Settled);
  ASSERT_EQ(model.state(), v1::MODEL_STATE_READY) << model.failure_reason();
  EXPECT_EQ(model.architecture(), "LlamaForCausalLM");
  EXPECT_EQ(model.family(), "llama");
  EXPECT_EQ(model.parameter_count(), 32 * 64 + 64);  // From the header.
  EXPECT_EQ(model.default_dtype(), "bfloat16");
  EXPECT_EQ(model.context_length(), 512);
  EXPECT_TRUE(model.runs_on_cpu());
  EXPECT_FALSE(model.supported_recipes().empty());
  // One line per state change.
  EXPECT_THAT(log_lines(),
              Contains(AllOf(HasSubstr("event=import_state"),
                             HasSubstr("acme/tiny"), HasSubstr("IMPORTING"))));
  EXPECT_THAT(log_lines(), Contains(AllOf(HasSubstr("event=import_state"),
                                          HasSubstr("MODEL_STATE_READY"))));
}

TEST_F(ModelImporterTest, UnsupportedArchitectureFailsNamingIt) {
  hub_.SetFile("config.json", Config("GPT2LMHeadModel", "gpt2"));
  ASSERT_THAT(importer_->Import(FromHub("acme/gpt2")).status(), IsOk());
  v1::Model model = AwaitModel("acme/gpt2", Settled);
  EXPECT_EQ(model.state(), v1::MODEL_STATE_FAILED);
  EXPECT_THAT(model.failure_reason(), AllOf(HasSubstr("GPT2LMHeadModel"),
                                            HasSubstr("LlamaForCausalLM")));
}

TEST_F(ModelImporterTest, AHostileHeaderFailsTheImportCleanly) {
  std::string bytes(8, '\0');
  const uint64_t huge = uint64_t{1} << 40;
  std::memcpy(bytes.data(), &huge, 8);
  hub_.SetFile("model.safetensors", bytes);
  ASSERT_THAT(importer_->Import(FromHub("acme/hostile")).status(), IsOk());
  v1::Model model = AwaitModel("acme/hostile", Settled);
  EXPECT_EQ(model.state(), v1::MODEL_STATE_FAILED);
  EXPECT_THAT(model.failure_reason(),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("100 MiB")));
}

TEST_F(ModelImporterTest, ErrorsOfTheCallWriteNothing) {
  EXPECT_THAT(importer_->Import(FromHub("not a repo")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("hugging_face.repo")));
  EXPECT_THAT(importer_->Import(FromHub("acme/m", "missing")).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("hugging_face.connection")));
  models_.SetUnavailable(true);
  EXPECT_THAT(importer_->Import(FromHub("acme/m")).status(),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  models_.SetUnavailable(false);
  EXPECT_THAT(models_.ListModels({}, "", 10)->total, 0);
}

TEST_F(ModelImporterTest, ImportThroughAConnectionNeverLogsTheToken) {
  v1::Connection connection;
  connection.set_name("hf");
  connection.set_token(kToken);
  ASSERT_THAT(connections_->Create(connection).status(), IsOk());
  ASSERT_THAT(importer_->Import(FromHub("acme/private", "hf")).status(),
              IsOk());
  v1::Model model = AwaitModel("acme/private", Settled);
  EXPECT_EQ(model.state(), v1::MODEL_STATE_READY) << model.failure_reason();
  EXPECT_EQ(model.connection(), "hf");
  ASSERT_FALSE(log_lines().empty());
  EXPECT_THAT(log_lines(), Not(Contains(HasSubstr("SecretToken"))));
}

TEST_F(ModelImporterTest, ResumesImportsARestartLeftImporting) {
  v1::Model left;
  left.set_name("acme/left");
  left.set_source(v1::MODEL_SOURCE_HUGGING_FACE);
  left.set_state(v1::MODEL_STATE_IMPORTING);
  left.set_hf_repo("acme/left");
  left.set_resolved_revision(std::string(40, 'a'));
  ASSERT_THAT(models_.CreateModel(left).status(), IsOk());
  ASSERT_THAT(importer_->ResumeInterrupted(), IsOk());
  EXPECT_EQ(AwaitModel("acme/left", Settled).state(), v1::MODEL_STATE_READY);
}

TEST_F(ModelImporterTest, LocalGgufOfEveryEngineArchitectureIsAccepted) {
  // The engine runs GGUF "mistral"; the catalog's old parser refused it.
  engine::GgufWriter writer;
  writer.AddString("general.architecture", "mistral");
  writer.AddString("general.license", "apache-2.0");
  writer.AddU32("mistral.embedding_length", 64);
  writer.AddU32("mistral.block_count", 2);
  writer.AddU32("mistral.feed_forward_length", 128);
  writer.AddU32("mistral.attention.head_count", 4);
  writer.AddU32("mistral.attention.head_count_kv", 2);
  writer.AddU32("mistral.context_length", 1024);
  writer.AddTensor("token_embd.weight", engine::kGgmlF32, {64, 32},
                   std::string(64 * 32 * 4, '\0'));
  writer.AddTensor("output_norm.weight", engine::kGgmlF32, {64},
                   std::string(64 * 4, '\0'));
  ASSERT_THAT(writer.Write(local_root_ + "/tiny-mistral.gguf"), IsOk());
  v1::ImportModelRequest request;
  request.mutable_local()->set_path("tiny-mistral.gguf");
  ASSERT_THAT(importer_->Import(request).status(), IsOk());
  v1::Model model = AwaitModel("local/tiny-mistral", [](const v1::Model& m) {
    return m.state() == v1::MODEL_STATE_FAILED ||
           m.preparation().state() == v1::PREPARATION_STATE_PREPARED;
  });
  ASSERT_EQ(model.state(), v1::MODEL_STATE_READY) << model.failure_reason();
  EXPECT_EQ(model.architecture(), "MistralForCausalLM");
  EXPECT_EQ(model.family(), "mistral");
  EXPECT_EQ(model.context_length(), 1024);
  EXPECT_EQ(model.parameter_count(), 64 * 32 + 64);
  EXPECT_EQ(model.default_dtype(), "float32");
  EXPECT_EQ(model.license(), "apache-2.0");
  EXPECT_EQ(model.preparation().local_path(),
            std::filesystem::path(local_root_ + "/tiny-mistral.gguf")
                .lexically_normal()
                .string());
}

TEST_F(ModelImporterTest, LocalPathsOutsideTheRootAreRefused) {
  v1::ImportModelRequest request;
  request.mutable_local()->set_path("../outside");
  EXPECT_THAT(
      importer_->Import(request).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("local.path")));
}

}  // namespace
}  // namespace hangar::catalog
