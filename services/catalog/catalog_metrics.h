// The catalog's own Prometheus families (the RPC metrics come from the
// server bootstrap). One instance per process, registered in the process's
// MetricsRegistry; the Catalog records through these named accessors.
//
//   hangar_catalog_imports_total{source, result}   imports finished
//   hangar_catalog_downloads_total{result}         preparations finished
//   hangar_catalog_download_bytes_total            bytes written to the store
//   hangar_catalog_download_duration_seconds       one preparation, start to
//   end hangar_catalog_hub_retries_total               waits for an unreachable
//   Hub hangar_catalog_orphans_removed_total           store entries no row
//   named,
//                                                  removed by the start-up
//                                                  sweep
//   hangar_catalog_models{state}                   models per state, now
//
// `source` is hugging_face|local; `result` is ok|failed|cancelled; `state` is
// importing|ready|failed.
#ifndef HANGAR_SERVICES_CATALOG_CATALOG_METRICS_H_
#define HANGAR_SERVICES_CATALOG_CATALOG_METRICS_H_

#include <cstdint>
#include <map>
#include <string>

#include "hangar/v1/catalog.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/catalog/model_store.h"

namespace hangar::catalog {

class CatalogMetrics {
 public:
  explicit CatalogMetrics(prometheus::Registry& registry);

  void ImportFinished(v1::ModelSource source, const std::string& result);
  void DownloadFinished(const std::string& result, double seconds);
  void BytesDownloaded(int64_t bytes);
  void SetModelsByState(const std::map<v1::ModelState, int64_t>& counts);
  // Reads the models per state from `store` into the gauge (errors leave it
  // as it was).
  void RefreshModelsByState(ModelStore& store);
  void HubRetry();
  void OrphansRemoved(int64_t count);

 private:
  prometheus::Family<prometheus::Counter>& imports_;
  prometheus::Family<prometheus::Counter>& downloads_;
  prometheus::Counter& download_bytes_;
  prometheus::Histogram& download_duration_;
  prometheus::Family<prometheus::Gauge>& models_;
  prometheus::Counter& hub_retries_;
  prometheus::Counter& orphans_removed_;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_CATALOG_METRICS_H_
