// list|describe|call|health: the grpcurl-like commands that work against any
// Hangar port knowing only its address, through the reflection API
// (common/server/reflection_client.h); grpcurl itself is not packaged for
// Debian 12.
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/server/reflection_client.h"
#include "tools/hangarctl/commands.h"

namespace hangar::ctl {
namespace {

ReflectionClient Client(const Invocation& in) {
  return ReflectionClient(in.ChannelTo(in.arg(0)), in.CallTimeout());
}

int List(Invocation& in) {
  ReflectionClient client = Client(in);
  auto services = client.ListServices();
  if (!services.ok()) return Fail(services.status());
  for (const std::string& service : *services) std::cout << service << "\n";
  return kExitOk;
}

int Describe(Invocation& in) {
  ReflectionClient client = Client(in);
  auto description = client.Describe(in.arg(1));
  if (!description.ok()) return Fail(description.status());
  std::cout << *description;
  return kExitOk;
}

int CallMethod(Invocation& in, const std::string& method,
               const std::string& request) {
  ReflectionClient client = Client(in);
  absl::Status status = client.Call(method, request, in.Metadata(Auth::kBoth),
                                    [](const std::string& json) {
                                      // Flushed: streams show at once.
                                      std::cout << json << std::endl;
                                    });
  if (!status.ok()) return Fail(status);
  return kExitOk;
}

int Call(Invocation& in) {
  return CallMethod(in, in.arg(1), in.args().size() >= 3 ? in.arg(2) : "{}");
}

// Prints the HealthCheckResponse; anything but SERVING also fails the
// command (exit 1), so scripts and container health checks can rely on the
// exit code alone.
int Health(Invocation& in) {
  ReflectionClient client = Client(in);
  std::string response;
  absl::Status status = client.Call(
      "grpc.health.v1.Health/Check",
      in.args().size() < 2 ? "{}"
                           : absl::StrCat("{\"service\": \"", in.arg(1), "\"}"),
      in.Metadata(Auth::kBoth), [&](const std::string& json) {
        std::cout << json << std::endl;
        response = json;
      });
  if (!status.ok()) return Fail(status);
  if (response.find("\"SERVING\"") == std::string::npos) {
    std::cerr << "hangarctl: " << in.arg(0)
              << (in.args().size() < 2 ? "" : absl::StrCat(" ", in.arg(1)))
              << " is not SERVING" << std::endl;
    return kExitCallFailed;
  }
  return kExitOk;
}

}  // namespace

std::vector<Command> ReflectionCommands() {
  return {
      {.path = "list",
       .arguments = "ADDRESS",
       .min_args = 1,
       .max_args = 1,
       .summary = "List the gRPC services at ADDRESS (reflection)",
       .details = "Example:\n  hangarctl list 127.0.0.1:7101\n",
       .run = List},
      {.path = "describe",
       .arguments = "ADDRESS SYMBOL",
       .min_args = 2,
       .max_args = 2,
       .summary = "Describe a service, method, message or enum (reflection)",
       .details = "Examples:\n"
                  "  hangarctl describe 127.0.0.1:7101 "
                  "hangar.v1.CatalogService\n"
                  "  hangarctl describe 127.0.0.1:7101 hangar.v1.Model\n"
                  "  hangarctl describe 127.0.0.1:7101 "
                  "hangar.v1.CatalogService.ListModels\n",
       .run = Describe},
      {.path = "call",
       .arguments = "ADDRESS SERVICE/METHOD [JSON]",
       .min_args = 2,
       .max_args = 3,
       .summary = "Call any unary or server-streaming method with JSON",
       .details = "Prints a unary response as JSON; for a server-streaming "
                  "method each message as it arrives (the call ends when the "
                  "server ends the stream or at --timeout_seconds). Sends the "
                  "admin token and the API key when given.\n\n"
                  "Examples:\n"
                  "  hangarctl call 127.0.0.1:7101 "
                  "hangar.v1.CatalogService/ListModels '{\"pageSize\": 5}'\n"
                  "  hangarctl call 127.0.0.1:7101 "
                  "hangar.v1.CatalogService/WatchModel '{\"name\": \"m\"}'\n",
       .run = Call},
      {.path = "health",
       .arguments = "ADDRESS [SERVICE]",
       .min_args = 1,
       .max_args = 2,
       .summary = "Check a server's (or one service's) health",
       .details = "Prints the health status; exits 0 only when it is "
                  "SERVING (1 for NOT_SERVING, UNKNOWN or a failed call).\n\n"
                  "Example:\n  hangarctl health 127.0.0.1:7101 "
                  "hangar.v1.CatalogService\n",
       .run = Health},
  };
}

}  // namespace hangar::ctl
