#include "common/config/flags.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace hangar {
namespace {

// Abseil's own flags (--flagfile, --help, ...) are never taken from the
// environment: only the program's.
bool IsProgramFlag(const absl::CommandLineFlag& flag) {
  return !absl::StrContains(flag.Filename(), "absl/");
}

// Whether argv asks for help: --help, -help, --helpshort (not =false).
bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") return false;
    for (absl::string_view flag :
         {"--help", "-help", "--helpshort", "-helpshort", "--help=true",
          "--helpshort=true"}) {
      if (arg == flag) return true;
    }
  }
  return false;
}

// "/work/main/services/catalog/main.cc" -> "services/catalog/main.cc".
std::string ShortFilename(absl::string_view path) {
  for (absl::string_view root :
       {"/services/", "/tools/", "/common/", "/bench/", "/tests/"}) {
    size_t at = path.rfind(root);
    if (at != absl::string_view::npos) return std::string(path.substr(at + 1));
  }
  return std::string(path);
}

}  // namespace

std::string FlagsHelp(const std::string& env_prefix,
                      const std::string& program) {
  std::vector<std::pair<std::string, const absl::CommandLineFlag*>> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsProgramFlag(*flag)) flags.emplace_back(std::string(name), flag);
  }
  std::sort(flags.begin(), flags.end());
  std::string help = absl::StrCat(
      "usage: ", program, " [--flag=value ...]\n\n", "Flags of ", program,
      " (each may also be set as the environment variable ", env_prefix,
      "<FLAG> or HANGAR_<FLAG>; the command line wins; --helpfull lists "
      "the library flags too):\n");
  if (flags.empty()) absl::StrAppend(&help, "  (none)\n");
  for (const auto& [name, flag] : flags) {
    std::string upper = absl::AsciiStrToUpper(name);
    std::string default_value = flag->DefaultValue();
    if (flag->IsOfType<std::string>()) {
      default_value = absl::StrCat("\"", default_value, "\"");
    } else if (flag->IsOfType<std::vector<std::string>>()) {
      if (default_value.empty()) default_value = "none";
    } else if (default_value.empty()) {
      // An optional flag (std::optional<T>) without a default value.
      default_value = "unset";
    }
    absl::StrAppend(&help, "  --", name, " (default ", default_value, "; env ",
                    env_prefix, upper, " or HANGAR_", upper, ")\n      ",
                    flag->Help(), "\n");
  }
  return help;
}

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
  absl::SetProgramUsageMessage(
      absl::StrCat("flags may also be set as ", env_prefix,
                   "<FLAG> or HANGAR_<FLAG> environment variables."));
  // Abseil's own --help lists only flags defined in a file named after the
  // binary; every program flag here lives in its main.cc.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return !absl::StrContains(file, "absl/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.normalize_filename = ShortFilename;
  absl::SetFlagsUsageConfig(usage);
  if (WantsHelp(argc, argv)) {
    std::cout << FlagsHelp(env_prefix, program);
    std::exit(0);
  }
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
