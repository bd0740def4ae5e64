// The shared core of hangarctl: how a command is declared, how the command
// line is parsed into one, how it reaches the services, and how it fails.
//
// Every command group (models_commands.cc, deploy_commands.cc, ...) returns a
// list of Command values; main.cc gathers them and calls Dispatch(). A
// command is a path of one or two words ("usage", "deploy create"), its
// positional arguments, its own flags and a run function that receives an
// Invocation: the parsed arguments and flags, the global options, channels
// to the services and the output mode.
//
// The command line follows kubectl's habits: flags may come before or after
// the command words, as --name=value or --name value (bool flags never take
// the next word), -o is --output and -h is --help; "--" ends the flags.
// Whether a flag takes a value is the same for a name across all commands,
// so the parser splits flags from words before it knows the command; a flag
// the command does not declare, or a value of the wrong type, is a usage
// error.
//
// Exit codes scripts can rely on (also in README.md):
//   0  success
//   1  a call failed: one line "hangarctl: <GRPC_CODE>: <message>" on stderr
//   2  usage: unknown command or flag, bad or missing argument
//   3  what was waited for ended badly: a deployment FAILED (or was
//      undeployed or deleted) during `deploy watch` / --wait, a model's
//      import or preparation FAILED
#ifndef HANGAR_TOOLS_HANGARCTL_CORE_H_
#define HANGAR_TOOLS_HANGARCTL_CORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace hangar::ctl {

enum ExitCode : int {
  kExitOk = 0,
  kExitCallFailed = 1,
  kExitUsage = 2,
  kExitEndedBadly = 3,
};

enum class FlagType { kString, kInt, kDouble, kBool, kStrings };

// One flag of a command (or a global one).
struct Flag {
  // Without dashes: "max_replicas".
  std::string name;
  FlagType type = FlagType::kString;
  // The value's placeholder in help ("N", "FILE"); empty for bool flags.
  std::string value_name;
  std::string help;
  // The default shown in help; empty shows none.
  std::string default_text;
};

class Invocation;

struct Command {
  // "deploy create", "usage".
  std::string path;
  // Positional arguments for help and usage lines: "NAME [PROMPT]".
  std::string arguments;
  size_t min_args = 0;
  size_t max_args = 0;
  // One line for listings.
  std::string summary;
  // More text for --help: behaviour, output, examples.
  std::string details;
  std::vector<Flag> flags;
  std::function<int(Invocation&)> run;
};

// The services hangarctl calls by name; each address comes from
// --<service>_address or HANGAR_<SERVICE>_ADDRESS.
enum class Service { kGateway, kCatalog, kDeployment, kScheduler };

// Which credential a call carries.
enum class Auth { kAdmin, kApiKey, kBoth };

// The parsed command line of one command, and what its run function needs.
class Invocation {
 public:
  Invocation(const Command* command, std::vector<std::string> args,
             std::map<std::string, std::vector<std::string>> flags,
             std::map<std::string, std::string> globals, bool stdout_is_tty);

  const Command& command() const { return *command_; }
  const std::vector<std::string>& args() const { return args_; }
  // The positional argument `i`, or "" when absent.
  std::string arg(size_t i) const { return i < args_.size() ? args_[i] : ""; }

  // Whether the command's flag `name` was given.
  bool Has(const std::string& name) const { return flags_.contains(name); }
  // Its value (the last one given), or `fallback`. Values were checked
  // against the flag's type while parsing.
  std::string String(const std::string& name,
                     const std::string& fallback = "") const;
  int64_t Int(const std::string& name, int64_t fallback = 0) const;
  double Double(const std::string& name, double fallback = 0) const;
  bool Bool(const std::string& name) const;
  // Every value of a repeated flag, in order.
  std::vector<std::string> Strings(const std::string& name) const;

  // --output json.
  bool json() const { return globals_.at("output") == "json"; }
  // Progress bars only on a terminal.
  bool stdout_is_tty() const { return stdout_is_tty_; }
  // A global option's value (flag, else environment, else default).
  const std::string& global(const std::string& name) const {
    return globals_.at(name);
  }

  // A channel to `service` (one per service, made on first use).
  std::shared_ptr<grpc::Channel> Channel(Service service);
  // A new channel to `address` with the credentials --tls says.
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address) const;
  // --timeout_seconds.
  absl::Duration CallTimeout() const;
  // A context with the call deadline (--timeout_seconds, or `timeout` when
  // given; absl::InfiniteDuration() for none) and the credential.
  std::unique_ptr<grpc::ClientContext> Context(
      Auth auth = Auth::kAdmin, std::optional<absl::Duration> timeout = {});

  // Reads --admin_token_file once; a usage error when unreadable.
  absl::Status LoadCredentials();
  // Request metadata ("authorization: Bearer ...") for `auth`.
  std::multimap<std::string, std::string> Metadata(Auth auth) const;

 private:
  const Command* command_;
  std::vector<std::string> args_;
  std::map<std::string, std::vector<std::string>> flags_;
  std::map<std::string, std::string> globals_;
  bool stdout_is_tty_;
  std::string admin_token_;
  std::map<Service, std::shared_ptr<grpc::Channel>> channels_;
};

// The flags every command takes (addresses, credentials, output, timeout).
const std::vector<Flag>& GlobalFlags();

// Parses argv (argv[0] the program), finds the command among `commands`,
// prints help or a usage error when asked or needed, else runs it. Returns
// the process exit code.
int Dispatch(const std::vector<Command>& commands,
             const std::vector<std::string>& argv);

// "hangarctl: <CODE>: <message>" on stderr; returns kExitCallFailed.
int Fail(const grpc::Status& status);
int Fail(const absl::Status& status);
// "hangarctl: <problem> (usage: hangarctl <path> <arguments>)" on stderr;
// returns kExitUsage.
int UsageError(const Command& command, const std::string& problem);

// Calls `fetch(page_token, &page)` for every page of a list call, appending
// each page to `all` (next_page_token left empty).
template <typename Response, typename Fetch>
grpc::Status FetchAllPages(Fetch fetch, Response* all) {
  std::string token;
  do {
    Response page;
    grpc::Status status = fetch(token, &page);
    if (!status.ok()) return status;
    token = page.next_page_token();
    page.clear_next_page_token();
    all->MergeFrom(page);
  } while (!token.empty());
  return grpc::Status::OK;
}

// --watch_timeout_seconds, shared by every command that waits, and the
// deadline it gives (infinite for 0).
const Flag& WatchTimeoutFlag();
absl::Duration WatchTimeout(const Invocation& invocation);

// A random version-4 UUID, the default request_id of creates.
std::string RandomUuid();

}  // namespace hangar::ctl

#endif  // HANGAR_TOOLS_HANGARCTL_CORE_H_
