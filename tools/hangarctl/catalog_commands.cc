// models list|get|import|prepare and connections create|list|delete: the
// catalog's CatalogService through its generated stub.
#include <functional>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/util/file.h"
#include "hangar/v1/catalog.grpc.pb.h"
#include "tools/hangarctl/commands.h"
#include "tools/hangarctl/output.h"

namespace hangar::ctl {
namespace {

std::unique_ptr<v1::CatalogService::Stub> Catalog(Invocation& in) {
  return v1::CatalogService::NewStub(in.Channel(Service::kCatalog));
}

std::string State(const v1::Model& model) {
  return EnumName(v1::ModelState_descriptor(), model.state());
}
std::string Preparation(const v1::Model& model) {
  return EnumName(v1::PreparationState_descriptor(),
                  model.preparation().state());
}

void PrintModel(const v1::Model& model) {
  Details details;
  details.Add("Name", model.name());
  details.Add("Display name", OrDash(model.display_name()));
  details.Add("Description", OrDash(model.description()));
  details.Add("Source", EnumName(v1::ModelSource_descriptor(), model.source()));
  details.Add("State", State(model));
  if (!model.failure_reason().empty()) {
    details.Add("Failure", model.failure_reason());
  }
  details.Add("Family", OrDash(model.family()));
  details.Add("Architecture", OrDash(model.architecture()));
  details.Add("Parameters", FormatCount(model.parameter_count()));
  details.Add("Context length", absl::StrCat(model.context_length()));
  details.Add("License", OrDash(model.license()));
  details.Add("Default dtype", OrDash(model.default_dtype()));
  std::vector<std::string> sizes;
  for (const v1::WeightSize& size : model.weight_sizes()) {
    sizes.push_back(absl::StrCat(size.dtype(), " ", FormatBytes(size.bytes())));
  }
  details.Add("Weights", OrDash(absl::StrJoin(sizes, ", ")));
  std::vector<std::string> recipes;
  for (const v1::RecipeSupport& support : model.supported_recipes()) {
    recipes.push_back(absl::StrCat(FormatRecipe(support.recipe()), " (",
                                   FormatBytes(support.min_gpu_memory_bytes()),
                                   ")"));
  }
  details.Add("Recipes", OrDash(absl::StrJoin(recipes, ", ")));
  details.Add("Tags", OrDash(absl::StrJoin(model.tags(), ", ")));
  details.Add("Runs on CPU", model.runs_on_cpu() ? "yes" : "no");
  if (!model.hf_repo().empty()) {
    details.Add(
        "Hugging Face",
        absl::StrCat(model.hf_repo(), "@",
                     model.revision().empty() ? "main" : model.revision()));
  }
  if (!model.local_path().empty())
    details.Add("Local path", model.local_path());
  details.Add("Preparation", Preparation(model));
  if (!model.preparation().local_path().empty()) {
    details.Add("Prepared at", model.preparation().local_path());
  }
  details.Add("Created", FormatTime(model.create_time()));
  details.Print();
}

// Follows WatchModel until `done` says the wait is over; returns the last
// model seen in `last`.
grpc::Status WatchModel(Invocation& in, const std::string& name,
                        const std::function<bool(const v1::Model&)>& done,
                        const std::function<void(const v1::Model&)>& show,
                        v1::Model* last) {
  auto context = in.Context(Auth::kAdmin, WatchTimeout(in));
  v1::WatchModelRequest request;
  request.set_name(name);
  auto reader = Catalog(in)->WatchModel(context.get(), request);
  while (reader->Read(last)) {
    show(*last);
    if (done(*last)) {
      context->TryCancel();
      reader->Finish().IgnoreError();
      return grpc::Status::OK;
    }
  }
  grpc::Status status = reader->Finish();
  if (status.ok()) {
    return grpc::Status(grpc::StatusCode::ABORTED,
                        "model " + name + ": the watch ended early");
  }
  return status;
}

int ModelsList(Invocation& in) {
  v1::ListModelsRequest request;
  request.set_query(in.String("query"));
  request.set_family(in.String("family"));
  request.set_tag(in.String("tag"));
  request.set_runs_on_cpu(in.Bool("runs_on_cpu"));
  if (in.Has("source")) {
    v1::ModelSource source;
    if (!v1::ModelSource_Parse(
            "MODEL_SOURCE_" + absl::AsciiStrToUpper(in.String("source")),
            &source)) {
      return UsageError(in.command(),
                        "--source: must be curated, hugging_face or local; "
                        "was \"" +
                            in.String("source") + "\"");
    }
    request.set_source(source);
  }
  v1::ListModelsResponse all;
  grpc::Status status = FetchAllPages(
      [&](const std::string& token, v1::ListModelsResponse* page) {
        request.set_page_token(token);
        return Catalog(in)->ListModels(in.Context().get(), request, page);
      },
      &all);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(all);
    return kExitOk;
  }
  if (all.models().empty()) {
    std::cerr << "No models found.\n";
    return kExitOk;
  }
  Table table({"NAME", "FAMILY", "PARAMS", "CONTEXT", "LICENSE", "STATE",
               "PREPARED", "CPU"});
  for (const v1::Model& model : all.models()) {
    table.AddRow({model.name(), OrDash(model.family()),
                  FormatCount(model.parameter_count()),
                  absl::StrCat(model.context_length()), OrDash(model.license()),
                  State(model), Preparation(model),
                  model.runs_on_cpu() ? "yes" : "no"});
  }
  table.Print();
  return kExitOk;
}

int ModelsGet(Invocation& in) {
  v1::GetModelRequest request;
  request.set_name(in.arg(0));
  v1::Model model;
  grpc::Status status =
      Catalog(in)->GetModel(in.Context().get(), request, &model);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(model);
  } else {
    PrintModel(model);
  }
  return kExitOk;
}

int ModelsImport(Invocation& in) {
  v1::ImportModelRequest request;
  if (in.Has("local") == !in.arg(0).empty()) {
    return UsageError(in.command(),
                      "models import: give a Hugging Face REPO or --local, "
                      "not both");
  }
  if (in.Has("local")) {
    if (in.Has("revision") || in.Has("connection")) {
      return UsageError(in.command(),
                        "--revision and --connection are for Hugging Face "
                        "imports");
    }
    request.mutable_local()->set_path(in.String("local"));
  } else {
    v1::HuggingFaceSource& source = *request.mutable_hugging_face();
    source.set_repo(in.arg(0));
    source.set_revision(in.String("revision"));
    source.set_connection(in.String("connection"));
  }
  request.set_name(in.String("name"));
  request.set_description(in.String("description"));
  for (const std::string& tag : in.Strings("tag")) request.add_tags(tag);
  v1::Model model;
  grpc::Status status =
      Catalog(in)->ImportModel(in.Context().get(), request, &model);
  if (!status.ok()) return Fail(status);
  if (in.Bool("wait")) {
    if (!in.json()) std::cout << "importing " << model.name() << "\n";
    status = WatchModel(
        in, model.name(),
        [](const v1::Model& m) {
          return m.state() != v1::MODEL_STATE_IMPORTING;
        },
        [](const v1::Model&) {}, &model);
    if (!status.ok()) return Fail(status);
  }
  if (in.json()) {
    PrintJson(model);
  } else {
    std::cout << "model " << model.name() << " " << State(model) << "\n";
  }
  if (model.state() == v1::MODEL_STATE_FAILED) {
    std::cerr << "hangarctl: model " << model.name()
              << ": import FAILED: " << model.failure_reason() << std::endl;
    return kExitEndedBadly;
  }
  return kExitOk;
}

int ModelsPrepare(Invocation& in) {
  v1::PrepareModelRequest request;
  request.set_name(in.arg(0));
  v1::Preparation preparation;
  grpc::Status status =
      Catalog(in)->PrepareModel(in.Context().get(), request, &preparation);
  if (!status.ok()) return Fail(status);
  v1::Model model;
  *model.mutable_preparation() = preparation;
  model.set_name(in.arg(0));
  auto finished = [](const v1::Model& m) {
    return m.preparation().state() == v1::PREPARATION_STATE_PREPARED ||
           m.preparation().state() == v1::PREPARATION_STATE_FAILED;
  };
  if (!in.Bool("detach") && !finished(model)) {
    // Progress on stdout for people; with --output json only the result.
    std::ostream& out = in.json() ? std::cerr : std::cout;
    ProgressDisplay progress(in.stdout_is_tty() && !in.json(), out);
    status = WatchModel(
        in, in.arg(0), finished,
        [&progress](const v1::Model& m) {
          const v1::Progress& p = m.preparation().progress();
          progress.Update(EnumName(v1::PreparationState_descriptor(),
                                   m.preparation().state()),
                          p.done(), p.total(), /*bytes=*/true, p.message());
        },
        &model);
    progress.Finish();
    if (!status.ok()) return Fail(status);
  }
  const v1::Preparation& result = model.preparation();
  if (in.json()) {
    PrintJson(result);
  } else {
    std::cout << "model " << model.name() << " "
              << EnumName(v1::PreparationState_descriptor(), result.state());
    if (!result.local_path().empty())
      std::cout << " at " << result.local_path();
    std::cout << "\n";
  }
  if (result.state() == v1::PREPARATION_STATE_FAILED) {
    std::cerr << "hangarctl: model " << model.name()
              << ": preparation FAILED: " << result.failure_reason()
              << std::endl;
    return kExitEndedBadly;
  }
  return kExitOk;
}

int ConnectionsCreate(Invocation& in) {
  v1::CreateConnectionRequest request;
  v1::Connection& connection = *request.mutable_connection();
  connection.set_name(in.arg(0));
  connection.set_description(in.String("description"));
  std::string token;
  if (in.Has("token_file")) {
    absl::StatusOr<std::string> read =
        ReadFileToString(in.String("token_file"));
    if (!read.ok()) {
      return UsageError(in.command(), absl::StrCat("--token_file: ",
                                                   read.status().message()));
    }
    token = std::string(absl::StripAsciiWhitespace(*read));
  } else if (const char* env = std::getenv("HF_TOKEN"); env != nullptr) {
    token = env;
  }
  if (token.empty()) {
    return UsageError(in.command(),
                      "connections create: the token comes from --token_file "
                      "or HF_TOKEN");
  }
  connection.set_token(token);
  v1::Connection created;
  grpc::Status status =
      Catalog(in)->CreateConnection(in.Context().get(), request, &created);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(created);
  } else {
    std::cout << "connection " << created.name() << " created (token "
              << created.token_prefix() << "...)\n";
  }
  return kExitOk;
}

int ConnectionsList(Invocation& in) {
  v1::ListConnectionsRequest request;
  v1::ListConnectionsResponse all;
  grpc::Status status = FetchAllPages(
      [&](const std::string& token, v1::ListConnectionsResponse* page) {
        request.set_page_token(token);
        return Catalog(in)->ListConnections(in.Context().get(), request, page);
      },
      &all);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(all);
    return kExitOk;
  }
  if (all.connections().empty()) {
    std::cerr << "No connections found.\n";
    return kExitOk;
  }
  Table table({"NAME", "TOKEN", "DESCRIPTION", "AGE"});
  for (const v1::Connection& connection : all.connections()) {
    table.AddRow({connection.name(), connection.token_prefix() + "...",
                  OrDash(connection.description()),
                  FormatAge(connection.create_time())});
  }
  table.Print();
  return kExitOk;
}

int ConnectionsDelete(Invocation& in) {
  v1::DeleteConnectionRequest request;
  request.set_name(in.arg(0));
  v1::DeleteConnectionResponse response;
  grpc::Status status =
      Catalog(in)->DeleteConnection(in.Context().get(), request, &response);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(response);
  } else {
    std::cout << "connection " << in.arg(0) << " deleted\n";
  }
  return kExitOk;
}

}  // namespace

std::vector<Command> ModelsCommands() {
  return {
      {.path = "models list",
       .summary = "List the catalog's models",
       .details = "Every page, in name order. Columns: NAME FAMILY PARAMS "
                  "CONTEXT LICENSE STATE PREPARED CPU.\n\n"
                  "Examples:\n"
                  "  hangarctl models list\n"
                  "  hangarctl models list --runs_on_cpu --query smol\n"
                  "  hangarctl models list -o json\n",
       .flags = {{"query", FlagType::kString, "TEXT",
                  "substring of name, display name or description"},
                 {"family", FlagType::kString, "FAMILY",
                  "only this family (llama, qwen2, ...)"},
                 {"tag", FlagType::kString, "TAG", "only models with this tag"},
                 {"source", FlagType::kString, "SOURCE",
                  "curated, hugging_face or local"},
                 {"runs_on_cpu", FlagType::kBool, "",
                  "only models the CPU engine runs here"}},
       .run = ModelsList},
      {.path = "models get",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Show one model: architecture, sizes, recipes, preparation",
       .details = "Example:\n  hangarctl models get "
                  "HuggingFaceTB/SmolLM2-135M-Instruct\n",
       .run = ModelsGet},
      {.path = "models import",
       .arguments = "[REPO]",
       .max_args = 1,
       .summary = "Import a model from Hugging Face (REPO) or a local path",
       .details = "REPO is a Hugging Face repository id (owner/name); "
                  "--local imports a directory or .gguf file under the "
                  "catalog's --local_model_root instead. Returns once the "
                  "import started, or with --wait once it is READY (exit 0) "
                  "or FAILED (exit 3).\n\n"
                  "Examples:\n"
                  "  hangarctl models import Qwen/Qwen2.5-0.5B-Instruct "
                  "--wait\n"
                  "  hangarctl models import acme/private-llama --connection "
                  "hf\n"
                  "  hangarctl models import --local tiny-random-llama\n",
       .flags = {{"local", FlagType::kString, "PATH",
                  "import a local directory or .gguf file"},
                 {"revision", FlagType::kString, "REV", "branch, tag or commit",
                  "main"},
                 {"connection", FlagType::kString, "NAME",
                  "connection holding the token of a private repository"},
                 {"name", FlagType::kString, "NAME",
                  "catalog name (default: the repo id or local/<basename>)"},
                 {"description", FlagType::kString, "TEXT", "description"},
                 {"tag", FlagType::kStrings, "TAG", "tag"},
                 {"wait", FlagType::kBool, "",
                  "wait until the import is READY or FAILED"},
                 WatchTimeoutFlag()},
       .run = ModelsImport},
      {.path = "models prepare",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Download a model's weights into the model store",
       .details = "Starts (or joins) the preparation and follows it with a "
                  "progress bar on a terminal, plain lines otherwise, until "
                  "PREPARED (exit 0) or FAILED (exit 3). --detach returns at "
                  "once.\n\n"
                  "Example:\n  hangarctl models prepare "
                  "HuggingFaceTB/SmolLM2-135M-Instruct\n",
       .flags = {{"detach", FlagType::kBool, "",
                  "start the preparation and return at once"},
                 WatchTimeoutFlag()},
       .run = ModelsPrepare},
  };
}

std::vector<Command> ConnectionsCommands() {
  return {
      {.path = "connections create",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Store a Hugging Face token under a name",
       .details = "The token is read from --token_file, else from the "
                  "HF_TOKEN environment variable; it is never shown "
                  "again.\n\n"
                  "Example:\n  HF_TOKEN=hf_... hangarctl connections create "
                  "hf\n",
       .flags = {{"token_file", FlagType::kString, "FILE",
                  "file holding the token (default: env HF_TOKEN)"},
                 {"description", FlagType::kString, "TEXT", "description"}},
       .run = ConnectionsCreate},
      {.path = "connections list",
       .summary = "List the Hugging Face connections",
       .run = ConnectionsList},
      {.path = "connections delete",
       .arguments = "NAME",
       .min_args = 1,
       .max_args = 1,
       .summary = "Delete a connection",
       .run = ConnectionsDelete},
  };
}

}  // namespace hangar::ctl
