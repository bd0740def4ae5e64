#include "common/server/call_context.h"

#include <utility>

namespace hangar {
namespace {

thread_local std::shared_ptr<CallContext> current_call;

}  // namespace

CallContext::CallContext(absl::Time deadline, std::function<bool()> cancelled)
    : deadline_(deadline), cancelled_(std::move(cancelled)) {}

std::shared_ptr<CallContext> CallContext::Current() { return current_call; }

absl::Time CallContext::CurrentDeadline() {
  return current_call == nullptr ? absl::InfiniteFuture()
                                 : current_call->deadline();
}

std::shared_ptr<CallContext> CallContext::Install(
    std::shared_ptr<CallContext> context) {
  std::shared_ptr<CallContext> previous = std::move(current_call);
  current_call = std::move(context);
  return previous;
}

bool CallContext::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_ != nullptr && cancelled_();
}

void CallContext::Detach() {
  absl::MutexLock lock(&mu_);
  cancelled_ = nullptr;
}

}  // namespace hangar
