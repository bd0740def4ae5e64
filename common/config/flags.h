// Command-line flags with environment-variable fallbacks, for containers.
//
// Each service's main() defines its flags with ABSL_FLAG (flags live only in
// main, never in libraries) and calls ParseFlagsWithEnv first thing:
//
//   ABSL_FLAG(int, port, 7101, "gRPC port");
//   int main(int argc, char** argv) {
//     hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_CATALOG_", "catalog");
//
// For every flag `name`, the variable <PREFIX><NAME> (HANGAR_CATALOG_PORT),
// or else HANGAR_<NAME> (HANGAR_DB), supplies a value when set; the command
// line wins over both. A malformed value, from either source, ends the
// process with one clear line on stderr and exit code 2, never a crash.
//
// `--help` (also -help, --helpshort) prints FlagsHelp(): the binary's own
// flags (those its main.cc defines; Abseil's are left to --helpfull), each
// with its default ("unset" for an optional flag without one) and
// description, plus the environment variables
// that set them, and exits 0.
#ifndef HANGAR_COMMON_CONFIG_FLAGS_H_
#define HANGAR_COMMON_CONFIG_FLAGS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace hangar {

// Applies `environment` (name -> value) to the registered flags as described
// above. Returns INVALID_ARGUMENT naming the variable and the rule on a bad
// value. Split out of ParseFlagsWithEnv for tests.
absl::Status ApplyEnvironmentToFlags(
    const std::string& prefix,
    const std::map<std::string, std::string>& environment);

// The help text described above: a usage line for `program` and every
// program flag in name order:
//   --port (default 7101; env HANGAR_CATALOG_PORT or HANGAR_PORT)
//       gRPC port (0 picks a free one)
std::string FlagsHelp(const std::string& env_prefix,
                      const std::string& program);

// The process environment as a map.
std::map<std::string, std::string> ProcessEnvironment();

// Environment first, then the command line; exits(2) with one line on error.
// Returns the positional arguments (argv[0] first).
std::vector<char*> ParseFlagsWithEnv(int argc, char** argv,
                                     const std::string& env_prefix,
                                     const std::string& program);

}  // namespace hangar

#endif  // HANGAR_COMMON_CONFIG_FLAGS_H_
