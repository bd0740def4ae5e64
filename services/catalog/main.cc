// hangar-catalog: the catalog service. Flags (each also settable as
// HANGAR_CATALOG_<FLAG> or HANGAR_<FLAG>) become CatalogServer::Options; the
// server runs until SIGTERM/SIGINT and drains. Any start-up error prints
// one line and exits non-zero.
//
//   hangar-catalog --db=postgresql://hangar@127.0.0.1/hangar \
//       --model_store=/var/lib/hangar/models --local_model_root=/models
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "common/server/server_flags.h"
#include "services/catalog/catalog_server.h"

HANGAR_SERVER_FLAGS("127.0.0.1", 7101, 9101);
HANGAR_DATABASE_FLAGS();
ABSL_FLAG(std::string, model_store, "",
          "Directory of prepared model weights (required)");
ABSL_FLAG(std::string, local_model_root, "",
          "Local imports must lie under this directory (empty: disabled)");
ABSL_FLAG(std::string, hf_endpoint, "",
          "Hugging Face Hub or mirror (default: $HF_ENDPOINT, else "
          "https://huggingface.co)");
ABSL_FLAG(std::string, curated_models, "",
          "Curated model list (default: the installed curated_models.json)");
ABSL_FLAG(std::string, secret_key_file, "",
          "Key for sealing connection tokens, created 0600 if missing "
          "(default: <model_store>/.catalog-secret.key)");
ABSL_FLAG(std::string, curated_connection, "",
          "Connection whose token fetches curated models (some are gated on "
          "the Hub)");
ABSL_FLAG(absl::Duration, hub_retry_budget, absl::Minutes(10),
          "How long a preparation waits out one Hub outage (capped "
          "exponential backoff) before it fails");
ABSL_FLAG(std::string, deployment_address, "",
          "Deployment service host:port, asked before deleting a model "
          "(empty: nothing is in use)");

namespace {

// The data file next to the binary (build tree) or under share/ (install).
std::string DefaultCuratedModels(const char* argv0) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::path exe = fs::read_symlink("/proc/self/exe", error);
  if (error) exe = fs::path(argv0);
  const fs::path dir = exe.parent_path();
  for (const fs::path& candidate :
       {dir / "data" / "curated_models.json",
        dir / ".." / "share" / "hangar" / "catalog" / "curated_models.json"}) {
    if (fs::exists(candidate, error))
      return candidate.lexically_normal().string();
  }
  return (dir / "data" / "curated_models.json").string();
}

}  // namespace

int main(int argc, char** argv) {
  hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_CATALOG_", "catalog");

  std::string hf_endpoint = absl::GetFlag(FLAGS_hf_endpoint);
  if (hf_endpoint.empty()) {
    const char* env = std::getenv("HF_ENDPOINT");
    hf_endpoint =
        env != nullptr && *env != '\0' ? env : "https://huggingface.co";
  }
  std::string curated = absl::GetFlag(FLAGS_curated_models);
  if (curated.empty()) curated = DefaultCuratedModels(argv[0]);

  auto server = hangar::catalog::CatalogServer::Create({
      .server = HangarServerOptionsFromFlags("catalog"),
      .admin_token_file = absl::GetFlag(FLAGS_admin_token_file),
      .db = absl::GetFlag(FLAGS_db),
      .db_startup_timeout = absl::GetFlag(FLAGS_db_startup_timeout),
      .db_connect_timeout = absl::GetFlag(FLAGS_db_connect_timeout),
      .model_store = absl::GetFlag(FLAGS_model_store),
      .local_model_root = absl::GetFlag(FLAGS_local_model_root),
      .curated_models = curated,
      .secret_key_file = absl::GetFlag(FLAGS_secret_key_file),
      .hf_endpoint = hf_endpoint,
      .hub_retry = {.budget = absl::GetFlag(FLAGS_hub_retry_budget)},
      .deployment_address = absl::GetFlag(FLAGS_deployment_address),
      .curated_connection = absl::GetFlag(FLAGS_curated_connection),
  });
  if (!server.ok()) {
    std::cerr << "catalog: " << server.status().message() << std::endl;
    return 1;
  }
  std::cerr << "catalog: serving on " << (*server)->address()
            << ", metrics on port " << (*server)->metrics_port() << std::endl;
  (*server)->WaitForTermination();
  return 0;
}
