// What a catalog domain unit test starts from: the in-memory stores, the
// fake Hub, the fake clock, a real TaskGroup and ChangeNotifier, a
// SecretBox with a fixed key, a connection registry, and an EventLog that
// keeps its lines. AwaitModel() waits (on the notifier, with a real-time
// deadline, never a sleep) until a model satisfies a predicate.
//
//   class ModelImporterTest : public testing::CatalogFixture {};
//   TEST_F(ModelImporterTest, ...) {
//     hub_.SetFile("config.json", ...);
//     ... importer->Import(request) ...
//     v1::Model model = AwaitModel("acme/m", IsReady);
//   }
#ifndef HANGAR_SERVICES_CATALOG_TESTING_CATALOG_FIXTURE_H_
#define HANGAR_SERVICES_CATALOG_TESTING_CATALOG_FIXTURE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/auth/secret_box.h"
#include "common/concurrency/task_group.h"
#include "common/testing/fake_clock.h"
#include "common/watch/change_notifier.h"
#include "gtest/gtest.h"
#include "services/catalog/connection_registry.h"
#include "services/catalog/domain_context.h"
#include "services/catalog/event_log.h"
#include "services/catalog/testing/fake_hub_client.h"
#include "services/catalog/testing/in_memory_connection_store.h"
#include "services/catalog/testing/in_memory_model_store.h"

namespace hangar::catalog::testing {

class CatalogFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto box = auth::SecretBox::FromKey(std::string(32, 'k'));
    ASSERT_TRUE(box.ok()) << box.status();
    secrets_ = *std::move(box);
    auto tasks = TaskGroup::Create({.name = "test", .clock = &clock_});
    ASSERT_TRUE(tasks.ok()) << tasks.status();
    tasks_ = *std::move(tasks);
    auto registry = ConnectionRegistry::Create(
        {.store = &connection_store_, .secrets = secrets_.get()});
    ASSERT_TRUE(registry.ok()) << registry.status();
    connections_ = *std::move(registry);
  }
  // Subclasses stop what uses the task group before it is torn down.
  void TearDown() override { tasks_->Shutdown(); }

  // Waits until GetModel(name) (or `read`, when given) satisfies `done`,
  // re-reading after every Notify(name); fails the test after 30 s.
  v1::Model AwaitModel(const std::string& name,
                       const std::function<bool(const v1::Model&)>& done,
                       std::function<absl::StatusOr<v1::Model>()> read = {}) {
    if (!read) read = [&] { return models_.GetModel(name); };
    absl::Mutex mu;
    int changes = 0;
    auto subscription = notifier_.Subscribe(name,
                                            [&] {
                                              absl::MutexLock lock(&mu);
                                              ++changes;
                                            },
                                            {});
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    v1::Model last;
    while (true) {
      int seen;
      {
        absl::MutexLock lock(&mu);
        seen = changes;
      }
      absl::StatusOr<v1::Model> model = read();
      if (model.ok()) {
        last = *model;
        if (done(last)) return last;
      }
      absl::MutexLock lock(&mu);
      auto changed = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return changes != seen;
      };
      if (!mu.AwaitWithDeadline(absl::Condition(&changed), deadline)) {
        ADD_FAILURE() << "model " << name << " never reached the state; last: "
                      << last.ShortDebugString();
        return last;
      }
    }
  }

  // The fixture's fakes as the domain classes' context.
  DomainContext Context() {
    return {.models = &models_,
            .hub = &hub_,
            .connections = connections_.get(),
            .tasks = tasks_.get(),
            .notifier = &notifier_,
            .log = &log_,
            .clock = &clock_};
  }

  std::vector<std::string> log_lines() {
    absl::MutexLock lock(&log_mu_);
    return log_lines_;
  }

  hangar::testing::FakeClock clock_;
  InMemoryModelStore models_;
  InMemoryConnectionStore connection_store_{&models_};
  FakeHubClient hub_;
  ChangeNotifier notifier_;
  std::unique_ptr<auth::SecretBox> secrets_;
  std::unique_ptr<TaskGroup> tasks_;
  std::unique_ptr<ConnectionRegistry> connections_;
  absl::Mutex log_mu_;
  std::vector<std::string> log_lines_ ABSL_GUARDED_BY(log_mu_);
  EventLog log_{[this](const std::string& line) {
    absl::MutexLock lock(&log_mu_);
    log_lines_.push_back(line);
  }};
};

}  // namespace hangar::catalog::testing

#endif  // HANGAR_SERVICES_CATALOG_TESTING_CATALOG_FIXTURE_H_
