// A client that knows only a server's address, like grpcurl: it lists the
// services through the reflection API, fetches their descriptors, describes
// services, methods, messages and enums, and calls any unary or
// server-streaming method with a JSON request, building messages
// dynamically.
//
// Used by the bootstrap's integration test (to prove grpcurl-readiness with a
// reflection client, not compiled-in stubs) and by `hangarctl call`.
//
//   ReflectionClient client(grpc::CreateChannel(address, credentials));
//   ASSIGN_OR_RETURN(std::vector<std::string> services, client.ListServices());
//   ASSIGN_OR_RETURN(std::string json,
//       client.CallUnary("grpc.health.v1.Health/Check", "{}", metadata));
#ifndef HANGAR_COMMON_SERVER_REFLECTION_CLIENT_H_
#define HANGAR_COMMON_SERVER_REFLECTION_CLIENT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpcpp/grpcpp.h"

namespace hangar {

class ReflectionClient {
 public:
  explicit ReflectionClient(std::shared_ptr<grpc::Channel> channel,
                            absl::Duration timeout = absl::Seconds(10));

  // Fully-qualified names of every service the server lists.
  absl::StatusOr<std::vector<std::string>> ListServices();

  // The descriptor of a service, message or method ("pkg.Service",
  // "pkg.Service.Method", "pkg.Message"), with its files' dependencies
  // loaded. The pointer lives as long as this client.
  absl::StatusOr<const google::protobuf::ServiceDescriptor*> DescribeService(
      const std::string& service);

  // The definition of a service, method ("pkg.Service.Method"), message or
  // enum, as protobuf text ("message Model { string name = 1; ... }").
  // NOT_FOUND when the server knows no such symbol.
  absl::StatusOr<std::string> Describe(const std::string& symbol);

  // Calls "pkg.Service/Method" with a request given as JSON (proto3 JSON
  // mapping) and returns the response as JSON. `metadata` is sent as call
  // headers (for example {"authorization", "Bearer ..."}). Streaming
  // methods are INVALID_ARGUMENT (use CallServerStreaming).
  absl::StatusOr<std::string> CallUnary(
      const std::string& method, const std::string& request_json,
      const std::multimap<std::string, std::string>& metadata = {});

  // Calls a server-streaming method and hands each response, as JSON, to
  // `on_message` as it arrives (on a gRPC thread, one at a time). Returns
  // the call's final status. The call ends at the client's timeout.
  // Client-streaming methods are INVALID_ARGUMENT.
  absl::Status CallServerStreaming(
      const std::string& method, const std::string& request_json,
      const std::multimap<std::string, std::string>& metadata,
      const std::function<void(const std::string& json)>& on_message);

  // Calls `method` whether it is unary or server-streaming, handing every
  // response to `on_message`.
  absl::Status Call(
      const std::string& method, const std::string& request_json,
      const std::multimap<std::string, std::string>& metadata,
      const std::function<void(const std::string& json)>& on_message);

 private:
  // Loads the file defining `symbol` and its dependencies into pool_.
  absl::Status LoadSymbol(const std::string& symbol);
  absl::Status LoadFiles(
      const std::vector<google::protobuf::FileDescriptorProto>& files);
  // The descriptor of "pkg.Service/Method".
  absl::StatusOr<const google::protobuf::MethodDescriptor*> FindMethod(
      const std::string& method);
  // The JSON request as bytes of the method's input type.
  absl::StatusOr<std::string> EncodeRequest(
      const google::protobuf::MethodDescriptor& method,
      const std::string& request_json);
  // Response bytes as JSON of the method's output type.
  absl::StatusOr<std::string> DecodeResponse(
      const google::protobuf::MethodDescriptor& method,
      const std::string& bytes);

  std::shared_ptr<grpc::Channel> channel_;
  absl::Duration timeout_;
  // Files fetched so far, by name, and the pool built from them.
  std::map<std::string, google::protobuf::FileDescriptorProto> files_;
  google::protobuf::DescriptorPool pool_;
};

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_REFLECTION_CLIENT_H_
