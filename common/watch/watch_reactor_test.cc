// WatchReactor over a real in-process callback server on a loopback port.
#include "common/watch/watch_reactor.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/watch/change_notifier.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "testdata/watch_test.grpc.pb.h"

namespace hangar {
namespace {

using ::hangar::watchtest::Counter;
using ::hangar::watchtest::CounterService;
using ::hangar::watchtest::WatchCounterRequest;

constexpr absl::Duration kPatience = absl::Seconds(30);

// Counters by key, with a gate that can hold reads (to keep a read in flight
// while changes arrive) and a count of reads.
class CounterStore {
 public:
  void Set(const std::string& key, int64_t value, bool done = false) {
    absl::MutexLock lock(&mu_);
    Counter& counter = counters_[key];
    counter.set_key(key);
    counter.set_value(value);
    counter.set_done(done);
  }
  void Erase(const std::string& key) {
    absl::MutexLock lock(&mu_);
    counters_.erase(key);
  }
  absl::StatusOr<Counter> Read(const std::string& key) {
    absl::MutexLock lock(&mu_);
    ++reads_;
    ++reads_in_progress_;
    mu_.Await(absl::Condition(
        +[](bool* held) { return !*held; }, &hold_reads_));
    --reads_in_progress_;
    auto it = counters_.find(key);
    if (it == counters_.end()) {
      return absl::NotFoundError(absl::StrCat(key, ": no such counter"));
    }
    return it->second;
  }
  void HoldReads(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_reads_ = hold;
  }
  bool AwaitHeldRead() {
    absl::MutexLock lock(&mu_);
    auto held = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return reads_in_progress_ > 0;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&held), kPatience);
  }
  bool AwaitReads(int count) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return reads_ >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kPatience);
  }
  int reads() {
    absl::MutexLock lock(&mu_);
    return reads_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Counter> counters_ ABSL_GUARDED_BY(mu_);
  bool hold_reads_ ABSL_GUARDED_BY(mu_) = false;
  int reads_ ABSL_GUARDED_BY(mu_) = 0;
  int reads_in_progress_ ABSL_GUARDED_BY(mu_) = 0;
};

class CounterWatchService final : public CounterService::CallbackService {
 public:
  CounterWatchService(ChangeNotifier* notifier, CounterStore* store)
      : notifier_(notifier), store_(store) {}

  grpc::ServerWriteReactor<Counter>* WatchCounter(
      grpc::CallbackServerContext* context,
      const WatchCounterRequest* request) override {
    if (request->key().empty()) {
      return FinishedWriteReactor<Counter>(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT, "key: must not be empty"));
    }
    return WatchReactor<Counter>::Start(
        context, {.notifier = notifier_,
                  .key = request->key(),
                  .read = [store = store_,
                           key = request->key()] { return store->Read(key); },
                  .is_final = [](const Counter& c) { return c.done(); }});
  }

 private:
  ChangeNotifier* notifier_;
  CounterStore* store_;
};

class WatchReactorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    stub_ = CounterService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    notifier_.Close();
    server_->Shutdown();
  }

  struct Stream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<Counter>> reader;
  };
  std::unique_ptr<Stream> Watch(const std::string& key) {
    auto stream = std::make_unique<Stream>();
    stream->context.set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
    WatchCounterRequest request;
    request.set_key(key);
    stream->reader = stub_->WatchCounter(&stream->context, request);
    return stream;
  }

  // Sets `key` to `value`, starts a watch of it and reads the first state.
  std::unique_ptr<Stream> WatchFrom(const std::string& key, int64_t value) {
    store_.Set(key, value);
    auto stream = Watch(key);
    Counter first;
    EXPECT_TRUE(stream->reader->Read(&first));
    EXPECT_EQ(first.value(), value);
    return stream;
  }

  // Changes `key` and announces it; returns the next state `stream` sends,
  // or nullopt when the stream ended instead.
  std::optional<Counter> ChangeAndRead(Stream& stream, const std::string& key,
                                       int64_t value, bool done = false) {
    store_.Set(key, value, done);
    notifier_.Notify(key);
    Counter next;
    if (!stream.reader->Read(&next)) return std::nullopt;
    return next;
  }

  static grpc::Status Cancel(Stream& stream) {
    stream.context.TryCancel();
    return stream.reader->Finish();
  }

  // Waits (bounded) until no stream watches anything.
  bool AwaitNoWatchers() {
    absl::Time deadline = absl::Now() + kPatience;
    while (notifier_.watched_keys() != 0) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }

  ChangeNotifier notifier_;
  CounterStore store_;
  CounterWatchService service_{&notifier_, &store_};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<CounterService::Stub> stub_;
};

TEST_F(WatchReactorTest, FirstStateArrivesAndAChangeWithin50Ms) {
  auto stream = WatchFrom("c", 1);
  EXPECT_EQ(notifier_.watched_keys(), 1);
  for (int value = 2; value <= 6; ++value) {
    absl::Time notified = absl::Now();
    std::optional<Counter> next = ChangeAndRead(*stream, "c", value);
    absl::Duration latency = absl::Now() - notified;
    ASSERT_TRUE(next.has_value());
    EXPECT_EQ(next->value(), value);
    EXPECT_LT(latency, absl::Milliseconds(50)) << value;
  }
  EXPECT_EQ(Cancel(*stream).error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(WatchReactorTest, UnchangedStateIsNotWrittenAgain) {
  auto stream = WatchFrom("c", 1);
  notifier_.Notify("c");  // Nothing changed.
  notifier_.Notify("other");
  ASSERT_TRUE(store_.AwaitReads(2));
  std::optional<Counter> next = ChangeAndRead(*stream, "c", 2);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->value(), 2);  // Not a second copy of 1.
  EXPECT_EQ(store_.reads(), 3);
  Cancel(*stream);
}

TEST_F(WatchReactorTest, ChangesDuringAReadInFlightAreCoalesced) {
  auto stream = WatchFrom("c", 1);
  ASSERT_EQ(store_.reads(), 1);

  // The next read blocks inside `read`, on the notifying thread.
  store_.HoldReads(true);
  store_.Set("c", 2);
  std::thread first_notify([&] { notifier_.Notify("c"); });
  ASSERT_TRUE(store_.AwaitHeldRead());
  // While that read is in flight, 100 more changes: each Notify returns at
  // once (the stream only notes that it is dirty) and none starts a read.
  for (int value = 3; value <= 102; ++value) {
    store_.Set("c", value);
    notifier_.Notify("c");
  }
  EXPECT_EQ(store_.reads(), 2);
  store_.HoldReads(false);
  first_notify.join();

  Counter counter;
  ASSERT_TRUE(stream->reader->Read(&counter));
  EXPECT_EQ(counter.value(), 102);  // The latest, not 2, 3, ...
  // One more read for the coalesced changes; it finds nothing new.
  ASSERT_TRUE(store_.AwaitReads(3));
  std::optional<Counter> next = ChangeAndRead(*stream, "c", 103);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->value(), 103);
  EXPECT_EQ(store_.reads(), 4);
  Cancel(*stream);
}

TEST_F(WatchReactorTest, ClientCancelEndsTheStreamAndUnsubscribes) {
  auto stream = WatchFrom("c", 1);
  EXPECT_EQ(notifier_.watched_keys(), 1);
  EXPECT_EQ(Cancel(*stream).error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(AwaitNoWatchers());
  notifier_.Notify("c");  // Nobody is left to call.
}

TEST_F(WatchReactorTest, ClosingTheNotifierEndsWithUnavailable) {
  auto stream = WatchFrom("c", 1);
  notifier_.Close();
  Counter counter;
  EXPECT_FALSE(stream->reader->Read(&counter));
  grpc::Status status = stream->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "server shutting down");
  EXPECT_EQ(notifier_.watched_keys(), 0);
}

TEST_F(WatchReactorTest, WatchStartedAfterCloseEndsWithUnavailable) {
  store_.Set("c", 1);
  notifier_.Close();
  auto stream = Watch("c");
  Counter counter;
  EXPECT_FALSE(stream->reader->Read(&counter));
  EXPECT_EQ(stream->reader->Finish().error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(WatchReactorTest, ReadErrorEndsWithItsCode) {
  auto missing = Watch("missing");
  Counter counter;
  EXPECT_FALSE(missing->reader->Read(&counter));
  grpc::Status status = missing->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "missing: no such counter");

  auto stream = WatchFrom("c", 1);
  store_.Erase("c");
  notifier_.Notify("c");
  EXPECT_FALSE(stream->reader->Read(&counter));
  EXPECT_EQ(stream->reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(AwaitNoWatchers());
}

TEST_F(WatchReactorTest, FinalStateEndsWithOk) {
  auto stream = WatchFrom("c", 1);
  std::optional<Counter> last = ChangeAndRead(*stream, "c", 2, /*done=*/true);
  ASSERT_TRUE(last.has_value());
  EXPECT_TRUE(last->done());
  Counter counter;
  EXPECT_FALSE(stream->reader->Read(&counter));
  EXPECT_TRUE(stream->reader->Finish().ok());
  EXPECT_TRUE(AwaitNoWatchers());
}

TEST_F(WatchReactorTest, FinishedWriteReactorRefusesBeforeTheWatch) {
  auto stream = Watch("");
  Counter counter;
  EXPECT_FALSE(stream->reader->Read(&counter));
  grpc::Status status = stream->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "key: must not be empty");
  EXPECT_EQ(notifier_.watched_keys(), 0);
}

TEST_F(WatchReactorTest, ManyStreamsOnOneKeyAllSeeTheChange) {
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < 8; ++i) streams.push_back(WatchFrom("c", 1));
  EXPECT_EQ(notifier_.watched_keys(), 1);
  store_.Set("c", 2);
  notifier_.Notify("c");
  Counter counter;
  for (auto& stream : streams) {
    ASSERT_TRUE(stream->reader->Read(&counter));
    EXPECT_EQ(counter.value(), 2);
  }
  notifier_.Close();
  for (auto& stream : streams) {
    EXPECT_EQ(stream->reader->Finish().error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
}

}  // namespace
}  // namespace hangar
