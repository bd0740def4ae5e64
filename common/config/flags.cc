#include "common/config/flags.h"

#include <cstdlib>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace hangar {
namespace {

// Abseil's own flags (--flagfile, --help, ...) are never taken from the
// environment: only the program's.
bool IsProgramFlag(const absl::CommandLineFlag& flag) {
  return !absl::StrContains(flag.Filename(), "absl/");
}

}  // namespace

absl::Status ApplyEnvironmentToFlags(
    const std::string& prefix,
    const std::map<std::string, std::string>& environment) {
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!IsProgramFlag(*flag)) continue;
    std::string upper = absl::AsciiStrToUpper(std::string(name));
    for (const std::string& variable :
         {prefix + upper, std::string("HANGAR_") + upper}) {
      auto it = environment.find(variable);
      if (it == environment.end()) continue;
      std::string error;
      if (!flag->ParseFrom(it->second, &error)) {
        return absl::InvalidArgumentError(
            absl::StrCat(variable, ": not a valid value for --",
                         std::string(name), ": ", error));
      }
      break;  // The service-specific variable wins over the generic one.
    }
  }
  return absl::OkStatus();
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> environment;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string text(*entry);
    size_t equals = text.find('=');
    if (equals == std::string::npos) continue;
    environment.emplace(text.substr(0, equals), text.substr(equals + 1));
  }
  return environment;
}

std::vector<char*> ParseFlagsWithEnv(int argc, char** argv,
                                     const std::string& env_prefix,
                                     const std::string& program) {
  absl::SetProgramUsageMessage(absl::StrCat(
      program, ": flags may also be set as ", env_prefix,
      "<FLAG> or HANGAR_<FLAG> environment variables."));
  absl::Status applied =
      ApplyEnvironmentToFlags(env_prefix, ProcessEnvironment());
  if (!applied.ok()) {
    std::cerr << program << ": " << applied.message() << std::endl;
    std::exit(2);
  }
  // Abseil prints "ERROR: Illegal value ..." and exits(1) on a bad flag;
  // that is already one clear line.
  return absl::ParseCommandLine(argc, argv);
}

}  // namespace hangar
