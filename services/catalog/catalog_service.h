// The gRPC face of the catalog: a thin adapter from hangar.v1.CatalogService
// to the Catalog domain class. Each method unpacks the request, calls the
// domain, and converts the absl::Status to a grpc::Status (ToGrpcStatus). RPC
// counts and latencies are recorded by the server bootstrap's interceptor;
// domain metrics by the Catalog itself.
//
// When an admin token is configured, every call must carry
// `authorization: Bearer <admin token>` (UNAUTHENTICATED otherwise); health
// and reflection stay open (common/server/admin_auth.h).
//
// WatchModel sends the model at once, then again after every change,
// until the client cancels, the model is deleted (NOT_FOUND ends the
// stream) or the server shuts down.
#ifndef HANGAR_SERVICES_CATALOG_CATALOG_SERVICE_H_
#define HANGAR_SERVICES_CATALOG_CATALOG_SERVICE_H_

#include <atomic>

#include "absl/time/time.h"
#include "common/auth/bearer.h"
#include "hangar/v1/catalog.grpc.pb.h"
#include "services/catalog/catalog.h"

namespace hangar::catalog {

class CatalogServiceImpl final : public v1::CatalogService::Service {
 public:
  // `catalog` and `admin_token` are not owned and must outlive the service;
  // a null `admin_token` turns the check off. `watch_poll` bounds how long a
  // WatchModel waits before checking for cancellation.
  CatalogServiceImpl(Catalog* catalog, const auth::AdminToken* admin_token,
                     absl::Duration watch_poll = absl::Milliseconds(500))
      : catalog_(catalog), admin_token_(admin_token), watch_poll_(watch_poll) {}

  // Ends open WatchModel streams (within one watch poll); called when the
  // server begins its drain.
  void BeginShutdown() { shutting_down_ = true; }

  grpc::Status ListModels(grpc::ServerContext* context,
                          const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status GetModel(grpc::ServerContext* context,
                        const v1::GetModelRequest* request,
                        v1::Model* response) override;
  grpc::Status ImportModel(grpc::ServerContext* context,
                           const v1::ImportModelRequest* request,
                           v1::Model* response) override;
  grpc::Status UpdateModel(grpc::ServerContext* context,
                           const v1::UpdateModelRequest* request,
                           v1::Model* response) override;
  grpc::Status DeleteModel(grpc::ServerContext* context,
                           const v1::DeleteModelRequest* request,
                           v1::DeleteModelResponse* response) override;
  grpc::Status PrepareModel(grpc::ServerContext* context,
                            const v1::PrepareModelRequest* request,
                            v1::Preparation* response) override;
  grpc::Status WatchModel(grpc::ServerContext* context,
                          const v1::WatchModelRequest* request,
                          grpc::ServerWriter<v1::Model>* writer) override;
  grpc::Status CreateConnection(grpc::ServerContext* context,
                                const v1::CreateConnectionRequest* request,
                                v1::Connection* response) override;
  grpc::Status GetConnection(grpc::ServerContext* context,
                             const v1::GetConnectionRequest* request,
                             v1::Connection* response) override;
  grpc::Status ListConnections(grpc::ServerContext* context,
                               const v1::ListConnectionsRequest* request,
                               v1::ListConnectionsResponse* response) override;
  grpc::Status DeleteConnection(
      grpc::ServerContext* context, const v1::DeleteConnectionRequest* request,
      v1::DeleteConnectionResponse* response) override;

 private:
  Catalog* const catalog_;
  const auth::AdminToken* const admin_token_;
  const absl::Duration watch_poll_;
  // Set when the server begins shutting down: WatchModel streams end.
  std::atomic<bool> shutting_down_{false};
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_CATALOG_SERVICE_H_
