#include "common/db/probe.h"

#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hangar::db {

absl::StatusOr<std::unique_ptr<DatabaseProbe>> DatabaseProbe::Start(
    const DatabaseProbeOptions& options) {
  if (options.pool == nullptr) {
    return absl::InvalidArgumentError("pool: must not be null");
  }
  if (options.interval < absl::Milliseconds(10) ||
      options.interval > absl::Hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("interval: must be in [10ms, 1h]; was ",
                     absl::FormatDuration(options.interval)));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("timeout: must be positive; was ",
                     absl::FormatDuration(options.timeout)));
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock: must not be null");
  }
  auto probe = std::unique_ptr<DatabaseProbe>(new DatabaseProbe(options));
  probe->Check();
  options.pool->SetReachabilityListener(
      [raw = probe.get()](const absl::Status& status) {
        raw->Record(status, /*counts_as_check=*/false);
      });
  probe->thread_ = std::thread([raw = probe.get()] { raw->Loop(); });
  return probe;
}

DatabaseProbe::DatabaseProbe(const DatabaseProbeOptions& options)
    : options_(options) {}

DatabaseProbe::~DatabaseProbe() {
  // Returns once no listener call is running.
  options_.pool->SetReachabilityListener(nullptr);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool DatabaseProbe::reachable() {
  absl::MutexLock lock(&mu_);
  return reachable_;
}

int64_t DatabaseProbe::checks() {
  absl::MutexLock lock(&mu_);
  return checks_;
}

void DatabaseProbe::Check() {
  // The pool may know better: a trial transaction that reached the
  // database while this check failed.
  const absl::Status result =
      options_.pool->ReportProbe(options_.pool->Ping(options_.timeout));
  Record(result, /*counts_as_check=*/true);
}

void DatabaseProbe::Record(const absl::Status& result, bool counts_as_check) {
  absl::MutexLock report_lock(&report_mu_);
  const bool reachable = result.ok();
  bool changed = false;
  absl::Duration outage;
  {
    absl::MutexLock lock(&mu_);
    if (counts_as_check) ++checks_;
    changed = !reported_ || reachable != reachable_;
    if (changed && !reachable) down_since_ = options_.clock->Now();
    if (changed && reachable && reported_) {
      outage = options_.clock->Now() - down_since_;
    }
    reported_ = true;
    reachable_ = reachable;
  }
  if (!changed) return;
  if (!options_.name.empty()) {
    const std::string& endpoint = options_.pool->endpoint();
    if (!reachable) {
      std::cerr << options_.name << ": database " << endpoint
                << " unreachable: " << result.message() << std::endl;
    } else if (outage > absl::ZeroDuration()) {
      std::cerr << options_.name << ": database " << endpoint
                << " reachable again after "
                << absl::FormatDuration(absl::Trunc(outage, absl::Seconds(1)))
                << std::endl;
    }
  }
  if (options_.on_change) options_.on_change(reachable);
}

void DatabaseProbe::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      options_.clock->AwaitWithDeadline(
          &mu_, absl::Condition(&stopping_),
          options_.clock->Now() + options_.interval);
      if (stopping_) return;
    }
    Check();
  }
}

}  // namespace hangar::db
