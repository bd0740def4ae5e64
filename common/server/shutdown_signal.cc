#include "common/server/shutdown_signal.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <thread>

#include "absl/base/call_once.h"
#include "absl/synchronization/mutex.h"

namespace hangar {
namespace {

int signal_pipe[2] = {-1, -1};

void HandleSignal(int signal_number) {
  int saved_errno = errno;
  unsigned char byte = static_cast<unsigned char>(signal_number);
  // Nothing to do if the pipe is full: a shutdown is already pending.
  [[maybe_unused]] ssize_t written = write(signal_pipe[1], &byte, 1);
  // A second signal gets the default action (terminate).
  signal(signal_number, SIG_DFL);
  errno = saved_errno;
}

struct Registry {
  absl::Mutex mu;  // Protects callbacks and next_id.
  std::map<int, std::function<void(int)>> callbacks ABSL_GUARDED_BY(mu);
  int next_id ABSL_GUARDED_BY(mu) = 0;
};

Registry& GetRegistry() {
  static Registry* const registry = new Registry();
  return *registry;
}

void WatchSignals() {
  while (true) {
    unsigned char byte = 0;
    ssize_t n = read(signal_pipe[0], &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    std::map<int, std::function<void(int)>> callbacks;
    {
      Registry& registry = GetRegistry();
      absl::MutexLock lock(&registry.mu);
      callbacks.swap(registry.callbacks);
    }
    for (auto& [id, callback] : callbacks) callback(byte);
  }
}

void Install() {
  if (pipe2(signal_pipe, O_CLOEXEC) != 0) return;
  struct sigaction action = {};
  action.sa_handler = HandleSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  std::thread(WatchSignals).detach();
}

}  // namespace

int OnShutdownSignal(std::function<void(int)> callback) {
  static absl::once_flag once;
  absl::call_once(once, Install);
  Registry& registry = GetRegistry();
  absl::MutexLock lock(&registry.mu);
  int id = registry.next_id++;
  registry.callbacks.emplace(id, std::move(callback));
  return id;
}

void RemoveShutdownCallback(int id) {
  Registry& registry = GetRegistry();
  absl::MutexLock lock(&registry.mu);
  registry.callbacks.erase(id);
}

}  // namespace hangar
