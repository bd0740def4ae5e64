#include "services/gateway/testing/fake_runner.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace hangar::gateway::testing {

FakeRunner::FakeRunner() {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  address_ = absl::StrCat("127.0.0.1:", port);
}

FakeRunner::~FakeRunner() {
  Release();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

void FakeRunner::Release() {
  absl::MutexLock lock(&mu_);
  released_ = true;
}

std::vector<v1::RunnerGenerateRequest> FakeRunner::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

std::vector<std::string> FakeRunner::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

int FakeRunner::holding() const {
  absl::MutexLock lock(&mu_);
  return holding_;
}

grpc::Status FakeRunner::Generate(
    grpc::ServerContext* context, const v1::RunnerGenerateRequest* request,
    grpc::ServerWriter<v1::RunnerGenerateResponse>* writer) {
  {
    absl::MutexLock lock(&mu_);
    calls_.push_back(*request);
  }
  for (const v1::RunnerSequence& sequence : request->sequences()) {
    if (sequence.prompt() == "fail-call") {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake failure");
    }
  }
  // Messages of each sequence, interleaved: deltas first, then the ends.
  std::vector<int> held;
  for (int i = 0; i < request->sequences_size(); ++i) {
    const v1::RunnerSequence& sequence = request->sequences(i);
    v1::RunnerGenerateResponse message;
    message.set_sequence_id(sequence.id());
    message.set_index(i);
    if (sequence.prompt() == "fail-sequence") {
      message.set_finish_reason(v1::FINISH_REASON_ERROR);
      message.mutable_error()->set_code(grpc::StatusCode::UNAVAILABLE);
      message.mutable_error()->set_message("fake sequence failure");
      writer->Write(message);
      continue;
    }
    if (sequence.prompt() == "text-then-fail-call") {
      message.set_delta("t");
      writer->Write(message);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake failure");
    }
    if (sequence.prompt() == "hold") {
      message.set_delta("h");
      writer->Write(message);
      held.push_back(i);
      continue;
    }
    for (int d = 0; d < deltas; ++d) {
      message.set_delta("x");
      writer->Write(message);
    }
    message.clear_delta();
    message.set_finish_reason(v1::FINISH_REASON_LENGTH);
    message.mutable_usage()->set_prompt_tokens(sequence.prompt().size());
    message.mutable_usage()->set_completion_tokens(deltas);
    writer->Write(message);
  }
  {
    absl::MutexLock lock(&mu_);
    holding_ += static_cast<int>(held.size());
  }
  while (!held.empty()) {
    std::vector<int> still;
    for (int i : held) {
      const std::string& id = request->sequences(i).id();
      bool cancelled, released;
      {
        absl::MutexLock lock(&mu_);
        cancelled = cancel_set_.contains(id) || context->IsCancelled();
        released = released_;
      }
      if (!cancelled && !released) {
        still.push_back(i);
        continue;
      }
      v1::RunnerGenerateResponse message;
      message.set_sequence_id(id);
      message.set_index(i);
      message.set_finish_reason(cancelled ? v1::FINISH_REASON_CANCELLED
                                          : v1::FINISH_REASON_LENGTH);
      message.mutable_usage()->set_completion_tokens(1);
      writer->Write(message);
      absl::MutexLock lock(&mu_);
      --holding_;
    }
    held = std::move(still);
    if (!held.empty()) {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](bool* released) { return *released; }, &released_),
          absl::Milliseconds(10));
    }
  }
  return grpc::Status::OK;
}

grpc::Status FakeRunner::Cancel(grpc::ServerContext*,
                                const v1::RunnerCancelRequest* request,
                                v1::RunnerCancelResponse* response) {
  absl::MutexLock lock(&mu_);
  for (const std::string& id : request->sequence_ids()) {
    cancelled_.push_back(id);
    cancel_set_.insert(id);
    response->add_cancelled(id);
  }
  return grpc::Status::OK;
}

}  // namespace hangar::gateway::testing
