// generate: a completion through the gateway's InferenceService, streamed
// with GenerateStream so tokens show as they arrive. The API key comes from
// --api_key or HANGAR_API_KEY.
#include <iostream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "hangar/v1/inference.grpc.pb.h"
#include "tools/hangarctl/commands.h"
#include "tools/hangarctl/output.h"

namespace hangar::ctl {
namespace {

int Generate(Invocation& in) {
  if (in.global("api_key").empty()) {
    return UsageError(in.command(),
                      "generate: needs an API key: --api_key or HANGAR_API_KEY "
                      "(hangarctl keys create makes one)");
  }
  v1::GenerateRequest request;
  request.set_deployment(in.arg(0));
  if (in.arg(1) == "-") {
    request.set_prompt(std::string(std::istreambuf_iterator<char>(std::cin),
                                   std::istreambuf_iterator<char>()));
  } else {
    request.set_prompt(in.arg(1));
  }
  request.set_request_id(in.String("request_id"));
  v1::SamplingOverrides& sampling = *request.mutable_sampling();
  if (in.Has("temperature")) {
    sampling.set_temperature(static_cast<float>(in.Double("temperature")));
  }
  if (in.Has("max_tokens")) {
    sampling.set_max_tokens(static_cast<int32_t>(in.Int("max_tokens")));
  }
  if (in.Has("top_p"))
    sampling.set_top_p(static_cast<float>(in.Double("top_p")));
  if (in.Has("top_k"))
    sampling.set_top_k(static_cast<int32_t>(in.Int("top_k")));
  for (const std::string& stop : in.Strings("stop")) {
    sampling.add_stop_sequences(stop);
  }
  if (in.Has("seed")) sampling.set_seed(static_cast<uint64_t>(in.Int("seed")));

  auto stub = v1::InferenceService::NewStub(in.Channel(Service::kGateway));
  auto context = in.Context(Auth::kApiKey);
  auto reader = stub->GenerateStream(context.get(), request);
  v1::GenerateStreamResponse message, last;
  bool any = false;
  while (reader->Read(&message)) {
    any = true;
    if (in.json()) {
      std::cout << CompactJson(message) << std::endl;
    } else {
      std::cout << message.delta() << std::flush;
    }
    last = message;
  }
  grpc::Status status = reader->Finish();
  if (!in.json() && any) std::cout << std::endl;
  if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    // The gateway's queue is full; it says when a retry is likely admitted.
    const auto& trailers = context->GetServerTrailingMetadata();
    if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
      return Fail(grpc::Status(
          status.error_code(),
          absl::StrCat(status.error_message(), " (retry after ",
                       std::string(it->second.data(), it->second.size()),
                       " ms)")));
    }
  }
  if (!status.ok()) return Fail(status);
  if (!in.json()) {
    std::cerr << "["
              << EnumName(v1::FinishReason_descriptor(), last.finish_reason())
              << "; " << last.usage().prompt_tokens() << " prompt + "
              << last.usage().completion_tokens() << " completion tokens; "
              << last.deployment() << " revision " << last.revision()
              << "; request " << last.request_id() << "]" << std::endl;
  }
  return kExitOk;
}

}  // namespace

std::vector<Command> GenerateCommands() {
  return {{.path = "generate",
           .arguments = "DEPLOYMENT PROMPT",
           .min_args = 2,
           .max_args = 2,
           .summary = "Generate a completion through the gateway, streamed",
           .details =
               "Prints the text as it arrives on stdout, then the finish "
               "reason and token counts on stderr; with -o json one "
               "GenerateStreamResponse per line. PROMPT - reads stdin. The "
               "API key comes from --api_key or HANGAR_API_KEY; sampling "
               "flags may only tighten the deployment's values. The whole "
               "call must end within --timeout_seconds. When the gateway's "
               "queue is full the error line ends with its retry-after "
               "hint: \"hangarctl: RESOURCE_EXHAUSTED: ... (retry after 250 "
               "ms)\".\n\n"
               "Example:\n  HANGAR_API_KEY=hk_... hangarctl generate my-chat "
               "\"Write a haiku about GPUs\" --max_tokens 64\n",
           .flags = {{"max_tokens", FlagType::kInt, "N", "new tokens at most"},
                     {"temperature", FlagType::kDouble, "T", "temperature"},
                     {"top_p", FlagType::kDouble, "P", "nucleus mass"},
                     {"top_k", FlagType::kInt, "K", "top-k"},
                     {"stop", FlagType::kStrings, "TEXT", "stop sequence"},
                     {"seed", FlagType::kInt, "N", "sampling seed"},
                     {"request_id", FlagType::kString, "ID",
                      "request id echoed back and logged",
                      "assigned by the gateway"}},
           .run = Generate}};
}

}  // namespace hangar::ctl
