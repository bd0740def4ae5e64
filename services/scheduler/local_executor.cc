#include "services/scheduler/local_executor.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/status/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "hangar/v1/runner.grpc.pb.h"

namespace hangar::scheduler {
namespace {

absl::Status OutOfRange(absl::string_view field, absl::Duration value,
                        absl::Duration low, absl::Duration high) {
  if (value >= low && value <= high) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": must be in [", absl::FormatDuration(low), ", ",
      absl::FormatDuration(high), "]; was ", absl::FormatDuration(value)));
}

absl::Status IntOutOfRange(absl::string_view field, int64_t value, int64_t low,
                           int64_t high) {
  if (value >= low && value <= high) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": must be in [", low, ", ", high, "]; was ", value));
}

bool IsExecutableFile(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

// The directory holding this process's binary.
std::string SelfDir() {
  std::error_code error;
  std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return ".";
  return self.parent_path().string();
}

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return name != "." && name != "..";
}

absl::Status ValidateReplicaSpec(const ReplicaSpec& spec) {
  if (!ValidName(spec.name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "name: must be 1 to 128 letters, digits, '.', '_' or '-'; was \"",
        spec.name, "\""));
  }
  if (spec.deployment.empty()) {
    return absl::InvalidArgumentError("deployment: required; was empty");
  }
  if (spec.revision < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("revision: must not be negative; was ", spec.revision));
  }
  if (spec.artifact_path.empty()) {
    return absl::InvalidArgumentError("artifact_path: required; was empty");
  }
  RETURN_IF_ERROR(IntOutOfRange("threads", spec.threads, 1, 256));
  RETURN_IF_ERROR(IntOutOfRange("max_batch", spec.max_batch, 1, 256));
  RETURN_IF_ERROR(
      IntOutOfRange("context_length", spec.context_length, 0, 1 << 24));
  return absl::OkStatus();
}

// Joins stop sequences the way the runner's --stop_sequences reads them:
// each C-escaped, "\," for a comma inside one.
std::string StopSequencesFlag(const std::vector<std::string>& stops) {
  std::vector<std::string> items;
  for (const std::string& stop : stops) {
    items.push_back(absl::StrReplaceAll(absl::CEscape(stop), {{",", "\\,"}}));
  }
  return absl::StrJoin(items, ",");
}

std::vector<std::string> AssignmentEnv(const Assignment& assignment) {
  if (assignment.gpus.empty()) return {};
  return {absl::StrCat("CUDA_VISIBLE_DEVICES=",
                       absl::StrJoin(assignment.gpus, ","))};
}

// The arguments of a running process, from /proc; empty when it is gone.
std::vector<std::string> ProcessArgs(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/cmdline"), std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  return absl::StrSplit(text, '\0', absl::SkipEmpty());
}

// Whether `args` are those of a runner started for `spec` (they name the
// replica, deployment and revision).
bool IsRunnerOf(const std::vector<std::string>& args, const ReplicaSpec& spec) {
  auto has = [&](const std::string& flag) {
    return std::find(args.begin(), args.end(), flag) != args.end();
  };
  return has("--replica=" + spec.name) &&
         has("--deployment=" + spec.deployment) &&
         has(absl::StrCat("--revision=", spec.revision));
}

// When `pid` started (/proc/<pid>/stat field 22, clock ticks since boot);
// nullopt when it is gone or a zombie (it no longer runs).
std::optional<uint64_t> StartTicks(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  const size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) {
    return std::nullopt;
  }
  // Fields from the third on: state, ppid, ... starttime is field 22.
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(line).substr(close + 2), ' ');
  if (fields.size() < 20 || fields[0] == "Z" || fields[0] == "X") {
    return std::nullopt;
  }
  uint64_t ticks = 0;
  if (!absl::SimpleAtoi(fields[19], &ticks)) return std::nullopt;
  return ticks;
}

// The value of "<prefix>value" among `args` (up to a "--" when
// `before_dashes`), or empty.
std::string FlagValue(const std::vector<std::string>& args,
                      absl::string_view prefix, bool before_dashes) {
  for (const std::string& arg : args) {
    if (before_dashes && arg == "--") break;
    if (absl::StartsWith(arg, prefix)) return arg.substr(prefix.size());
  }
  return "";
}

// At most the last `max` bytes of a file; empty when it cannot be read.
std::string ReadFileTail(const std::string& path, size_t max) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size <= 0) return "";
  const std::streamoff start =
      size > static_cast<std::streamoff>(max) ? size - max : 0;
  in.seekg(start);
  std::string text(static_cast<size_t>(size - start), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

// How a job ended, from the file hangar-exec-wrapper wrote.
std::optional<ExitStatus> ReadExitFile(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  int value = 0;
  if (!(in >> word >> value)) return std::nullopt;
  if (word == "exited") return ExitStatus{.exit_code = value, .signal = 0};
  if (word == "killed") return ExitStatus{.exit_code = -1, .signal = value};
  return std::nullopt;
}

constexpr char kLogHeader[] = "--- hangar-exec-wrapper: ";

absl::Duration Backoff(absl::Duration initial, absl::Duration max,
                       int attempt) {
  absl::Duration delay = initial;
  for (int i = 0; i < attempt && delay < max; ++i) delay *= 2;
  return std::min(delay, max);
}

}  // namespace

absl::string_view ReplicaStateName(ReplicaState state) {
  switch (state) {
    case ReplicaState::kStarting:
      return "STARTING";
    case ReplicaState::kReady:
      return "READY";
    case ReplicaState::kDraining:
      return "DRAINING";
    case ReplicaState::kStopped:
      return "STOPPED";
    case ReplicaState::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

absl::string_view JobStateName(JobState state) {
  switch (state) {
    case JobState::kPending:
      return "PENDING";
    case JobState::kRunning:
      return "RUNNING";
    case JobState::kSucceeded:
      return "SUCCEEDED";
    case JobState::kFailed:
      return "FAILED";
    case JobState::kCancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

absl::StatusOr<std::unique_ptr<LocalExecutor>> LocalExecutor::Create(
    Options options) {
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock: required; was null");
  }
  if (options.runner_path.empty()) {
    std::string dir = SelfDir();
    std::string beside = dir + "/hangar-runner";
    options.runner_path =
        IsExecutableFile(beside) ? beside : dir + "/../runner/hangar-runner";
  } else if (!IsExecutableFile(options.runner_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("runner_path: must be an executable file; was \"",
                     options.runner_path, "\""));
  }
  if (options.wrapper_path.empty()) {
    std::string dir = SelfDir();
    std::string beside = dir + "/hangar-exec-wrapper";
    options.wrapper_path = IsExecutableFile(beside)
                               ? beside
                               : dir + "/../scheduler/hangar-exec-wrapper";
  }
  if (!IsExecutableFile(options.wrapper_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("wrapper_path: must be an executable file; was \"",
                     options.wrapper_path, "\""));
  }
  if (options.detach_children && options.run_dir.empty()) {
    return absl::InvalidArgumentError(
        "detach_children: needs a run_dir that outlives this process; was "
        "empty");
  }
  if (options.leave_children_on_destroy && !options.detach_children) {
    return absl::InvalidArgumentError(
        "leave_children_on_destroy: needs detach_children; was false");
  }
  if (options.log_max_bytes < 1024 || options.log_max_bytes > (1LL << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("log_max_bytes: must be in [1024, 1073741824]; was ",
                     options.log_max_bytes));
  }
  RETURN_IF_ERROR(OutOfRange("log_check_interval", options.log_check_interval,
                             absl::Milliseconds(10), absl::Hours(1)));
  if (options.binary_dirs.empty()) options.binary_dirs = {SelfDir()};
  RETURN_IF_ERROR(OutOfRange("start_timeout", options.start_timeout,
                             absl::Seconds(1), absl::Hours(1)));
  RETURN_IF_ERROR(OutOfRange("probe_interval_initial",
                             options.probe_interval_initial,
                             absl::Milliseconds(1), absl::Seconds(10)));
  RETURN_IF_ERROR(OutOfRange("probe_interval_max", options.probe_interval_max,
                             options.probe_interval_initial,
                             absl::Seconds(10)));
  RETURN_IF_ERROR(OutOfRange("probe_rpc_timeout", options.probe_rpc_timeout,
                             absl::Milliseconds(10), absl::Minutes(1)));
  RETURN_IF_ERROR(OutOfRange("health_interval", options.health_interval,
                             absl::ZeroDuration(), absl::Hours(1)));
  RETURN_IF_ERROR(IntOutOfRange("health_failure_threshold",
                                options.health_failure_threshold, 1, 100));
  RETURN_IF_ERROR(OutOfRange("restart_backoff_initial",
                             options.restart_backoff_initial,
                             absl::Milliseconds(1), absl::Hours(1)));
  RETURN_IF_ERROR(OutOfRange("restart_backoff_max", options.restart_backoff_max,
                             options.restart_backoff_initial, absl::Hours(1)));
  RETURN_IF_ERROR(OutOfRange("backoff_reset_after", options.backoff_reset_after,
                             absl::ZeroDuration(), absl::Hours(24)));
  RETURN_IF_ERROR(OutOfRange("runner_drain_timeout",
                             options.runner_drain_timeout, absl::ZeroDuration(),
                             absl::Hours(1)));
  RETURN_IF_ERROR(OutOfRange("kill_grace", options.kill_grace,
                             absl::ZeroDuration(), absl::Minutes(10)));
  RETURN_IF_ERROR(IntOutOfRange("max_probes", options.max_probes, 1, 64));
  RETURN_IF_ERROR(IntOutOfRange("log_tail_bytes",
                                static_cast<int64_t>(options.log_tail_bytes), 0,
                                1 << 20));

  bool owns_run_dir = false;
  if (options.run_dir.empty()) {
    const char* tmp = getenv("TMPDIR");
    std::string pattern = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp",
                                       "/hangar-executor-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      return absl::InternalError(
          absl::StrCat("run_dir: cannot create ", pattern));
    }
    options.run_dir = pattern;
    owns_run_dir = true;
  }
  {
    std::error_code error;
    options.run_dir = std::filesystem::absolute(options.run_dir, error)
                          .lexically_normal()
                          .string();
    while (options.run_dir.size() > 1 && options.run_dir.back() == '/') {
      options.run_dir.pop_back();
    }
    for (const char* sub : {"/run", "/logs"}) {
      std::filesystem::create_directories(options.run_dir + sub, error);
      if (error) {
        return absl::InvalidArgumentError(
            absl::StrCat("run_dir: cannot create \"", options.run_dir, sub,
                         "\": ", error.message()));
      }
    }
  }

  std::unique_ptr<LocalExecutor> executor(new LocalExecutor(options));
  executor->owns_run_dir_ = owns_run_dir;
  executor->executor_id_ =
      absl::StrCat(absl::Hex(absl::ToUnixMicros(absl::Now())), "-", getpid());
  ASSIGN_OR_RETURN(
      executor->monitor_,
      ProcessMonitor::Create(
          {.name = "executor", .log_tail_bytes = options.log_tail_bytes}));
  ASSIGN_OR_RETURN(executor->probes_,
                   TaskGroup::Create({.name = "readiness probes",
                                      .max_threads = options.max_probes,
                                      .max_queued = 1024,
                                      .clock = options.clock}));
  executor->supervisor_ = std::thread([e = executor.get()] { e->Loop(); });
  return executor;
}

LocalExecutor::LocalExecutor(Options options) : options_(std::move(options)) {}

LocalExecutor::~LocalExecutor() {
  if (!options_.leave_children_on_destroy && supervisor_.joinable()) {
    StopChildren();
  }
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_ = true;
  }
  if (supervisor_.joinable()) supervisor_.join();
  if (probes_ != nullptr) probes_->Shutdown();
  // Kills (or leaves) every child and stops its thread; exit callbacks that
  // were running have returned when this does.
  monitor_.reset();
  if (owns_run_dir_) {
    std::error_code ignored;
    std::filesystem::remove_all(options_.run_dir, ignored);
  }
}

std::vector<std::string> LocalExecutor::RunnerArgv(
    const ReplicaSpec& spec, const std::string& port_file) const {
  std::vector<std::string> argv = {
      options_.runner_path,
      "--model=" + spec.artifact_path,
      "--host=127.0.0.1",
      "--port=0",
      "--port_file=" + port_file,
      "--deployment=" + spec.deployment,
      absl::StrCat("--revision=", spec.revision),
      "--replica=" + spec.name,
      absl::StrCat("--threads=", spec.threads),
      absl::StrCat("--max_batch=", spec.max_batch),
      "--drain_timeout=" + absl::FormatDuration(options_.runner_drain_timeout),
  };
  if (spec.context_length > 0) {
    argv.push_back(absl::StrCat("--max_context=", spec.context_length));
  }
  const SamplingValues& s = spec.sampling;
  if (s.temperature)
    argv.push_back(absl::StrCat("--temperature=", *s.temperature));
  if (s.max_tokens)
    argv.push_back(absl::StrCat("--max_tokens=", *s.max_tokens));
  if (s.top_p) argv.push_back(absl::StrCat("--top_p=", *s.top_p));
  if (s.top_k) argv.push_back(absl::StrCat("--top_k=", *s.top_k));
  if (s.seed) argv.push_back(absl::StrCat("--seed=", *s.seed));
  if (!s.stop_sequences.empty()) {
    argv.push_back("--stop_sequences=" + StopSequencesFlag(s.stop_sequences));
  }
  argv.insert(argv.end(), options_.runner_args.begin(),
              options_.runner_args.end());
  return argv;
}

// ---------------------------------------------------------------------------
// Replicas

absl::Status LocalExecutor::StartReplica(const ReplicaSpec& spec) {
  RETURN_IF_ERROR(ValidateReplicaSpec(spec));
  absl::MutexLock lock(&mu_);
  if (stopping_ || shutting_down_) {
    return absl::FailedPreconditionError("executor is stopping");
  }
  auto it = replicas_.find(spec.name);
  if (it != replicas_.end()) {
    if (it->second.phase != Phase::kStopped) {
      return absl::AlreadyExistsError(
          absl::StrCat("replica ", spec.name, ": already ",
                       ReplicaStateName(it->second.status.state)));
    }
    replicas_.erase(it);
  }
  Replica& replica = replicas_[spec.name];
  replica.status.spec = spec;
  replica.status.state = ReplicaState::kStarting;
  replica.phase = Phase::kSpawnDue;
  NotifyLocked(replica);
  wake_ = true;
  return absl::OkStatus();
}

absl::Status LocalExecutor::StopReplica(absl::string_view name,
                                        absl::Duration drain) {
  if (drain < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "drain: must not be negative; was ", absl::FormatDuration(drain)));
  }
  absl::MutexLock lock(&mu_);
  auto it = replicas_.find(name);
  if (it == replicas_.end()) {
    return absl::NotFoundError(absl::StrCat("replica ", name, ": not found"));
  }
  Replica& replica = it->second;
  if (replica.stop_requested || replica.phase == Phase::kStopped) {
    return absl::OkStatus();
  }
  replica.stop_requested = true;
  replica.drain = drain;
  replica.status.next_restart_time.reset();
  switch (replica.phase) {
    case Phase::kSpawnDue:
    case Phase::kBackoff:
      // No process runs.
      replica.phase = Phase::kStopped;
      replica.status.state = ReplicaState::kStopped;
      replica.status.pid = 0;
      break;
    case Phase::kSpawning:
      // ApplySpawnLocked() sends SIGTERM once the fork returned.
      replica.status.state = ReplicaState::kDraining;
      break;
    case Phase::kStarting:
    case Phase::kReady:
      replica.phase = Phase::kDraining;
      replica.status.state = ReplicaState::kDraining;
      replica.kill_at = options_.clock->Now() + drain + options_.kill_grace;
      monitor_->Signal(replica.status.pid, SIGTERM);
      break;
    case Phase::kDraining:
    case Phase::kStopped:
      break;
  }
  NotifyLocked(replica);
  wake_ = true;
  return absl::OkStatus();
}

absl::Status LocalExecutor::ForgetReplica(absl::string_view name) {
  absl::MutexLock lock(&mu_);
  auto it = replicas_.find(name);
  if (it == replicas_.end()) {
    return absl::NotFoundError(absl::StrCat("replica ", name, ": not found"));
  }
  if (it->second.phase != Phase::kStopped) {
    return absl::FailedPreconditionError(absl::StrCat(
        "replica ", name, ": is ", ReplicaStateName(it->second.status.state),
        ", not STOPPED"));
  }
  replicas_.erase(it);
  return absl::OkStatus();
}

std::string LocalExecutor::LogPath(absl::string_view name) const {
  return absl::StrCat(options_.run_dir, "/logs/", name, ".log");
}

std::string LocalExecutor::StartId(uint64_t generation) const {
  return absl::StrCat(executor_id_, "-", generation);
}

std::vector<std::string> LocalExecutor::WrapperArgv(
    const std::string& name, const std::string& exit_file,
    const std::vector<std::string>& argv) const {
  std::vector<std::string> wrapped = {options_.wrapper_path, "--name=" + name,
                                      "--log_file=" + LogPath(name)};
  if (!exit_file.empty()) wrapped.push_back("--exit_file=" + exit_file);
  wrapped.push_back("--");
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

std::string LocalExecutor::ReadLogTail(const std::string& name) const {
  const size_t max = options_.log_tail_bytes;
  if (max == 0) return "";
  std::string text = ReadFileTail(LogPath(name), max + 1024);
  // Only the last start's output: after the wrapper's last header line.
  const size_t header = text.rfind(kLogHeader);
  if (header != std::string::npos) {
    const size_t line_end = text.find('\n', header);
    text = line_end == std::string::npos ? "" : text.substr(line_end + 1);
  }
  if (text.size() > max) text = text.substr(text.size() - max);
  return text;
}

void LocalExecutor::CapLogs(const std::vector<std::string>& names) const {
  for (const std::string& name : names) {
    const std::string path = LogPath(name);
    struct stat info;
    if (stat(path.c_str(), &info) != 0 ||
        info.st_size <= options_.log_max_bytes) {
      continue;
    }
    // Copy, then truncate: the child keeps its O_APPEND descriptor and goes
    // on writing at the new end (a line written in between may be lost).
    std::error_code error;
    std::filesystem::copy_file(
        path, path + ".1", std::filesystem::copy_options::overwrite_existing,
        error);
    if (truncate(path.c_str(), 0) != 0) {
      std::cerr << "executor: cannot truncate " << path << ": "
                << strerror(errno) << std::endl;
    }
  }
}

std::vector<LocalExecutor::Found> LocalExecutor::ScanProcesses() const {
  std::vector<Found> found;
  const std::string exit_prefix =
      absl::StrCat("--exit_file=", options_.run_dir, "/run/");
  const std::string port_prefix =
      absl::StrCat("--port_file=", options_.run_dir, "/run/");
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return found;
  const pid_t self = getpid();
  while (dirent* entry = readdir(dir)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid <= 0 || pid == self) {
      continue;
    }
    std::vector<std::string> args = ProcessArgs(pid);
    if (args.empty()) continue;
    Found item;
    item.pid = pid;
    std::string exit_file = FlagValue(args, exit_prefix, true);
    if (!exit_file.empty()) {
      item.job = true;
      item.name = FlagValue(args, "--name=", true);
      item.file = exit_prefix.substr(12) + exit_file;
    } else {
      std::string port_file = FlagValue(args, port_prefix, false);
      if (port_file.empty()) continue;
      item.name = FlagValue(args, "--replica=", false);
      item.file = port_prefix.substr(12) + port_file;
    }
    std::optional<uint64_t> ticks = StartTicks(pid);
    if (!ticks.has_value() || item.name.empty()) continue;  // ended
    item.start_ticks = *ticks;
    item.args = std::move(args);
    found.push_back(std::move(item));
  }
  closedir(dir);
  return found;
}

absl::Status LocalExecutor::Adopt(const std::vector<RecordedReplica>& recorded,
                                  const std::vector<RecordedJob>& jobs) {
  for (const RecordedReplica& record : recorded) {
    RETURN_IF_ERROR(ValidateReplicaSpec(record.spec));
  }
  for (const RecordedJob& record : jobs) {
    if (!ValidName(record.spec.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("jobs: invalid name \"", record.spec.name, "\""));
    }
  }
  std::vector<Found> found = ScanProcesses();
  std::vector<bool> claimed(found.size(), false);
  // The process found for a record: the recorded pid and start time when
  // they match one, else the newest (the record may predate its start).
  auto pick = [&](const std::string& name, bool job, pid_t pid, uint64_t ticks,
                  const std::function<bool(const Found&)>& fits) -> int {
    int best = -1;
    for (size_t i = 0; i < found.size(); ++i) {
      const Found& f = found[i];
      if (claimed[i] || f.job != job || f.name != name || !fits(f)) continue;
      if (f.pid == pid && (ticks == 0 || f.start_ticks == ticks)) {
        return static_cast<int>(i);
      }
      if (best < 0 || f.start_ticks > found[best].start_ticks) {
        best = static_cast<int>(i);
      }
    }
    return best;
  };

  absl::MutexLock lock(&mu_);
  if (stopping_ || shutting_down_) {
    return absl::FailedPreconditionError("executor is stopping");
  }
  for (const RecordedReplica& record : recorded) {
    auto it = replicas_.find(record.spec.name);
    if (it != replicas_.end() && it->second.phase != Phase::kStopped) {
      return absl::AlreadyExistsError(
          absl::StrCat("replica ", record.spec.name, ": already ",
                       ReplicaStateName(it->second.status.state)));
    }
  }
  for (const RecordedJob& record : jobs) {
    if (jobs_.contains(record.spec.name)) {
      return absl::AlreadyExistsError(
          absl::StrCat("job ", record.spec.name, ": already exists"));
    }
  }
  const absl::Time now = options_.clock->Now();
  for (const RecordedReplica& record : recorded) {
    replicas_.erase(record.spec.name);
    Replica& replica = replicas_[record.spec.name];
    replica.status.spec = record.spec;
    replica.status.state = ReplicaState::kStarting;
    replica.status.restarts = record.restarts;
    replica.status.log_path = LogPath(record.spec.name);
    // Only a process started as this replica's runner is adopted: its
    // command line names the replica and this run_dir.
    const int index =
        pick(record.spec.name, false, record.pid, record.start_ticks,
             [&](const Found& f) { return IsRunnerOf(f.args, record.spec); });
    bool adopted = false;
    if (index >= 0) {
      const Found& f = found[index];
      replica.generation = ++last_generation_;
      absl::Status watched = monitor_->Watch(
          f.pid, !options_.leave_children_on_destroy,
          [this, name = record.spec.name, generation = replica.generation](
              pid_t, const ExitStatus& exit, std::string) {
            OnReplicaExit(name, generation, exit, "");
          });
      adopted = watched.ok();
      if (adopted) {
        claimed[index] = true;
        replica.phase = Phase::kStarting;
        replica.status.pid = f.pid;
        replica.status.start_ticks = f.start_ticks;
        replica.status.address =
            f.pid == record.pid ? record.address : std::string();
        replica.port_file = f.file;
        replica.start_deadline = now + options_.start_timeout;
        replica.next_probe = now;
      }
    }
    if (!adopted) {
      replica.phase = Phase::kSpawnDue;
      replica.status.restarts = record.restarts + 1;
      replica.status.last_error =
          record.pid > 0 ? absl::StrCat("recorded runner (pid ", record.pid,
                                        ") is gone; starting a new one")
                         : "no recorded runner; starting a new one";
    }
    NotifyLocked(replica);
  }
  for (const RecordedJob& record : jobs) {
    Job& job = jobs_[record.spec.name];
    job.spawning = false;
    job.status.spec = record.spec;
    job.status.start_time = record.start_time.value_or(now);
    job.status.log_path = LogPath(record.spec.name);
    job.deadline = *job.status.start_time + record.spec.timeout;
    const int index =
        pick(record.spec.name, true, record.pid, record.start_ticks,
             [](const Found&) { return true; });
    if (index >= 0) {
      const Found& f = found[index];
      absl::Status watched =
          monitor_->Watch(f.pid, !options_.leave_children_on_destroy,
                          [this, name = record.spec.name](
                              pid_t, const ExitStatus& exit, std::string) {
                            OnJobExit(name, exit);
                          });
      if (watched.ok()) {
        claimed[index] = true;
        job.status.state = JobState::kRunning;
        job.status.pid = f.pid;
        job.status.start_ticks = f.start_ticks;
        job.exit_file = f.file;
        NotifyLocked(job);
        continue;
      }
    }
    // It ended while no scheduler watched: what its wrapper left behind.
    std::optional<ExitStatus> exit;
    std::string exit_file;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(
             options_.run_dir + "/run", error)) {
      const std::string file = entry.path().filename().string();
      if (absl::StartsWith(file, record.spec.name + ".") &&
          absl::EndsWith(file, ".exit")) {
        if (auto read = ReadExitFile(entry.path().string())) {
          exit = read;
          exit_file = entry.path().string();
        }
      }
    }
    job.status.end_time = now;
    job.status.log_tail = ReadLogTail(record.spec.name);
    if (exit.has_value()) {
      job.status.exit_code = exit->code();
      job.status.state =
          exit->success() ? JobState::kSucceeded : JobState::kFailed;
      if (!exit->success()) {
        job.status.failure_reason =
            absl::StrCat(exit->ToString(), " (while the scheduler was down)");
      }
      job.exit_file = exit_file;  // removed by ForgetJob()
    } else {
      job.status.state = JobState::kFailed;
      job.status.failure_reason = absl::StrCat(
          "its process",
          record.pid > 0 ? absl::StrCat(" (pid ", record.pid, ")") : "",
          " ended while the scheduler was down; exit status unknown");
    }
    NotifyLocked(job);
  }
  // Orphans: processes of this run_dir that no record wants.
  for (size_t i = 0; i < found.size(); ++i) {
    if (claimed[i]) continue;
    std::cerr << "executor: killing orphan "
              << (found[i].job ? "job " : "runner ") << found[i].name
              << " (pid " << found[i].pid << "): no record claims it"
              << std::endl;
    kill(-found[i].pid, SIGKILL);
    kill(found[i].pid, SIGKILL);
  }
  // Files of processes that are gone (a recorded job's exit file stays
  // until the job is forgotten).
  std::set<std::string> live;
  for (size_t i = 0; i < found.size(); ++i) {
    if (claimed[i]) live.insert(found[i].file);
  }
  for (const RecordedJob& record : jobs) {
    live.insert(jobs_.at(record.spec.name).exit_file);
  }
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(options_.run_dir + "/run", error)) {
    if (!live.contains(entry.path().string())) {
      std::filesystem::remove(entry.path(), error);
    }
  }
  wake_ = true;
  return absl::OkStatus();
}

absl::StatusOr<ReplicaStatus> LocalExecutor::GetReplica(
    absl::string_view name) {
  ReplicaStatus status;
  {
    absl::MutexLock lock(&mu_);
    auto it = replicas_.find(name);
    if (it == replicas_.end()) {
      return absl::NotFoundError(absl::StrCat("replica ", name, ": not found"));
    }
    status = it->second.status;
  }
  // A running process's output so far.
  if (status.pid > 0) status.log_tail = ReadLogTail(status.spec.name);
  return status;
}

std::vector<ReplicaStatus> LocalExecutor::ListReplicas() {
  absl::MutexLock lock(&mu_);
  std::vector<ReplicaStatus> list;
  for (const auto& [name, replica] : replicas_) list.push_back(replica.status);
  return list;
}

void LocalExecutor::FailLocked(Replica& replica, const std::string& reason) {
  const absl::Time now = options_.clock->Now();
  if (replica.phase == Phase::kReady && replica.status.ready_time &&
      now - *replica.status.ready_time >= options_.backoff_reset_after) {
    replica.consecutive_failures = 0;
  }
  absl::Duration delay =
      Backoff(options_.restart_backoff_initial, options_.restart_backoff_max,
              replica.consecutive_failures);
  ++replica.consecutive_failures;
  replica.phase = Phase::kBackoff;
  replica.status.state = ReplicaState::kFailed;
  replica.status.pid = 0;
  replica.status.next_restart_time = now + delay;
  replica.status.last_error =
      absl::StrCat(reason, "; restarting in ", absl::FormatDuration(delay),
                   replica.consecutive_failures > 1
                       ? absl::StrCat(" (", replica.consecutive_failures,
                                      " failures in a row)")
                       : "");
  replica.probe_in_flight = false;
  replica.kill_reason.clear();
  NotifyLocked(replica);
  wake_ = true;
}

void LocalExecutor::OnReplicaExit(const std::string& name, uint64_t generation,
                                  const ExitStatus& exit,
                                  std::string log_tail) {
  absl::MutexLock lock(&mu_);
  auto it = replicas_.find(name);
  if (it == replicas_.end() || it->second.generation != generation) return;
  Replica& replica = it->second;
  if (replica.phase == Phase::kStopped || replica.phase == Phase::kBackoff) {
    return;
  }
  if (!replica.port_file.empty()) {
    unlink(replica.port_file.c_str());
  }
  if (exit.known) replica.status.last_exit_code = exit.code();
  (void)log_tail;  // the output went to the log file
  replica.status.log_tail = ReadLogTail(name);
  replica.status.start_ticks = 0;
  if (replica.stop_requested) {
    replica.phase = Phase::kStopped;
    replica.status.state = ReplicaState::kStopped;
    replica.status.pid = 0;
    NotifyLocked(replica);
    wake_ = true;
    return;
  }
  std::string reason = exit.ToString();
  if (!replica.kill_reason.empty()) {
    reason = absl::StrCat(replica.kill_reason, "; ", reason);
  }
  FailLocked(replica, reason);
}

absl::Time LocalExecutor::PlanLocked(absl::Time now,
                                     std::vector<SpawnWork>& spawns,
                                     std::vector<ProbeWork>& probes) {
  absl::Time next = absl::InfiniteFuture();
  for (auto& [name, replica] : replicas_) {
    switch (replica.phase) {
      case Phase::kBackoff:
        if (!replica.status.next_restart_time ||
            *replica.status.next_restart_time > now) {
          if (replica.status.next_restart_time) {
            next = std::min(next, *replica.status.next_restart_time);
          }
          break;
        }
        ++replica.status.restarts;
        [[fallthrough]];
      case Phase::kSpawnDue: {
        if (shutting_down_) {
          replica.phase = Phase::kStopped;
          replica.status.state = ReplicaState::kStopped;
          NotifyLocked(replica);
          break;
        }
        replica.generation = ++last_generation_;
        replica.phase = Phase::kSpawning;
        replica.status.state = ReplicaState::kStarting;
        replica.status.next_restart_time.reset();
        replica.status.address.clear();
        replica.port_file = absl::StrCat(options_.run_dir, "/run/", name, ".",
                                         StartId(replica.generation), ".port");
        replica.status.log_path = LogPath(name);
        unlink(replica.port_file.c_str());
        std::vector<std::string> env =
            AssignmentEnv(replica.status.spec.assignment);
        spawns.push_back(
            {.name = name,
             .generation = replica.generation,
             .options = {.argv = WrapperArgv(name, "",
                                             RunnerArgv(replica.status.spec,
                                                        replica.port_file)),
                         .env = std::move(env),
                         .outlive_monitor = options_.detach_children}});
        NotifyLocked(replica);
        break;
      }
      case Phase::kStarting:
        if (now >= replica.start_deadline && !replica.killed) {
          replica.killed = true;
          replica.kill_reason =
              absl::StrCat("not READY within ",
                           absl::FormatDuration(options_.start_timeout));
          monitor_->Signal(replica.status.pid, SIGKILL);
          break;
        }
        if (replica.killed) break;
        next = std::min(next, replica.start_deadline);
        if (replica.probe_in_flight) break;
        if (replica.next_probe <= now) {
          replica.probe_in_flight = true;
          probes.push_back({.name = name,
                            .generation = replica.generation,
                            .port_file = replica.port_file,
                            .address = replica.status.address,
                            .spec = replica.status.spec});
        } else {
          next = std::min(next, replica.next_probe);
        }
        break;
      case Phase::kDraining:
        if (replica.killed) break;
        if (now >= replica.kill_at) {
          replica.killed = true;
          monitor_->Signal(replica.status.pid, SIGKILL);
        } else {
          next = std::min(next, replica.kill_at);
        }
        break;
      case Phase::kReady:
        if (options_.health_interval == absl::ZeroDuration() ||
            replica.killed || replica.probe_in_flight) {
          break;
        }
        if (replica.next_probe <= now) {
          replica.probe_in_flight = true;
          probes.push_back({.name = name,
                            .generation = replica.generation,
                            .port_file = replica.port_file,
                            .address = replica.status.address,
                            .spec = replica.status.spec});
        } else {
          next = std::min(next, replica.next_probe);
        }
        break;
      case Phase::kSpawning:
      case Phase::kStopped:
        break;
    }
  }
  for (auto& [name, job] : jobs_) {
    if (job.status.state != JobState::kRunning || job.spawning) continue;
    if (!job.term_sent && now >= job.deadline) {
      job.timed_out = true;
      job.term_sent = true;
      job.kill_at = now + options_.kill_grace;
      monitor_->Signal(job.status.pid, SIGTERM);
    }
    if (job.term_sent && !job.killed && now >= job.kill_at) {
      job.killed = true;
      monitor_->Signal(job.status.pid, SIGKILL);
    }
    if (!job.term_sent) next = std::min(next, job.deadline);
    if (job.term_sent && !job.killed) next = std::min(next, job.kill_at);
  }
  return next;
}

void LocalExecutor::ApplySpawnLocked(const SpawnWork& work,
                                     const absl::StatusOr<pid_t>& pid) {
  auto it = replicas_.find(work.name);
  if (it == replicas_.end()) return;
  Replica& replica = it->second;
  if (replica.generation != work.generation ||
      replica.phase != Phase::kSpawning) {
    return;  // it already exited (OnReplicaExit ran) or was replaced
  }
  if (!pid.ok()) {
    if (replica.stop_requested) {
      replica.phase = Phase::kStopped;
      replica.status.state = ReplicaState::kStopped;
      NotifyLocked(replica);
      return;
    }
    replica.status.log_tail.clear();
    FailLocked(replica, absl::StrCat("cannot start the runner: ",
                                     pid.status().message()));
    return;
  }
  const absl::Time now = options_.clock->Now();
  replica.status.pid = *pid;
  replica.status.start_ticks = StartTicks(*pid).value_or(0);
  replica.killed = false;
  replica.kill_reason.clear();
  if (replica.stop_requested) {
    replica.phase = Phase::kDraining;
    replica.status.state = ReplicaState::kDraining;
    replica.kill_at = now + replica.drain + options_.kill_grace;
    monitor_->Signal(*pid, SIGTERM);
  } else {
    replica.phase = Phase::kStarting;
    replica.start_deadline = now + options_.start_timeout;
    replica.probe_attempt = 0;
    replica.next_probe = now + options_.probe_interval_initial;
  }
  NotifyLocked(replica);
}

LocalExecutor::ProbeResult LocalExecutor::Probe(const ProbeWork& work) const {
  ProbeResult result;
  result.address = work.address;
  if (!work.port_file.empty()) {
    std::ifstream in(work.port_file);
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    int port = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port) ||
        port <= 0) {
      result.detail = "no port file yet";
      return result;
    }
    result.address = absl::StrCat("127.0.0.1:", port);
  }
  if (result.address.empty()) {
    result.detail = "no address";
    return result;
  }
  auto channel =
      grpc::CreateChannel(result.address, grpc::InsecureChannelCredentials());
  const auto deadline =
      absl::ToChronoTime(absl::Now() + options_.probe_rpc_timeout);
  {
    auto health = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(deadline);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = health->Check(&context, {}, &response);
    if (!status.ok() ||
        response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      result.detail = status.ok() ? "not SERVING" : status.error_message();
      return result;
    }
  }
  auto runner = v1::RunnerService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(deadline);
  v1::RunnerInfo info;
  grpc::Status status = runner->Info(&context, {}, &info);
  if (!status.ok()) {
    result.detail = absl::StrCat("Info: ", status.error_message());
    return result;
  }
  if (info.replica() != work.spec.name ||
      info.deployment() != work.spec.deployment ||
      info.revision() != work.spec.revision) {
    result.outcome = ProbeOutcome::kWrongIdentity;
    result.detail =
        absl::StrCat(result.address, " answered as replica \"", info.replica(),
                     "\" of deployment \"", info.deployment(), "\" revision ",
                     info.revision(), ", not \"", work.spec.name, "\" of \"",
                     work.spec.deployment, "\" revision ", work.spec.revision);
    return result;
  }
  result.outcome = ProbeOutcome::kReady;
  return result;
}

void LocalExecutor::SubmitProbe(ProbeWork work) {
  absl::Status submitted = probes_->Submit([this, work](const StopToken& stop) {
    if (stop.stop_requested()) return;
    ApplyProbe(work, Probe(work));
  });
  if (!submitted.ok()) {
    // Shutting down or full: try again at the next probe time.
    absl::MutexLock lock(&mu_);
    auto it = replicas_.find(work.name);
    if (it != replicas_.end() && it->second.generation == work.generation) {
      it->second.probe_in_flight = false;
      it->second.next_probe =
          options_.clock->Now() + options_.probe_interval_max;
      wake_ = true;
    }
  }
}

void LocalExecutor::ApplyProbe(const ProbeWork& work,
                               const ProbeResult& result) {
  absl::MutexLock lock(&mu_);
  auto it = replicas_.find(work.name);
  if (it == replicas_.end()) return;
  Replica& replica = it->second;
  if (replica.generation != work.generation) return;
  replica.probe_in_flight = false;
  wake_ = true;
  if (replica.killed) return;
  const absl::Time now = options_.clock->Now();
  if (replica.phase == Phase::kReady) {
    replica.next_probe = now + options_.health_interval;
    switch (result.outcome) {
      case ProbeOutcome::kReady:
        replica.health_failures = 0;
        return;
      case ProbeOutcome::kWrongIdentity:
        replica.kill_reason = result.detail;
        break;
      case ProbeOutcome::kNotYet:
        if (++replica.health_failures < options_.health_failure_threshold) {
          return;
        }
        replica.kill_reason =
            absl::StrCat("hung: health check failed ", replica.health_failures,
                         " times in a row (", result.detail, ")");
        break;
    }
    replica.killed = true;
    monitor_->Signal(replica.status.pid, SIGKILL);
    return;
  }
  if (replica.phase != Phase::kStarting) return;
  const bool address_changed =
      !result.address.empty() && result.address != replica.status.address;
  if (address_changed) replica.status.address = result.address;
  switch (result.outcome) {
    case ProbeOutcome::kReady:
      replica.phase = Phase::kReady;
      replica.status.state = ReplicaState::kReady;
      replica.status.ready_time = now;
      replica.health_failures = 0;
      replica.next_probe = now + options_.health_interval;
      NotifyLocked(replica);
      return;
    case ProbeOutcome::kWrongIdentity:
      // Not this replica's runner answering: never READY; kill ours and
      // start again.
      replica.killed = true;
      replica.kill_reason = result.detail;
      monitor_->Signal(replica.status.pid, SIGKILL);
      return;
    case ProbeOutcome::kNotYet:
      replica.next_probe =
          now + Backoff(options_.probe_interval_initial,
                        options_.probe_interval_max, ++replica.probe_attempt);
      if (address_changed) NotifyLocked(replica);
      return;
  }
}

// ---------------------------------------------------------------------------
// Jobs

absl::StatusOr<std::string> LocalExecutor::ResolveBinary(
    const std::string& name) const {
  if (absl::StartsWith(name, "/")) {
    struct stat info;
    if (stat(name.c_str(), &info) != 0) {
      return absl::NotFoundError(absl::StrCat("argv[0]: no such file: ", name));
    }
    if (!IsExecutableFile(name)) {
      return absl::PermissionDeniedError(
          absl::StrCat("argv[0]: not an executable file: ", name));
    }
    return name;
  }
  for (const std::string& dir : options_.binary_dirs) {
    std::string path = absl::StrCat(dir, "/", name);
    if (IsExecutableFile(path)) {
      return std::filesystem::path(path).lexically_normal().string();
    }
  }
  return absl::NotFoundError(
      absl::StrCat("argv[0]: no such file: ", name, " (looked in ",
                   absl::StrJoin(options_.binary_dirs, ", "), ")"));
}

absl::Status LocalExecutor::StartJob(const JobSpec& spec) {
  if (!ValidName(spec.name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "name: must be 1 to 128 letters, digits, '.', '_' or '-'; was \"",
        spec.name, "\""));
  }
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return absl::InvalidArgumentError("argv: must name a binary; was empty");
  }
  RETURN_IF_ERROR(OutOfRange("timeout", spec.timeout, absl::Nanoseconds(1),
                             absl::Hours(24 * 7)));
  for (const std::string& entry : spec.env) {
    if (entry.find('=') == std::string::npos || entry[0] == '=') {
      return absl::InvalidArgumentError(
          absl::StrCat("env: must be NAME=value; was \"", entry, "\""));
    }
  }
  absl::StatusOr<std::string> binary = ResolveBinary(spec.argv[0]);
  std::string exit_file;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || shutting_down_) {
      return absl::FailedPreconditionError("executor is stopping");
    }
    if (jobs_.contains(spec.name)) {
      return absl::AlreadyExistsError(
          absl::StrCat("job ", spec.name, ": already exists"));
    }
    Job& job = jobs_[spec.name];
    job.status.spec = spec;
    job.status.start_time = options_.clock->Now();
    job.status.log_path = LogPath(spec.name);
    exit_file = absl::StrCat(options_.run_dir, "/run/", spec.name, ".",
                             StartId(++last_generation_), ".exit");
    job.exit_file = exit_file;
    if (!binary.ok()) {
      job.spawning = false;
      job.status.state = JobState::kFailed;
      job.status.failure_reason = std::string(binary.status().message());
      job.status.end_time = job.status.start_time;
      NotifyLocked(job);
      wake_ = true;
      return absl::OkStatus();
    }
    job.status.state = JobState::kRunning;
    NotifyLocked(job);
    wake_ = true;
  }
  std::vector<std::string> argv = spec.argv;
  argv[0] = *binary;
  ProcessMonitor::SpawnOptions spawn{
      .argv = WrapperArgv(spec.name, exit_file, argv),
      .env = spec.env,
      .outlive_monitor = options_.detach_children};
  for (std::string& entry : AssignmentEnv(spec.assignment)) {
    spawn.env.push_back(std::move(entry));
  }
  absl::StatusOr<pid_t> pid = monitor_->Spawn(
      spawn, [this, name = spec.name](pid_t, const ExitStatus& exit,
                                      std::string) { OnJobExit(name, exit); });
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(spec.name);
  if (it == jobs_.end()) return absl::OkStatus();
  Job& job = it->second;
  job.spawning = false;
  wake_ = true;
  if (!pid.ok()) {
    job.status.state = JobState::kFailed;
    job.status.failure_reason =
        absl::StrCat("argv[0]: cannot run: ", pid.status().message());
    job.status.end_time = options_.clock->Now();
    NotifyLocked(job);
    return absl::OkStatus();
  }
  if (job.status.state != JobState::kRunning) return absl::OkStatus();
  job.status.pid = *pid;
  job.status.start_ticks = StartTicks(*pid).value_or(0);
  job.deadline = *job.status.start_time + spec.timeout;
  if (job.cancel_requested) {
    job.term_sent = true;
    job.kill_at = options_.clock->Now() + options_.kill_grace;
    monitor_->Signal(*pid, SIGTERM);
  }
  NotifyLocked(job);
  return absl::OkStatus();
}

void LocalExecutor::OnJobExit(const std::string& name,
                              const ExitStatus& waited) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(name);
  if (it == jobs_.end()) return;
  Job& job = it->second;
  if (job.status.state != JobState::kRunning) return;
  // The wrapper's record is the job's own status (an adopted wrapper is not
  // our child: waiting tells nothing); without it, what waiting told.
  ExitStatus exit = waited;
  // The file stays until ForgetJob(): the scheduler forgets a job once it
  // stored how it ended, so a crash in between still finds the status.
  if (!job.exit_file.empty()) {
    if (std::optional<ExitStatus> recorded = ReadExitFile(job.exit_file)) {
      exit = *recorded;
    }
  }
  job.spawning = false;
  job.status.pid = 0;
  job.status.start_ticks = 0;
  if (exit.known) {
    job.status.exit_code = exit.code();
  } else {
    job.status.exit_code.reset();
  }
  job.status.log_tail = ReadLogTail(name);
  job.status.end_time = options_.clock->Now();
  if (job.cancel_requested) {
    job.status.state = JobState::kCancelled;
    job.status.failure_reason =
        absl::StrCat("cancelled (", exit.ToString(), ")");
  } else if (job.timed_out) {
    job.status.state = JobState::kFailed;
    job.status.failure_reason = absl::StrCat(
        "timed out after ", absl::FormatDuration(job.status.spec.timeout), " (",
        exit.ToString(), ")");
  } else if (exit.success()) {
    job.status.state = JobState::kSucceeded;
  } else {
    job.status.state = JobState::kFailed;
    job.status.failure_reason = exit.ToString();
  }
  NotifyLocked(job);
  wake_ = true;
}

absl::Status LocalExecutor::CancelJob(absl::string_view name) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(name);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", name, ": not found"));
  }
  Job& job = it->second;
  if (job.status.state != JobState::kRunning || job.cancel_requested) {
    return absl::OkStatus();
  }
  job.cancel_requested = true;
  if (!job.spawning && !job.term_sent) {
    job.term_sent = true;
    job.kill_at = options_.clock->Now() + options_.kill_grace;
    monitor_->Signal(job.status.pid, SIGTERM);
  }
  wake_ = true;
  return absl::OkStatus();
}

absl::Status LocalExecutor::ForgetJob(absl::string_view name) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(name);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", name, ": not found"));
  }
  if (it->second.status.state == JobState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", name, ": still RUNNING"));
  }
  if (!it->second.exit_file.empty()) unlink(it->second.exit_file.c_str());
  jobs_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<JobStatus> LocalExecutor::GetJob(absl::string_view name) {
  JobStatus status;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(name);
    if (it == jobs_.end()) {
      return absl::NotFoundError(absl::StrCat("job ", name, ": not found"));
    }
    status = it->second.status;
  }
  if (status.pid > 0) status.log_tail = ReadLogTail(std::string(name));
  return status;
}

std::vector<JobStatus> LocalExecutor::ListJobs() {
  absl::MutexLock lock(&mu_);
  std::vector<JobStatus> list;
  for (const auto& [name, job] : jobs_) list.push_back(job.status);
  return list;
}

// ---------------------------------------------------------------------------
// The supervisor

void LocalExecutor::NotifyLocked(const Replica& replica) {
  if (options_.observer.on_replica) notifications_.push_back(replica.status);
  wake_ = true;
}

void LocalExecutor::NotifyLocked(const Job& job) {
  if (options_.observer.on_job) notifications_.push_back(job.status);
  wake_ = true;
}

void LocalExecutor::StopChildren() {
  std::vector<std::string> replicas;
  std::vector<std::string> jobs;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (const auto& [name, replica] : replicas_) replicas.push_back(name);
    for (const auto& [name, job] : jobs_) {
      if (job.status.state == JobState::kRunning) jobs.push_back(name);
    }
  }
  // SIGTERM now; the supervisor sends SIGKILL at kill_grace.
  for (const std::string& name : replicas) {
    (void)StopReplica(name, absl::ZeroDuration());
  }
  for (const std::string& name : jobs) (void)CancelJob(name);
  auto all_ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [name, replica] : replicas_) {
      if (replica.phase != Phase::kStopped &&
          replica.phase != Phase::kBackoff &&
          replica.phase != Phase::kSpawnDue) {
        return false;
      }
    }
    for (const auto& [name, job] : jobs_) {
      if (job.status.state == JobState::kRunning) return false;
    }
    return true;
  };
  absl::MutexLock lock(&mu_);
  // Real time: the children end in real time whatever clock is injected.
  if (mu_.AwaitWithTimeout(absl::Condition(&all_ended),
                           options_.kill_grace + absl::Seconds(1))) {
    return;
  }
  for (const auto& [name, replica] : replicas_) {
    if (replica.status.pid > 0) monitor_->Signal(replica.status.pid, SIGKILL);
  }
  for (const auto& [name, job] : jobs_) {
    if (job.status.pid > 0) monitor_->Signal(job.status.pid, SIGKILL);
  }
  mu_.AwaitWithTimeout(absl::Condition(&all_ended), absl::Seconds(5));
}

void LocalExecutor::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    wake_ = false;
    std::vector<SpawnWork> spawns;
    std::vector<ProbeWork> probes;
    const absl::Time now = options_.clock->Now();
    absl::Time next = PlanLocked(now, spawns, probes);
    std::vector<std::string> logs;
    if (now >= next_log_check_) {
      next_log_check_ = now + options_.log_check_interval;
      for (const auto& [name, replica] : replicas_) {
        if (replica.status.pid > 0) logs.push_back(name);
      }
      for (const auto& [name, job] : jobs_) {
        if (job.status.pid > 0) logs.push_back(name);
      }
    }
    next = std::min(next, next_log_check_);
    std::deque<Notification> notifications;
    notifications.swap(notifications_);
    if (!logs.empty()) {
      mu_.Unlock();
      CapLogs(logs);
      mu_.Lock();
    }
    if (!spawns.empty() || !probes.empty() || !notifications.empty()) {
      mu_.Unlock();
      std::vector<absl::StatusOr<pid_t>> pids;
      for (const SpawnWork& work : spawns) {
        const std::string name = work.name;
        const uint64_t generation = work.generation;
        pids.push_back(monitor_->Spawn(
            work.options, [this, name, generation](
                              pid_t, const ExitStatus& exit, std::string tail) {
              OnReplicaExit(name, generation, exit, std::move(tail));
            }));
      }
      for (ProbeWork& work : probes) SubmitProbe(std::move(work));
      for (const Notification& notification : notifications) {
        if (const auto* replica = std::get_if<ReplicaStatus>(&notification)) {
          options_.observer.on_replica(*replica);
        } else {
          options_.observer.on_job(std::get<JobStatus>(notification));
        }
      }
      mu_.Lock();
      for (size_t i = 0; i < spawns.size(); ++i) {
        ApplySpawnLocked(spawns[i], pids[i]);
      }
      continue;
    }
    options_.clock->AwaitWithDeadline(&mu_, absl::Condition(&wake_), next);
  }
}

}  // namespace hangar::scheduler
