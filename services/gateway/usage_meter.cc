#include "services/gateway/usage_meter.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/api/time.h"

namespace hangar::gateway {

absl::StatusOr<std::unique_ptr<UsageMeter>> UsageMeter::Create(
    Options options) {
  if (options.reporter_id.empty() || options.reporter_id.size() > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("reporter_id: must be 1 to 100 characters; was ",
                     options.reporter_id.size(), " characters"));
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock: required");
  }
  return std::unique_ptr<UsageMeter>(new UsageMeter(std::move(options)));
}

void UsageMeter::Record(const UsageKey& key, int64_t prompt_tokens,
                        int64_t completion_tokens) {
  absl::MutexLock lock(&mu_);
  Counts& counts = open_[key];
  ++counts.requests;
  counts.prompt_tokens += prompt_tokens;
  counts.completion_tokens += completion_tokens;
}

std::optional<UsageBatch> UsageMeter::NextBatch() {
  absl::MutexLock lock(&mu_);
  if (pending_.has_value()) return pending_;
  if (open_.empty()) return std::nullopt;

  const absl::Time window_end = options_.clock->Now();
  UsageBatch batch;
  batch.request.set_report_id(
      absl::StrCat(options_.reporter_id, "-", next_sequence_++));
  int64_t requests = 0;
  for (const auto& [key, counts] : open_) {
    v1::TokenUsageReport* report = batch.request.add_reports();
    report->set_api_key(key.key_name);
    report->set_deployment(key.deployment);
    report->set_revision(key.revision);
    *report->mutable_start_time() = ToProtoTimestamp(window_start_);
    *report->mutable_end_time() = ToProtoTimestamp(window_end);
    report->set_requests(counts.requests);
    report->mutable_tokens()->set_prompt_tokens(counts.prompt_tokens);
    report->mutable_tokens()->set_completion_tokens(counts.completion_tokens);
    requests += counts.requests;
  }
  open_.clear();
  window_start_ = window_end;
  pending_ = std::move(batch);
  pending_requests_ = requests;
  return pending_;
}

void UsageMeter::Acknowledge(const std::string& report_id) {
  absl::MutexLock lock(&mu_);
  if (pending_.has_value() && pending_->request.report_id() == report_id) {
    pending_.reset();
    pending_requests_ = 0;
  }
}

int64_t UsageMeter::unreported_requests() const {
  absl::MutexLock lock(&mu_);
  int64_t total = pending_requests_;
  for (const auto& [key, counts] : open_) total += counts.requests;
  return total;
}

}  // namespace hangar::gateway
