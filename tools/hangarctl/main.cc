// hangarctl: the command-line client. For now the grpcurl-like commands that
// work against any Hangar port knowing only its address (grpcurl itself is
// not packaged for Debian 12):
//
//   hangarctl list     127.0.0.1:7101
//   hangarctl describe 127.0.0.1:7101 hangar.v1.CatalogService
//   hangarctl describe 127.0.0.1:7101 hangar.v1.Model        (messages, enums,
//                                                             methods too)
//   hangarctl call     127.0.0.1:7101 hangar.v1.CatalogService/ListModels
//   '{"pageSize": 5}' hangarctl call     127.0.0.1:7101
//   hangar.v1.CatalogService/WatchModel '{"name": "m"}' hangarctl health
//   127.0.0.1:7101 [hangar.v1.CatalogService]
//
// `call` prints a unary response as JSON; for a server-streaming method it
// prints each message as JSON as it arrives (the call ends when the server
// ends the stream or at --timeout_seconds). Extra arguments are a usage
// error.
//
// --admin_token_file (or HANGAR_ADMIN_TOKEN_FILE) sends the admin token;
// --api_key (or HANGAR_API_KEY) sends an API key, as the gateway expects.
// Exit codes: 0 success, 1 the call failed (status printed), 2 usage.
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/config/flags.h"
#include "common/server/reflection_client.h"
#include "common/util/file.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, admin_token_file, "",
          "File holding the admin token for control-plane calls");
ABSL_FLAG(std::string, api_key, "", "API key for inference calls");
ABSL_FLAG(bool, tls, false, "Use TLS (system roots) instead of plaintext");
ABSL_FLAG(int, timeout_seconds, 30, "Deadline of each call");

namespace {

constexpr char kUsage[] =
    "usage: hangarctl list ADDRESS\n"
    "       hangarctl describe ADDRESS SYMBOL   (service, method, message or "
    "enum)\n"
    "       hangarctl call ADDRESS SERVICE/METHOD [JSON]\n"
    "       hangarctl health ADDRESS [SERVICE]\n"
    "       hangarctl --help                    (flags)\n";

// What each command takes after ADDRESS: the least and most arguments, and
// its usage line.
struct CommandShape {
  size_t min_args;
  size_t max_args;
  const char* usage;
};
const std::map<std::string, CommandShape>& Commands() {
  static const auto* commands = new std::map<std::string, CommandShape>{
      {"list", {0, 0, "hangarctl list ADDRESS"}},
      {"describe", {1, 1, "hangarctl describe ADDRESS SYMBOL"}},
      {"call", {1, 2, "hangarctl call ADDRESS SERVICE/METHOD [JSON]"}},
      {"health", {0, 1, "hangarctl health ADDRESS [SERVICE]"}},
  };
  return *commands;
}

// A usage error without a known command: the problem and every form.
int Usage(const std::string& problem) {
  std::cerr << "hangarctl: " << problem << "\n" << kUsage;
  return 2;
}

// A usage error of one command: one line.
int CommandUsage(const std::string& problem, const CommandShape& shape) {
  std::cerr << "hangarctl: " << problem << " (usage: " << shape.usage << ")"
            << std::endl;
  return 2;
}

// The status's message already says what failed ("reflection: ...",
// "hangar.v1.X/Y: ..."); only the program name and the code are added.
int Fail(const absl::Status& status) {
  std::cerr << "hangarctl: " << absl::StatusCodeToString(status.code()) << ": "
            << status.message() << std::endl;
  return 1;
}

std::multimap<std::string, std::string> Metadata() {
  std::multimap<std::string, std::string> metadata;
  std::string token_file = absl::GetFlag(FLAGS_admin_token_file);
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = hangar::ReadFileToString(token_file);
    if (!token.ok()) {
      std::cerr << "hangarctl: --admin_token_file: " << token.status().message()
                << "\n";
      std::exit(2);
    }
    std::string value = *std::move(token);
    while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) {
      value.pop_back();
    }
    metadata.emplace("authorization", "Bearer " + value);
  }
  std::string api_key = absl::GetFlag(FLAGS_api_key);
  if (!api_key.empty()) metadata.emplace("authorization", "Bearer " + api_key);
  return metadata;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args =
      hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_CTL_", "hangarctl");
  if (args.size() < 2) return Usage("missing command");
  const std::string command = args[1];
  auto shape = Commands().find(command);
  if (shape == Commands().end()) {
    return Usage("unknown command: " + command);
  }
  if (args.size() < 3) return CommandUsage("missing ADDRESS", shape->second);
  const std::string address = args[2];
  const std::vector<std::string> rest(args.begin() + 3, args.end());
  if (rest.size() < shape->second.min_args) {
    return CommandUsage(command + ": missing argument", shape->second);
  }
  if (rest.size() > shape->second.max_args) {
    return CommandUsage(absl::StrCat(command, ": unexpected argument \"",
                                     rest[shape->second.max_args], "\""),
                        shape->second);
  }
  auto credentials = absl::GetFlag(FLAGS_tls)
                         ? grpc::SslCredentials(grpc::SslCredentialsOptions())
                         : grpc::InsecureChannelCredentials();
  hangar::ReflectionClient client(
      grpc::CreateChannel(address, credentials),
      absl::Seconds(absl::GetFlag(FLAGS_timeout_seconds)));

  if (command == "list") {
    auto services = client.ListServices();
    if (!services.ok()) return Fail(services.status());
    for (const std::string& service : *services) std::cout << service << "\n";
    return 0;
  }
  if (command == "describe") {
    auto description = client.Describe(rest[0]);
    if (!description.ok()) return Fail(description.status());
    std::cout << *description;
    return 0;
  }
  std::string method, request;
  if (command == "health") {
    method = "grpc.health.v1.Health/Check";
    request =
        rest.empty() ? "{}" : absl::StrCat("{\"service\": \"", rest[0], "\"}");
  } else {
    method = rest[0];
    request = rest.size() >= 2 ? rest[1] : "{}";
  }
  absl::Status status =
      client.Call(method, request, Metadata(), [](const std::string& json) {
        std::cout << json << std::endl;  // Flushed: streams show at once.
      });
  if (!status.ok()) return Fail(status);
  return 0;
}
