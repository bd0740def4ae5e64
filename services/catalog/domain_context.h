// What the catalog's domain classes (ModelImporter, PreparationManager)
// share: the model store, the Hub, the connections, where background work
// runs, whom to tell about a change, and what to record. Built once by the
// Catalog facade (or a test fixture) and handed to each class's Options.
//
//   DomainContext context{.models = &store, .hub = &hub,
//                         .connections = registry.get(),
//                         .tasks = tasks.get(), .notifier = &notifier};
//   ASSIGN_OR_RETURN(auto importer, ModelImporter::Create({.context =
//   context}));
#ifndef HANGAR_SERVICES_CATALOG_DOMAIN_CONTEXT_H_
#define HANGAR_SERVICES_CATALOG_DOMAIN_CONTEXT_H_

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/concurrency/task_group.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "services/catalog/catalog_metrics.h"
#include "services/catalog/connection_registry.h"
#include "services/catalog/event_log.h"
#include "services/catalog/hub_client.h"
#include "services/catalog/model_store.h"

namespace hangar::catalog {

// Not owned; everything must outlive the classes given it.
struct DomainContext {
  ModelStore* models = nullptr;
  const HubClient* hub = nullptr;
  ConnectionRegistry* connections = nullptr;
  // Runs background work (inspections, downloads).
  TaskGroup* tasks = nullptr;
  // Told the model's name after every change.
  ChangeNotifier* notifier = nullptr;
  // Optional.
  CatalogMetrics* metrics = nullptr;
  // Optional; null writes to stderr (EventLog::Stderr()).
  EventLog* log = nullptr;
  Clock* clock = Clock::Real();

  // INVALID_ARGUMENT "<owner> needs ..." when a required one is missing;
  // fills in the stderr log.
  absl::Status Complete(absl::string_view owner) {
    if (models == nullptr || hub == nullptr || connections == nullptr ||
        tasks == nullptr || notifier == nullptr || clock == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(owner,
                       " needs models, hub, connections, tasks, notifier and "
                       "clock in its DomainContext"));
    }
    if (log == nullptr) log = EventLog::Stderr();
    return absl::OkStatus();
  }
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_DOMAIN_CONTEXT_H_
