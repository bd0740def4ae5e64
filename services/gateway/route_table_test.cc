#include "services/gateway/route_table.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

v1::Route MakeRoute(
    const std::string& deployment, int64_t revision, bool serving,
    std::vector<std::pair<std::string, v1::ReplicaState>> replicas) {
  v1::Route route;
  route.set_deployment(deployment);
  route.set_display_name("chat-" + deployment);
  route.set_revision(revision);
  route.set_serving(serving);
  route.set_inference_batch_size(8);
  route.set_context_length(2048);
  route.mutable_sampling()->set_max_tokens(128);
  for (const auto& [name, state] : replicas) {
    v1::RouteReplica* replica = route.add_replicas();
    replica->set_name(name);
    replica->set_address("127.0.0.1:1");
    replica->set_state(state);
    replica->set_max_batch(8);
  }
  return route;
}

v1::RouteEvent Event(v1::RouteEvent::Kind kind, std::vector<v1::Route> routes) {
  v1::RouteEvent event;
  event.set_kind(kind);
  for (v1::Route& route : routes) *event.add_routes() = std::move(route);
  return event;
}

TEST(RouteTableTest, ResolvesByIdOrDisplayNameToTheServingRevision) {
  RouteTable table;
  table.Apply(Event(v1::RouteEvent::KIND_SNAPSHOT,
                    {MakeRoute("dep-1", 1, true,
                               {{"r1", v1::REPLICA_STATE_READY},
                                {"r2", v1::REPLICA_STATE_DRAINING},
                                {"r3", v1::REPLICA_STATE_STARTING}})}));
  for (const char* name : {"dep-1", "chat-dep-1"}) {
    absl::StatusOr<ResolvedRoute> route = table.Resolve(name);
    ASSERT_TRUE(route.ok()) << route.status();
    EXPECT_EQ(route->deployment, "dep-1");
    EXPECT_EQ(route->revision, 1);
    EXPECT_EQ(route->inference_batch_size, 8);
    EXPECT_EQ(route->sampling.max_tokens(), 128);
    ASSERT_THAT(route->ready, SizeIs(1));
    EXPECT_EQ(route->ready[0].name(), "r1");
    ASSERT_THAT(route->draining, SizeIs(1));
    EXPECT_EQ(route->draining[0].name(), "r2");
  }
}

TEST(RouteTableTest, ARedeploySwitchesWhenTheFlagMoves) {
  RouteTable table;
  table.Apply(
      Event(v1::RouteEvent::KIND_SNAPSHOT,
            {MakeRoute("dep-1", 1, true, {{"old", v1::REPLICA_STATE_READY}})}));
  // Revision 2 comes up beside 1; 1 still serves.
  table.Apply(Event(
      v1::RouteEvent::KIND_UPSERT,
      {MakeRoute("dep-1", 2, false, {{"new", v1::REPLICA_STATE_READY}})}));
  EXPECT_EQ(table.Resolve("dep-1")->revision, 1);
  // The deployment service flips the flag: 2 serves, 1 drains.
  table.Apply(Event(
      v1::RouteEvent::KIND_UPSERT,
      {MakeRoute("dep-1", 1, false, {{"old", v1::REPLICA_STATE_DRAINING}}),
       MakeRoute("dep-1", 2, true, {{"new", v1::REPLICA_STATE_READY}})}));
  absl::StatusOr<ResolvedRoute> route = table.Resolve("dep-1");
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->revision, 2);
  EXPECT_EQ(route->ready[0].name(), "new");
  // Revision 1's route is deleted once released.
  v1::Route gone;
  gone.set_deployment("dep-1");
  gone.set_revision(1);
  table.Apply(Event(v1::RouteEvent::KIND_DELETE, {gone}));
  EXPECT_THAT(table.Routes(), SizeIs(1));
}

TEST(RouteTableTest, UnknownStartingAndUnloadedAnswersDiffer) {
  RouteTable table;
  EXPECT_EQ(table.Resolve("dep-1").status().code(),
            absl::StatusCode::kUnavailable);
  table.Apply(
      Event(v1::RouteEvent::KIND_SNAPSHOT,
            {MakeRoute("dep-1", 1, true, {{"r1", v1::REPLICA_STATE_STARTING}}),
             MakeRoute("dep-2", 1, false, {{"r1", v1::REPLICA_STATE_READY}})}));
  absl::Status unknown = table.Resolve("dep-9").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.message(), HasSubstr("\"dep-9\" not found"));
  absl::Status starting = table.Resolve("dep-1").status();
  EXPECT_EQ(starting.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(starting.message(), HasSubstr("no ready replica"));
  absl::Status not_serving = table.Resolve("dep-2").status();
  EXPECT_EQ(not_serving.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(not_serving.message(), HasSubstr("no serving revision"));
}

TEST(RouteTableTest, ASnapshotReplacesEverything) {
  RouteTable table;
  table.Apply(
      Event(v1::RouteEvent::KIND_SNAPSHOT,
            {MakeRoute("dep-1", 1, true, {{"r1", v1::REPLICA_STATE_READY}})}));
  table.Apply(
      Event(v1::RouteEvent::KIND_SNAPSHOT,
            {MakeRoute("dep-2", 1, true, {{"r1", v1::REPLICA_STATE_READY}})}));
  EXPECT_EQ(table.Resolve("dep-1").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(table.Resolve("dep-2").ok());
}

}  // namespace
}  // namespace hangar::gateway
