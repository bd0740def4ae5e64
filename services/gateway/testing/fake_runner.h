// An in-process RunnerService on loopback for the dispatcher's tests: each
// sequence of a Generate call gets `deltas` one-character deltas, then
// FINISH_REASON_LENGTH with usage {prompt bytes, deltas}; or, by the
// sequence's prompt:
//   "fail-call"      the whole call fails UNAVAILABLE before any message;
//   "fail-sequence"  that sequence ends FINISH_REASON_ERROR UNAVAILABLE;
//   "text-then-fail-call"  one delta "t", then the call fails UNAVAILABLE;
//   "hold"           that sequence streams one delta, then waits until it is
//                    cancelled (Cancel by id, or the call) or Release().
// Every call and every Cancel is recorded.
#ifndef HANGAR_SERVICES_GATEWAY_TESTING_FAKE_RUNNER_H_
#define HANGAR_SERVICES_GATEWAY_TESTING_FAKE_RUNNER_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/runner.grpc.pb.h"

namespace hangar::gateway::testing {

class FakeRunner final : public v1::RunnerService::Service {
 public:
  FakeRunner();
  ~FakeRunner() override;

  std::string address() const { return address_; }
  // Ends every "hold" sequence normally.
  void Release();
  std::vector<v1::RunnerGenerateRequest> calls() const;
  std::vector<std::string> cancelled() const;
  // Sequences held now.
  int holding() const;

  grpc::Status Generate(
      grpc::ServerContext* context, const v1::RunnerGenerateRequest* request,
      grpc::ServerWriter<v1::RunnerGenerateResponse>* writer) override;
  grpc::Status Cancel(grpc::ServerContext* context,
                      const v1::RunnerCancelRequest* request,
                      v1::RunnerCancelResponse* response) override;

  int deltas = 3;

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::RunnerGenerateRequest> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancelled_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> cancel_set_ ABSL_GUARDED_BY(mu_);
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int holding_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

}  // namespace hangar::gateway::testing

#endif  // HANGAR_SERVICES_GATEWAY_TESTING_FAKE_RUNNER_H_
