#include "tools/hangarctl/core.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/util/file.h"

namespace hangar::ctl {
namespace {

// A global flag and the environment variable that supplies it when the
// command line does not.
struct GlobalFlag {
  Flag flag;
  std::string env;
};

const std::vector<GlobalFlag>& GlobalFlagTable() {
  static const auto* table = new std::vector<GlobalFlag>{
      {{"output", FlagType::kString, "FORMAT",
        "table (for people) or json (proto JSON, for scripts); -o for short",
        "table"},
       "HANGAR_CTL_OUTPUT"},
      {{"gateway_address", FlagType::kString, "HOST:PORT",
        "the gateway (generate)", "127.0.0.1:7100"},
       "HANGAR_GATEWAY_ADDRESS"},
      {{"catalog_address", FlagType::kString, "HOST:PORT",
        "the catalog (models, connections)", "127.0.0.1:7101"},
       "HANGAR_CATALOG_ADDRESS"},
      {{"deployment_address", FlagType::kString, "HOST:PORT",
        "the deployment service (deploy, endpoint, keys, usage)",
        "127.0.0.1:7102"},
       "HANGAR_DEPLOYMENT_ADDRESS"},
      {{"scheduler_address", FlagType::kString, "HOST:PORT",
        "the scheduler (hardware)", "127.0.0.1:7104"},
       "HANGAR_SCHEDULER_ADDRESS"},
      {{"admin_token_file", FlagType::kString, "FILE",
        "file holding the admin token sent on control-plane calls", ""},
       "HANGAR_ADMIN_TOKEN_FILE"},
      {{"api_key", FlagType::kString, "KEY",
        "API key sent on inference calls (generate, call)", ""},
       "HANGAR_API_KEY"},
      {{"tls", FlagType::kBool, "",
        "use TLS (system roots) instead of plaintext", "false"},
       "HANGAR_CTL_TLS"},
      {{"timeout_seconds", FlagType::kInt, "N",
        "deadline of each call (watches use --watch_timeout_seconds)", "30"},
       "HANGAR_CTL_TIMEOUT_SECONDS"},
      {{"help", FlagType::kBool, "", "help of the command; -h for short", ""},
       ""},
  };
  return *table;
}

constexpr char kUsageLine[] =
    "hangarctl COMMAND [SUBCOMMAND] [ARGS] [flags]; hangarctl --help lists "
    "the commands";

constexpr char kExitCodes[] =
    "Exit codes:\n"
    "  0  success\n"
    "  1  a call failed (one line on stderr: hangarctl: <GRPC_CODE>: "
    "<message>)\n"
    "  2  usage error (unknown command or flag, bad or missing argument)\n"
    "  3  what was waited for ended badly (a deployment FAILED, was "
    "undeployed\n"
    "     or deleted during deploy watch / --wait; a model's import or\n"
    "     preparation FAILED)\n";

std::string FlagUsage(const Flag& flag) {
  if (flag.type == FlagType::kBool) return "--" + flag.name;
  return absl::StrCat("--", flag.name, "=", flag.value_name);
}

void PrintFlags(std::ostream& out, const std::vector<Flag>& flags,
                bool global) {
  size_t width = 0;
  for (const Flag& flag : flags)
    width = std::max(width, FlagUsage(flag).size());
  for (const Flag& flag : flags) {
    std::string text = flag.help;
    if (!flag.default_text.empty() && flag.type != FlagType::kBool) {
      absl::StrAppend(&text, " (default ", flag.default_text, ")");
    }
    if (flag.type == FlagType::kStrings) absl::StrAppend(&text, "; repeatable");
    if (global) {
      for (const GlobalFlag& entry : GlobalFlagTable()) {
        if (entry.flag.name == flag.name && !entry.env.empty()) {
          absl::StrAppend(&text, "; env ", entry.env);
        }
      }
    }
    out << "  "
        << absl::StrFormat("%-*s", static_cast<int>(width), FlagUsage(flag))
        << "  " << text << "\n";
  }
}

void PrintGlobalFlags(std::ostream& out) {
  out << "\nGlobal flags:\n";
  PrintFlags(out, GlobalFlags(), /*global=*/true);
}

std::string UsageOf(const Command& command) {
  std::string usage = "hangarctl " + command.path;
  if (!command.arguments.empty())
    absl::StrAppend(&usage, " ", command.arguments);
  if (!command.flags.empty()) absl::StrAppend(&usage, " [flags]");
  return usage;
}

void PrintCommandList(std::ostream& out, const std::vector<Command>& commands,
                      const std::string& group) {
  size_t width = 0;
  for (const Command& command : commands) {
    if (group.empty() || absl::StartsWith(command.path, group + " ")) {
      width = std::max(width, command.path.size());
    }
  }
  for (const Command& command : commands) {
    if (group.empty() || absl::StartsWith(command.path, group + " ")) {
      out << "  "
          << absl::StrFormat("%-*s", static_cast<int>(width), command.path)
          << "  " << command.summary << "\n";
    }
  }
}

void PrintOverview(std::ostream& out, const std::vector<Command>& commands) {
  out << "hangarctl: the Hangar command-line client.\n\n"
      << "Usage: hangarctl COMMAND [SUBCOMMAND] [ARGS] [flags]\n\n"
      << "Commands:\n";
  PrintCommandList(out, commands, "");
  PrintGlobalFlags(out);
  out << "\n"
      << kExitCodes
      << "\nhangarctl COMMAND --help shows a command's arguments, flags and "
         "examples.\n";
}

void PrintGroupHelp(std::ostream& out, const std::vector<Command>& commands,
                    const std::string& group) {
  out << "Usage: hangarctl " << group << " SUBCOMMAND [ARGS] [flags]\n\n"
      << "Subcommands:\n";
  PrintCommandList(out, commands, group);
  out << "\nhangarctl " << group
      << " SUBCOMMAND --help shows a subcommand's flags.\n";
}

// Prose lines wrapped at 78 columns; indented lines (examples) as they are.
std::string Wrap(const std::string& text) {
  std::string wrapped;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, " ")) {
      absl::StrAppend(&wrapped, line, "\n");
      continue;
    }
    size_t column = 0;
    for (absl::string_view word :
         absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      if (column > 0 && column + 1 + word.size() > 78) {
        absl::StrAppend(&wrapped, "\n");
        column = 0;
      } else if (column > 0) {
        absl::StrAppend(&wrapped, " ");
        ++column;
      }
      absl::StrAppend(&wrapped, word);
      column += word.size();
    }
    absl::StrAppend(&wrapped, "\n");
  }
  while (absl::EndsWith(wrapped, "\n\n")) wrapped.pop_back();
  return wrapped;
}

void PrintCommandHelp(std::ostream& out, const Command& command) {
  out << "Usage: " << UsageOf(command) << "\n\n" << command.summary << "\n";
  if (!command.details.empty()) out << "\n" << Wrap(command.details);
  if (!command.flags.empty()) {
    out << "\nFlags:\n";
    PrintFlags(out, command.flags, /*global=*/false);
  }
  PrintGlobalFlags(out);
}

bool ParseBool(const std::string& text, bool* value) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "1" || lower == "yes") {
    *value = true;
    return true;
  }
  if (lower == "false" || lower == "0" || lower == "no") {
    *value = false;
    return true;
  }
  return false;
}

// "" when `value` fits the type, else the rule it breaks.
std::string CheckValue(FlagType type, const std::string& value) {
  switch (type) {
    case FlagType::kInt: {
      int64_t parsed;
      return absl::SimpleAtoi(value, &parsed) ? "" : "must be an integer";
    }
    case FlagType::kDouble: {
      double parsed;
      return absl::SimpleAtod(value, &parsed) ? "" : "must be a number";
    }
    case FlagType::kBool: {
      bool parsed;
      return ParseBool(value, &parsed) ? "" : "must be true or false";
    }
    default:
      return "";
  }
}

bool IsTerminal() { return isatty(STDOUT_FILENO) == 1; }

}  // namespace

const std::vector<Flag>& GlobalFlags() {
  static const auto* flags = [] {
    auto* result = new std::vector<Flag>;
    for (const GlobalFlag& entry : GlobalFlagTable()) {
      result->push_back(entry.flag);
    }
    return result;
  }();
  return *flags;
}

Invocation::Invocation(const Command* command, std::vector<std::string> args,
                       std::map<std::string, std::vector<std::string>> flags,
                       std::map<std::string, std::string> globals,
                       bool stdout_is_tty)
    : command_(command),
      args_(std::move(args)),
      flags_(std::move(flags)),
      globals_(std::move(globals)),
      stdout_is_tty_(stdout_is_tty) {}

std::string Invocation::String(const std::string& name,
                               const std::string& fallback) const {
  auto it = flags_.find(name);
  return it == flags_.end() ? fallback : it->second.back();
}

int64_t Invocation::Int(const std::string& name, int64_t fallback) const {
  auto it = flags_.find(name);
  int64_t value = fallback;
  if (it != flags_.end()) (void)absl::SimpleAtoi(it->second.back(), &value);
  return value;
}

double Invocation::Double(const std::string& name, double fallback) const {
  auto it = flags_.find(name);
  double value = fallback;
  if (it != flags_.end()) (void)absl::SimpleAtod(it->second.back(), &value);
  return value;
}

bool Invocation::Bool(const std::string& name) const {
  auto it = flags_.find(name);
  bool value = false;
  if (it != flags_.end()) (void)ParseBool(it->second.back(), &value);
  return value;
}

std::vector<std::string> Invocation::Strings(const std::string& name) const {
  auto it = flags_.find(name);
  return it == flags_.end() ? std::vector<std::string>{} : it->second;
}

std::shared_ptr<grpc::Channel> Invocation::Channel(Service service) {
  auto it = channels_.find(service);
  if (it != channels_.end()) return it->second;
  std::string address;
  switch (service) {
    case Service::kGateway:
      address = global("gateway_address");
      break;
    case Service::kCatalog:
      address = global("catalog_address");
      break;
    case Service::kDeployment:
      address = global("deployment_address");
      break;
    case Service::kScheduler:
      address = global("scheduler_address");
      break;
  }
  auto channel = ChannelTo(address);
  channels_[service] = channel;
  return channel;
}

std::shared_ptr<grpc::Channel> Invocation::ChannelTo(
    const std::string& address) const {
  bool tls = false;
  (void)ParseBool(global("tls"), &tls);
  return grpc::CreateChannel(
      address, tls ? grpc::SslCredentials(grpc::SslCredentialsOptions())
                   : grpc::InsecureChannelCredentials());
}

absl::Duration Invocation::CallTimeout() const {
  int64_t seconds = 30;
  (void)absl::SimpleAtoi(global("timeout_seconds"), &seconds);
  return absl::Seconds(seconds);
}

std::unique_ptr<grpc::ClientContext> Invocation::Context(
    Auth auth, std::optional<absl::Duration> timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  const absl::Duration deadline = timeout.value_or(CallTimeout());
  if (deadline != absl::InfiniteDuration()) {
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoMilliseconds(deadline));
  }
  for (const auto& [key, value] : Metadata(auth)) {
    context->AddMetadata(key, value);
  }
  return context;
}

absl::Status Invocation::LoadCredentials() {
  const std::string& file = global("admin_token_file");
  if (file.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> token = ReadFileToString(file);
  if (!token.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--admin_token_file: ", token.status().message()));
  }
  admin_token_ = std::string(absl::StripAsciiWhitespace(*token));
  return absl::OkStatus();
}

std::multimap<std::string, std::string> Invocation::Metadata(Auth auth) const {
  std::multimap<std::string, std::string> metadata;
  if ((auth == Auth::kAdmin || auth == Auth::kBoth) && !admin_token_.empty()) {
    metadata.emplace("authorization", "Bearer " + admin_token_);
  }
  const std::string& key = global("api_key");
  if ((auth == Auth::kApiKey || auth == Auth::kBoth) && !key.empty()) {
    metadata.emplace("authorization", "Bearer " + key);
  }
  return metadata;
}

namespace {

// The command line split into the command's words and the flags' values.
struct CommandLine {
  std::vector<std::string> words;
  std::map<std::string, std::vector<std::string>> flags;
};

// Splits argv; a malformed flag is INVALID_ARGUMENT with the problem.
absl::StatusOr<CommandLine> SplitCommandLine(
    const std::vector<Command>& commands,
    const std::vector<std::string>& argv) {
  // Whether each flag takes a value: the same for a name in every command
  // and the globals, so flags can be split from words before the command
  // is known. Values are checked against the command's own types later.
  std::map<std::string, bool> takes_value;
  auto add_flag = [&takes_value](const Flag& flag) {
    const bool value = flag.type != FlagType::kBool;
    auto [it, inserted] = takes_value.emplace(flag.name, value);
    if (!inserted && it->second != value) {
      std::cerr << "hangarctl: internal error: flag --" << flag.name
                << " is a bool flag in one command only\n";
      std::abort();
    }
  };
  for (const Flag& flag : GlobalFlags()) add_flag(flag);
  for (const Command& command : commands) {
    for (const Flag& flag : command.flags) add_flag(flag);
  }

  CommandLine line;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "--") {
      line.words.insert(line.words.end(), argv.begin() + i + 1, argv.end());
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      line.words.push_back(arg);
      continue;
    }
    std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (size_t equals = name.find('='); equals != std::string::npos) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
    }
    if (name == "o") name = "output";
    if (name == "h" || name == "helpfull" || name == "helpshort") {
      name = "help";
    }
    auto type = takes_value.find(name);
    if (type == takes_value.end()) {
      return absl::InvalidArgumentError("unknown flag --" + name);
    }
    if (!value.has_value()) {
      if (!type->second) {
        value = "true";
      } else if (i + 1 < argv.size()) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError("flag --" + name + " needs a value");
      }
    }
    line.flags[name].push_back(*value);
  }
  // "hangarctl help deploy create" is "hangarctl deploy create --help".
  if (!line.words.empty() && line.words[0] == "help") {
    line.words.erase(line.words.begin());
    line.flags["help"].push_back("true");
  }
  return line;
}

// The command whose path is the longest prefix of `words`, and its length.
const Command* FindCommand(const std::vector<Command>& commands,
                           const std::vector<std::string>& words,
                           size_t* path_words) {
  const Command* command = nullptr;
  *path_words = 0;
  for (const Command& candidate : commands) {
    std::vector<std::string> path = absl::StrSplit(candidate.path, ' ');
    if (path.size() <= words.size() && path.size() > *path_words &&
        std::equal(path.begin(), path.end(), words.begin())) {
      command = &candidate;
      *path_words = path.size();
    }
  }
  return command;
}

// When the words name no command: the overview or a group's help when
// asked, else the usage error. Returns the exit code.
int NoCommand(const std::vector<Command>& commands,
              const std::vector<std::string>& words, bool help) {
  if (words.empty()) {
    if (help) {
      PrintOverview(std::cout, commands);
      return kExitOk;
    }
    std::cerr << "hangarctl: missing command (usage: " << kUsageLine << ")"
              << std::endl;
    return kExitUsage;
  }
  const bool is_group =
      std::any_of(commands.begin(), commands.end(), [&](const Command& c) {
        return absl::StartsWith(c.path, words[0] + " ");
      });
  if (!is_group) {
    std::cerr << "hangarctl: unknown command \"" << words[0]
              << "\" (usage: " << kUsageLine << ")" << std::endl;
    return kExitUsage;
  }
  if (help && words.size() == 1) {
    PrintGroupHelp(std::cout, commands, words[0]);
    return kExitOk;
  }
  if (words.size() == 1) {
    std::cerr << "hangarctl: " << words[0] << ": missing subcommand\n";
  } else {
    std::cerr << "hangarctl: unknown command \"" << words[0] << " " << words[1]
              << "\"\n";
  }
  PrintGroupHelp(std::cerr, commands, words[0]);
  return kExitUsage;
}

// "" when the flags and arguments fit `command`, else the problem.
std::string CheckCommandLine(const Command& command, const CommandLine& line,
                             size_t args) {
  std::map<std::string, FlagType> types;
  for (const Flag& flag : GlobalFlags()) types[flag.name] = flag.type;
  for (const Flag& flag : command.flags) types[flag.name] = flag.type;
  for (const auto& [name, values] : line.flags) {
    auto type = types.find(name);
    if (type == types.end()) {
      return absl::StrCat(command.path, ": unknown flag --", name);
    }
    for (const std::string& value : values) {
      if (std::string rule = CheckValue(type->second, value); !rule.empty()) {
        return absl::StrCat("--", name, ": ", rule, "; was \"", value, "\"");
      }
    }
  }
  if (args < command.min_args) return command.path + ": missing argument";
  return "";
}

// The global options (the command line, else the environment, else the
// default), removed from `flags`; INVALID_ARGUMENT with the problem.
absl::StatusOr<std::map<std::string, std::string>> ResolveGlobals(
    std::map<std::string, std::vector<std::string>>& flags) {
  std::map<std::string, std::string> globals;
  for (const GlobalFlag& entry : GlobalFlagTable()) {
    const std::string& name = entry.flag.name;
    std::string value = entry.flag.default_text;
    if (auto it = flags.find(name); it != flags.end()) {
      value = it->second.back();
    } else if (const char* env =
                   entry.env.empty() ? nullptr : std::getenv(entry.env.c_str());
               env != nullptr && *env != '\0') {
      value = env;
      if (std::string rule = CheckValue(entry.flag.type, value);
          !rule.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(entry.env, ": ", rule, "; was \"", value, "\""));
      }
    }
    globals[name] = value;
    flags.erase(name);
  }
  if (globals["output"] != "table" && globals["output"] != "json") {
    return absl::InvalidArgumentError(
        "--output: must be table or json; was \"" + globals["output"] + "\"");
  }
  int64_t timeout = 0;
  if (!absl::SimpleAtoi(globals["timeout_seconds"], &timeout) || timeout <= 0) {
    return absl::InvalidArgumentError(
        "--timeout_seconds: must be positive; was " +
        globals["timeout_seconds"]);
  }
  return globals;
}

}  // namespace

int Dispatch(const std::vector<Command>& commands,
             const std::vector<std::string>& argv) {
  absl::StatusOr<CommandLine> line = SplitCommandLine(commands, argv);
  if (!line.ok()) {
    std::cerr << "hangarctl: " << line.status().message()
              << " (usage: " << kUsageLine << ")" << std::endl;
    return kExitUsage;
  }
  size_t path_words = 0;
  const Command* command = FindCommand(commands, line->words, &path_words);
  const bool help = line->flags.contains("help");
  if (command == nullptr) return NoCommand(commands, line->words, help);
  if (help) {
    PrintCommandHelp(std::cout, *command);
    return kExitOk;
  }
  std::vector<std::string> args(line->words.begin() + path_words,
                                line->words.end());
  if (std::string problem = CheckCommandLine(*command, *line, args.size());
      !problem.empty()) {
    return UsageError(*command, problem);
  }
  if (args.size() > command->max_args) {
    return UsageError(*command,
                      absl::StrCat(command->path, ": unexpected argument \"",
                                   args[command->max_args], "\""));
  }
  absl::StatusOr<std::map<std::string, std::string>> globals =
      ResolveGlobals(line->flags);
  if (!globals.ok()) {
    return UsageError(*command, std::string(globals.status().message()));
  }
  Invocation invocation(command, std::move(args), std::move(line->flags),
                        *std::move(globals), IsTerminal());
  if (absl::Status status = invocation.LoadCredentials(); !status.ok()) {
    std::cerr << "hangarctl: " << status.message() << std::endl;
    return kExitUsage;
  }
  return command->run(invocation);
}

int Fail(const grpc::Status& status) {
  std::string code = absl::StatusCodeToString(
      static_cast<absl::StatusCode>(status.error_code()));
  absl::AsciiStrToUpper(&code);
  std::string message = status.error_message();
  // One line: the server's message may span several.
  absl::StrReplaceAll({{"\n", "; "}}, &message);
  std::cerr << "hangarctl: " << code << ": " << message << std::endl;
  return kExitCallFailed;
}

int Fail(const absl::Status& status) {
  return Fail(grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                           std::string(status.message())));
}

int UsageError(const Command& command, const std::string& problem) {
  std::cerr << "hangarctl: " << problem << " (usage: " << UsageOf(command)
            << ")" << std::endl;
  return kExitUsage;
}

const Flag& WatchTimeoutFlag() {
  static const auto* flag =
      new Flag{"watch_timeout_seconds", FlagType::kInt, "N",
               "give up waiting after N seconds (0: never)", "0"};
  return *flag;
}

absl::Duration WatchTimeout(const Invocation& invocation) {
  const int64_t seconds = invocation.Int("watch_timeout_seconds");
  return seconds > 0 ? absl::Seconds(seconds) : absl::InfiniteDuration();
}

std::string RandomUuid() {
  std::random_device device;
  std::mt19937_64 engine((static_cast<uint64_t>(device()) << 32) ^ device());
  uint64_t high = engine(), low = engine();
  high = (high & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  low = (low & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", high >> 32,
                         (high >> 16) & 0xffff, high & 0xffff, low >> 48,
                         low & 0xffffffffffffULL);
}

}  // namespace hangar::ctl
