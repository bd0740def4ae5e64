// A fixed-size pool of PostgreSQL connections that runs functions inside
// transactions, retrying what is safe to retry.
//
// Every service talks to PostgreSQL through one Pool:
//
//   ASSIGN_OR_RETURN(std::unique_ptr<db::Pool> pool,
//                    db::Pool::Create({.conninfo = flags.db, .size = 8}));
//   RETURN_IF_ERROR(pool->Transact([&](pqxx::work& tx) -> absl::Status {
//     tx.exec_params("INSERT INTO catalog.models (name) VALUES ($1)", name);
//     return absl::OkStatus();
//   }));
//   ASSIGN_OR_RETURN(int64_t count, pool->Transact<int64_t>(
//       [&](pqxx::work& tx) -> absl::StatusOr<int64_t> {
//         return tx.exec1("SELECT count(*) FROM catalog.models")[0]
//             .as<int64_t>();
//       }));
//
// Guarantees:
//  * Create() opens one connection before it returns, so a service started
//    against an unreachable database fails at once (or after
//    `startup_timeout`) with one UNAVAILABLE status naming host:port and
//    database (never the password). Other connections open lazily, up to
//    `size`.
//  * Transact() commits when the function returns OK and rolls back when it
//    returns an error or throws. Exceptions never escape: libpqxx errors
//    become canonical codes (common/db/errors.h), e.g. a unique violation is
//    ALREADY_EXISTS.
//  * Serialization failures and deadlocks (SQLSTATE 40001, 40P01) run the
//    whole function again, up to `max_attempts` times in all, with
//    exponential backoff read from the injected clock; after the last attempt
//    the result is ABORTED.
//  * Every Transact() has a deadline: the sooner of TransactOptions::deadline
//    and the deadline of the RPC the calling thread serves
//    (common/server/call_context.h, installed by every hangar::Server). It
//    bounds the wait for a free connection, reconnects and backoff, and is
//    sent to PostgreSQL as the transaction's statement_timeout (ending
//    2 x margin before the deadline, see below), so a call never outlives
//    its caller's patience: past it the result is DEADLINE_EXCEEDED. A call
//    whose client cancelled stops with CANCELLED: before its next attempt,
//    and while a statement runs the pool asks PostgreSQL to cancel it
//    (pg_cancel_backend from a connection of its own) within
//    `cancel_check_interval`; the transaction rolls back.
//  * A database that does not answer at all (a frozen host, a network
//    partition: the TCP connection stays open, statement_timeout and cancel
//    requests never arrive) cannot hold a call past its deadline either.
//    One watchdog thread per pool, on the injected clock (another clock
//    than the real one is read every 10 ms, never waited on), watches every
//    running attempt; when one runs until `margin` before the deadline
//    (margin = min(deadline_margin, a tenth of the time the attempt had),
//    so 100 ms for a 3 s call, 30 ms for a 300 ms one), or longer than
//    `transaction_timeout`, or a cancelled call's statement still runs
//    `cancel_check_interval` + 1 s after the cancel request, it shuts the
//    connection's socket down (shutdown(2)), so the blocked libpq call
//    returns at once. The connection is discarded, nothing is retried, the
//    transaction never commits (unless COMMIT was already on its way: then
//    the message says the outcome is unknown), and the caller gets
//    UNAVAILABLE "PostgreSQL at 127.0.0.1:5432 (database "hangar") did not
//    answer within 2.9s". The watching DatabaseProbe is told at once, so
//    health turns NOT_SERVING without waiting for its next check, and
//    fail-fast (below) starts.
//  * A broken connection (the server restarted, the network dropped) is
//    discarded and one new connection is opened at once; if that fails the
//    pool keeps trying (with backoff) only until `reconnect_timeout` has
//    passed since Transact() began (zero by default: no waiting), then
//    returns UNAVAILABLE naming host:port. Each connection attempt takes at
//    most `connect_timeout`. A connection lost during COMMIT is not retried
//    (the outcome is unknown): UNAVAILABLE.
//  * Failing fast during an outage: once a DatabaseProbe (probe.h) watches
//    the pool, a Transact() that starts while the probe (or a failed
//    connection attempt) has found the database unreachable returns at once
//    with UNAVAILABLE "PostgreSQL at 127.0.0.1:5432 (database "hangar")
//    unreachable since <time>: <cause>", without touching the network, until
//    the probe sees the database answer again — or a trial does. As a
//    circuit breaker's half-open state, at most one Transact() at a time,
//    and none sooner than `outage_trial_interval` (200 ms) after the outage
//    began or the last trial ended, is let through to run for real
//    (bounded as every attempt is). When it reaches the database the
//    outage ends at once: the call succeeds, later calls run, and the probe
//    is told (health SERVING) without waiting for its next check. When it
//    cannot connect, the outage goes on with the new cause, and the caller
//    gets the same "unreachable since" answer as the calls that failed
//    fast. So the first calls after PostgreSQL returns wait at most a trial
//    interval, not a probe interval. Trials run only while the last
//    failure showed within a trial interval (a refused connection: the
//    server stopped or restarts); a database that does not answer (a
//    frozen host, lost packets) would hold a trial's caller for
//    connect_timeout or up to its deadline, so then only the probe, off
//    the call path, ends the outage.
//  * Nothing is partially written: every failure rolls the transaction back.
//  So the function may run more than once: it must not have side effects
//  outside the transaction that are unsafe to repeat.
//  * Queries must be parameterized (exec_params) — never build SQL by
//    concatenating values.
//
// Thread-safe; Transact() may be called from any number of threads and blocks
// while all `size` connections are in use (up to `acquire_timeout`). Do not
// call Transact() from inside a transaction's function: with every
// connection taken it would wait for itself. The pool must outlive every
// call into it.
#ifndef HANGAR_COMMON_DB_POOL_H_
#define HANGAR_COMMON_DB_POOL_H_

#include <functional>
#include <memory>
#include <optional>
#include <pqxx/pqxx>  // Callers use the whole pqxx API in their functions.
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/server/call_context.h"
#include "common/time/clock.h"

namespace hangar::db {

struct PoolOptions {
  // libpq connection string: "host=127.0.0.1 port=5432 dbname=hangar
  // user=hangar" or "postgresql://hangar@127.0.0.1:5432/hangar". Required.
  std::string conninfo;

  // Most connections open at once. Must be in [1, 64].
  int size = 4;

  // Longest a single connection attempt may take (libpq's connect_timeout,
  // which counts whole seconds, at least 2). Must be positive. Services
  // expose it as --db_connect_timeout.
  absl::Duration connect_timeout = absl::Seconds(2);

  // TCP keepalive idle time on every connection (libpq keepalives_idle;
  // probes then every third of it, three times), so a peer that vanished
  // without closing the connection is noticed. Zero turns keepalives off.
  absl::Duration keepalive_idle = absl::Seconds(15);

  // How long Create() keeps retrying while the database refuses connections
  // (a container starting beside PostgreSQL). Zero: one attempt, so an
  // unreachable database fails start-up at once.
  absl::Duration startup_timeout = absl::ZeroDuration();

  // How long Transact() keeps retrying failed connection attempts before it
  // gives up with UNAVAILABLE (always within the call's deadline). Zero: a
  // broken connection is replaced once, and a failed attempt is final, so a
  // call fails within connect_timeout while the database is down; clients
  // retry, and health (DatabaseProbe) tells them when to.
  absl::Duration reconnect_timeout = absl::ZeroDuration();

  // How long Transact() waits for a free connection when all are in use
  // before it returns RESOURCE_EXHAUSTED (or DEADLINE_EXCEEDED when the
  // call's deadline comes first). Must be positive.
  absl::Duration acquire_timeout = absl::Seconds(30);

  // First backoff between attempts (after a serialization failure or a
  // failed reconnect); doubles up to `max_backoff`.
  absl::Duration initial_backoff = absl::Milliseconds(10);
  absl::Duration max_backoff = absl::Seconds(1);

  // When not empty, every connection runs SET search_path TO this list
  // (e.g. "catalog, public") right after connecting.
  std::string search_path;

  // How often the watchdog looks for transactions whose call was cancelled
  // by its client (CallContext) and asks PostgreSQL to cancel their running
  // statement, so abandoned work stops at once rather than at its deadline.
  // Must be positive. The watchdog sleeps while no transaction runs.
  absl::Duration cancel_check_interval = absl::Milliseconds(100);

  // How long before a transaction's deadline the watchdog gives up on a
  // database that does not answer (see above), at most: a tenth of the time
  // the attempt had when that is less. The caller's UNAVAILABLE then
  // reaches it before its own deadline. Must be in (0, 10s].
  absl::Duration deadline_margin = absl::Milliseconds(100);

  // Longest one attempt at a transaction may run, whatever its deadline
  // (background work often has none): sent to PostgreSQL as its
  // statement_timeout (DEADLINE_EXCEEDED when the server ends it) and
  // enforced by the watchdog when the server does not answer (UNAVAILABLE).
  // Zero: no bound beyond the deadline. Must not be negative.
  absl::Duration transaction_timeout = absl::Seconds(60);

  // During an outage, the least time between the start of the outage (or
  // the end of a trial) and the next trial transaction (see above). Must be
  // positive; InfiniteDuration: no trials, only the probe ends an outage.
  absl::Duration outage_trial_interval = absl::Milliseconds(200);

  // --- Injected dependencies ---
  // Reads time for deadlines and sleeps for backoff. Not owned; never null.
  Clock* clock = Clock::Real();
};

enum class Isolation { kReadCommitted, kRepeatableRead, kSerializable };

struct TransactOptions {
  // The transaction's isolation level.
  Isolation isolation = Isolation::kReadCommitted;

  // Attempts in all when the transaction fails with a serialization failure
  // or deadlock. Must be at least 1.
  int max_attempts = 5;

  // Runs the transaction READ ONLY.
  bool read_only = false;

  // Latest time the transaction may finish; the deadline of the RPC being
  // served on this thread (CallContext) applies too, whichever is sooner.
  // Both are read against PoolOptions::clock (the real clock in a server;
  // a test that injects a FakeClock and serves real calls compares real
  // deadlines with fake time). Sent to PostgreSQL as statement_timeout when
  // less than a day away.
  absl::Time deadline = absl::InfiniteFuture();
};

class Pool {
 public:
  static absl::StatusOr<std::unique_ptr<Pool>> Create(
      const PoolOptions& options);

  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool();

  // Runs `fn` in a transaction as described above.
  absl::Status Transact(const std::function<absl::Status(pqxx::work&)>& fn,
                        const TransactOptions& options = {});

  // Like Transact(), returning the value `fn` produced in the attempt that
  // committed:  pool->Transact<Model>([&](pqxx::work& tx) ->
  // absl::StatusOr<Model> { ... });
  template <typename T>
  absl::StatusOr<T> Transact(
      const std::function<absl::StatusOr<T>(pqxx::work&)>& fn,
      const TransactOptions& options = {}) {
    std::optional<T> result;
    absl::Status status = Transact(
        [&](pqxx::work& tx) -> absl::Status {
          result.reset();
          absl::StatusOr<T> value = fn(tx);
          if (!value.ok()) return value.status();
          result.emplace(*std::move(value));
          return absl::OkStatus();
        },
        options);
    if (!status.ok()) return status;
    return *std::move(result);
  }

  // Lends one connection for the duration of `fn`, outside any transaction
  // the pool manages: for session-level state such as advisory locks (the
  // migration runner) or LISTEN. No retries; exceptions become statuses and
  // a connection that broke is discarded.
  absl::Status WithConnection(
      const std::function<absl::Status(pqxx::connection&)>& fn);

  // Runs "SELECT 1" on a connection of its own (not one of the `size`
  // slots, so a busy pool does not delay it), reconnecting when needed;
  // bounded by connect_timeout to connect and by `timeout` for the answer
  // (the watchdog shuts the connection down when a frozen server does not
  // answer: UNAVAILABLE "... did not answer within 2s"). Used by
  // DatabaseProbe.
  absl::Status Ping(absl::Duration timeout = absl::Seconds(2));

  // Called on the transaction's thread with what a transaction learned
  // about the database: the UNAVAILABLE status the caller got each time the
  // watchdog gave up on a database that did not answer, and OK each time a
  // trial ended an outage. DatabaseProbe installs one to turn health
  // NOT_SERVING, and SERVING again, at once. Null removes it; once this
  // returns, the previous listener is not running and is never called
  // again.
  void SetReachabilityListener(
      std::function<void(const absl::Status&)> listener);

  // Records the result of a probe's Ping() (see DatabaseProbe). The first
  // report turns fail-fast on: from then on, Transact() while the last
  // report (or the last connection attempt) failed returns UNAVAILABLE at
  // once, trials aside. Returns the state the pool settled on: `result`,
  // or OK when a trial reached the database after that Ping() began (the
  // newer news).
  absl::Status ReportProbe(const absl::Status& result);
  // OK while the database is believed reachable, else the UNAVAILABLE status
  // Transact() fails fast with.
  absl::Status Outage();

  // "host:port" of the database, for messages.
  const std::string& endpoint() const { return endpoint_; }
  // The database name from the conninfo (may be empty).
  const std::string& database() const { return database_; }
  int size() const { return options_.size; }

  // Connections currently open (idle or in use). For tests and metrics.
  int open_connections();

 private:
  explicit Pool(const PoolOptions& options);

  // Takes a free slot (waiting up to acquire_timeout) and returns an open
  // connection for it, reusing an idle one or connecting.
  absl::StatusOr<std::unique_ptr<pqxx::connection>> Acquire(
      absl::Time deadline);
  // Returns a slot; `connection` goes back to the idle list unless null.
  void Release(std::unique_ptr<pqxx::connection> connection);
  absl::StatusOr<std::unique_ptr<pqxx::connection>> Connect();
  absl::Status UnavailableError(absl::string_view detail) const;
  absl::Duration Backoff(int attempt) const;
  // Marks the database unreachable (when fail-fast is on) after `cause`,
  // which took `took` to show (see slow_failure_).
  void MarkUnreachable(const absl::Status& cause, absl::Duration took);
  absl::Status OutageLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(outage_mu_);
  // OK when a transaction may go on: no outage, or it now holds the trial
  // (*trial = true). Else the fail-fast status.
  absl::Status AdmitDuringOutage(bool* trial);
  // Ends the trial a transaction held. `reached`: the outage ends and the
  // listener hears OK. Else a failure (not OK) refreshes the outage's cause
  // and comes back as the outage's status; OK: no verdict.
  absl::Status EndTrial(bool reached, const absl::Status& failure);
  // Tells the reachability listener, if any.
  void NotifyListener(const absl::Status& status);

  const PoolOptions options_;
  const std::string conninfo_;  // options_.conninfo plus connect_timeout.
  const std::string endpoint_;
  const std::string database_;

  absl::Mutex mu_;  // Protects the idle list and the slot accounting.
  std::vector<std::unique_ptr<pqxx::connection>> idle_ ABSL_GUARDED_BY(mu_);
  // Slots handed out by Acquire() and not yet Release()d.
  int leased_ ABSL_GUARDED_BY(mu_) = 0;
  // Connections open in leased slots.
  int open_leased_ ABSL_GUARDED_BY(mu_) = 0;

  // One running attempt (or ping, or cancel request) the watchdog watches.
  struct Watched {
    pqxx::connection* connection = nullptr;
    // The call it serves (may be null), for client cancellations.
    std::shared_ptr<CallContext> call;
    // When the watchdog shuts the connection down; InfiniteFuture: never.
    absl::Time watch_at = absl::InfiniteFuture();
    bool cancel_requested = false;  // A cancel request was queued.
    bool unanswered = false;        // The watchdog shut it down.
  };
  // Registers `watched` (which must stay alive until Unwatch()).
  void Watch(Watched* watched);
  // Unregisters it; returns whether the watchdog shut its connection down.
  bool Unwatch(Watched* watched);
  // The UNAVAILABLE status of a database that did not answer in `waited`.
  absl::Status UnansweredError(absl::Duration waited) const;
  // Marks the database unreachable and tells the listener.
  void ReportUnanswered(const absl::Status& status);
  // Shuts down connections that ran past their time; queues cancel
  // requests for cancelled calls.
  void WatchLoop();
  // Sends the queued cancel requests (pg_cancel_backend) from a connection
  // of its own, itself watched, so a frozen server cannot hold it.
  void CancelLoop();
  void SendCancel(int backend_pid);

  absl::Mutex watch_mu_;  // Protects the watchdog state below.
  std::vector<Watched*> watched_ ABSL_GUARDED_BY(watch_mu_);
  // Bumped on every Watch()/Unwatch(), to wake the watchdog.
  int64_t watch_generation_ ABSL_GUARDED_BY(watch_mu_) = 0;
  // Backend pids to cancel.
  std::vector<int> cancel_queue_ ABSL_GUARDED_BY(watch_mu_);
  bool stopping_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::thread watchdog_;
  std::thread canceller_;
  // Used only by the canceller thread.
  std::unique_ptr<pqxx::connection> cancel_connection_;

  absl::Mutex listener_mu_;  // Held while the listener runs.
  std::function<void(const absl::Status&)> listener_
      ABSL_GUARDED_BY(listener_mu_);

  absl::Mutex ping_mu_;  // Serializes Ping(); protects ping_connection_.
  std::unique_ptr<pqxx::connection> ping_connection_ ABSL_GUARDED_BY(ping_mu_);

  absl::Mutex outage_mu_;  // Protects the outage state below.
  // Whether a probe reports (fail-fast on).
  bool probed_ ABSL_GUARDED_BY(outage_mu_) = false;
  // Since when the database is unreachable; InfiniteFuture while reachable.
  absl::Time down_since_ ABSL_GUARDED_BY(outage_mu_) = absl::InfiniteFuture();
  std::string down_cause_ ABSL_GUARDED_BY(outage_mu_);
  // A transaction holds the trial (since trial_started_); the next may
  // start at next_trial_.
  bool trial_running_ ABSL_GUARDED_BY(outage_mu_) = false;
  absl::Time trial_started_ ABSL_GUARDED_BY(outage_mu_);
  absl::Time next_trial_ ABSL_GUARDED_BY(outage_mu_);
  // The last failure took a trial interval or more to show (the database
  // does not answer): no trials, only the probe ends the outage.
  bool slow_failure_ ABSL_GUARDED_BY(outage_mu_) = false;
  absl::Time ping_started_ ABSL_GUARDED_BY(outage_mu_);
  // Outages trials ended, and its value when the last Ping() began.
  int64_t recoveries_ ABSL_GUARDED_BY(outage_mu_) = 0;
  int64_t recoveries_at_ping_ ABSL_GUARDED_BY(outage_mu_) = 0;
};

}  // namespace hangar::db

#endif  // HANGAR_COMMON_DB_POOL_H_
