// ChangeNotifier: who is watching which resource, and the nudge that a
// resource changed. The feed of server-streaming Watch RPCs (see
// watch_reactor.h), with no poll loop anywhere.
//
// A writer calls Notify(name) after it commits a change to a resource. Every
// subscription to that name, and every subscription to "" (all names), gets
// its on_change callback, on the notifying thread, before Notify returns.
// The notifier carries no payload: a watcher reads the current state itself,
// so a missed or merged nudge can never leave it with a stale state.
//
//   ChangeNotifier notifier;                        // one per service
//   auto subscription = notifier.Subscribe(
//       "models/tiny", [&] { MarkDirty(); }, [&] { EndStream(); });
//   store.Update(model);
//   notifier.Notify("models/tiny");                 // MarkDirty() runs
//   notifier.Close();                               // server shutdown:
//   EndStream()
//
// Guarantees:
//  - An entry for a key exists only while someone subscribes to it; the
//    last Subscription to go removes it (watched_keys() counts them), so
//    watching a million names one after another leaves nothing behind.
//  - Destroying a Subscription unsubscribes and waits until a callback of
//    it that is running on another thread has returned, so the owner may
//    free what the callbacks touch right after. (A callback may destroy its
//    own Subscription: it does not wait for itself.)
//  - on_close runs exactly once per subscription: when Close() is called,
//    or inside Subscribe() if the notifier is already closed. After that
//    on_change no longer runs for it.
//
// Callbacks must be quick and must not block on anything that waits for a
// Notify; they may call Notify, Subscribe or destroy their own Subscription.
// The notifier must outlive every Subscription it returned.
#ifndef HANGAR_COMMON_WATCH_CHANGE_NOTIFIER_H_
#define HANGAR_COMMON_WATCH_CHANGE_NOTIFIER_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace hangar {

class ChangeNotifier {
 private:
  struct Watcher;

 public:
  class Subscription {
   public:
    // Unsubscribes; waits for a running callback of it (on another thread).
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

   private:
    friend class ChangeNotifier;
    Subscription(ChangeNotifier* notifier, std::shared_ptr<Watcher> watcher)
        : notifier_(notifier), watcher_(std::move(watcher)) {}
    ChangeNotifier* notifier_;
    std::shared_ptr<Watcher> watcher_;
  };

  ChangeNotifier() = default;
  ChangeNotifier(const ChangeNotifier&) = delete;
  ChangeNotifier& operator=(const ChangeNotifier&) = delete;

  // on_change runs after every Notify(key) (an empty key subscribes to
  // every key); on_close runs once when Close() is called (at once if
  // already closed). Either callback may be empty.
  std::unique_ptr<Subscription> Subscribe(std::string key,
                                          std::function<void()> on_change,
                                          std::function<void()> on_close);

  // Runs on_change of every subscription to `key` and to "".
  void Notify(absl::string_view key);

  // Ends every subscription (server shutdown). Later Subscribe calls get
  // on_close at once. Idempotent.
  void Close();

  bool closed() const;

  // Entries held (keys someone subscribes to), for tests: proves that
  // unwatched keys are dropped.
  size_t watched_keys() const;

  // ---------------------------------------------------------------------
  // Implementation details.
 private:
  struct Watcher {
    std::string key;
    std::function<void()> on_change;
    std::function<void()> on_close;
    // Guarded by the notifier's mu_:
    bool subscribed = true;  // false once unsubscribed or closed
    int running = 0;         // callbacks of it running now
  };

  // Runs `callback` of `watcher` (whose `running` the caller incremented
  // under mu_) and then decrements `running`.
  void Run(Watcher* watcher, const std::function<void()>& callback);
  void Unsubscribe(const std::shared_ptr<Watcher>& watcher);
  void RemoveLocked(const std::shared_ptr<Watcher>& watcher)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;  // Protects watchers_, closed_ and every Watcher's
                            // `subscribed` and `running`.
  std::map<std::string, std::vector<std::shared_ptr<Watcher>>, std::less<>>
      watchers_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hangar

#endif  // HANGAR_COMMON_WATCH_CHANGE_NOTIFIER_H_
