#include "common/server/call_context_interceptor.h"

#include <chrono>
#include <memory>
#include <thread>

#include "absl/time/time.h"
#include "common/server/call_context.h"
#include "grpcpp/server_context.h"

namespace hangar {
namespace {

using grpc::experimental::InterceptionHookPoints;

absl::Time DeadlineOf(const grpc::ServerContextBase& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// For a synchronous call the interceptor's hooks and the handler run on one
// thread: POST_RECV_INITIAL_METADATA just before the handler, PRE_SEND_STATUS
// just after it. The context is installed between the two.
class CallContextInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit CallContextInterceptor(grpc::experimental::ServerRpcInfo* info)
      : context_(info->server_context()),
        synchronous_(dynamic_cast<grpc::ServerContext*>(context_) != nullptr) {}

  ~CallContextInterceptor() override {
    if (call_ != nullptr) call_->Detach();
    if (std::this_thread::get_id() == thread_) Uninstall();
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (synchronous_ && call_ == nullptr &&
        methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      grpc::ServerContextBase* context = context_;
      call_ = std::make_shared<CallContext>(
          DeadlineOf(*context), [context] { return context->IsCancelled(); });
      previous_ = CallContext::Install(call_);
      thread_ = std::this_thread::get_id();
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS) &&
        std::this_thread::get_id() == thread_) {
      Uninstall();
    }
    methods->Proceed();
  }

 private:
  void Uninstall() {
    if (call_ != nullptr && CallContext::Current() == call_) {
      CallContext::Install(std::move(previous_));
    }
    thread_ = std::thread::id();
  }

  grpc::ServerContextBase* const context_;
  const bool synchronous_;
  std::shared_ptr<CallContext> call_;
  std::shared_ptr<CallContext> previous_;
  std::thread::id thread_;  // Where call_ is installed; none when default.
};

}  // namespace

grpc::experimental::Interceptor*
CallContextInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new CallContextInterceptor(info);
}

}  // namespace hangar
