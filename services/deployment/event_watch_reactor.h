// EventWatchReactor: a server-streaming Watch RPC on the gRPC callback API
// that sends EVENTS (not only the latest state), fed by a ChangeNotifier.
// Used by WatchApiKeys (a snapshot, then ADDED/REVOKED) and by
// WatchDeployments without a name (every deployment, then each one that
// changed); see watch_feeds.h for the two feeds.
//
// `next` is called once at the start and again after every Notify of `key`
// (changes that arrive while a call or a write is in flight are merged into
// one more call); it returns the messages to send, in order, and may keep
// state between calls: the reactor never runs two calls at once. A slow
// client therefore costs a short queue, never one read per change, and the
// feed always catches up with the current state. No thread per stream, no
// polling: work runs on the notifying thread or a gRPC callback thread.
//
// Ends: CANCELLED when the client goes; UNAVAILABLE "server shutting down"
// when the notifier closes (drain); `next`'s status when it fails.
#ifndef HANGAR_SERVICES_DEPLOYMENT_EVENT_WATCH_REACTOR_H_
#define HANGAR_SERVICES_DEPLOYMENT_EVENT_WATCH_REACTOR_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/status/grpc_status.h"
#include "common/watch/change_notifier.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_callback.h"

namespace hangar::deployment {

template <typename Message>
class EventWatchReactor final : public grpc::ServerWriteReactor<Message> {
 public:
  using NextFn = std::function<absl::StatusOr<std::vector<Message>>()>;

  // Starts the stream; `notifier` must outlive it.
  static grpc::ServerWriteReactor<Message>* Start(ChangeNotifier* notifier,
                                                  std::string key,
                                                  NextFn next) {
    auto* reactor = new EventWatchReactor(std::move(next));
    // Hold the pump while subscribing: on_close may run inside Subscribe.
    {
      absl::MutexLock lock(&reactor->mu_);
      reactor->reading_ = true;
    }
    reactor->subscription_ = notifier->Subscribe(
        std::move(key),
        [reactor] {
          {
            absl::MutexLock lock(&reactor->mu_);
            reactor->dirty_ = true;
          }
          reactor->Advance();
        },
        [reactor] {
          reactor->RequestFinish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                              "server shutting down"));
        });
    {
      absl::MutexLock lock(&reactor->mu_);
      reactor->reading_ = false;
    }
    reactor->Advance();
    return reactor;
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !finish_status_.has_value()) {
        finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED,
                                      "watch: the client went away");
      }
    }
    Advance();
  }

  void OnCancel() override {
    RequestFinish(grpc::Status(grpc::StatusCode::CANCELLED,
                               "watch: cancelled by the client"));
  }

  void OnDone() override {
    // Waits for a notifier callback still running; none starts afterwards.
    subscription_.reset();
    delete this;
  }

 private:
  explicit EventWatchReactor(NextFn next) : next_(std::move(next)) {}

  void RequestFinish(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (!finish_status_.has_value()) finish_status_ = std::move(status);
    }
    Advance();
  }

  // Moves the stream on: writes the next queued message, calls `next` when
  // a change is pending, or finishes. Only one thread acts at a time.
  void Advance() {
    for (;;) {
      std::optional<grpc::Status> finish;
      bool read = false;
      {
        absl::MutexLock lock(&mu_);
        if (finished_ || reading_ || writing_) return;  // Another acts.
        if (finish_status_.has_value()) {
          finished_ = true;
          finish = *finish_status_;
        } else if (!queue_.empty()) {
          writing_ = true;
          current_ = std::move(queue_.front());
          queue_.pop_front();
        } else if (dirty_) {
          dirty_ = false;
          reading_ = true;
          read = true;
        } else {
          return;
        }
      }
      if (finish.has_value()) {
        this->Finish(*finish);  // OnDone may run at once: touch nothing.
        return;
      }
      if (!read) {
        // current_ is not touched until OnWriteDone clears writing_.
        this->StartWrite(&current_);
        return;
      }
      absl::StatusOr<std::vector<Message>> messages = next_();
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!messages.ok()) {
        if (!finish_status_.has_value()) {
          finish_status_ = ToGrpcStatus(messages.status());
        }
      } else {
        for (Message& message : *messages) queue_.push_back(std::move(message));
      }
    }
  }

  const NextFn next_;
  std::unique_ptr<ChangeNotifier::Subscription> subscription_;

  absl::Mutex mu_;
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  std::deque<Message> queue_ ABSL_GUARDED_BY(mu_);
  // The message being written (gRPC holds a pointer to it).
  Message current_;
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_EVENT_WATCH_REACTOR_H_
