#include "services/catalog/catalog_service.h"

#include "common/server/admin_auth.h"
#include "common/status/grpc_status.h"
#include "common/watch/watch_reactor.h"

namespace hangar::catalog {
grpc::Status CatalogServiceImpl::ListModels(
    grpc::ServerContext* context, const v1::ListModelsRequest* request,
    v1::ListModelsResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(catalog_->ListModels(*request), response);
}

grpc::Status CatalogServiceImpl::GetModel(grpc::ServerContext* context,
                                          const v1::GetModelRequest* request,
                                          v1::Model* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(catalog_->GetModel(request->name()), response);
}

grpc::Status CatalogServiceImpl::ImportModel(
    grpc::ServerContext* context, const v1::ImportModelRequest* request,
    v1::Model* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(catalog_->ImportModel(*request), response);
}

grpc::Status CatalogServiceImpl::UpdateModel(
    grpc::ServerContext* context, const v1::UpdateModelRequest* request,
    v1::Model* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(catalog_->UpdateModel(*request), response);
}

grpc::Status CatalogServiceImpl::DeleteModel(
    grpc::ServerContext* context, const v1::DeleteModelRequest* request,
    v1::DeleteModelResponse*) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ToGrpcStatus(catalog_->DeleteModel(*request));
}

grpc::Status CatalogServiceImpl::PrepareModel(
    grpc::ServerContext* context, const v1::PrepareModelRequest* request,
    v1::Preparation* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(catalog_->PrepareModel(request->name()), response);
}

grpc::ServerWriteReactor<v1::Model>* CatalogServiceImpl::WatchModel(
    grpc::CallbackServerContext* context,
    const v1::WatchModelRequest* request) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return FinishedWriteReactor<v1::Model>(denied);
  }
  return WatchReactor<v1::Model>::Start(
      context, {.notifier = notifier_,
                .key = request->name(),
                .read = [catalog = catalog_, name = request->name()] {
                  return catalog->GetModel(name);
                }});
}

grpc::Status CatalogServiceImpl::CreateConnection(
    grpc::ServerContext* context, const v1::CreateConnectionRequest* request,
    v1::Connection* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(catalog_->connections().Create(request->connection()),
                   response);
}

grpc::Status CatalogServiceImpl::GetConnection(
    grpc::ServerContext* context, const v1::GetConnectionRequest* request,
    v1::Connection* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(catalog_->connections().Get(request->name()), response);
}

grpc::Status CatalogServiceImpl::ListConnections(
    grpc::ServerContext* context, const v1::ListConnectionsRequest* request,
    v1::ListConnectionsResponse* response) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ReplyWith(catalog_->connections().List(*request), response);
}

grpc::Status CatalogServiceImpl::DeleteConnection(
    grpc::ServerContext* context, const v1::DeleteConnectionRequest* request,
    v1::DeleteConnectionResponse*) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return denied;
  }
  return ToGrpcStatus(catalog_->connections().Delete(request->name()));
}

}  // namespace hangar::catalog
