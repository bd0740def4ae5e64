// Real child processes for integration and end-to-end tests: start a binary
// with arguments, its stdout and stderr captured to a file, wait for it to
// exit (with a deadline), signal it, read what it printed.
//
//   ASSERT_OK_AND_ASSIGN(auto runner, ChildProcess::Start(
//       {kRunnerPath, "--model=" + dir, "--port_file=" + port_file}));
//   ASSERT_TRUE(WaitUntil([&] { return FileExists(port_file); }));
//   runner->Signal(SIGTERM);
//   EXPECT_THAT(runner->Wait(absl::Seconds(30)), IsOkAndHolds(0));
//
// The destructor kills a child that is still running (SIGKILL) and reaps it.
#ifndef HANGAR_COMMON_TESTING_CHILD_PROCESS_H_
#define HANGAR_COMMON_TESTING_CHILD_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hangar::testing {

class ChildProcess {
 public:
  // argv[0] is the path of the binary. `environment` entries ("K=V") are
  // added to this process's environment.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::vector<std::string>& argv,
      const std::vector<std::string>& environment = {});
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool Signal(int signal_number);

  // Waits up to `timeout` for the child to exit. Returns its exit code, or
  // 128 + the signal that killed it; DEADLINE_EXCEEDED if still running.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // Whether it is still running (reaps it if it has exited).
  bool Running();

  // Everything it wrote to stdout and stderr so far.
  std::string Output() const;

 private:
  ChildProcess() = default;

  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string output_path_;
};

// Polls `condition` every few milliseconds until it holds or `timeout`
// passes; returns whether it held. For conditions in other processes, which
// cannot notify this one.
bool WaitUntil(const std::function<bool()>& condition,
               absl::Duration timeout = absl::Seconds(60));

}  // namespace hangar::testing

#endif  // HANGAR_COMMON_TESTING_CHILD_PROCESS_H_
