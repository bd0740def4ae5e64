// A stand-in for the scheduler's job API (SubmitJob / GetJob / CancelJob /
// WatchJob) on loopback, for the optimizer's integration tests: it runs each
// submitted argv as a real child process (fork/exec, stdout and stderr to a
// log file), so hangar-optimize really converts, and shows the last 8 KiB of
// the log as log_tail.
//
// Test controls: hold_pool(true) keeps new jobs PENDING ("pool full")
// until released; pause_at_progress(true) stops a running job (SIGSTOP) at
// its first "converting" line until Resume(); CancelJob sends SIGTERM (and
// SIGCONT to a paused job), as the scheduler's executor does.
#ifndef HANGAR_TESTS_INTEGRATION_OPTIMIZER_FAKE_SCHEDULER_H_
#define HANGAR_TESTS_INTEGRATION_OPTIMIZER_FAKE_SCHEDULER_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/scheduler.grpc.pb.h"

namespace hangar::testing {

class FakeScheduler final : public v1::SchedulerService::Service {
 public:
  static absl::StatusOr<std::unique_ptr<FakeScheduler>> Start(
      const std::string& log_dir);
  ~FakeScheduler() override;

  std::string address() const { return address_; }
  void hold_pool(bool hold);
  void pause_at_progress(bool pause);
  // Resumes every paused job.
  void Resume();
  // Distinct jobs submitted.
  int submitted();
  // Whether the job's process has been stopped at its first progress line.
  bool paused(const std::string& name);
  v1::JobState state(const std::string& name);

  grpc::Status SubmitJob(grpc::ServerContext*,
                         const v1::SubmitJobRequest* request,
                         v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status CancelJob(grpc::ServerContext*,
                         const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context,
                        const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::Job>* writer) override;

 private:
  struct Run {
    v1::Job job;
    pid_t pid = -1;
    bool paused = false;
    bool cancel_requested = false;
    std::string log_path;
    std::thread reaper;
  };
  FakeScheduler() = default;
  void StartProcess(Run& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job with its log tail now (pauses it at its first progress line
  // when asked).
  v1::Job Snapshot(Run& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::string log_dir_;
  std::string address_;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  bool pause_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::unique_ptr<Run>> runs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> by_request_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::testing

#endif  // HANGAR_TESTS_INTEGRATION_OPTIMIZER_FAKE_SCHEDULER_H_
