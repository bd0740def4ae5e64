#include "common/db/pool.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/db/errors.h"

namespace hangar::db {
namespace {

// How often the watchdog reads a clock other than the real one.
constexpr absl::Duration kFakeClockPoll = absl::Milliseconds(10);

// Deadlines further away than this set no statement_timeout.
constexpr absl::Duration kLongestStatementTimeout = absl::Hours(24);

// How one attempt at a transaction ended.
enum class Outcome {
  kDone,       // Committed, or failed for good: return the status.
  kRetry,      // Serialization failure or deadlock: run it again.
  kReconnect,  // The connection broke before COMMIT: reconnect, run again.
};

struct Attempt {
  Outcome outcome;
  absl::Status status;
};

// libpq counts connect_timeout in whole seconds and treats 1 as 2.
int64_t ConnectTimeoutSeconds(absl::Duration timeout) {
  return std::max<int64_t>(
      2, absl::ToInt64Seconds(absl::Ceil(timeout, absl::Seconds(1))));
}

// Appends connect_timeout and the keepalive settings to a conninfo string
// or URI (later settings win in both forms).
std::string WithConnectionParameters(const std::string& conninfo,
                                     absl::Duration connect_timeout,
                                     absl::Duration keepalive_idle) {
  std::vector<std::pair<std::string, int64_t>> parameters = {
      {"connect_timeout", ConnectTimeoutSeconds(connect_timeout)}};
  if (keepalive_idle > absl::ZeroDuration()) {
    const int64_t idle =
        std::max<int64_t>(1, absl::ToInt64Seconds(keepalive_idle));
    parameters.push_back({"keepalives", 1});
    parameters.push_back({"keepalives_idle", idle});
    parameters.push_back(
        {"keepalives_interval", std::max<int64_t>(1, idle / 3)});
    parameters.push_back({"keepalives_count", 3});
  } else {
    parameters.push_back({"keepalives", 0});
  }
  const bool uri = absl::StartsWith(conninfo, "postgresql://") ||
                   absl::StartsWith(conninfo, "postgres://");
  std::string result = conninfo;
  for (const auto& [name, value] : parameters) {
    if (uri) {
      const char separator = result.find('?') == std::string::npos ? '?' : '&';
      absl::StrAppend(&result, std::string(1, separator), name, "=", value);
    } else {
      absl::StrAppend(&result, " ", name, "=", value);
    }
  }
  return result;
}

const char* IsolationName(Isolation isolation) {
  switch (isolation) {
    case Isolation::kReadCommitted:
      return "READ COMMITTED";
    case Isolation::kRepeatableRead:
      return "REPEATABLE READ";
    case Isolation::kSerializable:
      return "SERIALIZABLE";
  }
  return "READ COMMITTED";
}

bool IsBroken(const pqxx::connection& connection) {
  return !connection.is_open();
}

// Runs `fn` once in a transaction on `connection`; statements stop when
// `statement_timeout` (if positive) runs out.
Attempt RunOnce(pqxx::connection& connection,
                const std::function<absl::Status(pqxx::work&)>& fn,
                const TransactOptions& options,
                absl::Duration statement_timeout,
                absl::string_view timeout_cause) {
  bool committing = false;
  try {
    pqxx::work tx(connection);
    if (statement_timeout > absl::ZeroDuration()) {
      // A number computed here, never caller text.
      tx.exec0(absl::StrCat(
          "SET LOCAL statement_timeout = ",
          std::max<int64_t>(1, absl::ToInt64Milliseconds(statement_timeout))));
    }
    if (options.isolation != Isolation::kReadCommitted || options.read_only) {
      std::string set = absl::StrCat("SET TRANSACTION ISOLATION LEVEL ",
                                     IsolationName(options.isolation));
      if (options.read_only) absl::StrAppend(&set, " READ ONLY");
      tx.exec0(set);
    }
    absl::Status status = fn(tx);
    if (!status.ok()) {
      // The function's own error wins; a failed ROLLBACK (the connection
      // broke) only means the server rolls back on its own.
      try {
        tx.abort();
      } catch (const std::exception&) {
      }
      return {Outcome::kDone, std::move(status)};
    }
    committing = true;
    tx.commit();
    return {Outcome::kDone, absl::OkStatus()};
  } catch (const pqxx::in_doubt_error& e) {
    return {Outcome::kDone, StatusFromException(e)};
  } catch (const pqxx::serialization_failure& e) {
    return {Outcome::kRetry, StatusFromException(e)};
  } catch (const pqxx::deadlock_detected& e) {
    return {Outcome::kRetry, StatusFromException(e)};
  } catch (const pqxx::broken_connection& e) {
    if (committing) {
      return {Outcome::kDone,
              absl::UnavailableError(
                  "connection lost while committing; the transaction may or "
                  "may not have been applied")};
    }
    return {Outcome::kReconnect, StatusFromException(e)};
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == "57014" && statement_timeout > absl::ZeroDuration()) {
      return {Outcome::kDone, absl::DeadlineExceededError(absl::StrCat(
                                  timeout_cause, " while the database worked (",
                                  StatusFromException(e).message(), ")"))};
    }
    if (IsRetryableSqlState(e.sqlstate())) {
      return {Outcome::kRetry, StatusFromException(e)};
    }
    if ((IsConnectionSqlState(e.sqlstate()) || IsBroken(connection)) &&
        !committing) {
      return {Outcome::kReconnect, StatusFromException(e)};
    }
    return {Outcome::kDone, StatusFromException(e)};
  } catch (const std::exception& e) {
    if (IsBroken(connection) && !committing) {
      return {Outcome::kReconnect, StatusFromException(e)};
    }
    return {Outcome::kDone, StatusFromException(e)};
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Pool>> Pool::Create(const PoolOptions& options) {
  if (options.conninfo.empty()) {
    return absl::InvalidArgumentError("conninfo must not be empty");
  }
  if (DescribeEndpoint(options.conninfo) == "<malformed conninfo>") {
    return absl::InvalidArgumentError(
        "conninfo is not a valid libpq connection string");
  }
  if (options.size < 1 || options.size > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("size must be in [1, 64]; was ", options.size));
  }
  if (options.connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("connect_timeout must be positive; was ",
                     absl::FormatDuration(options.connect_timeout)));
  }
  if (options.keepalive_idle < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("keepalive_idle must not be negative; was ",
                     absl::FormatDuration(options.keepalive_idle)));
  }
  if (options.startup_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("startup_timeout must not be negative; was ",
                     absl::FormatDuration(options.startup_timeout)));
  }
  if (options.reconnect_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("reconnect_timeout must not be negative; was ",
                     absl::FormatDuration(options.reconnect_timeout)));
  }
  if (options.acquire_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("acquire_timeout must be positive; was ",
                     absl::FormatDuration(options.acquire_timeout)));
  }
  if (options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backoff must satisfy 0 < initial_backoff <= max_backoff; was ",
        absl::FormatDuration(options.initial_backoff), " and ",
        absl::FormatDuration(options.max_backoff)));
  }
  if (options.cancel_check_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cancel_check_interval must be positive; was ",
                     absl::FormatDuration(options.cancel_check_interval)));
  }
  if (options.deadline_margin <= absl::ZeroDuration() ||
      options.deadline_margin > absl::Seconds(10)) {
    return absl::InvalidArgumentError(
        absl::StrCat("deadline_margin must be in (0, 10s]; was ",
                     absl::FormatDuration(options.deadline_margin)));
  }
  if (options.transaction_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("transaction_timeout must not be negative; was ",
                     absl::FormatDuration(options.transaction_timeout)));
  }
  if (options.outage_trial_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("outage_trial_interval must be positive; was ",
                     absl::FormatDuration(options.outage_trial_interval)));
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock must not be null");
  }
  auto pool = std::unique_ptr<Pool>(new Pool(options));
  // Open the first connection now so that a bad --db fails at start-up.
  const absl::Time deadline = options.clock->Now() + options.startup_timeout;
  absl::StatusOr<std::unique_ptr<pqxx::connection>> first = pool->Connect();
  for (int attempt = 1; !first.ok(); ++attempt) {
    const absl::Duration backoff = pool->Backoff(attempt);
    if (!absl::IsUnavailable(first.status()) ||
        options.clock->Now() + backoff > deadline) {
      return first.status();
    }
    options.clock->SleepFor(backoff);
    first = pool->Connect();
  }
  {
    absl::MutexLock lock(&pool->mu_);
    pool->idle_.push_back(*std::move(first));
  }
  pool->watchdog_ = std::thread([raw = pool.get()] { raw->WatchLoop(); });
  pool->canceller_ = std::thread([raw = pool.get()] { raw->CancelLoop(); });
  return pool;
}

Pool::Pool(const PoolOptions& options)
    : options_(options),
      conninfo_(WithConnectionParameters(
          options.conninfo, options.connect_timeout, options.keepalive_idle)),
      endpoint_(DescribeEndpoint(options.conninfo)),
      database_(DatabaseName(options.conninfo)) {}

Pool::~Pool() {
  {
    absl::MutexLock lock(&watch_mu_);
    stopping_ = true;
    ++watch_generation_;
  }
  // The canceller first: the watchdog bounds its last request.
  if (canceller_.joinable()) canceller_.join();
  cancel_connection_.reset();
  if (watchdog_.joinable()) watchdog_.join();
  absl::MutexLock lock(&mu_);
  // Every lease must have been returned: Transact() never outlives its call.
  idle_.clear();
}

int Pool::open_connections() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(idle_.size()) + open_leased_;
}

absl::Status Pool::UnavailableError(absl::string_view detail) const {
  std::string where = endpoint_;
  if (!database_.empty())
    absl::StrAppend(&where, " (database \"", database_, "\")");
  return absl::UnavailableError(
      absl::StrCat("cannot reach PostgreSQL at ", where, ": ", detail));
}

absl::StatusOr<std::unique_ptr<pqxx::connection>> Pool::Connect() {
  try {
    auto connection = std::make_unique<pqxx::connection>(conninfo_);
    if (!options_.search_path.empty()) {
      pqxx::nontransaction tx(*connection);
      // search_path is a list of identifiers and cannot be a parameter;
      // set_config() takes it as a value instead, so nothing is spliced.
      tx.exec_params("SELECT pg_catalog.set_config('search_path', $1, false)",
                     options_.search_path);
    }
    return connection;
  } catch (const pqxx::sql_error& e) {
    if (IsConnectionSqlState(e.sqlstate())) {
      return UnavailableError(StatusFromException(e).message());
    }
    return StatusFromException(e, "setting up a new connection");
  } catch (const std::exception& e) {
    return UnavailableError(StatusFromException(e).message());
  }
}

absl::StatusOr<std::unique_ptr<pqxx::connection>> Pool::Acquire(
    absl::Time call_deadline) {
  {
    absl::MutexLock lock(&mu_);
    auto free_slot = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return leased_ < options_.size;
    };
    const absl::Time acquire_deadline =
        options_.clock->Now() + options_.acquire_timeout;
    const absl::Time deadline = std::min(acquire_deadline, call_deadline);
    if (!options_.clock->AwaitWithDeadline(&mu_, absl::Condition(&free_slot),
                                           deadline)) {
      if (call_deadline < acquire_deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("the call's deadline passed while all ", options_.size,
                         " connections to ", endpoint_, " were busy"));
      }
      return absl::ResourceExhaustedError(absl::StrCat(
          "all ", options_.size, " connections to ", endpoint_,
          " stayed busy for ", absl::FormatDuration(options_.acquire_timeout)));
    }
    ++leased_;
    if (!idle_.empty()) {
      std::unique_ptr<pqxx::connection> connection = std::move(idle_.back());
      idle_.pop_back();
      ++open_leased_;
      return connection;
    }
  }
  absl::StatusOr<std::unique_ptr<pqxx::connection>> connection = Connect();
  absl::MutexLock lock(&mu_);
  if (!connection.ok()) {
    --leased_;
    return connection.status();
  }
  ++open_leased_;
  return connection;
}

void Pool::Release(std::unique_ptr<pqxx::connection> connection) {
  absl::MutexLock lock(&mu_);
  --leased_;
  --open_leased_;
  if (connection != nullptr && connection->is_open()) {
    idle_.push_back(std::move(connection));
  }
}

absl::Duration Pool::Backoff(int attempt) const {
  absl::Duration backoff = options_.initial_backoff;
  for (int i = 1; i < attempt && backoff < options_.max_backoff; ++i) {
    backoff *= 2;
  }
  return std::min(backoff, options_.max_backoff);
}

absl::Status Pool::Transact(const std::function<absl::Status(pqxx::work&)>& fn,
                            const TransactOptions& options) {
  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_attempts must be at least 1; was ", options.max_attempts));
  }
  Clock* const clock = options_.clock;
  const std::shared_ptr<CallContext> call = CallContext::Current();
  const absl::Time deadline =
      call == nullptr ? options.deadline
                      : std::min(options.deadline, call->deadline());
  const absl::Time start = clock->Now();
  const absl::Time reconnect_deadline =
      std::min(deadline, start + options_.reconnect_timeout);
  // Sleeps for `backoff`, never past the deadline.
  auto sleep = [&](absl::Duration backoff) {
    clock->SleepUntil(std::min(clock->Now() + backoff, deadline));
  };
  auto expired = [&]() -> absl::Status {
    if (call != nullptr && call->cancelled()) {
      return absl::CancelledError(
          "the caller cancelled the call; the transaction did not run");
    }
    if (clock->Now() >= deadline) {
      return absl::DeadlineExceededError(
          "the call's deadline passed before the transaction could run");
    }
    return absl::OkStatus();
  };
  int attempts = 0;    // Attempts that ended in serialization failures.
  int reconnects = 0;  // Failed connection attempts.
  int broken = 0;      // Attempts whose connection broke.
  absl::Status last_error;
  // Whether this call holds the half-open trial of an outage; a return
  // without a verdict ends it all the same.
  bool trial = false;
  absl::Cleanup end_trial = [&] {
    if (trial) EndTrial(/*reached=*/false, absl::OkStatus());
  };
  // The database could not be reached: a trial's caller hears the outage
  // (with its new cause), as the calls that failed fast do.
  auto unreachable = [&](const absl::Status& status) -> absl::Status {
    if (!trial) return status;
    trial = false;
    return EndTrial(/*reached=*/false, status);
  };
  while (true) {
    if (!trial) {
      if (absl::Status outage = AdmitDuringOutage(&trial); !outage.ok()) {
        return outage;
      }
    }
    if (absl::Status stop = expired(); !stop.ok()) {
      // Report why earlier attempts failed when that is the real cause.
      if (absl::IsUnavailable(last_error)) return unreachable(last_error);
      return stop;
    }
    const absl::Time acquire_start = clock->Now();
    absl::StatusOr<std::unique_ptr<pqxx::connection>> connection =
        Acquire(deadline);
    if (!connection.ok()) {
      if (!absl::IsUnavailable(connection.status())) {
        return connection.status();
      }
      MarkUnreachable(connection.status(), clock->Now() - acquire_start);
      ++reconnects;
      if (clock->Now() + Backoff(reconnects) > reconnect_deadline) {
        return unreachable(connection.status());
      }
      last_error = connection.status();
      sleep(Backoff(reconnects));
      continue;
    }
    // The attempt's bounds: the server's statement_timeout ends 2 x margin
    // before the deadline (or the transaction_timeout), the watchdog gives
    // up on a silent server at 1 x margin before it, so the caller hears
    // UNAVAILABLE before its own deadline.
    const absl::Time attempt_start = clock->Now();
    absl::Time watch_at = absl::InfiniteFuture();
    absl::Time statement_end = absl::InfiniteFuture();
    bool bound_by_deadline = false;
    if (deadline != absl::InfiniteFuture()) {
      const absl::Duration margin =
          std::min(options_.deadline_margin, (deadline - attempt_start) / 10);
      watch_at = deadline - margin;
      statement_end = deadline - 2 * margin;
      bound_by_deadline = true;
    }
    if (options_.transaction_timeout > absl::ZeroDuration() &&
        attempt_start + options_.transaction_timeout < watch_at) {
      const absl::Duration margin =
          std::min(options_.deadline_margin, options_.transaction_timeout / 10);
      watch_at = attempt_start + options_.transaction_timeout;
      statement_end = watch_at - margin;
      bound_by_deadline = false;
    }
    const absl::Duration statement_timeout =
        statement_end == absl::InfiniteFuture() ? absl::ZeroDuration()
                                                : statement_end - attempt_start;
    if (statement_end != absl::InfiniteFuture() &&
        statement_timeout <= absl::ZeroDuration()) {
      Release(*std::move(connection));
      return absl::DeadlineExceededError(
          "the call's deadline passed before the transaction could run");
    }
    Watched watched{
        .connection = connection->get(), .call = call, .watch_at = watch_at};
    Watch(&watched);
    // PostgreSQL takes at most INT_MAX ms (about 24 days); a deadline
    // further away than a day bounds nothing worth a round trip.
    Attempt attempt = RunOnce(
        **connection, fn, options,
        statement_timeout > kLongestStatementTimeout ? absl::ZeroDuration()
                                                     : statement_timeout,
        bound_by_deadline
            ? "the call's deadline passed"
            : absl::StrCat(
                  "the transaction ran longer than transaction_timeout (",
                  absl::FormatDuration(options_.transaction_timeout), ")"));
    const bool unanswered = Unwatch(&watched);
    if (unanswered) {
      // The socket is shut: discard the connection and give up at once
      // (unless the answer made it through first).
      connection->reset();
      Release(*std::move(connection));
      if (attempt.status.ok() || absl::IsDeadlineExceeded(attempt.status)) {
        return attempt.status;
      }
      if (watched.cancel_requested) {
        return absl::CancelledError(
            "the caller cancelled the call; the transaction did not commit");
      }
      absl::Status status = UnansweredError(watch_at - attempt_start);
      if (absl::StrContains(attempt.status.message(), "may or may not")) {
        status = absl::UnavailableError(
            absl::StrCat(status.message(),
                         " while committing; the transaction may or may not "
                         "have been applied"));
      }
      ReportUnanswered(status);
      return unreachable(status);
    }
    if (watched.cancel_requested) {
      // The cancel request may still be on its way: this connection must
      // not serve anyone else.
      connection->reset();
      // The statement was cancelled because the client cancelled: say so
      // (the transaction rolled back; nothing is retried).
      if (!attempt.status.ok()) {
        attempt = {Outcome::kDone,
                   absl::CancelledError("the caller cancelled the call; the "
                                        "transaction was rolled back")};
      }
    }
    const bool healthy = *connection != nullptr && (*connection)->is_open() &&
                         attempt.outcome != Outcome::kReconnect;
    if (!healthy) connection->reset();
    Release(*std::move(connection));
    // The database answered (a commit, an error of its own, a conflict):
    // a trial ends the outage.
    if (trial && attempt.outcome != Outcome::kReconnect &&
        !absl::IsUnavailable(attempt.status)) {
      trial = false;
      EndTrial(/*reached=*/true, absl::OkStatus());
    }
    switch (attempt.outcome) {
      case Outcome::kDone:
        if (absl::IsUnavailable(attempt.status) &&
            !absl::StrContains(attempt.status.message(), endpoint_)) {
          return UnavailableError(attempt.status.message());
        }
        return attempt.status;
      case Outcome::kRetry:
        ++attempts;
        if (attempts >= options.max_attempts) {
          return absl::AbortedError(
              absl::StrCat("transaction gave up after ", attempts,
                           " attempts: ", attempt.status.message()));
        }
        sleep(Backoff(attempts));
        continue;
      case Outcome::kReconnect: {
        // The idle connections most likely broke the same way (a server
        // restart ends them all): drop them rather than trip over each in
        // turn. The first reconnect is immediate, later ones back off and
        // only within reconnect_timeout.
        std::vector<std::unique_ptr<pqxx::connection>> stale;
        {
          absl::MutexLock lock(&mu_);
          stale.swap(idle_);
        }
        stale.clear();
        ++broken;
        last_error = UnavailableError(attempt.status.message());
        if (broken > 1) {
          if (clock->Now() + Backoff(broken - 1) > reconnect_deadline) {
            return unreachable(last_error);
          }
          sleep(Backoff(broken - 1));
        }
        continue;
      }
    }
  }
}

void Pool::Watch(Watched* watched) {
  absl::MutexLock lock(&watch_mu_);
  watched_.push_back(watched);
  ++watch_generation_;
}

bool Pool::Unwatch(Watched* watched) {
  absl::MutexLock lock(&watch_mu_);
  watched_.erase(std::find(watched_.begin(), watched_.end(), watched));
  ++watch_generation_;
  return watched->unanswered;
}

absl::Status Pool::UnansweredError(absl::Duration waited) const {
  std::string where = endpoint_;
  if (!database_.empty()) {
    absl::StrAppend(&where, " (database \"", database_, "\")");
  }
  // Rounded for people: "2.9s", "450ms".
  const absl::Duration unit = waited >= absl::Seconds(1)
                                  ? absl::Milliseconds(100)
                                  : absl::Milliseconds(10);
  return absl::UnavailableError(
      absl::StrCat("PostgreSQL at ", where, " did not answer within ",
                   absl::FormatDuration(absl::Floor(waited + unit / 2, unit))));
}

void Pool::ReportUnanswered(const absl::Status& status) {
  MarkUnreachable(status, absl::InfiniteDuration());
  NotifyListener(status);
}

void Pool::NotifyListener(const absl::Status& status) {
  absl::MutexLock lock(&listener_mu_);
  if (listener_) listener_(status);
}

void Pool::SetReachabilityListener(
    std::function<void(const absl::Status&)> listener) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
}

void Pool::WatchLoop() {
  // A cancelled call's statement gets this long after the cancel request
  // (and one check interval) before its connection is shut down.
  const absl::Duration cancel_grace =
      options_.cancel_check_interval + absl::Seconds(1);
  Clock* const clock = options_.clock;
  absl::MutexLock lock(&watch_mu_);
  while (!(stopping_ && watched_.empty())) {
    const absl::Time now = clock->Now();
    absl::Time next = absl::InfiniteFuture();
    for (Watched* watched : watched_) {
      if (watched->unanswered) continue;
      if (watched->call != nullptr && !watched->cancel_requested &&
          watched->call->cancelled()) {
        watched->cancel_requested = true;
        cancel_queue_.push_back(watched->connection->backendpid());
        watched->watch_at = std::min(watched->watch_at, now + cancel_grace);
      }
      if (now >= watched->watch_at) {
        // The owner cannot close the connection meanwhile: Unwatch() needs
        // watch_mu_. The blocked libpq call sees end-of-file at once.
        watched->unanswered = true;
        ::shutdown(watched->connection->sock(), SHUT_RDWR);
        continue;
      }
      next = std::min(next, watched->watch_at);
      if (watched->call != nullptr && !watched->cancel_requested) {
        next = std::min(next, now + options_.cancel_check_interval);
      }
    }
    const int64_t seen = watch_generation_;
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_) {
      return watch_generation_ != seen;
    };
    if (next == absl::InfiniteFuture()) {
      // Nothing to time: sleep until something changes.
      watch_mu_.Await(absl::Condition(&changed));
    } else {
      // Times come from the injected clock. Another clock than the real one
      // (a test's FakeClock) is read every kFakeClockPoll of real time
      // instead of being waited on, so that the watchdog never counts as a
      // waiter a test synchronizes with.
      absl::Duration wait = next - now;
      if (clock != Clock::Real()) wait = std::min(wait, kFakeClockPoll);
      watch_mu_.AwaitWithTimeout(absl::Condition(&changed), wait);
    }
  }
}

void Pool::CancelLoop() {
  absl::MutexLock lock(&watch_mu_);
  while (true) {
    auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_) {
      return stopping_ || !cancel_queue_.empty();
    };
    watch_mu_.Await(absl::Condition(&wake));
    if (stopping_) return;
    const int backend_pid = cancel_queue_.front();
    cancel_queue_.erase(cancel_queue_.begin());
    watch_mu_.Unlock();
    SendCancel(backend_pid);
    watch_mu_.Lock();
  }
}

void Pool::SendCancel(int backend_pid) {
  if (cancel_connection_ == nullptr) {
    absl::StatusOr<std::unique_ptr<pqxx::connection>> connection = Connect();
    // Unreachable: the transaction's own watchdog bound ends it.
    if (!connection.ok()) return;
    cancel_connection_ = *std::move(connection);
  }
  Watched watched{.connection = cancel_connection_.get(),
                  .watch_at = options_.clock->Now() + absl::Seconds(1)};
  Watch(&watched);
  bool ok = false;
  try {
    // The same role may cancel its own backends. The statement then fails
    // on the transaction's thread with SQLSTATE 57014.
    pqxx::nontransaction tx(*cancel_connection_);
    tx.exec_params("SELECT pg_catalog.pg_cancel_backend($1)", backend_pid);
    ok = true;
  } catch (const std::exception&) {
    // The transaction finds out itself (or its watchdog bound ends it).
  }
  if (Unwatch(&watched) || !ok) cancel_connection_.reset();
}

void Pool::MarkUnreachable(const absl::Status& cause, absl::Duration took) {
  absl::MutexLock lock(&outage_mu_);
  if (!probed_) return;
  slow_failure_ = took >= options_.outage_trial_interval;
  if (down_since_ != absl::InfiniteFuture()) return;
  down_since_ = options_.clock->Now();
  down_cause_ = std::string(cause.message());
  // The first trial waits a trial interval: the database just failed.
  next_trial_ = down_since_ + options_.outage_trial_interval;
}

absl::Status Pool::ReportProbe(const absl::Status& result) {
  absl::MutexLock lock(&outage_mu_);
  probed_ = true;
  if (result.ok()) {
    down_since_ = absl::InfiniteFuture();
    down_cause_.clear();
    return result;
  }
  // A trial reached the database after this check began: the failure is
  // older news.
  if (down_since_ == absl::InfiniteFuture() &&
      recoveries_ != recoveries_at_ping_) {
    return absl::OkStatus();
  }
  const absl::Time now = options_.clock->Now();
  slow_failure_ = now - ping_started_ >= options_.outage_trial_interval;
  if (down_since_ != absl::InfiniteFuture()) return result;
  down_since_ = now;
  down_cause_ = std::string(result.message());
  next_trial_ = down_since_ + options_.outage_trial_interval;
  return result;
}

absl::Status Pool::AdmitDuringOutage(bool* trial) {
  absl::MutexLock lock(&outage_mu_);
  if (down_since_ == absl::InfiniteFuture()) return absl::OkStatus();
  const absl::Time now = options_.clock->Now();
  if (!trial_running_ && !slow_failure_ && now >= next_trial_) {
    trial_running_ = true;
    trial_started_ = now;
    *trial = true;
    return absl::OkStatus();
  }
  return OutageLocked();
}

absl::Status Pool::EndTrial(bool reached, const absl::Status& failure) {
  absl::Status result = failure;
  bool recovered = false;
  {
    absl::MutexLock lock(&outage_mu_);
    trial_running_ = false;
    const absl::Time now = options_.clock->Now();
    next_trial_ = now + options_.outage_trial_interval;
    if (!reached && !failure.ok()) {
      slow_failure_ = now - trial_started_ >= options_.outage_trial_interval;
    }
    if (down_since_ != absl::InfiniteFuture()) {
      if (reached) {
        down_since_ = absl::InfiniteFuture();
        down_cause_.clear();
        ++recoveries_;
        recovered = true;
      } else if (!failure.ok()) {
        down_cause_ = std::string(failure.message());
        result = OutageLocked();
      }
    }
  }
  if (recovered) NotifyListener(absl::OkStatus());
  return result;
}

absl::Status Pool::Outage() {
  absl::MutexLock lock(&outage_mu_);
  return OutageLocked();
}

absl::Status Pool::OutageLocked() {
  if (down_since_ == absl::InfiniteFuture()) return absl::OkStatus();
  std::string where = endpoint_;
  if (!database_.empty()) {
    absl::StrAppend(&where, " (database \"", database_, "\")");
  }
  // The cause usually names the endpoint already; say it once.
  absl::string_view cause = down_cause_;
  absl::ConsumePrefix(&cause,
                      absl::StrCat("cannot reach PostgreSQL at ", where, ": "));
  absl::ConsumePrefix(&cause, absl::StrCat("PostgreSQL at ", where, " "));
  return absl::UnavailableError(absl::StrCat(
      "PostgreSQL at ", where, " unreachable since ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", down_since_, absl::UTCTimeZone()),
      ": ", cause));
}

absl::Status Pool::Ping(absl::Duration timeout) {
  absl::MutexLock lock(&ping_mu_);
  {
    absl::MutexLock outage_lock(&outage_mu_);
    recoveries_at_ping_ = recoveries_;
    ping_started_ = options_.clock->Now();
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (ping_connection_ == nullptr) {
      absl::StatusOr<std::unique_ptr<pqxx::connection>> connection = Connect();
      if (!connection.ok()) return connection.status();
      ping_connection_ = *std::move(connection);
    }
    Watched watched{.connection = ping_connection_.get(),
                    .watch_at = options_.clock->Now() + timeout};
    Watch(&watched);
    absl::Status status;
    try {
      pqxx::nontransaction tx(*ping_connection_);
      tx.exec0(absl::StrCat(
          "SET statement_timeout = ",
          std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout))));
      tx.exec1("SELECT 1");
    } catch (const std::exception& e) {
      status = StatusFromException(e);
      if (status.ok()) status = absl::UnknownError(e.what());
    }
    if (Unwatch(&watched)) {
      // A frozen server: no second attempt, it would only wait again.
      ping_connection_.reset();
      return UnansweredError(timeout);
    }
    if (status.ok()) return status;
    const bool broken = !ping_connection_->is_open();
    ping_connection_.reset();
    // A connection that broke since the last ping (a server restart) gets
    // one fresh attempt; any other failure is the answer.
    if (!broken) return UnavailableError(status.message());
  }
  return UnavailableError("the connection broke twice in a row");
}

absl::Status Pool::WithConnection(
    const std::function<absl::Status(pqxx::connection&)>& fn) {
  if (absl::Status outage = Outage(); !outage.ok()) return outage;
  absl::StatusOr<std::unique_ptr<pqxx::connection>> connection =
      Acquire(CallContext::CurrentDeadline());
  if (!connection.ok()) return connection.status();
  const absl::Time deadline = CallContext::CurrentDeadline();
  const absl::Time start = options_.clock->Now();
  Watched watched{.connection = connection->get()};
  if (deadline != absl::InfiniteFuture()) {
    watched.watch_at =
        deadline - std::min(options_.deadline_margin, (deadline - start) / 10);
  }
  Watch(&watched);
  absl::Status status;
  try {
    status = fn(**connection);
  } catch (const std::exception& e) {
    status = StatusFromException(e);
  }
  const bool unanswered = Unwatch(&watched);
  if (unanswered || !(*connection)->is_open()) connection->reset();
  Release(*std::move(connection));
  if (unanswered && !status.ok()) {
    status = UnansweredError(watched.watch_at - start);
    ReportUnanswered(status);
    return status;
  }
  if (absl::IsUnavailable(status) &&
      !absl::StrContains(status.message(), endpoint_)) {
    return UnavailableError(status.message());
  }
  return status;
}

}  // namespace hangar::db
