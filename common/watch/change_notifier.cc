#include "common/watch/change_notifier.h"

#include <algorithm>
#include <utility>

namespace hangar {
namespace {
// The watcher whose callback this thread is running, so that a callback
// that destroys its own Subscription does not wait for itself.
thread_local const void* current_watcher = nullptr;
}  // namespace

ChangeNotifier::Subscription::~Subscription() {
  notifier_->Unsubscribe(watcher_);
}

std::unique_ptr<ChangeNotifier::Subscription> ChangeNotifier::Subscribe(
    std::string key, std::function<void()> on_change,
    std::function<void()> on_close) {
  auto watcher = std::make_shared<Watcher>();
  watcher->key = std::move(key);
  watcher->on_change = std::move(on_change);
  watcher->on_close = std::move(on_close);
  std::unique_ptr<Subscription> subscription(new Subscription(this, watcher));
  {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      watchers_[watcher->key].push_back(watcher);
      return subscription;
    }
    watcher->subscribed = false;
    ++watcher->running;
  }
  Run(watcher.get(), watcher->on_close);
  return subscription;
}

void ChangeNotifier::Notify(absl::string_view key) {
  std::vector<std::shared_ptr<Watcher>> targets;
  {
    absl::MutexLock lock(&mu_);
    for (absl::string_view name : {key, absl::string_view()}) {
      auto it = watchers_.find(name);
      if (it == watchers_.end()) continue;
      for (const std::shared_ptr<Watcher>& watcher : it->second) {
        ++watcher->running;
        targets.push_back(watcher);
      }
      if (key.empty()) break;  // "" was the key itself: once is enough.
    }
  }
  for (const std::shared_ptr<Watcher>& watcher : targets) {
    Run(watcher.get(), watcher->on_change);
  }
}

void ChangeNotifier::Close() {
  std::vector<std::shared_ptr<Watcher>> targets;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    for (auto& [key, watchers] : watchers_) {
      for (std::shared_ptr<Watcher>& watcher : watchers) {
        watcher->subscribed = false;
        ++watcher->running;
        targets.push_back(std::move(watcher));
      }
    }
    watchers_.clear();
  }
  for (const std::shared_ptr<Watcher>& watcher : targets) {
    Run(watcher.get(), watcher->on_close);
  }
}

bool ChangeNotifier::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

size_t ChangeNotifier::watched_keys() const {
  absl::MutexLock lock(&mu_);
  return watchers_.size();
}

void ChangeNotifier::Run(Watcher* watcher,
                         const std::function<void()>& callback) {
  const void* outer = current_watcher;
  current_watcher = watcher;
  if (callback) callback();
  current_watcher = outer;
  absl::MutexLock lock(&mu_);
  --watcher->running;
}

void ChangeNotifier::RemoveLocked(const std::shared_ptr<Watcher>& watcher) {
  watcher->subscribed = false;
  auto it = watchers_.find(watcher->key);
  if (it == watchers_.end()) return;
  std::vector<std::shared_ptr<Watcher>>& list = it->second;
  list.erase(std::remove(list.begin(), list.end(), watcher), list.end());
  if (list.empty()) watchers_.erase(it);
}

void ChangeNotifier::Unsubscribe(const std::shared_ptr<Watcher>& watcher) {
  // A callback of this watcher running on this very thread (it destroys its
  // own Subscription) is not waited for.
  const int own = current_watcher == watcher.get() ? 1 : 0;
  absl::MutexLock lock(&mu_);
  if (watcher->subscribed) RemoveLocked(watcher);
  auto idle = [&watcher, own]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return watcher->running <= own;
  };
  mu_.Await(absl::Condition(&idle));
}

}  // namespace hangar
