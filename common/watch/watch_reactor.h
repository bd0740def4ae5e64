// WatchReactor: one server-streaming Watch RPC on the gRPC callback API,
// fed by a ChangeNotifier. No thread per stream, no poll loop.
//
// A stream writes the resource's current state at once, then the state after
// every change of `key` (a Notify from the writer) whenever it differs from
// the last state written (protobuf MessageDifferencer). Changes that arrive
// while a read or a write is in flight are coalesced into one more read
// afterwards, so a slow client costs one pending message, never a queue:
// the client always ends up with the latest state, not every intermediate
// one.
//
//   class CatalogService : public v1::CatalogService::CallbackService {
//     grpc::ServerWriteReactor<v1::Model>* WatchModel(
//         grpc::CallbackServerContext* context,
//         const v1::WatchModelRequest* request) override {
//       if (grpc::Status denied = AuthorizeAdmin(token_, *context);
//           !denied.ok()) return FinishedWriteReactor<v1::Model>(denied);
//       return WatchReactor<v1::Model>::Start(context, {
//           .notifier = &notifier_,
//           .key = request->name(),
//           .read = [this, name = request->name()] { return
//           catalog_->Get(name); }, .is_final = [](const v1::Model& m) { return
//           IsTerminal(m); }});
//     }
//   };
//
// How a stream ends (Finish is called exactly once):
//  - `read` fails: with that status (e.g. NOT_FOUND after a delete);
//  - `is_final` returns true for a state just written: OK;
//  - the client cancels or its deadline passes (OnCancel): CANCELLED;
//  - the notifier closes (server drain): UNAVAILABLE "server shutting down",
//    right after a write in flight, if any, completes.
//
// Threads: `read` runs outside the reactor's lock, on the notifying thread
// or on a gRPC callback thread, so it must be quick (an in-memory lookup or
// one indexed row) and must not call Notify for the same key. The reactor
// deletes itself in OnDone, after destroying its Subscription (which waits
// for a notifier callback still running), so no callback outlives it.
#ifndef HANGAR_COMMON_WATCH_WATCH_REACTOR_H_
#define HANGAR_COMMON_WATCH_WATCH_REACTOR_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/status/grpc_status.h"
#include "common/watch/change_notifier.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_callback.h"

namespace hangar {

// A reactor that finishes at once with `status`: for a Watch method that
// refuses before the watch starts (auth, validation).
template <typename Response>
grpc::ServerWriteReactor<Response>* FinishedWriteReactor(grpc::Status status);

template <typename Response>
class WatchReactor : public grpc::ServerWriteReactor<Response> {
 public:
  struct Options {
    // Where changes of `key` are announced; never null, must outlive the
    // stream (close it before destroying it, then wait for the server).
    ChangeNotifier* notifier = nullptr;
    // The resource name the stream follows.
    std::string key;
    // Reads the current state; never empty.
    std::function<absl::StatusOr<Response>()> read;
    // Optional: true for a state after which nothing will change (the
    // stream ends OK after writing it).
    std::function<bool(const Response&)> is_final;
  };

  // For a CallbackService method:
  //   return WatchReactor<v1::Model>::Start(context, {...});
  // A missing notifier or read finishes the call with INTERNAL.
  static grpc::ServerWriteReactor<Response>* Start(
      grpc::CallbackServerContext* context, Options options) {
    (void)context;  // Cancellation arrives through OnCancel.
    if (options.notifier == nullptr || !options.read) {
      return FinishedWriteReactor<Response>(grpc::Status(
          grpc::StatusCode::INTERNAL, "watch: no notifier or read function"));
    }
    auto* reactor = new WatchReactor(std::move(options));
    reactor->Begin();
    return reactor;
  }

  // -----------------------------------------------------------------------
  // Implementation details.
  void OnWriteDone(bool ok) override {
    if (!ok) {
      // The client is gone; OnCancel may or may not have been called yet.
      FinishAsOwner(grpc::Status(grpc::StatusCode::CANCELLED,
                                 "watch: the client went away"));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (last_was_final_ && !finish_status_.has_value()) {
        finish_status_ = grpc::Status::OK;
      }
    }
    Pump();
  }

  void OnCancel() override {
    RequestFinish(grpc::Status(grpc::StatusCode::CANCELLED,
                               "watch: cancelled by the client"));
  }

  void OnDone() override {
    // Destroying the subscription waits for a notifier callback still
    // running on another thread; none can start afterwards.
    subscription_.reset();
    delete this;
  }

 private:
  explicit WatchReactor(Options options) : options_(std::move(options)) {}

  void Begin() {
    // Subscribe before the first read, so a change between the two is not
    // missed. on_close may run inside Subscribe (a closed notifier).
    {
      absl::MutexLock lock(&mu_);
      busy_ = true;  // Begin owns the pump until it has started it.
      dirty_ = true;
    }
    subscription_ = options_.notifier->Subscribe(
        options_.key, [this] { OnChange(); },
        [this] {
          RequestFinish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                     "server shutting down"));
        });
    Pump();
  }

  void OnChange() {
    {
      absl::MutexLock lock(&mu_);
      dirty_ = true;
      if (busy_ || finished_) return;  // The owner will read again.
      busy_ = true;
    }
    Pump();
  }

  // Ends the stream with `status` now if nobody owns the pump, else leaves
  // it to the owner (which checks finish_status_ at every step).
  void RequestFinish(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (!finish_status_.has_value()) finish_status_ = std::move(status);
      if (busy_) return;
      finished_ = true;
      status = *finish_status_;
    }
    this->Finish(std::move(status));
  }

  // Called by the pump's owner: finishes with `status` (or the one already
  // requested) and gives up ownership.
  void FinishAsOwner(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      busy_ = false;
      if (finished_) return;
      finished_ = true;
      if (finish_status_.has_value()) status = *finish_status_;
    }
    this->Finish(std::move(status));
  }

  // The caller owns the pump (busy_ is true). Reads until the state differs
  // from the last one written, then starts a write (ownership passes to
  // OnWriteDone), or finishes, or gives up ownership when nothing changed.
  // Touches nothing of `this` after StartWrite or Finish: either may run
  // OnWriteDone or OnDone before it returns.
  void Pump() {
    while (true) {
      std::optional<grpc::Status> finish;
      {
        absl::MutexLock lock(&mu_);
        if (finish_status_.has_value()) {
          busy_ = false;
          if (finished_) return;
          finished_ = true;
          finish = *finish_status_;
        } else if (!dirty_) {
          busy_ = false;
          return;
        } else {
          dirty_ = false;
        }
      }
      if (finish.has_value()) {
        this->Finish(*std::move(finish));
        return;
      }
      absl::StatusOr<Response> state = options_.read();
      if (!state.ok()) {
        FinishAsOwner(ToGrpcStatus(state.status()));
        return;
      }
      {
        absl::MutexLock lock(&mu_);
        if (finish_status_.has_value()) continue;  // Finish at the top.
        if (wrote_any_ && google::protobuf::util::MessageDifferencer::Equals(
                              *state, last_written_)) {
          continue;  // No visible change: nothing to write.
        }
        last_written_ = *std::move(state);
        wrote_any_ = true;
        last_was_final_ = options_.is_final && options_.is_final(last_written_);
      }
      // Only the owner touches last_written_ until OnWriteDone.
      this->StartWrite(&last_written_);
      return;
    }
  }

  const Options options_;
  std::unique_ptr<ChangeNotifier::Subscription> subscription_;

  absl::Mutex mu_;  // Protects the fields below.
  // Someone owns the pump: Begin, a notifier callback reading, or a write
  // in flight (until OnWriteDone). Only the owner reads, writes or
  // finishes; the others leave notes (dirty_, finish_status_).
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  // A change was announced since the last read began.
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  // How the stream should end, once decided.
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  // Finish() has been called.
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool wrote_any_ ABSL_GUARDED_BY(mu_) = false;
  bool last_was_final_ ABSL_GUARDED_BY(mu_) = false;
  // The message of the write in flight, then the last one written.
  Response last_written_;
};

template <typename Response>
grpc::ServerWriteReactor<Response>* FinishedWriteReactor(grpc::Status status) {
  class Finished : public grpc::ServerWriteReactor<Response> {
   public:
    explicit Finished(grpc::Status status) { this->Finish(std::move(status)); }
    void OnDone() override { delete this; }
  };
  return new Finished(std::move(status));
}

}  // namespace hangar

#endif  // HANGAR_COMMON_WATCH_WATCH_REACTOR_H_
