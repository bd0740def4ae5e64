// Where the catalog keeps its Hugging Face connections: a small interface
// with a PostgreSQL implementation (pg_connection_store.h) and an in-memory
// fake (testing/in_memory_connection_store.h).
//
// A connection carries its token sealed (common/auth/secret_box.h); the
// store never sees a plaintext token. Thread-safe; canonical error codes.
#ifndef HANGAR_SERVICES_CATALOG_CONNECTION_STORE_H_
#define HANGAR_SERVICES_CATALOG_CONNECTION_STORE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hangar/v1/catalog.pb.h"

namespace hangar::catalog {

// A connection as stored: the public fields plus the sealed token.
struct StoredConnection {
  v1::Connection connection;  // `token` always empty.
  std::string sealed_token;
};

struct ConnectionPage {
  std::vector<v1::Connection> connections;
  // Whether connections after the last one returned exist.
  bool more = false;
};

class ConnectionStore {
 public:
  virtual ~ConnectionStore() = default;

  // ALREADY_EXISTS when the name is taken.
  virtual absl::StatusOr<v1::Connection> CreateConnection(
      const StoredConnection& connection) = 0;
  virtual absl::StatusOr<StoredConnection> GetConnection(
      const std::string& name) = 0;
  // In name order, after `after_name`, at most `limit`.
  virtual absl::StatusOr<ConnectionPage> ListConnections(
      const std::string& after_name, int limit) = 0;
  // FAILED_PRECONDITION while models imported through it exist (checked in
  // the same transaction as the delete).
  virtual absl::Status DeleteConnection(const std::string& name) = 0;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_CONNECTION_STORE_H_
