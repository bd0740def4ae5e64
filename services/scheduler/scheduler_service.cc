#include "services/scheduler/scheduler_service.h"

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/server/admin_auth.h"
#include "common/status/grpc_status.h"
#include "common/watch/watch_reactor.h"
#include "google/protobuf/util/message_differencer.h"

namespace hangar::scheduler {
namespace {

using ::google::protobuf::util::MessageDifferencer;

std::string Key(const std::string& deployment, int64_t revision) {
  return absl::StrFormat("%s\x1f%020d", deployment, revision);
}

// What one stream last sent, and the next event against it: a snapshot
// first, then upserts or deletes (a snapshot again when both are needed).
// When nothing changed it returns the previous event again, which the
// reactor does not resend. Called by one reactor at a time (its pump).
template <typename Event, typename Item>
class Differ {
 public:
  using KeyOf = std::function<std::string(const Item&)>;
  using Deleted = std::function<Item(const Item&)>;

  Differ(KeyOf key_of, Deleted deleted)
      : key_of_(std::move(key_of)), deleted_(std::move(deleted)) {}

  template <typename Add>
  Event Next(const std::vector<Item>& now, Add add) {
    std::map<std::string, Item> current;
    for (const Item& item : now) current.emplace(key_of_(item), item);
    Event event;
    if (!sent_any_) {
      event.set_kind(Event::KIND_SNAPSHOT);
      for (const auto& [key, item] : current) *add(event) = item;
    } else {
      std::vector<const Item*> upserts;
      std::vector<Item> deletes;
      for (const auto& [key, item] : current) {
        auto it = last_.find(key);
        if (it == last_.end() ||
            !MessageDifferencer::Equals(it->second, item)) {
          upserts.push_back(&item);
        }
      }
      for (const auto& [key, item] : last_) {
        if (!current.contains(key)) deletes.push_back(deleted_(item));
      }
      if (upserts.empty() && deletes.empty()) return last_event_;
      if (!upserts.empty() && !deletes.empty()) {
        event.set_kind(Event::KIND_SNAPSHOT);
        for (const auto& [key, item] : current) *add(event) = item;
      } else if (!upserts.empty()) {
        event.set_kind(Event::KIND_UPSERT);
        for (const Item* item : upserts) *add(event) = *item;
      } else {
        event.set_kind(Event::KIND_DELETE);
        for (Item& item : deletes) *add(event) = std::move(item);
      }
    }
    sent_any_ = true;
    last_ = std::move(current);
    last_event_ = event;
    return event;
  }

 private:
  const KeyOf key_of_;
  const Deleted deleted_;
  bool sent_any_ = false;
  std::map<std::string, Item> last_;
  Event last_event_;
};

}  // namespace

#define HANGAR_AUTHORIZE(context)                                     \
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *(context)); \
      !denied.ok()) {                                                 \
    return denied;                                                    \
  }

grpc::Status SchedulerServiceImpl::ListHardware(
    grpc::ServerContext* context, const v1::ListHardwareRequest* request,
    v1::ListHardwareResponse* response) {
  HANGAR_AUTHORIZE(context);
  return ReplyWith(scheduler_->ListHardware(*request), response);
}

grpc::Status SchedulerServiceImpl::ListPools(
    grpc::ServerContext* context, const v1::ListPoolsRequest* request,
    v1::ListPoolsResponse* response) {
  HANGAR_AUTHORIZE(context);
  return ReplyWith(scheduler_->ListPools(*request), response);
}

grpc::Status SchedulerServiceImpl::GetPoolStatus(
    grpc::ServerContext* context, const v1::GetPoolStatusRequest* request,
    v1::PoolStatus* response) {
  HANGAR_AUTHORIZE(context);
  return ReplyWith(scheduler_->GetPoolStatus(request->pool()), response);
}

grpc::Status SchedulerServiceImpl::ApplyReplicaSet(
    grpc::ServerContext* context, const v1::ApplyReplicaSetRequest* request,
    v1::ReplicaSet* response) {
  HANGAR_AUTHORIZE(context);
  if (!request->has_spec()) {
    return ToGrpcStatus(absl::InvalidArgumentError("spec: required"));
  }
  return ReplyWith(scheduler_->ApplyReplicaSet(request->spec()), response);
}

grpc::Status SchedulerServiceImpl::GetReplicaSet(
    grpc::ServerContext* context, const v1::GetReplicaSetRequest* request,
    v1::ReplicaSet* response) {
  HANGAR_AUTHORIZE(context);
  return ReplyWith(
      scheduler_->GetReplicaSet(request->deployment(), request->revision()),
      response);
}

grpc::Status SchedulerServiceImpl::ListReplicaSets(
    grpc::ServerContext* context, const v1::ListReplicaSetsRequest* request,
    v1::ListReplicaSetsResponse* response) {
  HANGAR_AUTHORIZE(context);
  return ReplyWith(scheduler_->ListReplicaSets(*request), response);
}

grpc::Status SchedulerServiceImpl::DeleteReplicaSet(
    grpc::ServerContext* context, const v1::DeleteReplicaSetRequest* request,
    v1::ReplicaSet* response) {
  HANGAR_AUTHORIZE(context);
  return ReplyWith(scheduler_->DeleteReplicaSet(*request), response);
}

grpc::ServerWriteReactor<v1::ReplicaSetEvent>*
SchedulerServiceImpl::WatchReplicaSets(
    grpc::CallbackServerContext* context,
    const v1::WatchReplicaSetsRequest* request) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return FinishedWriteReactor<v1::ReplicaSetEvent>(denied);
  }
  auto differ = std::make_shared<Differ<v1::ReplicaSetEvent, v1::ReplicaSet>>(
      [](const v1::ReplicaSet& set) {
        return Key(set.spec().deployment(), set.spec().revision());
      },
      [](const v1::ReplicaSet& set) { return set; });
  return WatchReactor<v1::ReplicaSetEvent>::Start(
      context, {.notifier = notifier_,
                .key = kReplicaSetsKey,
                .read = [scheduler = scheduler_, differ,
                         deployment = request->deployment()]()
                    -> absl::StatusOr<v1::ReplicaSetEvent> {
                  return differ->Next(scheduler->ReplicaSets(deployment),
                                      [](v1::ReplicaSetEvent& event) {
                                        return event.add_replica_sets();
                                      });
                }});
}

grpc::Status SchedulerServiceImpl::SubmitJob(
    grpc::ServerContext* context, const v1::SubmitJobRequest* request,
    v1::Job* response) {
  HANGAR_AUTHORIZE(context);
  return ReplyWith(scheduler_->SubmitJob(*request), response);
}

grpc::Status SchedulerServiceImpl::GetJob(grpc::ServerContext* context,
                                          const v1::GetJobRequest* request,
                                          v1::Job* response) {
  HANGAR_AUTHORIZE(context);
  return ReplyWith(scheduler_->GetJob(request->name()), response);
}

grpc::Status SchedulerServiceImpl::ListJobs(grpc::ServerContext* context,
                                            const v1::ListJobsRequest* request,
                                            v1::ListJobsResponse* response) {
  HANGAR_AUTHORIZE(context);
  return ReplyWith(scheduler_->ListJobs(*request), response);
}

grpc::Status SchedulerServiceImpl::CancelJob(
    grpc::ServerContext* context, const v1::CancelJobRequest* request,
    v1::Job* response) {
  HANGAR_AUTHORIZE(context);
  return ReplyWith(scheduler_->CancelJob(request->name()), response);
}

grpc::ServerWriteReactor<v1::Job>* SchedulerServiceImpl::WatchJob(
    grpc::CallbackServerContext* context, const v1::WatchJobRequest* request) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return FinishedWriteReactor<v1::Job>(denied);
  }
  return WatchReactor<v1::Job>::Start(
      context,
      {.notifier = notifier_,
       .key = JobKey(request->name()),
       .read = [scheduler = scheduler_,
                name = request->name()] { return scheduler->GetJob(name); },
       .is_final =
           [](const v1::Job& job) {
             return job.state() == v1::JOB_STATE_SUCCEEDED ||
                    job.state() == v1::JOB_STATE_FAILED ||
                    job.state() == v1::JOB_STATE_CANCELLED;
           }});
}

grpc::ServerWriteReactor<v1::RouteEvent>* SchedulerServiceImpl::WatchRoutes(
    grpc::CallbackServerContext* context, const v1::WatchRoutesRequest*) {
  if (grpc::Status denied = AuthorizeAdmin(admin_token_, *context);
      !denied.ok()) {
    return FinishedWriteReactor<v1::RouteEvent>(denied);
  }
  auto differ = std::make_shared<Differ<v1::RouteEvent, v1::Route>>(
      [](const v1::Route& route) {
        return Key(route.deployment(), route.revision());
      },
      [](const v1::Route& route) {
        v1::Route gone;
        gone.set_deployment(route.deployment());
        gone.set_revision(route.revision());
        return gone;
      });
  return WatchReactor<v1::RouteEvent>::Start(
      context, {.notifier = notifier_,
                .key = kReplicaSetsKey,
                .read = [scheduler = scheduler_,
                         differ]() -> absl::StatusOr<v1::RouteEvent> {
                  return differ->Next(
                      scheduler->Routes(),
                      [](v1::RouteEvent& event) { return event.add_routes(); });
                }});
}

grpc::Status SchedulerServiceImpl::ReportLoad(
    grpc::ServerContext* context, const v1::ReportLoadRequest* request,
    v1::ReportLoadResponse*) {
  HANGAR_AUTHORIZE(context);
  return ToGrpcStatus(scheduler_->ReportLoad(*request));
}

#undef HANGAR_AUTHORIZE

}  // namespace hangar::scheduler
