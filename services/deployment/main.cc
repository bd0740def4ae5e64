// hangar-deployment: the deployment service. Flags (each also settable as
// HANGAR_DEPLOYMENT_<FLAG> or HANGAR_<FLAG>) become
// DeploymentServer::Options; the server runs until SIGTERM/SIGINT and
// drains. Any start-up error prints one line and exits non-zero.
//
//   hangar-deployment --db=postgresql://hangar@127.0.0.1/hangar \
//       --catalog_address=127.0.0.1:7101 --scheduler_address=127.0.0.1:7104 \
//       --optimizer_address=127.0.0.1:7103 \
//       --gateway_endpoint=inference.example.com:443
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "common/server/server_flags.h"
#include "services/deployment/deployment_server.h"

HANGAR_SERVER_FLAGS("127.0.0.1", 7102, 9102);
HANGAR_DATABASE_FLAGS();
ABSL_FLAG(int, db_read_pool_size, 2,
          "Database connections kept for GetDeployment and ListDeployments "
          "(0: they share the main pool)");
ABSL_FLAG(std::string, catalog_address, "",
          "Catalog service host:port, asked about models (required)");
ABSL_FLAG(std::string, scheduler_address, "",
          "Scheduler service host:port, asked about hardware (required)");
ABSL_FLAG(std::string, optimizer_address, "127.0.0.1:7103",
          "Optimizer service host:port (the reconciler's conversion jobs)");
ABSL_FLAG(absl::Duration, resync_interval, absl::Seconds(10),
          "The reconciler looks at every live deployment this often");
ABSL_FLAG(absl::Duration, active_interval, absl::Seconds(1),
          "The reconciler looks at a deployment on its way this often");
ABSL_FLAG(absl::Duration, lease_duration, absl::Seconds(30),
          "A deployment moves to another deployment process when this one "
          "has not renewed its lease for this long");
ABSL_FLAG(int, drain_seconds, 10,
          "Seconds a released replica may finish its requests, in [0, 3600]");
ABSL_FLAG(int, threads_per_replica, 1, "Engine threads per replica");
ABSL_FLAG(int, max_context_length, 8192,
          "Tokens per sequence a replica reserves KV cache for: the model's "
          "context length, at most this");
ABSL_FLAG(absl::Duration, deploy_timeout, absl::Minutes(10),
          "A revision whose replicas are not min_replicas READY this long "
          "after they were placed goes FAILED (the serving one keeps "
          "serving)");
ABSL_FLAG(std::string, gateway_endpoint, "127.0.0.1:7100",
          "The inference gateway address shown to users");
ABSL_FLAG(int, webhook_max_attempts, 8,
          "Attempts per webhook delivery in all (retried with backoff), in "
          "[1, 100]");
ABSL_FLAG(absl::Duration, webhook_timeout, absl::Seconds(5),
          "Longest one webhook delivery attempt may take, in (0, 60s]");
ABSL_FLAG(double, prompt_price_per_1k, 0.0,
          "Inference price in USD per 1000 prompt tokens (GetUsage)");
ABSL_FLAG(double, completion_price_per_1k, 0.0,
          "Inference price in USD per 1000 completion tokens (GetUsage)");

int main(int argc, char** argv) {
  hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_DEPLOYMENT_", "deployment");
  auto server = hangar::deployment::DeploymentServer::Create({
      .server = HangarServerOptionsFromFlags("deployment"),
      .admin_token_file = absl::GetFlag(FLAGS_admin_token_file),
      .db = absl::GetFlag(FLAGS_db),
      .db_startup_timeout = absl::GetFlag(FLAGS_db_startup_timeout),
      .db_connect_timeout = absl::GetFlag(FLAGS_db_connect_timeout),
      .db_read_pool_size = absl::GetFlag(FLAGS_db_read_pool_size),
      .catalog_address = absl::GetFlag(FLAGS_catalog_address),
      .scheduler_address = absl::GetFlag(FLAGS_scheduler_address),
      .optimizer_address = absl::GetFlag(FLAGS_optimizer_address),
      .resync_interval = absl::GetFlag(FLAGS_resync_interval),
      .active_interval = absl::GetFlag(FLAGS_active_interval),
      .lease_duration = absl::GetFlag(FLAGS_lease_duration),
      .drain_seconds = absl::GetFlag(FLAGS_drain_seconds),
      .threads_per_replica = absl::GetFlag(FLAGS_threads_per_replica),
      .max_context_length = absl::GetFlag(FLAGS_max_context_length),
      .deploy_timeout = absl::GetFlag(FLAGS_deploy_timeout),
      .gateway_endpoint = absl::GetFlag(FLAGS_gateway_endpoint),
      .webhook_max_attempts = absl::GetFlag(FLAGS_webhook_max_attempts),
      .webhook_timeout = absl::GetFlag(FLAGS_webhook_timeout),
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
