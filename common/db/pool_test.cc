// Integration tests of the pool against a real PostgreSQL 15 cluster.
#include "common/db/pool.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/db/probe.h"
#include "common/server/call_context.h"
#include "common/testing/child_process.h"
#include "common/testing/fake_clock.h"
#include "common/testing/ports.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::db {
namespace {

using ::hangar::testing::FakeClock;
using ::hangar::testing::IsOk;
using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::PostgresServer;
using ::hangar::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// A port on 127.0.0.1 that nothing listens on (bound, then released).
int ClosedPort() {
  absl::StatusOr<int> port = ::hangar::testing::PickFreeLoopbackPort();
  EXPECT_TRUE(port.ok()) << port.status();
  return port.value_or(1);
}

absl::Status Exec(Pool& pool, const std::string& sql) {
  return pool.Transact([&](pqxx::work& tx) {
    tx.exec(sql);
    return absl::OkStatus();
  });
}

absl::StatusOr<int64_t> Count(Pool& pool, const std::string& table) {
  return pool.Transact<int64_t>([&](pqxx::work& tx) -> absl::StatusOr<int64_t> {
    return tx.exec1("SELECT count(*) FROM " + table)[0].as<int64_t>();
  });
}

// Records the probe's on_change calls, in order.
class ReachabilityLog {
 public:
  std::function<void(bool)> Recorder() {
    return [this](bool reachable) {
      absl::MutexLock lock(&mu_);
      changes_.push_back(reachable);
    };
  }
  std::vector<bool> changes() {
    absl::MutexLock lock(&mu_);
    return changes_;
  }

 private:
  absl::Mutex mu_;
  std::vector<bool> changes_ ABSL_GUARDED_BY(mu_);
};

TEST(PoolOptionsTest, RejectsBadOptionsNamingTheRule) {
  EXPECT_THAT(Pool::Create({.conninfo = "host=127.0.0.1", .size = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "size must be in [1, 64]; was 0"));
  EXPECT_THAT(
      Pool::Create({.conninfo = ""}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("conninfo")));
  EXPECT_THAT(
      Pool::Create({.conninfo = "host=x password='oops"}),
      StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("oops"))));
  EXPECT_THAT(Pool::Create({.conninfo = "host=127.0.0.1",
                            .deadline_margin = absl::ZeroDuration()}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "deadline_margin must be in (0, 10s]; was 0"));
  EXPECT_THAT(Pool::Create({.conninfo = "host=127.0.0.1",
                            .transaction_timeout = absl::Seconds(-1)}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "transaction_timeout must not be negative; was -1s"));
  EXPECT_THAT(Pool::Create({.conninfo = "host=127.0.0.1",
                            .outage_trial_interval = absl::ZeroDuration()}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "outage_trial_interval must be positive; was 0"));
}

TEST(PoolStartupTest, UnreachableDatabaseIsOneQuickUnavailableError) {
  const int port = ClosedPort();
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<Pool>> pool = Pool::Create(
      {.conninfo = absl::StrCat("host=127.0.0.1 port=", port,
                                " dbname=hangar user=svc password=hunter2")});
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_THAT(pool, StatusIs(absl::StatusCode::kUnavailable,
                             AllOf(HasSubstr(absl::StrCat("127.0.0.1:", port)),
                                   HasSubstr("hangar"), Not(HasSubstr("\n")),
                                   Not(HasSubstr("hunter2")))));
}

class PoolTest : public hangar::testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_OK_AND_ASSIGN(pool_, Pool::Create({.conninfo = conninfo()}));
  }
  std::unique_ptr<Pool> pool_;
};

TEST_F(PoolTest, CommitsWhenTheFunctionSucceeds) {
  ASSERT_OK(Exec(*pool_, "CREATE TABLE t (v int)"));
  ASSERT_OK(pool_->Transact([](pqxx::work& tx) {
    tx.exec_params("INSERT INTO t VALUES ($1)", 7);
    return absl::OkStatus();
  }));
  EXPECT_THAT(Count(*pool_, "t"), IsOkAndHolds(1));
}

TEST_F(PoolTest, RollsBackWhenTheFunctionFails) {
  ASSERT_OK(Exec(*pool_, "CREATE TABLE t (v int)"));
  EXPECT_THAT(pool_->Transact([](pqxx::work& tx) {
    tx.exec_params("INSERT INTO t VALUES ($1)", 7);
    return absl::NotFoundError("model x");
  }),
              StatusIs(absl::StatusCode::kNotFound, "model x"));
  EXPECT_THAT(Count(*pool_, "t"), IsOkAndHolds(0));
}

TEST_F(PoolTest, SqlErrorsBecomeStatusesAndRollBack) {
  ASSERT_OK(Exec(*pool_, "CREATE TABLE t (v int)"));
  EXPECT_THAT(pool_->Transact([](pqxx::work& tx) {
    tx.exec_params("INSERT INTO t VALUES ($1)", 1);
    tx.exec("SELEC 1");
    return absl::OkStatus();
  }),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("42601")));
  EXPECT_THAT(Count(*pool_, "t"), IsOkAndHolds(0));
}

TEST_F(PoolTest, UniqueViolationIsAlreadyExists) {
  ASSERT_OK(Exec(*pool_, "CREATE TABLE m (name text PRIMARY KEY)"));
  auto insert = [&] {
    return pool_->Transact([](pqxx::work& tx) {
      tx.exec_params("INSERT INTO m VALUES ($1)", "tiny");
      return absl::OkStatus();
    });
  };
  ASSERT_OK(insert());
  EXPECT_THAT(insert(),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("23505")));
}

TEST_F(PoolTest, ForeignKeyAndCheckViolationsMapToTheirCodes) {
  ASSERT_OK(Exec(*pool_,
                 "CREATE TABLE p (id int PRIMARY KEY);"
                 "CREATE TABLE c (p int REFERENCES p, n int CHECK (n > 0))"));
  EXPECT_THAT(
      pool_->Transact([](pqxx::work& tx) {
        tx.exec_params("INSERT INTO c VALUES ($1, $2)", 1, 1);
        return absl::OkStatus();
      }),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("23503")));
  EXPECT_THAT(pool_->Transact([](pqxx::work& tx) {
    tx.exec_params("INSERT INTO c VALUES (NULL, $1)", -1);
    return absl::OkStatus();
  }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("23514")));
}

TEST_F(PoolTest, SqlMetacharactersRoundTripVerbatim) {
  ASSERT_OK(Exec(*pool_, "CREATE TABLE s (id int PRIMARY KEY, v text)"));
  const std::vector<std::string> values = {
      "'; DROP TABLE s; --",
      "Robert'); DELETE FROM s WHERE ('1'='1",
      "$1 $2 ? %s %d",
      "back\\slash \\x00 E'\\n'",
      "\"double\" 'single' `tick`",
      "line\nbreak\ttab\r",
      "unicode: \xc3\xa9\xe2\x82\xac\xf0\x9f\x9a\x80",
      "",
  };
  ASSERT_OK(pool_->Transact([&](pqxx::work& tx) {
    for (size_t i = 0; i < values.size(); ++i) {
      tx.exec_params("INSERT INTO s (id, v) VALUES ($1, $2)",
                     static_cast<int>(i), values[i]);
    }
    return absl::OkStatus();
  }));
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_THAT(pool_->Transact<std::string>(
                    [&](pqxx::work& tx) -> absl::StatusOr<std::string> {
                      return tx
                          .exec_params1("SELECT v FROM s WHERE id = $1",
                                        static_cast<int>(i))[0]
                          .as<std::string>();
                    }),
                IsOkAndHolds(values[i]));
  }
  EXPECT_THAT(Count(*pool_, "s"), IsOkAndHolds(values.size()));
}

TEST_F(PoolTest, SearchPathOptionAppliesToEveryConnection) {
  ASSERT_OK(Exec(*pool_, "CREATE SCHEMA svc; CREATE TABLE svc.t (v int)"));
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Pool> pool,
      Pool::Create({.conninfo = conninfo(), .search_path = "svc, public"}));
  ASSERT_OK(Exec(*pool, "INSERT INTO t VALUES (1)"));
  EXPECT_THAT(Count(*pool_, "svc.t"), IsOkAndHolds(1));
}

TEST_F(PoolTest, WaitsForAFreeConnectionUpToTheAcquireTimeout) {
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Pool> pool,
                       Pool::Create({.conninfo = conninfo(),
                                     .size = 1,
                                     .acquire_timeout = absl::Seconds(10),
                                     .clock = &clock}));
  absl::Mutex mu;
  bool release = false;
  bool holding = false;
  std::thread holder([&] {
    ASSERT_OK(pool->Transact([&](pqxx::work&) {
      absl::MutexLock lock(&mu);
      holding = true;
      mu.Await(absl::Condition(&release));
      return absl::OkStatus();
    }));
  });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&holding));
  }
  absl::Status waited;
  std::thread waiter([&] { waited = Exec(*pool, "SELECT 1"); });
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  clock.Advance(absl::Seconds(11));
  waiter.join();
  EXPECT_THAT(waited, StatusIs(absl::StatusCode::kResourceExhausted,
                               HasSubstr("busy")));
  {
    absl::MutexLock lock(&mu);
    release = true;
  }
  holder.join();
  EXPECT_OK(Exec(*pool, "SELECT 1"));
  EXPECT_EQ(pool->open_connections(), 1);
}

// Two SERIALIZABLE transactions that each read the whole table and then
// insert into it (write skew): PostgreSQL aborts one with 40001 and the pool
// runs it again.
class SerializationTest : public PoolTest {
 protected:
  // Runs both transactions; on their first attempts both read before either
  // writes. Returns the statuses; `calls` counts every run of a function.
  std::vector<absl::Status> RunWriteSkew(int max_attempts,
                                         std::atomic<int>* calls) {
    absl::Mutex mu;
    int readers = 0;  // First attempts that finished reading.
    std::vector<absl::Status> results(2);
    auto body = [&](int id) {
      bool first_attempt = true;
      results[id] = pool_->Transact(
          [&](pqxx::work& tx) -> absl::Status {
            calls->fetch_add(1);
            const int64_t seen =
                tx.exec1("SELECT count(*) FROM ledger")[0].as<int64_t>();
            if (first_attempt) {
              first_attempt = false;
              absl::MutexLock lock(&mu);
              ++readers;
              auto both_read = [&readers] { return readers >= 2; };
              if (!mu.AwaitWithTimeout(absl::Condition(&both_read),
                                       absl::Seconds(30))) {
                return absl::DeadlineExceededError("peer never read");
              }
            }
            tx.exec_params("INSERT INTO ledger (writer, seen) VALUES ($1, $2)",
                           id, seen);
            return absl::OkStatus();
          },
          {.isolation = Isolation::kSerializable,
           .max_attempts = max_attempts});
    };
    std::thread a(body, 0);
    std::thread b(body, 1);
    a.join();
    b.join();
    return results;
  }

  void SetUp() override {
    PoolTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_OK(Exec(*pool_, "CREATE TABLE ledger (writer int, seen bigint)"));
  }
};

TEST_F(SerializationTest, RetriesARealSerializationFailure) {
  std::atomic<int> calls{0};
  std::vector<absl::Status> results = RunWriteSkew(5, &calls);
  EXPECT_OK(results[0]);
  EXPECT_OK(results[1]);
  EXPECT_GE(calls.load(), 3) << "one transaction must have run again";
  EXPECT_THAT(Count(*pool_, "ledger"), IsOkAndHolds(2));
  // The retried writer saw the other's row: the outcome is serializable.
  EXPECT_THAT(
      pool_->Transact<int64_t>([](pqxx::work& tx) -> absl::StatusOr<int64_t> {
        return tx.exec1("SELECT max(seen) FROM ledger")[0].as<int64_t>();
      }),
      IsOkAndHolds(1));
}

TEST_F(SerializationTest, GivesUpWithAbortedAfterMaxAttempts) {
  std::atomic<int> calls{0};
  std::vector<absl::Status> results = RunWriteSkew(1, &calls);
  const int ok = results[0].ok() + results[1].ok();
  EXPECT_EQ(ok, 1);
  for (const absl::Status& status : results) {
    if (!status.ok()) {
      EXPECT_THAT(status,
                  StatusIs(absl::StatusCode::kAborted, HasSubstr("40001")));
    }
  }
  EXPECT_EQ(calls.load(), 2);
  EXPECT_THAT(Count(*pool_, "ledger"), IsOkAndHolds(1));
}

TEST(PoolRestartTest, ReconnectsTransparentlyAfterTheServerRestarts) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresServer> server,
                       PostgresServer::Start());
  ASSERT_OK_AND_ASSIGN(std::string conninfo, server->CreateDatabase("app"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Pool> pool,
                       Pool::Create({.conninfo = conninfo, .size = 2}));
  ASSERT_OK(Exec(*pool, "CREATE TABLE t (v int)"));

  // Every pooled connection is stale after the restart.
  ASSERT_OK(server->Restart());
  ASSERT_OK(Exec(*pool, "INSERT INTO t VALUES (1)"));
  EXPECT_THAT(Count(*pool, "t"), IsOkAndHolds(1));
}

TEST(PoolRestartTest, WaitsForTheServerToComeBack) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresServer> server,
                       PostgresServer::Start());
  ASSERT_OK_AND_ASSIGN(std::string conninfo, server->CreateDatabase("app"));
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Pool> pool,
                       Pool::Create({.conninfo = conninfo,
                                     .size = 1,
                                     .reconnect_timeout = absl::Seconds(30),
                                     .clock = &clock}));
  ASSERT_OK(Exec(*pool, "CREATE TABLE t (v int)"));
  ASSERT_OK(server->Stop());

  absl::Status result = absl::UnknownError("not run");
  std::thread writer([&] { result = Exec(*pool, "INSERT INTO t VALUES (1)"); });
  // The writer failed to reconnect and now waits out its backoff.
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  ASSERT_OK(server->Resume());
  clock.Advance(absl::Seconds(1));
  writer.join();
  EXPECT_OK(result);
  EXPECT_THAT(Count(*pool, "t"), IsOkAndHolds(1));
}

TEST(PoolRestartTest, CreateWaitsForADatabaseThatIsStillStarting) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresServer> server,
                       PostgresServer::Start());
  ASSERT_OK_AND_ASSIGN(std::string conninfo, server->CreateDatabase("app"));
  ASSERT_OK(server->Stop());
  FakeClock clock;
  absl::StatusOr<std::unique_ptr<Pool>> pool;
  std::thread starter([&] {
    pool = Pool::Create({.conninfo = conninfo,
                         .startup_timeout = absl::Seconds(60),
                         .clock = &clock});
  });
  ASSERT_TRUE(clock.BlockUntilWaiters(1));  // A failed attempt's backoff.
  ASSERT_OK(server->Resume());
  clock.Advance(absl::Seconds(2));
  starter.join();
  ASSERT_OK(pool);
  EXPECT_OK(Exec(**pool, "SELECT 1"));
}

TEST(PoolRestartTest, GivesUpWithUnavailableNamingTheServer) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresServer> server,
                       PostgresServer::Start());
  ASSERT_OK_AND_ASSIGN(std::string conninfo, server->CreateDatabase("app"));
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Pool> pool,
                       Pool::Create({.conninfo = conninfo,
                                     .reconnect_timeout = absl::Seconds(5),
                                     .clock = &clock}));
  ASSERT_OK(server->Stop());
  absl::Status result;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    result = Exec(*pool, "SELECT 1");
    done = true;
  });
  // Move fake time past the reconnect deadline, one backoff at a time.
  while (!done) {
    clock.BlockUntilWaiters(1, absl::Milliseconds(100));
    clock.Advance(absl::Seconds(1));
  }
  writer.join();
  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("127.0.0.1:", server->port()))));
}

// --- Deadlines, cancellation and outages -----------------------------------

class PoolDeadlineTest : public hangar::testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_OK_AND_ASSIGN(pool_, Pool::Create({.conninfo = conninfo()}));
    ASSERT_OK(Exec(*pool_, "CREATE TABLE t (v int)"));
  }
  // Inserts a row, then sleeps in the database for `seconds`.
  std::function<absl::Status(pqxx::work&)> InsertThenSleep(int seconds) {
    return [seconds](pqxx::work& tx) {
      tx.exec("INSERT INTO t VALUES (1)");
      tx.exec_params("SELECT pg_sleep($1)", seconds);
      return absl::OkStatus();
    };
  }
  std::unique_ptr<Pool> pool_;
};

TEST_F(PoolDeadlineTest, ExplicitDeadlineStopsTheStatementAndWritesNothing) {
  const absl::Time start = absl::Now();
  EXPECT_THAT(
      pool_->Transact(InsertThenSleep(30),
                      {.deadline = start + absl::Milliseconds(300)}),
      StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("deadline")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_THAT(Count(*pool_, "t"), IsOkAndHolds(0));
}

TEST_F(PoolDeadlineTest, TheServedCallsDeadlineAppliesWithoutBeingPassed) {
  const absl::Time start = absl::Now();
  {
    ScopedCallContext call(std::make_shared<CallContext>(
        start + absl::Milliseconds(300), nullptr));
    EXPECT_THAT(pool_->Transact(InsertThenSleep(30)),
                StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_THAT(Count(*pool_, "t"), IsOkAndHolds(0));
  // The sooner of the two wins.
  ScopedCallContext call(
      std::make_shared<CallContext>(absl::Now() + absl::Seconds(60), nullptr));
  EXPECT_THAT(
      pool_->Transact(InsertThenSleep(30),
                      {.deadline = absl::Now() + absl::Milliseconds(200)}),
      StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  // A deadline far enough away lets the work finish, however far it is.
  EXPECT_OK(pool_->Transact(InsertThenSleep(0)));
  EXPECT_OK(pool_->Transact(
      [](pqxx::work& tx) {
        tx.exec("SELECT 1");
        return absl::OkStatus();
      },
      {.deadline = absl::Now() + absl::Hours(24 * 365)}));
  EXPECT_THAT(Count(*pool_, "t"), IsOkAndHolds(1));
}

TEST_F(PoolDeadlineTest, ExpiredOrCancelledCallsDoNoWork) {
  std::atomic<int> ran{0};
  auto fn = [&](pqxx::work& tx) {
    ++ran;
    tx.exec("INSERT INTO t VALUES (1)");
    return absl::OkStatus();
  };
  {
    ScopedCallContext call(
        std::make_shared<CallContext>(absl::Now() - absl::Seconds(1), nullptr));
    EXPECT_THAT(pool_->Transact(fn),
                StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  }
  {
    ScopedCallContext call(std::make_shared<CallContext>(absl::InfiniteFuture(),
                                                         [] { return true; }));
    EXPECT_THAT(pool_->Transact(fn),
                StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
  }
  EXPECT_EQ(ran.load(), 0);
  EXPECT_THAT(Count(*pool_, "t"), IsOkAndHolds(0));
}

TEST_F(PoolDeadlineTest, AClientCancellingStopsTheRunningStatement) {
  std::atomic<bool> cancelled{false};
  absl::Status result = absl::UnknownError("not run");
  absl::Time returned;
  std::thread caller([&] {
    ScopedCallContext call(std::make_shared<CallContext>(
        absl::InfiniteFuture(), [&] { return cancelled.load(); }));
    result = pool_->Transact(InsertThenSleep(60));
    returned = absl::Now();
  });
  // Wait until the statement is running in the database, then cancel.
  ASSERT_TRUE(hangar::testing::WaitUntil(
      [&] {
        absl::StatusOr<int64_t> sleeping = pool_->Transact<
            int64_t>([](pqxx::work& tx) -> absl::StatusOr<int64_t> {
          return tx
              .exec1(
                  "SELECT count(*) FROM pg_stat_activity WHERE query "
                  "LIKE 'SELECT pg_sleep%' AND datname = current_database()")[0]
              .as<int64_t>();
        });
        return sleeping.ok() && *sleeping == 1;
      },
      absl::Seconds(30)));
  const absl::Time cancelled_at = absl::Now();
  cancelled = true;
  caller.join();
  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("rolled back")));
  EXPECT_LT(returned - cancelled_at, absl::Seconds(5));
  EXPECT_THAT(Count(*pool_, "t"), IsOkAndHolds(0));
}

// The database stopped under a running pool: without a probe every call
// fails within the connect timeout; with one, at once and by name, and the
// probe reports both transitions.
TEST(PoolOutageTest, FailsFastWhileDownAndRecoversWhenTheDatabaseReturns) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresServer> server,
                       PostgresServer::Start());
  ASSERT_OK_AND_ASSIGN(std::string conninfo, server->CreateDatabase("app"));
  conninfo += " password=hunter2";
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Pool> pool,
                       Pool::Create({.conninfo = conninfo, .clock = &clock}));
  ASSERT_OK(Exec(*pool, "CREATE TABLE t (v int)"));
  const std::string endpoint = absl::StrCat("127.0.0.1:", server->port());

  ASSERT_OK(server->Stop());
  // No probe yet: a call still fails on its own, within connect_timeout
  // (2 s), with the endpoint and never the password.
  absl::Time start = absl::Now();
  EXPECT_THAT(Exec(*pool, "INSERT INTO t VALUES (1)"),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr(endpoint), Not(HasSubstr("hunter2")))));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));

  ReachabilityLog health;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DatabaseProbe> probe,
                       DatabaseProbe::Start({.pool = pool.get(),
                                             .interval = absl::Seconds(1),
                                             .on_change = health.Recorder(),
                                             .clock = &clock}));
  // The first check ran inside Start().
  EXPECT_FALSE(probe->reachable());
  EXPECT_EQ(health.changes(), std::vector<bool>{false});
  start = absl::Now();
  std::atomic<int> ran{0};
  absl::Status down = pool->Transact([&](pqxx::work&) {
    ++ran;
    return absl::OkStatus();
  });
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_EQ(ran.load(), 0);
  EXPECT_THAT(
      down, StatusIs(absl::StatusCode::kUnavailable,
                     AllOf(HasSubstr(endpoint), HasSubstr("unreachable since"),
                           Not(HasSubstr("hunter2")))));

  // The probe checks on the clock, not per call: the database is back, but
  // until the next check calls still fail fast.
  ASSERT_OK(server->Resume());
  const int64_t checks = probe->checks();
  EXPECT_THAT(Exec(*pool, "SELECT 1"),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(hangar::testing::WaitUntil(
      [&] { return probe->checks() > checks; }, absl::Seconds(30)));
  EXPECT_TRUE(probe->reachable());
  EXPECT_EQ(health.changes(), (std::vector<bool>{false, true}));
  EXPECT_OK(Exec(*pool, "INSERT INTO t VALUES (1)"));
  EXPECT_THAT(Count(*pool, "t"), IsOkAndHolds(1));

  // Down again: the next check notices.
  ASSERT_OK(server->Stop());
  const int64_t before = probe->checks();
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(hangar::testing::WaitUntil(
      [&] { return probe->checks() > before; }, absl::Seconds(30)));
  EXPECT_FALSE(probe->reachable());
  EXPECT_THAT(pool->Outage(), StatusIs(absl::StatusCode::kUnavailable,
                                       HasSubstr("unreachable since")));
  probe.reset();  // Stops promptly although fake time stands still.
  EXPECT_EQ(health.changes(), (std::vector<bool>{false, true, false}));
}

// Half-open trials: while the database is down, one call at a time, once
// per trial interval (200 ms of the pool's clock), runs for real; the others
// fail fast. Once PostgreSQL is back the first trial succeeds, ends the
// outage for every call and tells the probe (health SERVING), although the
// probe's own next check is an hour away.
TEST(PoolOutageTest, ATrialCallEndsTheOutageWithoutWaitingForTheProbe) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresServer> server,
                       PostgresServer::Start());
  ASSERT_OK_AND_ASSIGN(std::string conninfo, server->CreateDatabase("app"));
  FakeClock clock;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Pool> pool,
      Pool::Create({.conninfo = conninfo, .size = 2, .clock = &clock}));
  ASSERT_OK(Exec(*pool, "CREATE TABLE t (v int)"));
  ReachabilityLog health;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DatabaseProbe> probe,
                       DatabaseProbe::Start({.pool = pool.get(),
                                             .interval = absl::Hours(1),
                                             .on_change = health.Recorder(),
                                             .clock = &clock}));
  ASSERT_TRUE(probe->reachable());
  std::atomic<int> ran{0};
  auto counted = [&] {
    return pool->Transact([&](pqxx::work&) {
      ++ran;
      return absl::OkStatus();
    });
  };

  // PostgreSQL stops; the probe's next check finds out.
  ASSERT_OK(server->Stop());
  int64_t checks = probe->checks();
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  clock.Advance(absl::Hours(1));
  ASSERT_TRUE(hangar::testing::WaitUntil(
      [&] { return probe->checks() > checks; }, absl::Seconds(30)));
  ASSERT_FALSE(probe->reachable());
  checks = probe->checks();

  // Within the trial interval every call fails fast.
  EXPECT_THAT(counted(), StatusIs(absl::StatusCode::kUnavailable,
                                  HasSubstr("unreachable since")));
  EXPECT_EQ(ran.load(), 0);
  // A trial interval later one call tries for real and fails; the outage
  // goes on, with the same answer as a fail-fast call.
  clock.Advance(absl::Milliseconds(200));
  EXPECT_THAT(
      Exec(*pool, "INSERT INTO t VALUES (1)"),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("unreachable since")));
  EXPECT_THAT(pool->Outage(), StatusIs(absl::StatusCode::kUnavailable,
                                       HasSubstr("unreachable since")));

  // PostgreSQL is back, but the last trial ended less than a trial
  // interval ago: still failing fast.
  ASSERT_OK(server->Resume());
  EXPECT_THAT(counted(), StatusIs(absl::StatusCode::kUnavailable,
                                  HasSubstr("unreachable since")));
  EXPECT_EQ(ran.load(), 0);

  // The next trial is let through; while it runs, it is the only one.
  clock.Advance(absl::Milliseconds(200));
  absl::Notification in_trial;
  absl::Notification release;
  absl::Status trial_status;
  std::thread trial([&] {
    trial_status = pool->Transact([&](pqxx::work& tx) {
      in_trial.Notify();
      release.WaitForNotification();
      tx.exec0("INSERT INTO t VALUES (2)");
      return absl::OkStatus();
    });
  });
  ASSERT_TRUE(in_trial.WaitForNotificationWithTimeout(absl::Seconds(30)));
  clock.Advance(absl::Milliseconds(200));
  EXPECT_THAT(counted(), StatusIs(absl::StatusCode::kUnavailable,
                                  HasSubstr("unreachable since")));
  EXPECT_EQ(ran.load(), 0);
  release.Notify();
  trial.join();
  EXPECT_OK(trial_status);

  // The outage is over for everyone, and the probe heard it from the pool:
  // no check of its own ran.
  EXPECT_OK(pool->Outage());
  EXPECT_OK(counted());
  EXPECT_EQ(ran.load(), 1);
  EXPECT_THAT(Count(*pool, "t"), IsOkAndHolds(1));
  EXPECT_TRUE(probe->reachable());
  EXPECT_EQ(probe->checks(), checks);
  probe.reset();
  EXPECT_EQ(health.changes(), (std::vector<bool>{true, false, true}));
}

// --- A database that does not answer at all --------------------------------
//
// PostgreSQL frozen with SIGSTOP (its postmaster and every backend): the
// TCP connections stay open and nothing answers, as with a hung host or a
// network partition. statement_timeout and cancel requests cannot help;
// the pool's watchdog must.
class PoolFrozenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_, PostgresServer::Start());
    ASSERT_OK_AND_ASSIGN(std::string conninfo, server_->CreateDatabase("app"));
    conninfo_ = conninfo + " password=hunter2";
    endpoint_ = absl::StrCat("127.0.0.1:", server_->port());
  }
  // Always continue the server, even after a failed assertion, or it could
  // not be stopped.
  void TearDown() override {
    if (server_ != nullptr) EXPECT_OK(server_->Thaw());
  }
  // Freezes the server; false (and the test is skipped) when this process
  // may not signal it.
  bool Freeze() {
    absl::Status frozen = server_->Freeze();
    if (absl::IsPermissionDenied(frozen)) {
      std::cerr << "cannot freeze PostgreSQL (run as root or as its user): "
                << frozen << std::endl;
      return false;
    }
    EXPECT_OK(frozen);
    return frozen.ok();
  }

  std::unique_ptr<PostgresServer> server_;
  std::string conninfo_;
  std::string endpoint_;
};

TEST_F(PoolFrozenTest,
       ACallOnAnOpenConnectionGetsUnavailableBeforeItsDeadline) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Pool> pool,
                       Pool::Create({.conninfo = conninfo_, .size = 2}));
  ASSERT_OK(Exec(*pool, "CREATE TABLE t (v int)"));
  ASSERT_EQ(pool->open_connections(), 1);

  // The transaction writes a row, then the server freezes under it.
  absl::Notification inserted;
  absl::Notification frozen;
  absl::Status result;
  absl::Duration elapsed;
  std::thread caller([&] {
    ScopedCallContext call(
        std::make_shared<CallContext>(absl::Now() + absl::Seconds(3), nullptr));
    const absl::Time start = absl::Now();
    result = pool->Transact([&](pqxx::work& tx) {
      tx.exec("INSERT INTO t VALUES (1)");
      if (!inserted.HasBeenNotified()) inserted.Notify();
      frozen.WaitForNotification();
      tx.exec("SELECT 1");
      return absl::OkStatus();
    });
    elapsed = absl::Now() - start;
  });
  inserted.WaitForNotification();
  const bool can_freeze = Freeze();
  frozen.Notify();
  caller.join();
  if (!can_freeze) GTEST_SKIP() << "cannot signal PostgreSQL";

  EXPECT_THAT(
      result,
      StatusIs(absl::StatusCode::kUnavailable,
               AllOf(HasSubstr(absl::StrCat("PostgreSQL at ", endpoint_,
                                            " (database \"app\") did not "
                                            "answer within 2.9s")),
                     Not(HasSubstr("hunter2")))));
  EXPECT_LT(elapsed, absl::Seconds(3));
  EXPECT_GT(elapsed, absl::Seconds(2));
  std::cout << "frozen database, 3 s call: " << result << " after " << elapsed
            << std::endl;
  // The connection the watchdog shut down is gone.
  EXPECT_EQ(pool->open_connections(), 0);

  // Fail-fast is off without a probe: the next call tries a new
  // connection, which the frozen server accepts but never answers.
  const absl::Time start = absl::Now();
  EXPECT_THAT(pool->Transact(
                  [](pqxx::work& tx) {
                    tx.exec("SELECT 1");
                    return absl::OkStatus();
                  },
                  {.deadline = absl::Now() + absl::Milliseconds(500)}),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  // A new connection to a frozen server waits for connect_timeout (2 s,
  // libpq's least): that bound, not the deadline, is the limit here.
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));

  ASSERT_OK(server_->Thaw());
  // Nothing was written, and the pool works again.
  EXPECT_THAT(Count(*pool, "t"), IsOkAndHolds(0));
  EXPECT_OK(Exec(*pool, "INSERT INTO t VALUES (2)"));
  EXPECT_THAT(Count(*pool, "t"), IsOkAndHolds(1));
}

TEST_F(PoolFrozenTest, TransactionTimeoutBoundsWorkWithoutADeadline) {
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Pool> pool,
      Pool::Create({.conninfo = conninfo_,
                    .transaction_timeout = absl::Milliseconds(1500)}));
  ASSERT_OK(Exec(*pool, "CREATE TABLE t (v int)"));
  // A live server ends a statement that runs too long itself.
  EXPECT_THAT(pool->Transact([](pqxx::work& tx) {
    tx.exec("SELECT pg_sleep(30)");
    return absl::OkStatus();
  }),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("transaction_timeout (1.5s)")));
  if (!Freeze()) GTEST_SKIP() << "cannot signal PostgreSQL";
  const absl::Time start = absl::Now();
  EXPECT_THAT(Exec(*pool, "INSERT INTO t VALUES (1)"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("did not answer within 1.5s")));
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_LT(elapsed, absl::Seconds(3));
  ASSERT_OK(server_->Thaw());
  EXPECT_THAT(Count(*pool, "t"), IsOkAndHolds(0));
}

TEST_F(PoolFrozenTest, TheProbeTurnsUnreachableAndBackAndLogsEachOnce) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Pool> pool,
                       Pool::Create({.conninfo = conninfo_}));
  ReachabilityLog health;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<DatabaseProbe> probe,
      DatabaseProbe::Start({.pool = pool.get(),
                            .interval = absl::Milliseconds(500),
                            .timeout = absl::Seconds(1),
                            .name = "test",
                            .on_change = health.Recorder()}));
  ASSERT_TRUE(probe->reachable());

  ::testing::internal::CaptureStderr();
  if (!Freeze()) {
    ::testing::internal::GetCapturedStderr();
    GTEST_SKIP() << "cannot signal PostgreSQL";
  }
  // Within about interval + timeout (1.5 s); allow for a loaded machine.
  const absl::Time frozen_at = absl::Now();
  ASSERT_TRUE(hangar::testing::WaitUntil([&] { return !probe->reachable(); },
                                         absl::Seconds(10)));
  const absl::Duration noticed = absl::Now() - frozen_at;
  EXPECT_LT(noticed, absl::Seconds(4));
  std::cout << "probe noticed the frozen database after " << noticed
            << std::endl;
  // Calls now fail at once, naming the database.
  absl::Time start = absl::Now();
  EXPECT_THAT(
      Exec(*pool, "SELECT 1"),
      StatusIs(absl::StatusCode::kUnavailable,
               AllOf(HasSubstr(endpoint_), HasSubstr("unreachable since"))));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  // Later failing checks change nothing.
  const int64_t checks = probe->checks();
  ASSERT_TRUE(hangar::testing::WaitUntil(
      [&] { return probe->checks() >= checks + 1; }, absl::Seconds(20)));

  ASSERT_OK(server_->Thaw());
  const absl::Time thawed_at = absl::Now();
  ASSERT_TRUE(hangar::testing::WaitUntil([&] { return probe->reachable(); },
                                         absl::Seconds(10)));
  std::cout << "probe saw it again after " << absl::Now() - thawed_at
            << std::endl;
  EXPECT_OK(Exec(*pool, "SELECT 1"));
  probe.reset();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(
      log, HasSubstr(absl::StrCat("test: database ", endpoint_,
                                  " unreachable: PostgreSQL at ", endpoint_)));
  EXPECT_THAT(log, HasSubstr("did not answer within 1s"));
  EXPECT_THAT(log, HasSubstr("reachable again"));
  EXPECT_THAT(log, Not(HasSubstr("hunter2")));
  EXPECT_EQ(health.changes(), (std::vector<bool>{true, false, true}));
}

TEST_F(PoolFrozenTest, AWatchdogTimeoutTellsTheProbeAtOnce) {
  // Trials would be due a millisecond after a failure, were it a quick one.
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Pool> pool,
      Pool::Create({.conninfo = conninfo_,
                    .outage_trial_interval = absl::Milliseconds(1)}));
  ReachabilityLog health;
  // The probe's own checks are an hour apart: only the pool can tell it.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DatabaseProbe> probe,
                       DatabaseProbe::Start({.pool = pool.get(),
                                             .interval = absl::Hours(1),
                                             .on_change = health.Recorder()}));
  if (!Freeze()) GTEST_SKIP() << "cannot signal PostgreSQL";
  {
    ScopedCallContext call(
        std::make_shared<CallContext>(absl::Now() + absl::Seconds(2), nullptr));
    // On the connection the pool opened at start.
    EXPECT_THAT(Exec(*pool, "SELECT 1"),
                StatusIs(absl::StatusCode::kUnavailable,
                         HasSubstr("did not answer within 1.9s")));
  }
  // Told before the call returned: no waiting for a check.
  EXPECT_FALSE(probe->reachable());
  // A database that does not answer gets no trials (each would hold its
  // caller for connect_timeout): calls fail fast until the probe says.
  const absl::Time failed_at = absl::Now();
  ASSERT_TRUE(hangar::testing::WaitUntil(
      [&] { return absl::Now() >= failed_at + absl::Milliseconds(5); },
      absl::Seconds(5)));
  const absl::Time start = absl::Now();
  EXPECT_THAT(
      Exec(*pool, "SELECT 1"),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("unreachable since")));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_EQ(health.changes(), (std::vector<bool>{true, false}));
}

TEST(DatabaseProbeTest, RejectsBadOptions) {
  EXPECT_THAT(DatabaseProbe::Start({}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pool")));
}

}  // namespace
}  // namespace hangar::db
