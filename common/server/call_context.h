// The deadline and cancellation of the RPC the current thread is serving,
// readable by code that has no gRPC types (the database pool).
//
// A server interceptor (call_context_interceptor.h) installs a CallContext
// for every call of a synchronous service before its handler runs and removes
// it when the handler's status is sent; code deep below the handler asks
//
//   const CallContext* call = CallContext::Current();  // null: no call
//   if (call != nullptr && call->cancelled()) return absl::CancelledError(..);
//   absl::Time deadline = CallContext::CurrentDeadline();  // InfiniteFuture
//
// so that work done for a call stops when the caller is gone or out of time,
// without every layer passing a deadline by hand. Code that runs outside a
// call (background tasks, other threads a handler starts) sees no context:
// Current() is thread-local and never inherited. Explicit deadlines (such as
// db::TransactOptions::deadline) combine with it; the sooner wins.
//
// Callback-API handlers may finish on another thread than the one they
// started on, so the interceptor installs no context for them; pass their
// deadline explicitly.
#ifndef HANGAR_COMMON_SERVER_CALL_CONTEXT_H_
#define HANGAR_COMMON_SERVER_CALL_CONTEXT_H_

#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hangar {

class CallContext {
 public:
  // `cancelled` reports whether the caller has gone away; it is called only
  // until Detach(). Null: never cancelled.
  CallContext(absl::Time deadline, std::function<bool()> cancelled);

  CallContext(const CallContext&) = delete;
  CallContext& operator=(const CallContext&) = delete;

  // The call being served on this thread, or null.
  static std::shared_ptr<CallContext> Current();
  // Current()'s deadline, or absl::InfiniteFuture() outside a call.
  static absl::Time CurrentDeadline();

  // Makes `context` (may be null) this thread's current call; returns the
  // previous one so that it can be restored.
  static std::shared_ptr<CallContext> Install(
      std::shared_ptr<CallContext> context);

  absl::Time deadline() const { return deadline_; }
  // Whether the caller cancelled the call (or went away).
  bool cancelled() const;
  // Stops consulting the cancellation function (its call has ended); a
  // context still referenced afterwards reports not cancelled.
  void Detach();

 private:
  const absl::Time deadline_;
  mutable absl::Mutex mu_;  // Protects cancelled_ against Detach().
  std::function<bool()> cancelled_ ABSL_GUARDED_BY(mu_);
};

// Installs a context for the current scope and restores the previous one:
//
//   ScopedCallContext scope(std::make_shared<CallContext>(deadline, nullptr));
class ScopedCallContext {
 public:
  explicit ScopedCallContext(std::shared_ptr<CallContext> context)
      : previous_(CallContext::Install(std::move(context))) {}
  ~ScopedCallContext() { CallContext::Install(std::move(previous_)); }
  ScopedCallContext(const ScopedCallContext&) = delete;
  ScopedCallContext& operator=(const ScopedCallContext&) = delete;

 private:
  std::shared_ptr<CallContext> previous_;
};

}  // namespace hangar

#endif  // HANGAR_COMMON_SERVER_CALL_CONTEXT_H_
