// hangar-deployment: the deployment service. Flags (each also settable as
// HANGAR_DEPLOYMENT_<FLAG> or HANGAR_<FLAG>) become
// DeploymentServer::Options; the server runs until SIGTERM/SIGINT and
// drains. Any start-up error prints one line and exits non-zero.
//
//   hangar-deployment --db=postgresql://hangar@127.0.0.1/hangar \
//       --catalog_address=127.0.0.1:7101 --scheduler_address=127.0.0.1:7103 \
//       --gateway_endpoint=inference.example.com:443
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "services/deployment/deployment_server.h"

ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address to bind (0.0.0.0 in containers)");
ABSL_FLAG(int, port, 7102, "gRPC port (0 picks a free one)");
ABSL_FLAG(int, metrics_port, 9102, "Prometheus /metrics port (-1: none)");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "How long in-flight calls may finish after SIGTERM");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate for TLS (with --tls_key_file)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key for TLS");
ABSL_FLAG(std::string, admin_token_file, "",
          "When set, every call but health/reflection needs 'authorization: "
          "Bearer <token>', and calls to the catalog and scheduler carry it");
ABSL_FLAG(std::string, db, "",
          "PostgreSQL: libpq conninfo or postgresql:// URI (required)");
ABSL_FLAG(
    absl::Duration, db_startup_timeout, absl::ZeroDuration(),
    "Keep retrying an unreachable database this long at start (containers)");
ABSL_FLAG(absl::Duration, db_connect_timeout, absl::Seconds(2),
          "Longest one PostgreSQL connection attempt may take");
ABSL_FLAG(std::string, catalog_address, "",
          "Catalog service host:port, asked about models (required)");
ABSL_FLAG(std::string, scheduler_address, "",
          "Scheduler service host:port, asked about hardware (required)");
ABSL_FLAG(std::string, gateway_endpoint, "127.0.0.1:7100",
          "The inference gateway address shown to users");
ABSL_FLAG(double, prompt_price_per_1k, 0.0,
          "Inference price in USD per 1000 prompt tokens (GetUsage)");
ABSL_FLAG(double, completion_price_per_1k, 0.0,
          "Inference price in USD per 1000 completion tokens (GetUsage)");

int main(int argc, char** argv) {
  hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_DEPLOYMENT_", "deployment");
  auto server = hangar::deployment::DeploymentServer::Create({
      .server = {.name = "deployment",
                 .host = absl::GetFlag(FLAGS_host),
                 .port = absl::GetFlag(FLAGS_port),
                 .metrics_port = absl::GetFlag(FLAGS_metrics_port),
                 .drain_timeout = absl::GetFlag(FLAGS_drain_timeout),
                 .tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                 .tls_key_file = absl::GetFlag(FLAGS_tls_key_file)},
      .admin_token_file = absl::GetFlag(FLAGS_admin_token_file),
      .db = absl::GetFlag(FLAGS_db),
      .db_startup_timeout = absl::GetFlag(FLAGS_db_startup_timeout),
      .db_connect_timeout = absl::GetFlag(FLAGS_db_connect_timeout),
      .catalog_address = absl::GetFlag(FLAGS_catalog_address),
      .scheduler_address = absl::GetFlag(FLAGS_scheduler_address),
      .gateway_endpoint = absl::GetFlag(FLAGS_gateway_endpoint),
      .prompt_price_per_1k = absl::GetFlag(FLAGS_prompt_price_per_1k),
      .completion_price_per_1k = absl::GetFlag(FLAGS_completion_price_per_1k),
  });
  if (!server.ok()) {
    std::cerr << "deployment: " << server.status().message() << std::endl;
    return 1;
  }
  std::cerr << "deployment: serving on " << (*server)->address()
            << ", metrics on port " << (*server)->metrics_port() << std::endl;
  (*server)->WaitForTermination();
  return 0;
}
