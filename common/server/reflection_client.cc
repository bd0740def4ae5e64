#include "common/server/reflection_client.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/generic/generic_stub.h"
#include "src/proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace hangar {
namespace {

namespace reflection = grpc::reflection::v1alpha;
using google::protobuf::FileDescriptorProto;

std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoNanoseconds(timeout));
  return context;
}

// One request/response exchange on the bidirectional reflection stream.
absl::StatusOr<reflection::ServerReflectionResponse> Ask(
    grpc::Channel* channel, absl::Duration timeout,
    const reflection::ServerReflectionRequest& request) {
  reflection::ServerReflection::Stub stub(
      std::shared_ptr<grpc::ChannelInterface>(channel, [](auto*) {}));
  auto context = NewContext(timeout);
  auto stream = stub.ServerReflectionInfo(context.get());
  reflection::ServerReflectionResponse response;
  bool exchanged = stream->Write(request) && stream->Read(&response);
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  if (!status.ok()) return FromGrpcStatus(status, "reflection");
  if (!exchanged) return absl::UnavailableError("reflection: no response");
  if (response.has_error_response()) {
    return absl::Status(
        static_cast<absl::StatusCode>(response.error_response().error_code()),
        absl::StrCat("reflection: ",
                     response.error_response().error_message()));
  }
  return response;
}

}  // namespace

ReflectionClient::ReflectionClient(std::shared_ptr<grpc::Channel> channel,
                                   absl::Duration timeout)
    : channel_(std::move(channel)), timeout_(timeout) {}

absl::StatusOr<std::vector<std::string>> ReflectionClient::ListServices() {
  reflection::ServerReflectionRequest request;
  request.set_list_services("*");
  auto response = Ask(channel_.get(), timeout_, request);
  if (!response.ok()) return response.status();
  std::vector<std::string> names;
  for (const auto& service : response->list_services_response().service()) {
    names.push_back(service.name());
  }
  return names;
}

absl::Status ReflectionClient::LoadFiles(
    const std::vector<FileDescriptorProto>& files) {
  for (const FileDescriptorProto& file : files) files_[file.name()] = file;
  // Fetch missing dependencies by name, then build in dependency order.
  std::vector<std::string> missing;
  for (const auto& [name, file] : files_) {
    for (const std::string& dependency : file.dependency()) {
      if (!files_.contains(dependency)) missing.push_back(dependency);
    }
  }
  for (const std::string& name : missing) {
    if (files_.contains(name)) continue;
    reflection::ServerReflectionRequest request;
    request.set_file_by_filename(name);
    auto response = Ask(channel_.get(), timeout_, request);
    if (!response.ok()) return response.status();
    std::vector<FileDescriptorProto> fetched;
    for (const std::string& bytes :
         response->file_descriptor_response().file_descriptor_proto()) {
      FileDescriptorProto file;
      if (!file.ParseFromString(bytes)) {
        return absl::DataLossError("reflection: unparsable file descriptor");
      }
      fetched.push_back(std::move(file));
    }
    if (absl::Status loaded = LoadFiles(fetched); !loaded.ok()) return loaded;
  }
  // BuildFile needs dependencies first; recurse through them.
  std::function<absl::Status(const std::string&)> build =
      [&](const std::string& name) -> absl::Status {
    if (pool_.FindFileByName(name) != nullptr) return absl::OkStatus();
    auto it = files_.find(name);
    if (it == files_.end()) {
      return absl::NotFoundError(
          absl::StrCat("reflection: missing file ", name));
    }
    for (const std::string& dependency : it->second.dependency()) {
      if (absl::Status built = build(dependency); !built.ok()) return built;
    }
    if (pool_.BuildFile(it->second) == nullptr) {
      return absl::DataLossError(absl::StrCat("reflection: bad file ", name));
    }
    return absl::OkStatus();
  };
  for (const auto& [name, file] : files_) {
    if (absl::Status built = build(name); !built.ok()) return built;
  }
  return absl::OkStatus();
}

absl::Status ReflectionClient::LoadSymbol(const std::string& symbol) {
  if (pool_.FindServiceByName(symbol) != nullptr ||
      pool_.FindMessageTypeByName(symbol) != nullptr ||
      pool_.FindEnumTypeByName(symbol) != nullptr ||
      pool_.FindMethodByName(symbol) != nullptr) {
    return absl::OkStatus();
  }
  reflection::ServerReflectionRequest request;
  request.set_file_containing_symbol(symbol);
  auto response = Ask(channel_.get(), timeout_, request);
  if (!response.ok()) return response.status();
  std::vector<FileDescriptorProto> files;
  for (const std::string& bytes :
       response->file_descriptor_response().file_descriptor_proto()) {
    FileDescriptorProto file;
    if (!file.ParseFromString(bytes)) {
      return absl::DataLossError("reflection: unparsable file descriptor");
    }
    files.push_back(std::move(file));
  }
  return LoadFiles(files);
}

absl::StatusOr<const google::protobuf::ServiceDescriptor*>
ReflectionClient::DescribeService(const std::string& service) {
  if (absl::Status loaded = LoadSymbol(service); !loaded.ok()) return loaded;
  const auto* descriptor = pool_.FindServiceByName(service);
  if (descriptor == nullptr) {
    return absl::NotFoundError(absl::StrCat("no service named ", service));
  }
  return descriptor;
}

absl::StatusOr<std::string> ReflectionClient::Describe(
    const std::string& symbol) {
  if (absl::Status loaded = LoadSymbol(symbol); !loaded.ok()) {
    if (absl::IsNotFound(loaded) || absl::IsInvalidArgument(loaded)) {
      return absl::NotFoundError(
          absl::StrCat("the server knows no symbol named ", symbol));
    }
    return loaded;
  }
  if (const auto* service = pool_.FindServiceByName(symbol)) {
    return service->DebugString();
  }
  if (const auto* message = pool_.FindMessageTypeByName(symbol)) {
    return message->DebugString();
  }
  if (const auto* enumeration = pool_.FindEnumTypeByName(symbol)) {
    return enumeration->DebugString();
  }
  if (const auto* method = pool_.FindMethodByName(symbol)) {
    return method->DebugString();
  }
  return absl::NotFoundError(
      absl::StrCat("the server knows no symbol named ", symbol));
}

absl::StatusOr<const google::protobuf::MethodDescriptor*>
ReflectionClient::FindMethod(const std::string& method) {
  size_t slash = method.rfind('/');
  if (slash == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("method: want \"pkg.Service/Method\"; was ", method));
  }
  auto service = DescribeService(method.substr(0, slash));
  if (!service.ok()) return service.status();
  const auto* method_descriptor =
      (*service)->FindMethodByName(method.substr(slash + 1));
  if (method_descriptor == nullptr) {
    return absl::NotFoundError(absl::StrCat("no method named ", method));
  }
  return method_descriptor;
}

absl::StatusOr<std::string> ReflectionClient::EncodeRequest(
    const google::protobuf::MethodDescriptor& method,
    const std::string& request_json) {
  google::protobuf::DynamicMessageFactory factory(&pool_);
  std::unique_ptr<google::protobuf::Message> request(
      factory.GetPrototype(method.input_type())->New());
  auto parsed = google::protobuf::util::JsonStringToMessage(
      request_json.empty() ? "{}" : request_json, request.get());
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request: not valid JSON for ", method.input_type()->full_name(), ": ",
        parsed.message().as_string()));
  }
  return request->SerializeAsString();
}

absl::StatusOr<std::string> ReflectionClient::DecodeResponse(
    const google::protobuf::MethodDescriptor& method,
    const std::string& bytes) {
  google::protobuf::DynamicMessageFactory factory(&pool_);
  std::unique_ptr<google::protobuf::Message> response(
      factory.GetPrototype(method.output_type())->New());
  if (!response->ParseFromString(bytes)) {
    return absl::DataLossError("response: does not parse as " +
                               method.output_type()->full_name());
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.add_whitespace = true;
  auto printed =
      google::protobuf::util::MessageToJsonString(*response, &json, options);
  if (!printed.ok()) {
    return absl::InternalError(printed.message().as_string());
  }
  return json;
}

namespace {

std::string BufferToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& part : slices) {
    bytes.append(reinterpret_cast<const char*>(part.begin()), part.size());
  }
  return bytes;
}

// One server-streaming call through the generic callback API: writes the
// request, half-closes, and reads until the server ends the stream.
class StreamingCall final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamingCall(std::function<absl::Status(const std::string&)> on_bytes)
      : on_bytes_(std::move(on_bytes)) {}

  absl::Status Run(grpc::GenericStub& stub, grpc::ClientContext* context,
                   const std::string& method, const std::string& request) {
    context_ = context;
    grpc::Slice slice(request);
    request_ = grpc::ByteBuffer(&slice, 1);
    stub.PrepareBidiStreamingCall(context, method, grpc::StubOptions(), this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    StartCall();
    done_.WaitForNotification();
    if (!error_.ok()) return error_;
    return FromGrpcStatus(status_, method.substr(1));
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream ended; OnDone follows.
    absl::Status delivered = on_bytes_(BufferToString(response_));
    if (!delivered.ok()) {
      error_ = delivered;
      context_->TryCancel();
      return;
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_.Notify();
  }

 private:
  std::function<absl::Status(const std::string&)> on_bytes_;
  grpc::ClientContext* context_ = nullptr;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  absl::Status error_;  // Written by reads before OnDone; read after.
  grpc::Status status_;
  absl::Notification done_;
};

}  // namespace

absl::Status ReflectionClient::CallServerStreaming(
    const std::string& method, const std::string& request_json,
    const std::multimap<std::string, std::string>& metadata,
    const std::function<void(const std::string& json)>& on_message) {
  ASSIGN_OR_RETURN(const google::protobuf::MethodDescriptor* descriptor,
                   FindMethod(method));
  if (descriptor->client_streaming()) {
    return absl::InvalidArgumentError(absl::StrCat(
        method,
        " is client-streaming; only unary and server-streaming methods "
        "can be called"));
  }
  ASSIGN_OR_RETURN(std::string request,
                   EncodeRequest(*descriptor, request_json));
  auto context = NewContext(timeout_);
  for (const auto& [key, value] : metadata) context->AddMetadata(key, value);
  grpc::GenericStub stub(channel_);
  StreamingCall call([&](const std::string& bytes) -> absl::Status {
    ASSIGN_OR_RETURN(std::string json, DecodeResponse(*descriptor, bytes));
    on_message(json);
    return absl::OkStatus();
  });
  return call.Run(stub, context.get(), absl::StrCat("/", method), request);
}

absl::Status ReflectionClient::Call(
    const std::string& method, const std::string& request_json,
    const std::multimap<std::string, std::string>& metadata,
    const std::function<void(const std::string& json)>& on_message) {
  ASSIGN_OR_RETURN(const google::protobuf::MethodDescriptor* descriptor,
                   FindMethod(method));
  if (descriptor->server_streaming() || descriptor->client_streaming()) {
    return CallServerStreaming(method, request_json, metadata, on_message);
  }
  ASSIGN_OR_RETURN(std::string json, CallUnary(method, request_json, metadata));
  on_message(json);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReflectionClient::CallUnary(
    const std::string& method, const std::string& request_json,
    const std::multimap<std::string, std::string>& metadata) {
  ASSIGN_OR_RETURN(const google::protobuf::MethodDescriptor* method_descriptor,
                   FindMethod(method));
  if (method_descriptor->client_streaming() ||
      method_descriptor->server_streaming()) {
    return absl::InvalidArgumentError(absl::StrCat(
        method, " is streaming; call it with CallServerStreaming"));
  }
  ASSIGN_OR_RETURN(std::string bytes,
                   EncodeRequest(*method_descriptor, request_json));
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  auto context = NewContext(timeout_);
  for (const auto& [key, value] : metadata) context->AddMetadata(key, value);
  grpc::GenericStub stub(channel_);
  absl::Notification done;
  grpc::Status call_status;
  stub.UnaryCall(context.get(), absl::StrCat("/", method), grpc::StubOptions(),
                 &request_buffer, &response_buffer, [&](grpc::Status status) {
                   call_status = std::move(status);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!call_status.ok()) return FromGrpcStatus(call_status, method);
  return DecodeResponse(*method_descriptor, BufferToString(response_buffer));
}

}  // namespace hangar
