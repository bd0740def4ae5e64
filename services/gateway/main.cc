// hangar-gateway: the public inference door. Flags (environment fallbacks
// HANGAR_GATEWAY_<FLAG> or HANGAR_<FLAG>) become GatewayServer::Options; see
// services/gateway/README.md.
//
//   hangar-gateway --scheduler_address=127.0.0.1:7104 \
//       --deployment_address=127.0.0.1:7102 --admin_token_file=/etc/admin
#include <unistd.h>

#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "common/server/server_flags.h"
#include "services/gateway/gateway_server.h"

HANGAR_SERVER_FLAGS("0.0.0.0", 7100, 9100);
ABSL_FLAG(std::string, scheduler_address, "",
          "SchedulerService host:port (WatchRoutes, ReportLoad); required");
ABSL_FLAG(std::string, deployment_address, "",
          "DeploymentService host:port (WatchApiKeys, RecordUsage); required");
ABSL_FLAG(absl::Duration, max_queue_delay, absl::Milliseconds(5),
          "Longest a partial batch waits for company, in [0, 10s]");
ABSL_FLAG(int, max_queue_size, 1024,
          "Requests waiting per deployment revision before "
          "RESOURCE_EXHAUSTED, in [1, 1048576]");
ABSL_FLAG(int, max_concurrent_per_key, 256,
          "Calls one API key may have in flight, in [1, 1048576]");
ABSL_FLAG(int, max_attempts, 3,
          "Dispatches of one request at most when replicas fail, in [1, 10]");
ABSL_FLAG(std::string, gateway_id, "",
          "This instance's id in load and usage reports; default "
          "<hostname>-<pid>");

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex (gRPC's
  // included) would feed a process-wide lock-order graph under a global
  // lock on each acquisition; tests keep the check, the server skips it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_GATEWAY_", "gateway");

  std::string gateway_id = absl::GetFlag(FLAGS_gateway_id);
  if (gateway_id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    gateway_id = absl::StrCat(host, "-", getpid());
  }
  auto server = hangar::gateway::GatewayServer::Create({
      .server =
          [] {
            hangar::ServerOptions server =
                HangarServerOptionsFromFlags("gateway");
            server.max_message_bytes = 4 << 20;
            return server;
          }(),
      .scheduler_address = absl::GetFlag(FLAGS_scheduler_address),
      .deployment_address = absl::GetFlag(FLAGS_deployment_address),
      .admin_token_file = absl::GetFlag(FLAGS_admin_token_file),
      .gateway_id = gateway_id,
      .max_queue_delay = absl::GetFlag(FLAGS_max_queue_delay),
      .max_queue_size = absl::GetFlag(FLAGS_max_queue_size),
      .max_concurrent_per_key = absl::GetFlag(FLAGS_max_concurrent_per_key),
      .max_attempts = absl::GetFlag(FLAGS_max_attempts),
  });
  if (!server.ok()) {
    std::cerr << "gateway: " << server.status().message() << std::endl;
    return 1;
  }
  std::cerr << "gateway: serving on " << (*server)->address()
            << " (metrics port " << (*server)->server().metrics_port()
            << ", id " << gateway_id << ")" << std::endl;
  (*server)->WaitForTermination();
  return 0;
}
