#include "services/catalog/connection_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/api/page_token.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"
#include "services/catalog/model_validation.h"

namespace hangar::catalog {

absl::StatusOr<std::unique_ptr<ConnectionRegistry>> ConnectionRegistry::Create(
    Options options) {
  if (options.store == nullptr) return InvalidField("store", "required");
  if (options.secrets == nullptr) return InvalidField("secrets", "required");
  return std::unique_ptr<ConnectionRegistry>(new ConnectionRegistry(options));
}

absl::StatusOr<std::string> ConnectionRegistry::OpenToken(
    const std::string& field, const std::string& name) {
  absl::StatusOr<StoredConnection> stored = options_.store->GetConnection(name);
  if (!stored.ok()) {
    if (stored.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(
          absl::StrCat(field, ": connection \"", name, "\" not found"));
    }
    return stored.status();
  }
  absl::StatusOr<std::string> token =
      options_.secrets->Open(stored->sealed_token, name);
  if (!token.ok()) {
    return absl::DataLossError(
        absl::StrCat("connection \"", name,
                     "\": its token cannot be decrypted (was the secret key "
                     "file replaced?)"));
  }
  return token;
}

absl::StatusOr<v1::Connection> ConnectionRegistry::Create(
    const v1::Connection& connection) {
  RETURN_IF_ERROR(ValidateConnectionName("connection.name", connection.name()));
  RETURN_IF_ERROR(ValidateText("connection.description",
                               connection.description(),
                               kMaxDescriptionLength));
  RETURN_IF_ERROR(ValidateToken("connection.token", connection.token()));
  ASSIGN_OR_RETURN(
      std::string sealed,
      options_.secrets->Seal(connection.token(), connection.name()));
  StoredConnection stored;
  stored.connection.set_name(connection.name());
  stored.connection.set_description(connection.description());
  // A quarter of the token at most, and never more than 5 characters.
  const size_t shown = std::min<size_t>(5, connection.token().size() / 4);
  stored.connection.set_token_prefix(
      absl::StrCat(connection.token().substr(0, shown), "..."));
  stored.sealed_token = std::move(sealed);
  return options_.store->CreateConnection(stored);
}

absl::StatusOr<v1::Connection> ConnectionRegistry::Get(
    const std::string& name) {
  RETURN_IF_ERROR(ValidateConnectionName("name", name));
  ASSIGN_OR_RETURN(StoredConnection stored,
                   options_.store->GetConnection(name));
  return stored.connection;
}

absl::StatusOr<v1::ListConnectionsResponse> ConnectionRegistry::List(
    const v1::ListConnectionsRequest& request) {
  ASSIGN_OR_RETURN(int limit, ResolvePageSize(request.page_size()));
  const std::string filters = FilterFingerprint(request);
  ASSIGN_OR_RETURN(std::string after,
                   DecodePageToken(request.page_token(), filters));
  ASSIGN_OR_RETURN(ConnectionPage page,
                   options_.store->ListConnections(after, limit));
  v1::ListConnectionsResponse response;
  for (v1::Connection& connection : page.connections) {
    *response.add_connections() = std::move(connection);
  }
  if (page.more && response.connections_size() > 0) {
    response.set_next_page_token(EncodePageToken(
        response.connections(response.connections_size() - 1).name(), filters));
  }
  return response;
}

absl::Status ConnectionRegistry::Delete(const std::string& name) {
  RETURN_IF_ERROR(ValidateConnectionName("name", name));
  return options_.store->DeleteConnection(name);
}

}  // namespace hangar::catalog
