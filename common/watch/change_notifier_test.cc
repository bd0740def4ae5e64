#include "common/watch/change_notifier.h"

#include <atomic>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace hangar {
namespace {

TEST(ChangeNotifierTest, NotifyReachesSubscribersOfTheKeyAndOfEveryKey) {
  ChangeNotifier notifier;
  int a = 0, b = 0, all = 0;
  auto sa = notifier.Subscribe(
      "models/a", [&] { ++a; }, nullptr);
  auto sb = notifier.Subscribe(
      "models/b", [&] { ++b; }, nullptr);
  auto sall = notifier.Subscribe(
      "", [&] { ++all; }, nullptr);
  notifier.Notify("models/a");
  notifier.Notify("models/a");
  notifier.Notify("models/c");
  EXPECT_EQ(a, 2);
  EXPECT_EQ(b, 0);
  EXPECT_EQ(all, 3);
}

TEST(ChangeNotifierTest, UnwatchedKeysAreDropped) {
  ChangeNotifier notifier;
  int calls = 0;
  {
    auto first = notifier.Subscribe(
        "models/a", [&] { ++calls; }, nullptr);
    {
      auto second = notifier.Subscribe(
          "models/a", [&] { ++calls; }, nullptr);
      auto other = notifier.Subscribe("models/b", nullptr, nullptr);
      EXPECT_EQ(notifier.watched_keys(), 2);
      notifier.Notify("models/a");
      EXPECT_EQ(calls, 2);
    }
    EXPECT_EQ(notifier.watched_keys(), 1);
    notifier.Notify("models/a");
    EXPECT_EQ(calls, 3);
  }
  EXPECT_EQ(notifier.watched_keys(), 0);
  notifier.Notify("models/a");
  EXPECT_EQ(calls, 3);
  // Many names watched one after another leave nothing behind.
  for (int i = 0; i < 1000; ++i) {
    auto s = notifier.Subscribe(
        "models/" + std::to_string(i), [] {}, nullptr);
  }
  EXPECT_EQ(notifier.watched_keys(), 0);
}

TEST(ChangeNotifierTest, CloseRunsOnCloseOnceAndLaterSubscribersAtOnce) {
  ChangeNotifier notifier;
  int changes = 0, closes = 0;
  auto s = notifier.Subscribe(
      "k", [&] { ++changes; }, [&] { ++closes; });
  EXPECT_FALSE(notifier.closed());
  notifier.Close();
  notifier.Close();
  EXPECT_TRUE(notifier.closed());
  EXPECT_EQ(closes, 1);
  EXPECT_EQ(notifier.watched_keys(), 0);
  notifier.Notify("k");
  EXPECT_EQ(changes, 0);

  int late_closes = 0;
  auto late = notifier.Subscribe(
      "k", [&] { ++changes; }, [&] { ++late_closes; });
  EXPECT_EQ(late_closes, 1);
  notifier.Notify("k");
  EXPECT_EQ(changes, 0);
  EXPECT_EQ(notifier.watched_keys(), 0);
}

TEST(ChangeNotifierTest, DestroyingASubscriptionWaitsForItsRunningCallback) {
  ChangeNotifier notifier;
  absl::Notification in_callback;
  absl::Mutex mu;
  bool release = false;
  std::atomic<bool> callback_returned{false};
  auto subscription = notifier.Subscribe(
      "k",
      [&] {
        in_callback.Notify();
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(&release));
        callback_returned = true;
      },
      nullptr);
  std::thread notifying([&] { notifier.Notify("k"); });
  in_callback.WaitForNotification();

  absl::Notification destroyed;
  std::thread destroying([&] {
    subscription.reset();
    destroyed.Notify();
  });
  EXPECT_FALSE(
      destroyed.WaitForNotificationWithTimeout(absl::Milliseconds(20)));
  {
    absl::MutexLock lock(&mu);
    release = true;
  }
  destroying.join();
  EXPECT_TRUE(callback_returned);
  notifying.join();
  EXPECT_EQ(notifier.watched_keys(), 0);
}

TEST(ChangeNotifierTest, CallbackMayDestroyItsOwnSubscription) {
  ChangeNotifier notifier;
  std::unique_ptr<ChangeNotifier::Subscription> subscription;
  int calls = 0;
  subscription = notifier.Subscribe(
      "k",
      [&] {
        ++calls;
        subscription.reset();
      },
      nullptr);
  notifier.Notify("k");
  notifier.Notify("k");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(notifier.watched_keys(), 0);
}

TEST(ChangeNotifierTest, CallbackMayNotifyOtherKeys) {
  ChangeNotifier notifier;
  int b_calls = 0;
  auto a = notifier.Subscribe(
      "a", [&] { notifier.Notify("b"); }, nullptr);
  auto b = notifier.Subscribe(
      "b", [&] { ++b_calls; }, nullptr);
  notifier.Notify("a");
  EXPECT_EQ(b_calls, 1);
}

}  // namespace
}  // namespace hangar
