// ModelImporter: ImportModel's two phases.
//
// Import() validates the request and, for a Hugging Face repository, asks
// the Hub for it at the revision at once: a bad id, an unknown repository or
// revision, missing access and an unreachable Hub are errors of the call,
// and nothing is written. It then stores the model IMPORTING (with the
// resolved commit) and returns; a task on the injected TaskGroup inspects
// the model and moves it to READY (sizes computed) or FAILED (the reason):
//
//   * Hugging Face: config.json and each safetensors shard's header, read
//     with HTTP range requests (never the weights), parsed by the engine's
//     own parsers (weights_header.h);
//   * local: a directory (config.json, tokenizer.json, *.safetensors) or a
//     .gguf file under `local_model_root`, read from disk the same way; a
//     local model is prepared (in place) as soon as it is READY.
//
// ResumeInterrupted() (at start) finishes imports a restart left IMPORTING.
// Every state change is announced on the ChangeNotifier under the model's
// name and written as one EventLog line (never the token).
//
//   ASSIGN_OR_RETURN(auto importer, ModelImporter::Create({
//       .local_model_root = "/models", .context = context}));
//   ASSIGN_OR_RETURN(v1::Model model, importer->Import(request));
//
// Thread-safe. The tests in model_importer_test.cc show how a domain class
// of a Hangar service is tested: in-memory fakes from testing/, the fake
// clock, a TaskGroup, and waits on conditions, never sleeps.
#ifndef HANGAR_SERVICES_CATALOG_MODEL_IMPORTER_H_
#define HANGAR_SERVICES_CATALOG_MODEL_IMPORTER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/concurrency/task_group.h"
#include "common/time/clock.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/catalog.pb.h"
#include "services/catalog/domain_context.h"
#include "services/catalog/event_log.h"
#include "services/catalog/hub_client.h"
#include "services/catalog/model_store.h"

namespace hangar::catalog {

class ModelImporter {
 public:
  struct Options {
    // Local imports must lie under this directory; empty disables them.
    std::string local_model_root;
    // Imported models with at most this many parameters run on CPU.
    int64_t cpu_max_parameters = 2'000'000'000;

    // --- Injected dependencies ---
    DomainContext context;
  };

  static absl::StatusOr<std::unique_ptr<ModelImporter>> Create(Options options);

  // Phase one (see above); the model as stored, IMPORTING.
  absl::StatusOr<v1::Model> Import(const v1::ImportModelRequest& request);

  // Restarts the inspection of models left IMPORTING.
  absl::Status ResumeInterrupted();

  // ---------------------------------------------------------------------
  // Implementation details.
 private:
  explicit ModelImporter(Options options)
      : options_(std::move(options)), context_(options_.context) {}

  absl::StatusOr<v1::Model> ImportFromHub(
      const v1::ImportModelRequest& request);
  absl::StatusOr<v1::Model> ImportLocal(const v1::ImportModelRequest& request);
  // Records a new IMPORTING model and starts its inspection.
  absl::StatusOr<v1::Model> Start(const v1::Model& model, std::string token);
  absl::Status Submit(const std::string& name, v1::ModelSource source,
                      std::string token);
  // Phase two: inspect, then READY or FAILED.
  void Finish(const std::string& name, v1::ModelSource source,
              const std::string& token, const StopToken& stop);
  void Complete(const std::string& name, v1::ModelSource source,
                const absl::StatusOr<v1::Model>& inspected);
  absl::StatusOr<v1::Model> InspectHubModel(const v1::Model& model,
                                            const std::string& token,
                                            const StopToken& stop);
  absl::StatusOr<v1::Model> InspectLocalModel(const v1::Model& model);

  const Options options_;
  const DomainContext& context_;  // options_.context
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_MODEL_IMPORTER_H_
