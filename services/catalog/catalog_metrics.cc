#include "services/catalog/catalog_metrics.h"

namespace hangar::catalog {
namespace {

std::string SourceLabel(v1::ModelSource source) {
  switch (source) {
    case v1::MODEL_SOURCE_HUGGING_FACE:
      return "hugging_face";
    case v1::MODEL_SOURCE_LOCAL:
      return "local";
    case v1::MODEL_SOURCE_CURATED:
      return "curated";
    default:
      return "unspecified";
  }
}

}  // namespace

CatalogMetrics::CatalogMetrics(prometheus::Registry& registry)
    : imports_(prometheus::BuildCounter()
                   .Name("hangar_catalog_imports_total")
                   .Help("Model imports finished, by source and result.")
                   .Register(registry)),
      downloads_(
          prometheus::BuildCounter()
              .Name("hangar_catalog_downloads_total")
              .Help("Model preparations (downloads) finished, by result.")
              .Register(registry)),
      download_bytes_(prometheus::BuildCounter()
                          .Name("hangar_catalog_download_bytes_total")
                          .Help("Bytes of weights written to the model store.")
                          .Register(registry)
                          .Add({})),
      download_duration_(
          prometheus::BuildHistogram()
              .Name("hangar_catalog_download_duration_seconds")
              .Help("Duration of one model preparation, start to end.")
              .Register(registry)
              .Add({},
                   prometheus::Histogram::BucketBoundaries{
                       0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 10800})),
      models_(prometheus::BuildGauge()
                  .Name("hangar_catalog_models")
                  .Help("Models in the catalog, by state.")
                  .Register(registry)),
      hub_retries_(prometheus::BuildCounter()
                       .Name("hangar_catalog_hub_retries_total")
                       .Help("Waits of a preparation for an unreachable Hub.")
                       .Register(registry)
                       .Add({})),
      orphans_removed_(
          prometheus::BuildCounter()
              .Name("hangar_catalog_orphans_removed_total")
              .Help("Model store entries no model names, removed at start.")
              .Register(registry)
              .Add({})) {}

void CatalogMetrics::RefreshModelsByState(ModelStore& store) {
  absl::StatusOr<std::map<v1::ModelState, int64_t>> counts =
      store.CountByState();
  if (counts.ok()) SetModelsByState(*counts);
}

void CatalogMetrics::HubRetry() { hub_retries_.Increment(); }

void CatalogMetrics::OrphansRemoved(int64_t count) {
  orphans_removed_.Increment(static_cast<double>(count));
}

void CatalogMetrics::ImportFinished(v1::ModelSource source,
                                    const std::string& result) {
  imports_.Add({{"source", SourceLabel(source)}, {"result", result}})
      .Increment();
}

void CatalogMetrics::DownloadFinished(const std::string& result,
                                      double seconds) {
  downloads_.Add({{"result", result}}).Increment();
  download_duration_.Observe(seconds);
}

void CatalogMetrics::BytesDownloaded(int64_t bytes) {
  if (bytes > 0) download_bytes_.Increment(static_cast<double>(bytes));
}

void CatalogMetrics::SetModelsByState(
    const std::map<v1::ModelState, int64_t>& counts) {
  for (auto [state, label] : {std::pair{v1::MODEL_STATE_IMPORTING, "importing"},
                              std::pair{v1::MODEL_STATE_READY, "ready"},
                              std::pair{v1::MODEL_STATE_FAILED, "failed"}}) {
    auto it = counts.find(state);
    models_.Add({{"state", label}}).Set(it == counts.end() ? 0 : it->second);
  }
}

}  // namespace hangar::catalog
