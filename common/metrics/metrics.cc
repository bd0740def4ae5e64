#include "common/metrics/metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"

namespace hangar {

MetricsRegistry::MetricsRegistry()
    : registry_(std::make_shared<prometheus::Registry>()) {}

MetricsRegistry::~MetricsRegistry() { StopServing(); }

absl::Status MetricsRegistry::Serve(const std::string& host, int port) {
  if (exposer_ != nullptr) {
    return absl::FailedPreconditionError("metrics endpoint already serving");
  }
  std::string address = absl::StrCat(host, ":", port);
  try {
    // One worker thread is plenty for a scrape every few seconds.
    exposer_ = std::make_unique<prometheus::Exposer>(address, 1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? port : ports.front();
  return absl::OkStatus();
}

void MetricsRegistry::StopServing() {
  exposer_.reset();
  port_ = 0;
}

const std::vector<double>& LatencyBucketsSeconds() {
  static const std::vector<double>* const buckets = [] {
    auto* result = new std::vector<double>;
    for (double bound = 0.0001; bound < 120; bound *= 2.5) {
      result->push_back(bound);
    }
    return result;
  }();
  return *buckets;
}

}  // namespace hangar
