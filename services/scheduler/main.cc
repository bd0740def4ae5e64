// hangar-scheduler: the scheduler service. Flags (each also settable as
// HANGAR_SCHEDULER_<FLAG> or HANGAR_<FLAG>) become SchedulerServer::Options;
// the server runs until SIGTERM/SIGINT and drains, then stops every runner
// and job it started (jobs go back to the queue). With --state_dir, a
// scheduler killed by SIGKILL leaves its children running and the next one
// re-adopts them (local_executor.h). A start-up error prints one line and exits
// 1; a bad hardware file exits 2 (its message names the file, the line and the
// rule).
//
//   hangar-scheduler --db=postgresql://hangar@127.0.0.1/hangar \
//       --hardware_config=deploy/config/hardware.textproto
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "common/server/server_flags.h"
#include "services/scheduler/hardware_config.h"
#include "services/scheduler/scheduler_server.h"

HANGAR_SERVER_FLAGS("127.0.0.1", 7104, 9104);
HANGAR_DATABASE_FLAGS();
ABSL_FLAG(std::string, hardware_config, "",
          "Hardware pools and offerings, protobuf text format (default: "
          "deploy/config/hardware.textproto of the source tree, or "
          "share/hangar/hardware.textproto next to the install)");
ABSL_FLAG(std::string, placement_policy, "best-fit",
          "best-fit, first-fit or fgd (fragmentation-aware)");
ABSL_FLAG(std::string, runner_binary, "",
          "hangar-runner to start for replicas (default: next to this binary, "
          "else the build tree's)");
ABSL_FLAG(std::string, state_dir, "",
          "Directory for runner port files, job exit files and logs "
          "(logs/<replica or job>.log). Given, runners and jobs survive a "
          "crash of the scheduler and the next one started with the same "
          "directory re-adopts them; empty: a temporary directory, and "
          "children die with the scheduler");
ABSL_FLAG(absl::Duration, autoscale_period, absl::Seconds(1),
          "How often the autoscaler is evaluated");
ABSL_FLAG(absl::Duration, default_drain, absl::Seconds(30),
          "Drain before a scaled-in or deleted replica is stopped, unless "
          "DeleteReplicaSet says otherwise");
ABSL_FLAG(absl::Duration, runner_start_timeout, absl::Minutes(2),
          "Longest time from a runner's start to READY");
ABSL_FLAG(absl::Duration, restart_backoff_initial, absl::Seconds(1),
          "First delay before restarting a runner that died (doubles)");

namespace {

// deploy/config/hardware.textproto of the source tree (the binary lives in
// <repo>/build/services/scheduler), else next to an install.
std::string DefaultHardwareConfig() {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path exe = fs::read_symlink("/proc/self/exe", error);
  std::vector<fs::path> candidates = {fs::current_path(error) / "deploy" /
                                      "config" / "hardware.textproto"};
  if (!exe.empty()) {
    const fs::path dir = exe.parent_path();
    candidates.push_back(dir / ".." / ".." / ".." / "deploy" / "config" /
                         "hardware.textproto");
    candidates.push_back(dir / ".." / "share" / "hangar" /
                         "hardware.textproto");
  }
  for (const fs::path& candidate : candidates) {
    if (fs::exists(candidate, error)) {
      return candidate.lexically_normal().string();
    }
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_SCHEDULER_", "scheduler");

  std::string hardware = absl::GetFlag(FLAGS_hardware_config);
  if (hardware.empty()) hardware = DefaultHardwareConfig();
  if (hardware.empty()) {
    std::cerr << "scheduler: --hardware_config: required (no "
                 "deploy/config/hardware.textproto found)"
              << std::endl;
    return 2;
  }
  if (auto loaded = hangar::scheduler::LoadHardwareConfig(hardware);
      !loaded.ok()) {
    std::cerr << "scheduler: --hardware_config: " << loaded.status().message()
              << std::endl;
    return 2;
  }

  hangar::scheduler::LocalExecutor::Options executor;
  executor.runner_path = absl::GetFlag(FLAGS_runner_binary);
  executor.run_dir = absl::GetFlag(FLAGS_state_dir);
  // Children outlive a crash only where the next scheduler will look.
  executor.detach_children = !executor.run_dir.empty();
  executor.start_timeout = absl::GetFlag(FLAGS_runner_start_timeout);
  executor.restart_backoff_initial =
      absl::GetFlag(FLAGS_restart_backoff_initial);
  if (executor.restart_backoff_max < executor.restart_backoff_initial) {
    executor.restart_backoff_max = executor.restart_backoff_initial;
  }
  executor.runner_args = {"--metrics_port=-1"};

  auto server = hangar::scheduler::SchedulerServer::Create({
      .server = HangarServerOptionsFromFlags("scheduler"),
      .admin_token_file = absl::GetFlag(FLAGS_admin_token_file),
      .db = absl::GetFlag(FLAGS_db),
      .db_startup_timeout = absl::GetFlag(FLAGS_db_startup_timeout),
      .db_connect_timeout = absl::GetFlag(FLAGS_db_connect_timeout),
      .hardware_config = hardware,
      .placement_policy = absl::GetFlag(FLAGS_placement_policy),
      .autoscale_period = absl::GetFlag(FLAGS_autoscale_period),
      .default_drain = absl::GetFlag(FLAGS_default_drain),
      .executor = executor,
  });
  if (!server.ok()) {
    std::cerr << "scheduler: " << server.status().message() << std::endl;
    return 1;
  }
  std::cerr << "scheduler: serving on " << (*server)->address()
            << ", metrics on port " << (*server)->metrics_port() << std::endl;
  (*server)->WaitForTermination();
  return 0;
}
