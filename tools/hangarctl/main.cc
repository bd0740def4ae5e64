// hangarctl: the command-line client. For now the grpcurl-like commands that
// work against any Hangar port knowing only its address (grpcurl itself is
// not packaged for Debian 12):
//
//   hangarctl list     127.0.0.1:7101
//   hangarctl describe 127.0.0.1:7101 hangar.v1.CatalogService
//   hangarctl call     127.0.0.1:7101 hangar.v1.CatalogService/ListModels '{"pageSize": 5}'
//   hangarctl health   127.0.0.1:7101
//
// --admin_token_file (or HANGAR_ADMIN_TOKEN_FILE) sends the admin token;
// --api_key (or HANGAR_API_KEY) sends an API key, as the gateway expects.
// Exit codes: 0 success, 1 the call failed (status printed), 2 usage.
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
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
    "       hangarctl describe ADDRESS SERVICE\n"
    "       hangarctl call ADDRESS SERVICE/METHOD [JSON]\n"
    "       hangarctl health ADDRESS [SERVICE]\n";

int Usage(const std::string& problem) {
  std::cerr << "hangarctl: " << problem << "\n" << kUsage;
  return 2;
}

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
  if (args.size() < 3) return Usage("missing command or address");
  std::string command = args[1];
  std::string address = args[2];
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
    if (args.size() < 4) return Usage("describe needs a SERVICE");
    auto service = client.DescribeService(args[3]);
    if (!service.ok()) return Fail(service.status());
    std::cout << (*service)->DebugString();
    return 0;
  }
  if (command == "call" || command == "health") {
    std::string method, request;
    if (command == "health") {
      method = "grpc.health.v1.Health/Check";
      request = args.size() >= 4
                    ? absl::StrCat("{\"service\": \"", args[3], "\"}")
                    : "{}";
    } else {
      if (args.size() < 4) return Usage("call needs SERVICE/METHOD");
      method = args[3];
      request = args.size() >= 5 ? args[4] : "{}";
    }
    auto response = client.CallUnary(method, request, Metadata());
    if (!response.ok()) return Fail(response.status());
    std::cout << *response << std::endl;
    return 0;
  }
  return Usage("unknown command: " + command);
}
