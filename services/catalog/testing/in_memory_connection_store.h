// An in-memory ConnectionStore for domain unit tests. When given the model
// store, DeleteConnection refuses while a model names the connection, as
// PgConnectionStore does in one transaction.
//
//   testing::InMemoryModelStore models;
//   testing::InMemoryConnectionStore connections(&models);
#ifndef HANGAR_SERVICES_CATALOG_TESTING_IN_MEMORY_CONNECTION_STORE_H_
#define HANGAR_SERVICES_CATALOG_TESTING_IN_MEMORY_CONNECTION_STORE_H_

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/catalog/connection_store.h"
#include "services/catalog/model_store.h"

namespace hangar::catalog::testing {

class InMemoryConnectionStore final : public ConnectionStore {
 public:
  // `models` (optional, not owned) is asked which models use a connection.
  explicit InMemoryConnectionStore(ModelStore* models = nullptr)
      : models_(models) {}

  absl::StatusOr<v1::Connection> CreateConnection(
      const StoredConnection& connection) override {
    absl::MutexLock lock(&mu_);
    const std::string& name = connection.connection.name();
    if (connections_.count(name) > 0) {
      return absl::AlreadyExistsError(absl::StrCat(
          "connection.name: connection \"", name, "\" already exists"));
    }
    connections_[name] = connection;
    return connection.connection;
  }

  absl::StatusOr<StoredConnection> GetConnection(
      const std::string& name) override {
    absl::MutexLock lock(&mu_);
    auto it = connections_.find(name);
    if (it == connections_.end()) return NotFound(name);
    return it->second;
  }

  absl::StatusOr<ConnectionPage> ListConnections(const std::string& after_name,
                                                 int limit) override {
    absl::MutexLock lock(&mu_);
    ConnectionPage page;
    for (auto it = connections_.upper_bound(after_name);
         it != connections_.end(); ++it) {
      if (static_cast<int>(page.connections.size()) == limit) {
        page.more = true;
        break;
      }
      page.connections.push_back(it->second.connection);
    }
    return page;
  }

  absl::Status DeleteConnection(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    if (connections_.count(name) == 0) return NotFound(name);
    if (models_ != nullptr) {
      absl::StatusOr<ModelPage> page = models_->ListModels({}, "", 1 << 20);
      if (!page.ok()) return page.status();
      for (const v1::Model& model : page->models) {
        if (model.connection() == name) {
          return absl::FailedPreconditionError(absl::StrCat(
              "name: connection \"", name, "\" is used by model(s) ",
              model.name(), "; delete them first"));
        }
      }
    }
    connections_.erase(name);
    return absl::OkStatus();
  }

 private:
  static absl::Status NotFound(const std::string& name) {
    return absl::NotFoundError(
        absl::StrCat("connection \"", name, "\" not found"));
  }

  ModelStore* const models_;
  absl::Mutex mu_;  // Protects connections_.
  std::map<std::string, StoredConnection> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::catalog::testing

#endif  // HANGAR_SERVICES_CATALOG_TESTING_IN_MEMORY_CONNECTION_STORE_H_
