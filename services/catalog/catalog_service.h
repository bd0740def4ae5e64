// The gRPC face of the catalog: a thin adapter from hangar.v1.CatalogService
// to the Catalog domain class. Each unary method unpacks the request, calls
// the domain, and converts the absl::Status to a grpc::Status
// (ToGrpcStatus). RPC counts and latencies are recorded by the server
// bootstrap's interceptor; domain metrics by the domain classes.
//
// When an admin token is configured, every call must carry
// `authorization: Bearer <admin token>` (UNAUTHENTICATED otherwise); health
// and reflection stay open (common/server/admin_auth.h).
//
// WatchModel runs on the gRPC callback API (common/watch/watch_reactor.h),
// fed by the ChangeNotifier the domain announces every change on: no thread
// per stream, no polling. It sends the model at once, then again after every
// change, until the client cancels, the model is deleted (NOT_FOUND ends the
// stream) or the notifier closes when the server drains (UNAVAILABLE
// "server shutting down").
#ifndef HANGAR_SERVICES_CATALOG_CATALOG_SERVICE_H_
#define HANGAR_SERVICES_CATALOG_CATALOG_SERVICE_H_

#include "common/auth/bearer.h"
#include "common/watch/change_notifier.h"
#include "hangar/v1/catalog.grpc.pb.h"
#include "services/catalog/catalog.h"

namespace hangar::catalog {

class CatalogServiceImpl final
    : public v1::CatalogService::WithCallbackMethod_WatchModel<
          v1::CatalogService::Service> {
 public:
  // Not owned; must outlive the service. A null `admin_token` turns the
  // check off.
  CatalogServiceImpl(Catalog* catalog, ChangeNotifier* notifier,
                     const auth::AdminToken* admin_token)
      : catalog_(catalog), notifier_(notifier), admin_token_(admin_token) {}

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
  grpc::ServerWriteReactor<v1::Model>* WatchModel(
      grpc::CallbackServerContext* context,
      const v1::WatchModelRequest* request) override;
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
  ChangeNotifier* const notifier_;
  const auth::AdminToken* const admin_token_;
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_CATALOG_SERVICE_H_
