// The dispatcher against in-process fake runners (testing/fake_runner.h) on
// real gRPC: one runner call per batch with per-sequence ids and timeouts,
// demultiplexing, retries on another replica after UNAVAILABLE (call-level
// and per-sequence, bounded, never after text reached the client), draining
// replicas, queued and dispatched cancellation, deadline drops, revision
// switches and the drain.
#include "services/gateway/dispatcher.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/testing/child_process.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/gateway/testing/fake_runner.h"

namespace hangar::gateway {
namespace {

using ::hangar::testing::IsOk;
using ::hangar::testing::WaitUntil;
using ::testing::ElementsAre;
using testing::FakeRunner;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr absl::Duration kWait = absl::Seconds(10);

// Records what the dispatcher tells one client call.
class Recorder final : public RequestObserver {
 public:
  explicit Recorder(bool restartable = true) : restartable_(restartable) {}

  void OnDelta(const std::string& delta) override {
    absl::MutexLock lock(&mu_);
    text_ += delta;
    delivered_ = true;
  }
  bool Restart() override {
    absl::MutexLock lock(&mu_);
    ++restarts_;
    if (!restartable_ && delivered_) return false;
    text_.clear();
    return true;
  }
  void OnFinish(const absl::Status& status,
                const GenerateOutcome& outcome) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    outcome_ = outcome;
    done_.Notify();
  }

  bool Wait() { return done_.WaitForNotificationWithTimeout(kWait); }
  bool WaitForText() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(
                                    +[](bool* d) { return *d; }, &delivered_),
                                kWait);
  }
  bool finished() const { return done_.HasBeenNotified(); }
  absl::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  std::string text() {
    absl::MutexLock lock(&mu_);
    return text_;
  }
  GenerateOutcome outcome() {
    absl::MutexLock lock(&mu_);
    return outcome_;
  }
  int restarts() {
    absl::MutexLock lock(&mu_);
    return restarts_;
  }

 private:
  const bool restartable_;
  absl::Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
  bool delivered_ ABSL_GUARDED_BY(mu_) = false;
  int restarts_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  GenerateOutcome outcome_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

v1::RouteReplica Replica(const std::string& name, const FakeRunner& runner,
                         int max_batch = 4,
                         v1::ReplicaState state = v1::REPLICA_STATE_READY) {
  v1::RouteReplica replica;
  replica.set_name(name);
  replica.set_address(runner.address());
  replica.set_max_batch(max_batch);
  replica.set_state(state);
  return replica;
}

v1::Route Route(int64_t revision, std::vector<v1::RouteReplica> replicas,
                int batch_size = 4, bool serving = true) {
  v1::Route route;
  route.set_deployment("dep-1");
  route.set_revision(revision);
  route.set_serving(serving);
  route.set_inference_batch_size(batch_size);
  for (v1::RouteReplica& replica : replicas) {
    *route.add_replicas() = std::move(replica);
  }
  return route;
}

class DispatcherTest : public ::testing::Test {
 protected:
  void Start(Dispatcher::Options options = {}) {
    if (options.sequence_prefix == "gw") options.sequence_prefix = "gw-test";
    auto dispatcher = Dispatcher::Create(options);
    ASSERT_THAT(dispatcher, IsOk());
    dispatcher_ = *std::move(dispatcher);
    loop_ = std::thread([this] { dispatcher_->Run(); });
  }
  void TearDown() override {
    if (dispatcher_ != nullptr) {
      dispatcher_->Stop();
      loop_.join();
      dispatcher_.reset();
    }
  }

  absl::StatusOr<uint64_t> Submit(Recorder& recorder, const std::string& prompt,
                                  int64_t revision = 1,
                                  absl::Time deadline = absl::Now() +
                                                        absl::Seconds(30)) {
    SubmitRequest request{.deployment = "dep-1", .revision = revision};
    request.sequence.set_prompt(prompt);
    request.deadline = deadline;
    request.usage_key.key_name = "key-1";
    request.observer = &recorder;
    return dispatcher_->Submit(std::move(request), nullptr);
  }

  std::unique_ptr<Dispatcher> dispatcher_;
  std::thread loop_;
};

TEST_F(DispatcherTest, OptionsAreValidated) {
  EXPECT_FALSE(Dispatcher::Create({.sequence_prefix = ""}).ok());
  EXPECT_FALSE(Dispatcher::Create({.sequence_prefix = "a b"}).ok());
  EXPECT_FALSE(Dispatcher::Create({.max_queue_size = 0}).ok());
  EXPECT_FALSE(Dispatcher::Create({.max_attempts = 0}).ok());
  EXPECT_FALSE(Dispatcher::Create({.max_queue_delay = absl::Seconds(-1)}).ok());
}

TEST_F(DispatcherTest, UnknownRevisionIsUnavailable) {
  Start();
  Recorder recorder;
  EXPECT_TRUE(absl::IsUnavailable(Submit(recorder, "a").status()));
}

TEST_F(DispatcherTest, OneCallPerBatchWithItsOwnSequenceIdsAndTimeouts) {
  FakeRunner runner;
  Start({.max_queue_delay = absl::Milliseconds(200)});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", runner)})});
  std::vector<std::unique_ptr<Recorder>> recorders;
  for (int i = 0; i < 3; ++i) {
    recorders.push_back(std::make_unique<Recorder>());
    ASSERT_THAT(Submit(*recorders.back(), absl::StrCat("p", i)), IsOk());
  }
  for (auto& recorder : recorders) {
    ASSERT_TRUE(recorder->Wait());
    EXPECT_THAT(recorder->status(), IsOk());
    EXPECT_EQ(recorder->text(), "xxx");
    EXPECT_EQ(recorder->outcome().finish_reason, v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(recorder->outcome().usage.completion_tokens(), 3);
    EXPECT_EQ(recorder->outcome().deployment, "dep-1");
    EXPECT_EQ(recorder->outcome().revision, 1);
  }
  std::vector<v1::RunnerGenerateRequest> calls = runner.calls();
  ASSERT_THAT(calls, SizeIs(1));
  ASSERT_EQ(calls[0].sequences_size(), 3);
  std::set<std::string> ids;
  for (const v1::RunnerSequence& sequence : calls[0].sequences()) {
    EXPECT_THAT(sequence.id(), HasSubstr("gw-test-"));
    ids.insert(sequence.id());
    EXPECT_GT(sequence.timeout().seconds(), 20);
    EXPECT_LE(sequence.timeout().seconds(), 30);
  }
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(calls[0].sequences(0).prompt(), "p0");
  EXPECT_EQ(dispatcher_->pending(), 0);
}

TEST_F(DispatcherTest, NeverMoreThanTheReplicaCapacityInOneCall) {
  FakeRunner runner;
  Start({.max_queue_delay = absl::Milliseconds(100)});
  dispatcher_->UpdateRoutes(
      {Route(1, {Replica("r0", runner, /*max_batch=*/2)}, /*batch_size=*/8)});
  std::vector<std::unique_ptr<Recorder>> recorders;
  for (int i = 0; i < 5; ++i) {
    recorders.push_back(std::make_unique<Recorder>());
    ASSERT_THAT(Submit(*recorders.back(), "p"), IsOk());
  }
  for (auto& recorder : recorders) {
    ASSERT_TRUE(recorder->Wait());
    EXPECT_THAT(recorder->status(), IsOk());
  }
  int sequences = 0;
  for (const v1::RunnerGenerateRequest& call : runner.calls()) {
    EXPECT_LE(call.sequences_size(), 2);
    sequences += call.sequences_size();
  }
  EXPECT_EQ(sequences, 5);
}

TEST_F(DispatcherTest, FailedCallIsRetriedOnAnotherReplica) {
  FakeRunner r0, r1;
  Start({.max_queue_delay = absl::ZeroDuration(), .max_attempts = 2});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", r0), Replica("r1", r1)})});
  // "fail-call" fails every call that carries it: the first dispatch fails
  // UNAVAILABLE, the retry goes to the other replica (the failed one cools
  // down), and after max_attempts the failure is the answer.
  Recorder recorder;
  ASSERT_THAT(Submit(recorder, "fail-call"), IsOk());
  ASSERT_TRUE(recorder.Wait());
  EXPECT_TRUE(absl::IsUnavailable(recorder.status())) << recorder.status();
  EXPECT_EQ(recorder.restarts(), 1);
  EXPECT_THAT(r0.calls(), SizeIs(1));
  EXPECT_THAT(r1.calls(), SizeIs(1));
}

TEST_F(DispatcherTest, PerSequenceUnavailableIsRetriedAndSparesTheOthers) {
  FakeRunner r0, r1;
  Start({.max_queue_delay = absl::Milliseconds(100), .max_attempts = 2});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", r0), Replica("r1", r1)})});
  Recorder good, failing;
  ASSERT_THAT(Submit(good, "fine"), IsOk());
  ASSERT_THAT(Submit(failing, "fail-sequence"), IsOk());
  ASSERT_TRUE(good.Wait());
  ASSERT_TRUE(failing.Wait());
  EXPECT_THAT(good.status(), IsOk());
  EXPECT_EQ(good.text(), "xxx");
  // "fail-sequence" fails on every runner: two dispatches (max_attempts),
  // the second on the other replica, then the failure is final.
  EXPECT_TRUE(absl::IsUnavailable(failing.status())) << failing.status();
  EXPECT_EQ(failing.restarts(), 1);
  std::vector<std::string> ids;
  for (FakeRunner* runner : {&r0, &r1}) {
    for (const auto& call : runner->calls()) {
      for (const auto& sequence : call.sequences()) {
        if (sequence.prompt() == "fail-sequence") ids.push_back(sequence.id());
      }
    }
  }
  ASSERT_THAT(ids, SizeIs(2));
  EXPECT_NE(ids[0], ids[1]);  // A retry gets a fresh sequence id.
  EXPECT_FALSE(r0.calls().empty());
  EXPECT_FALSE(r1.calls().empty());
}

TEST_F(DispatcherTest, NoRetryOnceTextReachedTheClient) {
  FakeRunner r0, r1;
  Start({.max_queue_delay = absl::ZeroDuration()});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", r0), Replica("r1", r1)})});
  // One delta reaches a streaming client, then the call fails UNAVAILABLE.
  Recorder streamed(/*restartable=*/false);
  ASSERT_THAT(Submit(streamed, "text-then-fail-call"), IsOk());
  ASSERT_TRUE(streamed.Wait());
  EXPECT_TRUE(absl::IsUnavailable(streamed.status())) << streamed.status();
  EXPECT_EQ(streamed.text(), "t");
  EXPECT_EQ(r0.calls().size() + r1.calls().size(), 1u);
}

TEST_F(DispatcherTest, DrainingReplicasGetNoNewWork) {
  FakeRunner draining, ready;
  Start({.max_queue_delay = absl::ZeroDuration()});
  dispatcher_->UpdateRoutes(
      {Route(1, {Replica("r0", draining, 4, v1::REPLICA_STATE_DRAINING),
                 Replica("r1", ready)})});
  for (int i = 0; i < 4; ++i) {
    Recorder recorder;
    ASSERT_THAT(Submit(recorder, "p"), IsOk());
    ASSERT_TRUE(recorder.Wait());
    EXPECT_THAT(recorder.status(), IsOk());
  }
  EXPECT_TRUE(draining.calls().empty());
  EXPECT_FALSE(ready.calls().empty());
}

TEST_F(DispatcherTest, CancelWhileQueuedNeverReachesARunner) {
  FakeRunner runner;
  Start({.max_queue_delay = absl::Seconds(5)});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", runner)})});
  Recorder recorder;
  absl::StatusOr<uint64_t> id = Submit(recorder, "p");
  ASSERT_THAT(id, IsOk());
  dispatcher_->Cancel(*id);
  ASSERT_TRUE(recorder.finished());
  EXPECT_TRUE(absl::IsCancelled(recorder.status()));
  EXPECT_EQ(dispatcher_->pending(), 0);
  EXPECT_TRUE(runner.calls().empty());
}

TEST_F(DispatcherTest, CancelOfOneDispatchedSequenceCancelsOnlyIt) {
  FakeRunner runner;
  Start({.max_queue_delay = absl::Milliseconds(100)});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", runner)})});
  Recorder victim, neighbour;
  absl::StatusOr<uint64_t> id = Submit(victim, "hold");
  ASSERT_THAT(id, IsOk());
  ASSERT_THAT(Submit(neighbour, "hold"), IsOk());
  ASSERT_TRUE(victim.WaitForText());
  ASSERT_TRUE(neighbour.WaitForText());
  ASSERT_THAT(runner.calls(), SizeIs(1));
  dispatcher_->Cancel(*id);
  EXPECT_TRUE(absl::IsCancelled(victim.status()));
  // The runner is told to stop that sequence by id.
  const std::string victim_id = runner.calls()[0].sequences(0).id();
  ASSERT_TRUE(WaitUntil([&] { return !runner.cancelled().empty(); }));
  EXPECT_THAT(runner.cancelled(), ElementsAre(victim_id));
  EXPECT_FALSE(neighbour.finished());
  runner.Release();
  ASSERT_TRUE(neighbour.Wait());
  EXPECT_THAT(neighbour.status(), IsOk());
  EXPECT_EQ(neighbour.text(), "h");
}

TEST_F(DispatcherTest, TokensOfACancelledRequestAreStillMetered) {
  FakeRunner runner;
  std::unique_ptr<UsageMeter> meter =
      *UsageMeter::Create({.reporter_id = "gw-test"});
  Start({.max_queue_delay = absl::Milliseconds(100), .usage = meter.get()});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", runner)})});
  Recorder victim, neighbour;
  absl::StatusOr<uint64_t> id = Submit(victim, "hold");
  ASSERT_THAT(id, IsOk());
  ASSERT_THAT(Submit(neighbour, "fine"), IsOk());
  ASSERT_TRUE(victim.WaitForText());
  ASSERT_TRUE(neighbour.Wait());
  dispatcher_->Cancel(*id);
  // The runner ends the cancelled sequence with its usage (1 token).
  ASSERT_TRUE(WaitUntil([&] { return meter->unreported_requests() == 2; }));
  std::optional<UsageBatch> batch = meter->NextBatch();
  ASSERT_TRUE(batch.has_value());
  ASSERT_EQ(batch->request.reports_size(), 1);
  EXPECT_EQ(batch->request.reports(0).api_key(), "key-1");
  EXPECT_EQ(batch->request.reports(0).deployment(), "dep-1");
  EXPECT_EQ(batch->request.reports(0).requests(), 2);
  EXPECT_EQ(batch->request.reports(0).tokens().completion_tokens(), 3 + 1);
}

TEST_F(DispatcherTest, ExpiredWhileQueuedIsDeadlineExceeded) {
  FakeRunner runner;
  Start({.max_queue_delay = absl::ZeroDuration()});
  // No READY replica: the request can only wait.
  dispatcher_->UpdateRoutes(
      {Route(1, {Replica("r0", runner, 4, v1::REPLICA_STATE_DRAINING)})});
  Recorder recorder;
  ASSERT_THAT(Submit(recorder, "p", 1, absl::Now() + absl::Milliseconds(50)),
              IsOk());
  ASSERT_TRUE(recorder.Wait());
  EXPECT_TRUE(absl::IsDeadlineExceeded(recorder.status()));
  EXPECT_TRUE(runner.calls().empty());
}

TEST_F(DispatcherTest, FullQueueIsResourceExhaustedWithAHint) {
  FakeRunner runner;
  Start({.max_queue_delay = absl::ZeroDuration(), .max_queue_size = 1});
  dispatcher_->UpdateRoutes(
      {Route(1, {Replica("r0", runner, 4, v1::REPLICA_STATE_DRAINING)})});
  Recorder first, second;
  ASSERT_THAT(Submit(first, "p"), IsOk());
  SubmitRequest request{.deployment = "dep-1", .revision = 1};
  request.sequence.set_prompt("p");
  request.deadline = absl::Now() + absl::Seconds(30);
  request.observer = &second;
  absl::Duration retry_after;
  absl::StatusOr<uint64_t> refused =
      dispatcher_->Submit(std::move(request), &retry_after);
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status()));
  EXPECT_GT(retry_after, absl::ZeroDuration());
  EXPECT_FALSE(second.finished());
  // `first` is still queued: answer it before it goes out of scope.
  TearDown();
  EXPECT_TRUE(absl::IsUnavailable(first.status()));
}

TEST_F(DispatcherTest, QueuedRequestsMoveToTheNewServingRevision) {
  FakeRunner old_runner, new_runner;
  Start({.max_queue_delay = absl::ZeroDuration()});
  // Revision 1 serves but has no READY replica yet: requests queue.
  dispatcher_->UpdateRoutes(
      {Route(1, {Replica("r0", old_runner, 4, v1::REPLICA_STATE_DRAINING)})});
  Recorder recorder;
  ASSERT_THAT(Submit(recorder, "p"), IsOk());
  EXPECT_FALSE(recorder.finished());
  dispatcher_->UpdateRoutes(
      {Route(1, {Replica("r0", old_runner, 4, v1::REPLICA_STATE_DRAINING)}, 4,
             /*serving=*/false),
       Route(2, {Replica("r1", new_runner)})});
  ASSERT_TRUE(recorder.Wait());
  EXPECT_THAT(recorder.status(), IsOk());
  EXPECT_EQ(recorder.outcome().revision, 2);
  EXPECT_TRUE(old_runner.calls().empty());
}

TEST_F(DispatcherTest, DrainAnswersWhatIsLeftUnavailable) {
  FakeRunner runner;
  Start({.max_queue_delay = absl::ZeroDuration()});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", runner)})});
  Recorder held;
  ASSERT_THAT(Submit(held, "hold"), IsOk());
  ASSERT_TRUE(held.WaitForText());
  dispatcher_->Drain(absl::Now() + absl::Milliseconds(50));
  Recorder late;
  EXPECT_TRUE(absl::IsUnavailable(Submit(late, "p").status()));
  ASSERT_TRUE(held.Wait());
  EXPECT_TRUE(absl::IsUnavailable(held.status()));
}

TEST_F(DispatcherTest, LoadCountsQueuedAndInFlight) {
  FakeRunner runner;
  Start({.max_queue_delay = absl::ZeroDuration()});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", runner, 1)}, 1)});
  Recorder held, queued;
  ASSERT_THAT(Submit(held, "hold"), IsOk());
  ASSERT_TRUE(held.WaitForText());
  ASSERT_THAT(Submit(queued, "p"), IsOk());
  std::vector<v1::RevisionLoad> load = dispatcher_->Load();
  ASSERT_THAT(load, SizeIs(1));
  EXPECT_EQ(load[0].queued(), 1);
  EXPECT_EQ(load[0].in_flight(), 1);
  runner.Release();
  ASSERT_TRUE(queued.Wait());
}

// With queue delay 0 (or a full batch) the request is dispatched on the
// submitting thread and the next one on the thread that read the finished
// sequence: no loop is running here at all.
TEST_F(DispatcherTest, InlineDispatchNeedsNoLoopThread) {
  FakeRunner runner;
  auto dispatcher =
      Dispatcher::Create({.sequence_prefix = "gw-inline",
                          .max_queue_delay = absl::ZeroDuration()});
  ASSERT_THAT(dispatcher, IsOk());
  (*dispatcher)->UpdateRoutes({Route(1, {Replica("r0", runner, 1)}, 1)});
  std::vector<std::unique_ptr<Recorder>> recorders;
  for (int i = 0; i < 3; ++i) {
    recorders.push_back(std::make_unique<Recorder>());
    SubmitRequest request{.deployment = "dep-1", .revision = 1};
    request.sequence.set_prompt(absl::StrCat("p", i));
    request.deadline = absl::Now() + absl::Seconds(30);
    request.observer = recorders.back().get();
    ASSERT_THAT((*dispatcher)->Submit(std::move(request), nullptr), IsOk());
  }
  for (auto& recorder : recorders) {
    ASSERT_TRUE(recorder->Wait());
    EXPECT_THAT(recorder->status(), IsOk());
  }
  // One slot: one sequence per call, in arrival order.
  std::vector<v1::RunnerGenerateRequest> calls = runner.calls();
  ASSERT_THAT(calls, SizeIs(3));
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(calls[i].sequences_size(), 1);
    EXPECT_EQ(calls[i].sequences(0).prompt(), absl::StrCat("p", i));
  }
}

TEST_F(DispatcherTest, AFullBatchGoesInlineWithoutWaitingForTheDelay) {
  FakeRunner runner;
  auto dispatcher = Dispatcher::Create(
      {.sequence_prefix = "gw-inline", .max_queue_delay = absl::Seconds(10)});
  ASSERT_THAT(dispatcher, IsOk());
  (*dispatcher)->UpdateRoutes({Route(1, {Replica("r0", runner, 2)}, 2)});
  Recorder first, second;
  for (Recorder* recorder : {&first, &second}) {
    SubmitRequest request{.deployment = "dep-1", .revision = 1};
    request.sequence.set_prompt("p");
    request.deadline = absl::Now() + absl::Seconds(30);
    request.observer = recorder;
    ASSERT_THAT((*dispatcher)->Submit(std::move(request), nullptr), IsOk());
  }
  ASSERT_TRUE(first.Wait());
  ASSERT_TRUE(second.Wait());
  ASSERT_THAT(runner.calls(), SizeIs(1));
  EXPECT_EQ(runner.calls()[0].sequences_size(), 2);
}

// The inline path keeps the batcher's rules: with the replica's one slot
// taken, later requests wait (never over the free slots) and go in arrival
// order as the slot frees.
TEST_F(DispatcherTest, InlineDispatchNeverExceedsTheFreeSlotsAndKeepsFifo) {
  FakeRunner runner;
  Start({.max_queue_delay = absl::ZeroDuration()});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", runner, 1)}, 1)});
  Recorder held;
  ASSERT_THAT(Submit(held, "hold"), IsOk());
  ASSERT_TRUE(held.WaitForText());
  std::vector<std::unique_ptr<Recorder>> queued;
  for (int i = 0; i < 3; ++i) {
    queued.push_back(std::make_unique<Recorder>());
    ASSERT_THAT(Submit(*queued.back(), absl::StrCat("q", i)), IsOk());
  }
  std::vector<v1::RevisionLoad> load = dispatcher_->Load();
  ASSERT_THAT(load, SizeIs(1));
  EXPECT_EQ(load[0].queued(), 3);
  EXPECT_EQ(load[0].in_flight(), 1);
  EXPECT_THAT(runner.calls(), SizeIs(1));
  runner.Release();
  ASSERT_TRUE(held.Wait());
  for (auto& recorder : queued) {
    ASSERT_TRUE(recorder->Wait());
    EXPECT_THAT(recorder->status(), IsOk());
  }
  std::vector<v1::RunnerGenerateRequest> calls = runner.calls();
  ASSERT_THAT(calls, SizeIs(4));
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(calls[i + 1].sequences_size(), 1);
    EXPECT_EQ(calls[i + 1].sequences(0).prompt(), absl::StrCat("q", i));
  }
}

TEST_F(DispatcherTest, AnExpiredDeadlineIsRefusedAtSubmit) {
  FakeRunner runner;
  Start({.max_queue_delay = absl::ZeroDuration()});
  dispatcher_->UpdateRoutes({Route(1, {Replica("r0", runner)})});
  Recorder recorder;
  EXPECT_TRUE(absl::IsDeadlineExceeded(
      Submit(recorder, "p", 1, absl::Now() - absl::Seconds(1)).status()));
  EXPECT_FALSE(recorder.finished());
  EXPECT_TRUE(runner.calls().empty());
}

}  // namespace
}  // namespace hangar::gateway
