#include "tests/integration/optimizer/fake_scheduler.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"

namespace hangar::testing {
namespace {

bool Ended(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED ||
         s == v1::JOB_STATE_CANCELLED;
}

std::string Tail(const std::string& path, size_t max_bytes = 8192) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max_bytes ? s.substr(s.size() - max_bytes) : s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FakeScheduler>> FakeScheduler::Start(
    const std::string& log_dir) {
  std::unique_ptr<FakeScheduler> s(new FakeScheduler());
  s->log_dir_ = log_dir;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(s.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || port == 0)
    return absl::UnavailableError("fake scheduler: cannot listen");
  s->address_ = absl::StrCat("127.0.0.1:", port);
  return s;
}

FakeScheduler::~FakeScheduler() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [name, run] : runs_) {
      if (run->pid > 0 && !Ended(run->job.state())) {
        ::kill(run->pid, SIGKILL);
        ::kill(run->pid, SIGCONT);
      }
    }
  }
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  std::map<std::string, std::unique_ptr<Run>> runs;
  {
    absl::MutexLock lock(&mu_);
    runs.swap(runs_);
  }
  for (auto& [name, run] : runs)
    if (run->reaper.joinable()) run->reaper.join();
}

void FakeScheduler::hold_pool(bool hold) {
  absl::MutexLock lock(&mu_);
  hold_ = hold;
  if (hold) return;
  for (auto& [name, run] : runs_) {
    if (run->job.state() == v1::JOB_STATE_PENDING) StartProcess(*run);
  }
}

void FakeScheduler::pause_at_progress(bool pause) {
  absl::MutexLock lock(&mu_);
  pause_ = pause;
}

void FakeScheduler::Resume() {
  absl::MutexLock lock(&mu_);
  pause_ = false;
  for (auto& [name, run] : runs_) {
    if (run->paused && run->pid > 0) ::kill(run->pid, SIGCONT);
  }
}

int FakeScheduler::submitted() {
  absl::MutexLock lock(&mu_);
  return int(runs_.size());
}

bool FakeScheduler::paused(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(name);
  if (it == runs_.end()) return false;
  Snapshot(*it->second);
  return it->second->paused;
}

v1::JobState FakeScheduler::state(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(name);
  return it == runs_.end() ? v1::JOB_STATE_UNSPECIFIED
                           : it->second->job.state();
}

void FakeScheduler::StartProcess(Run& run) {
  std::vector<std::string> argv(run.job.spec().argv().begin(),
                                run.job.spec().argv().end());
  run.log_path = absl::StrCat(log_dir_, "/", run.job.name(), ".log");
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(run.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  run.pid = pid;
  run.job.set_state(v1::JOB_STATE_RUNNING);
  run.job.clear_pending_reason();
  Run* r = &run;
  run.reaper = std::thread([this, r, pid] {
    int status = 0;
    ::waitpid(pid, &status, 0);
    absl::MutexLock lock(&mu_);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r->job.set_exit_code(code);
    r->job.set_log_tail(Tail(r->log_path));
    if (r->cancel_requested) {
      r->job.set_state(v1::JOB_STATE_CANCELLED);
      r->job.set_failure_reason("cancelled");
    } else if (code == 0) {
      r->job.set_state(v1::JOB_STATE_SUCCEEDED);
    } else {
      r->job.set_state(v1::JOB_STATE_FAILED);
      r->job.set_failure_reason(absl::StrCat("exit code ", code));
    }
  });
}

v1::Job FakeScheduler::Snapshot(Run& run) {
  if (run.job.state() == v1::JOB_STATE_RUNNING) {
    run.job.set_log_tail(Tail(run.log_path));
    if (pause_ && !run.paused &&
        run.job.log_tail().find("\"converting\"") != std::string::npos) {
      ::kill(run.pid, SIGSTOP);
      run.paused = true;
    }
  }
  return run.job;
}

grpc::Status FakeScheduler::SubmitJob(grpc::ServerContext*,
                                      const v1::SubmitJobRequest* request,
                                      v1::Job* response) {
  absl::MutexLock lock(&mu_);
  if (request->request_id().empty())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "request_id: required");
  if (auto it = by_request_.find(request->request_id());
      it != by_request_.end()) {
    *response = Snapshot(*runs_.at(it->second));
    return grpc::Status::OK;
  }
  if (request->spec().argv().empty())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "spec.argv: required");
  auto run = std::make_unique<Run>();
  run->job.set_name(absl::StrCat("job-", runs_.size() + 1));
  *run->job.mutable_spec() = request->spec();
  run->job.set_state(v1::JOB_STATE_PENDING);
  run->job.set_pending_reason("pool full: 0 of 1 GPUs free");
  if (!hold_) StartProcess(*run);
  *response = run->job;
  by_request_[request->request_id()] = run->job.name();
  runs_[run->job.name()] = std::move(run);
  return grpc::Status::OK;
}

grpc::Status FakeScheduler::GetJob(grpc::ServerContext*,
                                   const v1::GetJobRequest* request,
                                   v1::Job* response) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(request->name());
  if (it == runs_.end())
    return grpc::Status(grpc::StatusCode::NOT_FOUND, request->name());
  *response = Snapshot(*it->second);
  return grpc::Status::OK;
}

grpc::Status FakeScheduler::CancelJob(grpc::ServerContext*,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(request->name());
  if (it == runs_.end())
    return grpc::Status(grpc::StatusCode::NOT_FOUND, request->name());
  Run& run = *it->second;
  if (run.job.state() == v1::JOB_STATE_PENDING) {
    run.job.set_state(v1::JOB_STATE_CANCELLED);
  } else if (run.job.state() == v1::JOB_STATE_RUNNING) {
    run.cancel_requested = true;
    ::kill(run.pid, SIGTERM);
    ::kill(run.pid, SIGCONT);
  }
  *response = run.job;
  return grpc::Status::OK;
}

grpc::Status FakeScheduler::WatchJob(grpc::ServerContext* context,
                                     const v1::WatchJobRequest* request,
                                     grpc::ServerWriter<v1::Job>* writer) {
  std::string last;
  while (!context->IsCancelled()) {
    v1::Job job;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_)
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "stopping");
      auto it = runs_.find(request->name());
      if (it == runs_.end())
        return grpc::Status(grpc::StatusCode::NOT_FOUND, request->name());
      job = Snapshot(*it->second);
    }
    std::string now = job.SerializeAsString();
    if (now != last) {
      if (!writer->Write(job)) return grpc::Status::CANCELLED;
      last = now;
    }
    if (Ended(job.state())) return grpc::Status::OK;
    // A stand-in: it looks at the log and the process every 20 ms.
    absl::SleepFor(absl::Milliseconds(20));
  }
  return grpc::Status::CANCELLED;
}

}  // namespace hangar::testing
