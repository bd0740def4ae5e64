// A background check that the database answers, feeding the pool's
// fail-fast and the server's health.
//
// Every `interval` (on the injected clock) the probe runs "SELECT 1" through
// Pool::Ping() on a connection of its own, reports the result to the pool
// (Pool::ReportProbe: while it fails, Transact() answers UNAVAILABLE at once
// instead of each call spending connect time, but for one trial call at a
// time every 200 ms) and, on every change, calls `on_change` and writes one
// line to stderr:
//
//   catalog: database 127.0.0.1:5432 unreachable: cannot reach ...
//   catalog: database 127.0.0.1:5432 reachable again after 12s
//
// The composition root ties it to the server's health with one call, so
// grpc.health.v1 reports NOT_SERVING while the database is down and SERVING
// again when it returns:
//
//   ASSIGN_OR_RETURN(probe_, db::DatabaseProbe::Start({
//       .pool = pool_.get(), .name = "catalog",
//       .on_change = server_->HealthReporter("database"),
//       .clock = clock}));
//
// Each check is bounded: connecting by the pool's connect_timeout, the
// answer by `timeout` (the pool's watchdog shuts the connection down when a
// frozen server keeps it open without answering), so a database that stops
// answering turns health NOT_SERVING within about interval + timeout, and
// at once when a transaction's watchdog gives up on it first (the probe
// listens to the pool: Pool::SetReachabilityListener). Either way one
// "unreachable" line is logged per outage. Likewise it turns SERVING at once
// when a trial transaction finds the database back (pool.h), without
// waiting for its next check.
//
// Start() runs the first check before it returns, so health is right from
// the first call. The destructor stops the probe thread (waking it at once)
// and joins it; `on_change` is never called after the destructor returns.
// Calls are never probed individually: the probe costs one query per
// interval whatever the load.
#ifndef HANGAR_COMMON_DB_PROBE_H_
#define HANGAR_COMMON_DB_PROBE_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/db/pool.h"
#include "common/time/clock.h"

namespace hangar::db {

struct DatabaseProbeOptions {
  // The pool to check and to report to. Not owned; must outlive the probe.
  // Required.
  Pool* pool = nullptr;

  // Time between the end of one check and the start of the next. Must be
  // in [10ms, 1h].
  absl::Duration interval = absl::Seconds(1);

  // Longest a check waits for the database's answer (its connection attempt
  // is bounded by the pool's connect_timeout); past it the database counts
  // as unreachable. Must be positive.
  absl::Duration timeout = absl::Seconds(2);

  // Prefix of the log lines ("catalog"); empty logs nothing.
  std::string name;

  // Called with the new state on every change (and once at start with the
  // first result). May be null.
  std::function<void(bool reachable)> on_change;

  // --- Injected dependencies ---
  // Paces the checks. Not owned; never null.
  Clock* clock = Clock::Real();
};

class DatabaseProbe {
 public:
  static absl::StatusOr<std::unique_ptr<DatabaseProbe>> Start(
      const DatabaseProbeOptions& options);

  ~DatabaseProbe();
  DatabaseProbe(const DatabaseProbe&) = delete;
  DatabaseProbe& operator=(const DatabaseProbe&) = delete;

  // The result of the last check.
  bool reachable();
  // Checks completed so far (for tests that wait for the next one).
  int64_t checks();

 private:
  explicit DatabaseProbe(const DatabaseProbeOptions& options);
  // Runs one check and reports a change.
  void Check();
  // Records the result of a check (or a failure the pool saw), logging and
  // calling on_change when the state changed.
  void Record(const absl::Status& result, bool counts_as_check);
  void Loop();

  const DatabaseProbeOptions options_;

  // Held while a result is recorded and reported, so that on_change sees
  // the changes in order.
  absl::Mutex report_mu_;

  absl::Mutex mu_;  // Protects the fields below.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool reachable_ ABSL_GUARDED_BY(mu_) = true;
  bool reported_ ABSL_GUARDED_BY(mu_) = false;  // Any result reported yet.
  absl::Time down_since_ ABSL_GUARDED_BY(mu_);
  int64_t checks_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;
};

}  // namespace hangar::db

#endif  // HANGAR_COMMON_DB_PROBE_H_
