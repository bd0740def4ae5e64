// WatchApiKeys on the gRPC callback API: the gateway's feed of key hashes.
//
// The stream's first message is KIND_SNAPSHOT with every active key; after
// that, every change announced on the ChangeNotifier under
// kApiKeysWatchKey makes the reactor read the active set again and send
// the difference from what the client holds: KIND_ADDED with the new keys,
// KIND_REVOKED with the keys gone. Changes that arrive while a read or a
// write is in flight are merged into one more read, so a slow client costs
// a short queue, never one message per change, and always ends up with the
// current set. A revocation reaches the client as soon as its Notify runs
// (no polling).
//
// Ends: CANCELLED when the client goes; UNAVAILABLE "server shutting down"
// when the notifier closes (drain); the read's status when the store
// fails. No thread per stream: work runs on the notifying thread or a gRPC
// callback thread.
#ifndef HANGAR_SERVICES_DEPLOYMENT_API_KEY_WATCH_H_
#define HANGAR_SERVICES_DEPLOYMENT_API_KEY_WATCH_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/watch/change_notifier.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_callback.h"
#include "hangar/v1/deployment.pb.h"

namespace hangar::deployment {

class ApiKeyWatchReactor final
    : public grpc::ServerWriteReactor<v1::ApiKeyEvent> {
 public:
  using ReadFn =
      std::function<absl::StatusOr<std::vector<v1::ApiKeyEvent::Entry>>()>;

  // Starts the stream; `notifier` must outlive it.
  static grpc::ServerWriteReactor<v1::ApiKeyEvent>* Start(
      ChangeNotifier* notifier, std::string key, ReadFn read);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  explicit ApiKeyWatchReactor(ReadFn read) : read_(std::move(read)) {}

  // Moves the stream on: writes the next queued event, reads again when a
  // change is pending, or finishes. Only one thread acts at a time.
  void Advance();
  void RequestFinish(grpc::Status status);
  // Queues the events that take the client from sent_ to `active`.
  void Diff(const std::vector<v1::ApiKeyEvent::Entry>& active)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ReadFn read_;
  std::unique_ptr<ChangeNotifier::Subscription> subscription_;

  absl::Mutex mu_;
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool snapshot_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  // The active keys the client holds, by key name.
  std::map<std::string, v1::ApiKeyEvent::Entry> sent_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::ApiKeyEvent> queue_ ABSL_GUARDED_BY(mu_);
  // The message being written (gRPC holds a pointer to it).
  v1::ApiKeyEvent current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::deployment

#endif  // HANGAR_SERVICES_DEPLOYMENT_API_KEY_WATCH_H_
