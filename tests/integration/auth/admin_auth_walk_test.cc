// The admin-auth walk: every control-plane binary, started as a real child
// process with an admin token file (and a real PostgreSQL), must refuse
// every method of every hangar.v1 service it serves with UNAUTHENTICATED when
// the call carries no token, and let the call in when it carries the token.
//
// The methods are not listed here: the test asks the server itself through
// the reflection client (common/server/reflection_client.h), so a method
// added later is walked too, and a method that forgets its AuthorizeAdmin
// line fails this test. Health and reflection are exempt (they are not
// hangar.v1 services). Every call sends an empty request message, which any
// method must refuse for want of a token before it looks at the request;
// streaming methods are walked the same way, through a generic stub.
//
// A new service is one line in Binaries() (and one in CMakeLists.txt).
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/server/reflection_client.h"
#include "common/testing/child_process.h"
#include "common/testing/ports.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "common/util/file.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace hangar {
namespace {

using ::hangar::testing::ChildProcess;
using ::hangar::testing::IsOk;
using ::hangar::testing::MakeTempDir;
using ::hangar::testing::PickFreeLoopbackPort;
using ::hangar::testing::PostgresTest;
using ::hangar::testing::WaitUntil;

constexpr char kAdminToken[] = "walk-admin-token-0123456789abcdef";

// One binary to walk. In `flags`, "{port}", "{db}", "{token_file}" and
// "{dir}" (a fresh temporary directory) are replaced before it starts.
struct Binary {
  std::string name;
  std::string path;
  std::vector<std::string> flags;
  // hangar.v1 services it must serve (so an empty walk cannot pass).
  std::vector<std::string> services;
  // "/pkg.Service/Method" paths the walk must reach (methods added later
  // than the walk, named so a server that stops serving them fails).
  std::vector<std::string> methods = {};
};

// Names the parameter in test output.
void PrintTo(const Binary& binary, std::ostream* os) { *os << binary.name; }

std::vector<Binary> Binaries() {
  std::vector<Binary> binaries;
#ifdef HANGAR_CATALOG_PATH
  binaries.push_back(
      {"catalog",
       HANGAR_CATALOG_PATH,
       {"--port={port}", "--metrics_port=-1", "--db={db}",
        "--admin_token_file={token_file}", "--model_store={dir}/models",
        "--hf_endpoint=http://127.0.0.1:1", "--drain_timeout=1s"},
       {"hangar.v1.CatalogService"}});
#endif
#ifdef HANGAR_SCHEDULER_PATH
  binaries.push_back({"scheduler",
                      HANGAR_SCHEDULER_PATH,
                      {"--port={port}", "--metrics_port=-1", "--db={db}",
                       "--admin_token_file={token_file}",
                       "--state_dir={dir}/state", "--drain_timeout=1s"},
                      {"hangar.v1.SchedulerService"}});
#endif
#ifdef HANGAR_OPTIMIZER_PATH
  binaries.push_back(
      {"optimizer",
       HANGAR_OPTIMIZER_PATH,
       {"--port={port}", "--metrics_port=-1", "--db={db}",
        "--admin_token_file={token_file}", "--model_store={dir}/models",
        "--scheduler_address=127.0.0.1:1", "--drain_timeout=1s"},
       {"hangar.v1.OptimizerService"},
       {"/hangar.v1.OptimizerService/ReleaseOptimizationJob",
        "/hangar.v1.OptimizerService/GarbageCollectArtifacts"}});
#endif
#ifdef HANGAR_DEPLOYMENT_PATH
  binaries.push_back(
      {"deployment",
       HANGAR_DEPLOYMENT_PATH,
       {"--port={port}", "--metrics_port=-1", "--db={db}",
        "--admin_token_file={token_file}", "--catalog_address=127.0.0.1:1",
        "--scheduler_address=127.0.0.1:1", "--drain_timeout=1s"},
       {"hangar.v1.DeploymentService"},
       {"/hangar.v1.DeploymentService/ListWebhookDeliveries"}});
#endif
  return binaries;
}

// What one call came to: whether the server sent a message, and its status.
struct Outcome {
  bool got_message = false;
  grpc::Status status;
};

// Calls "/pkg.Service/Method" with an empty request message through a
// generic stub, whatever the method's kind (unary or streaming). A stream
// that sends a message is cancelled after it: the call was let in.
Outcome CallWithEmptyRequest(const std::shared_ptr<grpc::Channel>& channel,
                             const std::string& path, bool with_token) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  if (with_token) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kAdminToken));
  }
  grpc::CompletionQueue queue;
  void* tag = nullptr;
  bool ok = false;
  auto next = [&](intptr_t expected) {
    EXPECT_TRUE(queue.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), expected);
    return ok;
  };
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, path, &queue);
  call->StartCall(reinterpret_cast<void*>(1));
  Outcome outcome;
  if (next(1)) {
    grpc::Slice nothing{std::string()};
    grpc::ByteBuffer empty(&nothing, 1);
    call->WriteLast(empty, grpc::WriteOptions(), reinterpret_cast<void*>(2));
    next(2);
    grpc::ByteBuffer response;
    call->Read(&response, reinterpret_cast<void*>(3));
    outcome.got_message = next(3);
    if (outcome.got_message) context.TryCancel();
  }
  call->Finish(&outcome.status, reinterpret_cast<void*>(4));
  next(4);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  return outcome;
}

std::string CodeName(const grpc::Status& status) {
  return absl::StatusCodeToString(
      static_cast<absl::StatusCode>(status.error_code()));
}

class AdminAuthWalkTest : public PostgresTest,
                          public ::testing::WithParamInterface<Binary> {};

TEST_P(AdminAuthWalkTest, EveryMethodNeedsTheAdminToken) {
  const Binary& binary = GetParam();
  const std::string dir = MakeTempDir(binary.name + "-auth");
  const std::string token_file = dir + "/admin.token";
  ASSERT_THAT(WriteStringToFile(token_file, absl::StrCat(kAdminToken, "\n")),
              IsOk());
  ASSERT_OK_AND_ASSIGN(int port, PickFreeLoopbackPort());
  std::vector<std::string> argv = {binary.path};
  for (const std::string& flag : binary.flags) {
    argv.push_back(absl::StrReplaceAll(flag, {{"{port}", absl::StrCat(port)},
                                              {"{db}", conninfo()},
                                              {"{token_file}", token_file},
                                              {"{dir}", dir}}));
  }
  // HANGAR_AUTH_WALK_<NAME>=<path> walks another build of the binary (an
  // installed one, or one with a check removed to see this test fail).
  const std::string override_variable =
      absl::AsciiStrToUpper(absl::StrCat("HANGAR_AUTH_WALK_", binary.name));
  if (const char* path = std::getenv(override_variable.c_str());
      path != nullptr && *path != '\0') {
    argv[0] = path;
  }
  ASSERT_OK_AND_ASSIGN(auto child, ChildProcess::Start(argv));

  const std::string address = absl::StrCat("127.0.0.1:", port);
  auto channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ReflectionClient reflection(channel, absl::Seconds(5));
  std::vector<std::string> services;
  ASSERT_TRUE(WaitUntil([&] {
    if (!child->Running()) return true;
    absl::StatusOr<std::vector<std::string>> listed = reflection.ListServices();
    if (!listed.ok()) return false;
    services = *listed;
    return true;
  })) << child->Output();
  ASSERT_TRUE(child->Running()) << child->Output();

  std::vector<std::string> walked_services;
  std::vector<std::string> walked_paths;
  int walked_methods = 0;
  for (const std::string& service : services) {
    if (!absl::StartsWith(service, "hangar.v1."))
      continue;  // health, reflection
    walked_services.push_back(service);
    ASSERT_OK_AND_ASSIGN(const google::protobuf::ServiceDescriptor* descriptor,
                         reflection.DescribeService(service));
    for (int i = 0; i < descriptor->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* method = descriptor->method(i);
      const std::string path = absl::StrCat("/", service, "/", method->name());
      SCOPED_TRACE(path);
      Outcome anonymous = CallWithEmptyRequest(channel, path, false);
      EXPECT_FALSE(anonymous.got_message);
      EXPECT_EQ(anonymous.status.error_code(),
                grpc::StatusCode::UNAUTHENTICATED)
          << anonymous.status.error_message();
      Outcome admin = CallWithEmptyRequest(channel, path, true);
      EXPECT_TRUE(admin.got_message || admin.status.error_code() !=
                                           grpc::StatusCode::UNAUTHENTICATED)
          << admin.status.error_message();
      std::cerr << path << ": without token "
                << (anonymous.got_message ? "a message, then " : "")
                << CodeName(anonymous.status) << "; with token "
                << (admin.got_message ? "a message" : CodeName(admin.status))
                << "\n";
      ++walked_methods;
      walked_paths.push_back(path);
    }
  }
  for (const std::string& expected : binary.services) {
    EXPECT_THAT(walked_services, ::testing::Contains(expected));
  }
  for (const std::string& expected : binary.methods) {
    EXPECT_THAT(walked_paths, ::testing::Contains(expected));
  }
  EXPECT_GT(walked_methods, 0);

  ASSERT_TRUE(child->Signal(SIGTERM));
  EXPECT_TRUE(child->Wait(absl::Seconds(30)).ok()) << child->Output();
}

INSTANTIATE_TEST_SUITE_P(ControlPlane, AdminAuthWalkTest,
                         ::testing::ValuesIn(Binaries()),
                         [](const ::testing::TestParamInfo<Binary>& info) {
                           return info.param.name;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(AdminAuthWalkTest);

}  // namespace
}  // namespace hangar
