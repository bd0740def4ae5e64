// hangar-optimizer: the optimizer service. Flags (each also settable as
// HANGAR_OPTIMIZER_<FLAG> or HANGAR_<FLAG>) become OptimizerServer::Options;
// the server runs until SIGTERM/SIGINT and drains. Any start-up error
// prints one line and exits non-zero.
//
//   hangar-optimizer --db=postgresql://hangar@127.0.0.1/hangar \
//       --scheduler_address=127.0.0.1:7102 --model_store=/var/lib/hangar/models
#include <iostream>
#include <map>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "common/server/server_flags.h"
#include "services/optimizer/optimizer_server.h"

HANGAR_SERVER_FLAGS("127.0.0.1", 7103, 9103);
HANGAR_DATABASE_FLAGS();
ABSL_FLAG(std::string, scheduler_address, "",
          "Scheduler host:port, whose job API runs the conversions (required)");
ABSL_FLAG(std::string, model_store, "",
          "Directory of prepared models; artifacts go under <dir>/artifacts "
          "(required)");
ABSL_FLAG(std::string, optimize_binary, "hangar-optimize",
          "The program each job runs (absolute, or a name the scheduler's "
          "executor resolves)");
ABSL_FLAG(std::string, max_logit_error_bounds, "",
          "Per-recipe quality bound overrides: RECIPE=BOUND,... (e.g. "
          "CTRANSLATE2/int8=0.5)");

ABSL_FLAG(absl::Duration, gc_grace, absl::Hours(1),
          "Artifacts no request id holds are removed this long after their "
          "last use (creation or the last release)");
ABSL_FLAG(bool, gc_at_start, true,
          "Collect unheld artifacts, orphan directories and crashed "
          "conversions' temporaries once at start");

int main(int argc, char** argv) {
  hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_OPTIMIZER_", "optimizer");
  std::map<std::string, double> bounds;
  for (absl::string_view item :
       absl::StrSplit(absl::GetFlag(FLAGS_max_logit_error_bounds), ',',
                      absl::SkipWhitespace())) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    double v = 0;
    if (kv.second.empty() || !absl::SimpleAtod(kv.second, &v)) {
      std::cerr << "optimizer: --max_logit_error_bounds: must be "
                   "RECIPE=BOUND,...; was '"
                << item << "'" << std::endl;
      return 1;
    }
    bounds[kv.first] = v;
  }
  auto server = hangar::optimizer::OptimizerServer::Create({
      .server = HangarServerOptionsFromFlags("optimizer"),
      .admin_token_file = absl::GetFlag(FLAGS_admin_token_file),
      .db = absl::GetFlag(FLAGS_db),
      .db_startup_timeout = absl::GetFlag(FLAGS_db_startup_timeout),
      .db_connect_timeout = absl::GetFlag(FLAGS_db_connect_timeout),
      .model_store = absl::GetFlag(FLAGS_model_store),
      .scheduler_address = absl::GetFlag(FLAGS_scheduler_address),
      .optimize_binary = absl::GetFlag(FLAGS_optimize_binary),
      .max_logit_error_bounds = bounds,
      .gc_grace = absl::GetFlag(FLAGS_gc_grace),
      .gc_at_start = absl::GetFlag(FLAGS_gc_at_start),
  });
  if (!server.ok()) {
    std::cerr << "optimizer: " << server.status().message() << std::endl;
    return 1;
  }
  std::cerr << "optimizer: serving on " << (*server)->address()
            << ", metrics on port " << (*server)->metrics_port() << std::endl;
  (*server)->WaitForTermination();
  return 0;
}
