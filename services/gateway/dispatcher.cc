#include "services/gateway/dispatcher.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/api/time.h"
#include "common/status/grpc_status.h"

namespace hangar::gateway {
namespace {

// Slack past the latest sequence deadline before the whole runner call is
// cut, so that each sequence ends on its own timeout first.
constexpr absl::Duration kCallDeadlineSlack = absl::Seconds(5);
constexpr absl::Duration kCancelRpcTimeout = absl::Seconds(5);

absl::Status Unavailable(absl::string_view message) {
  return absl::UnavailableError(message);
}

// The runner names a field within its call ("sequences[2].prompt: must be
// shorter than the context ..."); the client sent one request, whose fields
// are that sequence's own, so the message it gets starts at "prompt:".
std::string ClientFacingMessage(absl::string_view message) {
  absl::string_view rest = message;
  if (absl::ConsumePrefix(&rest, "sequences[")) {
    const size_t end = rest.find("].");
    if (end != absl::string_view::npos &&
        std::all_of(rest.begin(), rest.begin() + end, absl::ascii_isdigit)) {
      return std::string(rest.substr(end + 2));
    }
  }
  return std::string(message);
}

absl::Status QueuedDeadline() {
  return absl::DeadlineExceededError(
      "the deadline passed while the request was queued");
}

}  // namespace

// One dispatch: a RunnerService.Generate call on the callback API. Its
// reactions hand every message to the dispatcher; it deletes itself in
// OnDone, after the dispatcher has forgotten it.
class Dispatcher::RunnerCall final
    : public grpc::ClientReadReactor<v1::RunnerGenerateResponse> {
 public:
  RunnerCall(Dispatcher* dispatcher, RevKey revision, std::string replica,
             std::string address, v1::RunnerService::Stub* stub,
             GatewayMetrics::Deployment* metrics)
      : revision(std::move(revision)),
        replica(std::move(replica)),
        address(std::move(address)),
        metrics(metrics),
        dispatcher_(dispatcher),
        stub_(stub) {}

  void Start() {
    stub_->async()->Generate(&context, &request, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    dispatcher_->OnMessage(this, response_);
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    Dispatcher* dispatcher = dispatcher_;
    dispatcher->OnCallDone(this, status);
    delete this;
    // Only now may the dispatcher (and the channels it holds) go: the
    // context destroyed above must not drop the last channel reference on
    // a gRPC callback thread (grpc/grpc#32584).
    dispatcher->Forget();
  }

  // Set before Start(), then guarded by the dispatcher's mu_.
  const RevKey revision;
  const std::string replica;
  const std::string address;
  GatewayMetrics::Deployment* const metrics;  // May be null.
  grpc::ClientContext context;
  v1::RunnerGenerateRequest request;
  // Request id per sequence index; 0 once the request was answered.
  absl::InlinedVector<uint64_t, 1> ids;
  // Whether the runner still holds the sequence (its slot is taken).
  absl::InlinedVector<bool, 1> open;
  // Whose tokens each sequence spends (kept when its client is gone, so
  // that a cancelled request's tokens are still metered).
  absl::InlinedVector<UsageKey, 1> usage_keys;

 private:
  Dispatcher* const dispatcher_;
  v1::RunnerService::Stub* const stub_;
  v1::RunnerGenerateResponse response_;
};

absl::StatusOr<std::unique_ptr<Dispatcher>> Dispatcher::Create(
    Options options) {
  if (options.sequence_prefix.empty() || options.sequence_prefix.size() > 40) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence_prefix: must be 1 to 40 characters; was ",
                     options.sequence_prefix.size()));
  }
  for (char c : options.sequence_prefix) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "sequence_prefix: must be printable ASCII without spaces");
    }
  }
  if (options.max_attempts < 1 || options.max_attempts > 10) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_attempts: must be in [1, 10]; was ", options.max_attempts));
  }
  if (options.replica_cooldown < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("replica_cooldown: must be >= 0");
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock: required");
  }
  // The batcher validates the queue settings; try them once here so that a
  // bad flag fails at start-up, not at the first route.
  if (absl::StatusOr<std::unique_ptr<Batcher>> probe =
          Batcher::Create({.batch_size = 1,
                           .max_queue_delay = options.max_queue_delay,
                           .max_queue_size = options.max_queue_size,
                           .clock = options.clock});
      !probe.ok()) {
    return probe.status();
  }
  return std::unique_ptr<Dispatcher>(new Dispatcher(std::move(options)));
}

// Holds mu_ for one event; leaving it starts the runner calls and delivers
// the answers the event produced (UnlockAndFlush).
class ABSL_SCOPED_LOCKABLE Dispatcher::Locked {
 public:
  explicit Locked(Dispatcher* dispatcher)
      ABSL_EXCLUSIVE_LOCK_FUNCTION(dispatcher->mu_)
      : dispatcher_(dispatcher) {
    dispatcher_->mu_.Lock();
  }
  ~Locked() ABSL_UNLOCK_FUNCTION() { dispatcher_->UnlockAndFlush(); }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;

 private:
  Dispatcher* const dispatcher_;
};

Dispatcher::~Dispatcher() {
  {
    Locked lock(this);
    stopping_ = true;
    FailAllLocked(Unavailable("gateway is shutting down"));
    for (RunnerCall* call : calls_) call->context.TryCancel();
  }
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &Dispatcher::Idle));
  }
  absl::MutexLock lock(&cancel_mu_);
  cancel_mu_.Await(absl::Condition(
      +[](int* in_flight) { return *in_flight == 0; }, &cancels_in_flight_));
}

void Dispatcher::UnlockAndFlush() {
  std::vector<RunnerCall*> start;
  std::vector<Answer> answers;
  start.swap(to_start_);
  answers.swap(answers_);
  mu_.Unlock();
  for (RunnerCall* call : start) call->Start();
  for (Answer& answer : answers) {
    answer.observer->OnFinish(answer.status, answer.outcome);
  }
}

void Dispatcher::Forget() {
  absl::MutexLock lock(&mu_);
  --dying_;
}

void Dispatcher::Run() {
  while (true) {
    {
      Locked lock(this);
      if (stopping_) break;
      kicked_ = false;
      absl::Time wake = absl::InfiniteFuture();
      if (draining_) {
        if (options_.clock->Now() >= drain_deadline_) {
          FailAllLocked(Unavailable("gateway is shutting down"));
        } else {
          wake = drain_deadline_;
        }
      }
      wake = std::min(wake, PollLocked());
      loop_wake_ = wake;
    }
    absl::MutexLock lock(&mu_);
    if (!Wakeable()) {
      options_.clock->AwaitWithDeadline(
          &mu_, absl::Condition(this, &Dispatcher::Wakeable), loop_wake_);
    }
  }
  Locked lock(this);
  FailAllLocked(Unavailable("gateway is shutting down"));
}

void Dispatcher::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

absl::StatusOr<uint64_t> Dispatcher::Submit(SubmitRequest submit,
                                            absl::Duration* retry_after) {
  Locked lock(this);
  if (draining_ || stopping_) return Unavailable("gateway is shutting down");
  RevKey key(std::move(submit.deployment), submit.revision);
  absl::StatusOr<Revision*> revision = RevisionLocked(key);
  if (!revision.ok()) return revision.status();
  const absl::Time now = options_.clock->Now();
  if (submit.deadline <= now) return QueuedDeadline();
  const uint64_t id = next_id_++;
  Request request;
  request.id = id;
  request.sequence = std::move(submit.sequence);
  request.sequence.set_id(absl::StrCat(options_.sequence_prefix, "-", id));
  request.arrival = now;
  request.deadline = submit.deadline;
  request.usage_key = std::move(submit.usage_key);
  request.observer = submit.observer;
  if (absl::Status queued = EnqueueLocked(request, **revision); !queued.ok()) {
    if (absl::IsResourceExhausted(queued) && retry_after != nullptr) {
      *retry_after = (*revision)->batcher->RetryAfter();
    }
    return queued;
  }
  requests_.emplace(id, std::move(request));
  DispatchLocked(key);
  return id;
}

void Dispatcher::Cancel(uint64_t id) {
  Locked lock(this);
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  Request& request = it->second;
  if (request.call == nullptr) {
    // Leaving the queue frees no slot and ends no wait the loop keeps.
    if (auto rev = revisions_.find(request.revision); rev != revisions_.end()) {
      rev->second.batcher->CancelQueued(id);
    }
  } else {
    // The slot frees when the runner's last message for it arrives.
    CancelSequenceLocked(request.call, request.index);
    request.call->ids[request.index] = 0;
  }
  FinishLocked(id, absl::CancelledError("the client cancelled the call"), {});
}

void Dispatcher::UpdateRoutes(const std::vector<v1::Route>& routes) {
  Locked lock(this);
  std::set<RevKey> seen;
  for (const v1::Route& route : routes) {
    RevKey key(route.deployment(), route.revision());
    seen.insert(key);
    Revision& revision = revisions_[key];
    if (revision.batcher == nullptr) {
      absl::StatusOr<std::unique_ptr<Batcher>> batcher = Batcher::Create(
          {.batch_size = std::clamp(route.inference_batch_size(), 1, 256),
           .max_queue_delay = options_.max_queue_delay,
           .max_queue_size = options_.max_queue_size,
           .clock = options_.clock});
      if (!batcher.ok()) {  // Validated in Create(); cannot happen.
        revisions_.erase(key);
        continue;
      }
      revision.batcher = *std::move(batcher);
      if (options_.metrics != nullptr) {
        revision.metrics = &options_.metrics->ForDeployment(route.deployment());
        revision.queue_depth =
            &options_.metrics->QueueDepth(route.deployment(), route.revision());
      }
    }
    revision.deployment = route.deployment();
    revision.revision = route.revision();
    revision.serving = route.serving();
    revision.replicas.clear();
    for (const v1::RouteReplica& replica : route.replicas()) {
      if (replica.state() != v1::REPLICA_STATE_READY &&
          replica.state() != v1::REPLICA_STATE_DRAINING) {
        continue;
      }
      revision.replicas[replica.name()] = {
          .route = replica, .stub = StubLocked(replica.address())};
    }
    ApplyReplicasLocked(revision);
  }
  // Queued requests of revisions that stopped serving (or are gone) move to
  // the serving revision of their deployment.
  std::vector<uint64_t> orphans;
  for (auto& [id, request] : requests_) {
    if (request.call != nullptr) continue;
    auto current = revisions_.find(request.revision);
    const bool gone = !seen.contains(request.revision);
    if (!gone && current->second.serving) continue;
    Revision* target = ServingLocked(request.revision.first);
    if (target == nullptr || (target->deployment == request.revision.first &&
                              target->revision == request.revision.second)) {
      if (gone) orphans.push_back(id);
      continue;
    }
    if (current != revisions_.end()) {
      current->second.batcher->CancelQueued(id);
    }
    if (!EnqueueLocked(request, *target).ok()) orphans.push_back(id);
  }
  for (uint64_t id : orphans) {
    FinishLocked(id, Unavailable("the deployment has no serving revision"), {});
  }
  for (auto it = revisions_.begin(); it != revisions_.end();) {
    if (seen.contains(it->first)) {
      ++it;
    } else {
      if (it->second.queue_depth != nullptr) it->second.queue_depth->Set(0);
      it = revisions_.erase(it);
    }
  }
  // Rare: the loop polls every revision.
  KickLocked();
}

void Dispatcher::Drain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  drain_deadline_ = std::min(drain_deadline_, deadline);
  KickLocked();
}

std::vector<v1::RevisionLoad> Dispatcher::Load() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::RevisionLoad> loads;
  for (const auto& [key, revision] : revisions_) {
    v1::RevisionLoad& load = loads.emplace_back();
    load.set_deployment(key.first);
    load.set_revision(key.second);
    load.set_queued(revision.batcher->queued());
    load.set_in_flight(revision.batcher->outstanding());
  }
  return loads;
}

int Dispatcher::pending() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(requests_.size());
}

absl::StatusOr<Dispatcher::Revision*> Dispatcher::RevisionLocked(
    const RevKey& key) {
  auto it = revisions_.find(key);
  if (it == revisions_.end()) {
    return Unavailable(absl::StrCat("deployment \"", key.first, "\" revision ",
                                    key.second, " has no route yet"));
  }
  return &it->second;
}

void Dispatcher::ApplyReplicasLocked(Revision& revision) {
  const absl::Time now = options_.clock->Now();
  std::vector<ReplicaSlots> slots;
  for (const auto& [name, replica] : revision.replicas) {
    auto cooling = cooldown_until_.find(replica.route.address());
    const bool cooling_down =
        cooling != cooldown_until_.end() && cooling->second > now;
    slots.push_back(
        {.name = name,
         .capacity = std::max(1, replica.route.max_batch()),
         .draining =
             replica.route.state() != v1::REPLICA_STATE_READY || cooling_down});
  }
  revision.batcher->SetReplicas(slots);
}

Dispatcher::Revision* Dispatcher::ServingLocked(const std::string& deployment) {
  for (auto it = revisions_.lower_bound(RevKey(deployment, INT64_MIN));
       it != revisions_.end() && it->first.first == deployment; ++it) {
    if (it->second.serving) return &it->second;
  }
  return nullptr;
}

absl::Status Dispatcher::EnqueueLocked(Request& request, Revision& revision) {
  if (absl::Status status =
          revision.batcher->Enqueue(request.id, request.deadline);
      !status.ok()) {
    return status;
  }
  if (request.revision.first != revision.deployment ||
      request.revision.second != revision.revision) {
    request.revision = RevKey(revision.deployment, revision.revision);
  }
  request.metrics = revision.metrics;
  request.enqueued = options_.clock->Now();
  request.call = nullptr;
  request.index = -1;
  return absl::OkStatus();
}

void Dispatcher::DispatchLocked(const RevKey& key) {
  auto it = revisions_.find(key);
  if (it == revisions_.end()) return;
  const absl::Time next_wake =
      PollRevisionLocked(it->first, it->second, options_.clock->Now());
  // The loop sleeps towards loop_wake_; only an earlier time needs it now.
  if (next_wake < loop_wake_) KickLocked();
}

absl::Time Dispatcher::PollLocked() {
  const absl::Time now = options_.clock->Now();
  absl::Time wake = absl::InfiniteFuture();
  bool cooled = false;
  for (auto it = cooldown_until_.begin(); it != cooldown_until_.end();) {
    if (it->second <= now) {
      cooldown_until_.erase(it++);
      cooled = true;
    } else {
      wake = std::min(wake, it->second);
      ++it;
    }
  }
  if (cooled) {
    for (auto& [key, revision] : revisions_) ApplyReplicasLocked(revision);
  }
  for (auto& [key, revision] : revisions_) {
    wake = std::min(wake, PollRevisionLocked(key, revision, now));
  }
  return wake;
}

absl::Time Dispatcher::PollRevisionLocked(const RevKey& key, Revision& revision,
                                          absl::Time now) {
  PollResult result = revision.batcher->Poll();
  for (uint64_t id : result.expired) FinishLocked(id, QueuedDeadline(), {});
  for (const Dispatch& dispatch : result.dispatches) {
    auto replica = revision.replicas.find(dispatch.replica);
    absl::InlinedVector<uint64_t, 8> ids;
    for (uint64_t id : dispatch.requests) {
      if (requests_.contains(id)) ids.push_back(id);
    }
    const int missing = static_cast<int>(dispatch.requests.size() - ids.size());
    if (replica == revision.replicas.end()) {
      // Cannot happen (the batcher only knows these replicas); put the
      // requests back rather than lose them.
      revision.batcher->Complete(dispatch.replica,
                                 static_cast<int>(dispatch.requests.size()));
      for (uint64_t id : ids) {
        if (!EnqueueLocked(requests_[id], revision).ok()) {
          FinishLocked(id, Unavailable("no replica"), {});
        }
      }
      continue;
    }
    if (missing > 0) revision.batcher->Complete(dispatch.replica, missing);
    if (ids.empty()) continue;
    auto* call = new RunnerCall(this, key, dispatch.replica,
                                replica->second.route.address(),
                                replica->second.stub, revision.metrics);
    call->ids.reserve(ids.size());
    call->open.reserve(ids.size());
    call->usage_keys.reserve(ids.size());
    absl::Time latest = now;
    for (uint64_t id : ids) {
      Request& request = requests_.find(id)->second;
      ++request.attempts;
      request.call = call;
      request.index = static_cast<int>(call->ids.size());
      // The sequence moves into the call (RetryOrFinishLocked takes it back).
      v1::RunnerSequence* sequence = call->request.add_sequences();
      sequence->Swap(&request.sequence);
      if (request.attempts > 1) {
        sequence->set_id(absl::StrCat(options_.sequence_prefix, "-", id, ".",
                                      request.attempts));
      }
      if (request.deadline != absl::InfiniteFuture()) {
        *sequence->mutable_timeout() = ToProtoDuration(
            std::max(request.deadline - now, absl::Milliseconds(1)));
        latest = std::max(latest, request.deadline);
      } else {
        sequence->clear_timeout();
        latest = absl::InfiniteFuture();
      }
      call->ids.push_back(id);
      call->open.push_back(true);
      UsageKey& usage_key = call->usage_keys.emplace_back(request.usage_key);
      usage_key.deployment = key.first;
      usage_key.revision = key.second;
      if (revision.metrics != nullptr) {
        revision.metrics->QueueWait(now - request.enqueued);
      }
    }
    if (latest != absl::InfiniteFuture()) {
      call->context.set_deadline(
          absl::ToChronoTime(latest + kCallDeadlineSlack));
    }
    if (revision.metrics != nullptr) {
      revision.metrics->BatchFormed(static_cast<int>(call->ids.size()));
    }
    calls_.insert(call);
    to_start_.push_back(call);
  }
  if (revision.queue_depth != nullptr) {
    revision.queue_depth->Set(revision.batcher->queued());
  }
  return result.next_wake;
}

void Dispatcher::FinishLocked(uint64_t id, const absl::Status& status,
                              const GenerateOutcome& outcome) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  Answer& answer = answers_.emplace_back(Answer{
      .observer = it->second.observer, .status = status, .outcome = outcome});
  answer.outcome.deployment = std::move(it->second.revision.first);
  answer.outcome.revision = it->second.revision.second;
  answer.outcome.metrics = it->second.metrics;
  requests_.erase(it);
}

void Dispatcher::RetryOrFinishLocked(uint64_t id, const absl::Status& status) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  Request& request = it->second;
  if (request.call != nullptr) {
    // Take the sequence back from the failed call, under its first id.
    request.sequence.Swap(
        request.call->request.mutable_sequences(request.index));
    request.sequence.set_id(absl::StrCat(options_.sequence_prefix, "-", id));
  }
  request.call = nullptr;
  request.index = -1;
  if (!draining_ && !stopping_ && request.attempts < options_.max_attempts &&
      options_.clock->Now() < request.deadline && request.observer->Restart()) {
    Revision* target = ServingLocked(request.revision.first);
    if (target == nullptr) {
      auto same = revisions_.find(request.revision);
      if (same != revisions_.end()) target = &same->second;
    }
    if (target != nullptr && EnqueueLocked(request, *target).ok()) {
      if (target->metrics != nullptr) target->metrics->Retry();
      DispatchLocked(RevKey(target->deployment, target->revision));
      return;
    }
  }
  FinishLocked(id, status, {});
}

void Dispatcher::FailAllLocked(const absl::Status& status) {
  std::vector<uint64_t> ids;
  for (auto& [id, request] : requests_) {
    ids.push_back(id);
    if (request.call == nullptr) {
      if (auto rev = revisions_.find(request.revision);
          rev != revisions_.end()) {
        rev->second.batcher->CancelQueued(id);
      }
    } else {
      CancelSequenceLocked(request.call, request.index);
      request.call->ids[request.index] = 0;
    }
  }
  for (uint64_t id : ids) FinishLocked(id, status, {});
}

void Dispatcher::CancelSequenceLocked(RunnerCall* call, int index) {
  if (!call->open[index]) return;  // The runner already ended it.
  if (stopping_) {
    // Nothing will read the call's stream any more.
    call->context.TryCancel();
    return;
  }
  // By id, even when it is the call's only live sequence: the call then
  // ends on its own, and the runner's last message for the sequence still
  // carries the tokens it spent, which are metered.
  struct CancelRpc {
    grpc::ClientContext context;
    v1::RunnerCancelRequest request;
    v1::RunnerCancelResponse response;
  };
  auto* rpc = new CancelRpc;
  rpc->request.add_sequence_ids(call->request.sequences(index).id());
  rpc->context.set_deadline(
      absl::ToChronoTime(options_.clock->Now() + kCancelRpcTimeout));
  {
    absl::MutexLock lock(&cancel_mu_);
    ++cancels_in_flight_;
  }
  StubLocked(call->address)
      ->async()
      ->Cancel(&rpc->context, &rpc->request, &rpc->response,
               [this, rpc](grpc::Status) {
                 delete rpc;  // Before the dispatcher may drop the channel.
                 absl::MutexLock lock(&cancel_mu_);
                 --cancels_in_flight_;
               });
}

void Dispatcher::CompleteSlotLocked(RunnerCall* call, int index) {
  if (!call->open[index]) return;
  call->open[index] = false;
  if (auto rev = revisions_.find(call->revision); rev != revisions_.end()) {
    rev->second.batcher->Complete(call->replica);
  }
}

v1::RunnerService::Stub* Dispatcher::StubLocked(const std::string& address) {
  std::unique_ptr<v1::RunnerService::Stub>& stub = stubs_[address];
  if (stub == nullptr) {
    // The dispatcher retries on another replica itself; gRPC's own retry
    // layer would only buffer every call's messages on the way.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    stub = v1::RunnerService::NewStub(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args));
  }
  return stub.get();
}

void Dispatcher::OnMessage(RunnerCall* call,
                           const v1::RunnerGenerateResponse& message) {
  Locked lock(this);
  const int index = message.index();
  if (index < 0 || index >= static_cast<int>(call->ids.size()) ||
      call->request.sequences(index).id() != message.sequence_id()) {
    return;  // Not a sequence of this call; nothing to route it to.
  }
  const bool last = message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED;
  if (last) {
    CompleteSlotLocked(call, index);
    // The freed slot goes to the head of the queue at once, before this
    // sequence's client is answered (its answer is delivered after the
    // new call started).
    DispatchLocked(call->revision);
    // Every token the runner spent is metered, the cancelled client's too.
    const UsageKey& usage_key = call->usage_keys[index];
    const v1::TokenUsage& usage = message.usage();
    if (usage.prompt_tokens() > 0 || usage.completion_tokens() > 0) {
      if (call->metrics != nullptr) {
        call->metrics->Tokens(usage.prompt_tokens(), usage.completion_tokens());
      }
      if (options_.usage != nullptr) {
        options_.usage->Record(usage_key, usage.prompt_tokens(),
                               usage.completion_tokens());
      }
    }
  }
  const uint64_t id = call->ids[index];
  if (id == 0) return;
  auto it = requests_.find(id);
  if (it == requests_.end()) {
    call->ids[index] = 0;
    return;
  }
  Request& request = it->second;
  if (!message.delta().empty()) {
    if (!request.first_token) {
      request.first_token = true;
      if (call->metrics != nullptr) {
        call->metrics->FirstToken(options_.clock->Now() - request.arrival);
      }
    }
    request.observer->OnDelta(message.delta());
  }
  if (!last) return;
  call->ids[index] = 0;
  GenerateOutcome outcome{.finish_reason = message.finish_reason(),
                          .usage = message.usage()};
  switch (message.finish_reason()) {
    case v1::FINISH_REASON_ERROR: {
      const int code = message.error().code();
      absl::Status status(code == 0 ? absl::StatusCode::kInternal
                                    : static_cast<absl::StatusCode>(code),
                          message.error().message().empty()
                              ? "the runner failed the sequence"
                              : ClientFacingMessage(message.error().message()));
      if (absl::IsUnavailable(status)) {
        RetryOrFinishLocked(id, status);
      } else {
        FinishLocked(id, status, outcome);
      }
      return;
    }
    case v1::FINISH_REASON_CANCELLED:
      if (message.error().code() ==
          static_cast<int>(absl::StatusCode::kDeadlineExceeded)) {
        FinishLocked(id, absl::DeadlineExceededError("deadline exceeded"),
                     outcome);
      } else {
        FinishLocked(id, absl::CancelledError("the runner cancelled it"),
                     outcome);
      }
      return;
    default:
      FinishLocked(id, absl::OkStatus(), outcome);
  }
}

void Dispatcher::OnCallDone(RunnerCall* call, const grpc::Status& status) {
  Locked lock(this);
  calls_.erase(call);
  ++dying_;  // Until Forget().
  bool freed = false;
  for (size_t i = 0; i < call->open.size(); ++i) {
    freed = freed || call->open[i];
    CompleteSlotLocked(call, static_cast<int>(i));
  }
  const bool unavailable = status.error_code() == grpc::StatusCode::UNAVAILABLE;
  if (unavailable && options_.replica_cooldown > absl::ZeroDuration()) {
    const absl::Time until = options_.clock->Now() + options_.replica_cooldown;
    cooldown_until_[call->address] = until;
    for (auto& [key, revision] : revisions_) ApplyReplicasLocked(revision);
    if (until < loop_wake_) KickLocked();
  }
  if (freed) DispatchLocked(call->revision);
  const absl::Status failure =
      status.ok()
          ? absl::InternalError("the runner ended the call before the sequence")
          : FromGrpcStatus(status, "runner " + call->replica);
  for (uint64_t& id : call->ids) {
    if (id == 0) continue;
    const uint64_t request = id;
    id = 0;
    if (unavailable) {
      RetryOrFinishLocked(request, failure);
    } else {
      FinishLocked(request, failure, {});
    }
  }
}

}  // namespace hangar::gateway
