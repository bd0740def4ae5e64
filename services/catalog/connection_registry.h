// Hugging Face connections: a named token that imports of private
// repositories (and, for the operator's curated connection, gated curated
// models) use. The token is validated, sealed with the SecretBox (the
// connection name as associated data), stored sealed, and never returned,
// logged or put in a message; callers see only a short prefix ("hf_Se...").
//
// OpenToken() is how the importer and the preparation manager get the
// plaintext back, only to put it in the Authorization header of Hub calls.
//
//   ConnectionRegistry connections({.store = &store, .secrets = box.get()});
//   ASSIGN_OR_RETURN(v1::Connection created, connections.Create(request));
//   ASSIGN_OR_RETURN(std::string token, connections.OpenToken("connection",
//                                                             "hf"));
//
// Thread-safe (the store is; the registry holds no state of its own).
#ifndef HANGAR_SERVICES_CATALOG_CONNECTION_REGISTRY_H_
#define HANGAR_SERVICES_CATALOG_CONNECTION_REGISTRY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/auth/secret_box.h"
#include "hangar/v1/catalog.pb.h"
#include "services/catalog/connection_store.h"

namespace hangar::catalog {

class ConnectionRegistry {
 public:
  struct Options {
    // --- Injected dependencies: not owned, must outlive the registry ---
    ConnectionStore* store = nullptr;
    const auth::SecretBox* secrets = nullptr;
  };

  static absl::StatusOr<std::unique_ptr<ConnectionRegistry>> Create(
      Options options);

  absl::StatusOr<v1::Connection> Create(const v1::Connection& connection);
  absl::StatusOr<v1::Connection> Get(const std::string& name);
  absl::StatusOr<v1::ListConnectionsResponse> List(
      const v1::ListConnectionsRequest& request);
  // FAILED_PRECONDITION while models imported through it exist.
  absl::Status Delete(const std::string& name);

  // The plaintext token of connection `name`; `field` names it in errors
  // (NOT_FOUND "<field>: connection \"x\" not found"; DATA_LOSS when the
  // secret key changed).
  absl::StatusOr<std::string> OpenToken(const std::string& field,
                                        const std::string& name);

 private:
  explicit ConnectionRegistry(Options options) : options_(options) {}

  const Options options_;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_CONNECTION_REGISTRY_H_
