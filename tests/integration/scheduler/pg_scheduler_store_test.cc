// PgSchedulerStore against a real PostgreSQL: every field round-trips, the
// request_id is an idempotency key, deleting a set removes its replicas, and
// a replica needs its set.
#include "services/scheduler/pg_scheduler_store.h"

#include <memory>
#include <string>

#include "common/api/time.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace hangar::scheduler {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::hangar::testing::StatusIs;
using ::testing::SizeIs;

class PgSchedulerStoreTest : public hangar::testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    absl::StatusOr<std::unique_ptr<db::Pool>> pool =
        db::Pool::Create({.conninfo = conninfo()});
    ASSERT_OK(pool.status());
    pool_ = *std::move(pool);
    ASSERT_OK(MigrateSchedulerSchema(*pool_));
    ASSERT_OK(MigrateSchedulerSchema(*pool_));  // Idempotent.
    store_ = std::make_unique<PgSchedulerStore>(pool_.get());
  }

  static StoredSet Set(const std::string& deployment, int64_t revision) {
    StoredSet set;
    set.spec.set_deployment(deployment);
    set.spec.set_revision(revision);
    set.spec.set_artifact_path("/models/it's \"quoted\"; DROP TABLE x;");
    set.spec.set_hardware("t4-1x");
    set.spec.set_min_replicas(1);
    set.spec.set_max_replicas(3);
    set.spec.mutable_sampling()->set_temperature(0.5f);
    set.spec.mutable_sampling()->add_stop_sequences("\n\n");
    set.desired = 2;
    set.version = 7;
    set.create_time = absl::FromUnixMicros(1'700'000'000'123'456);
    return set;
  }

  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<PgSchedulerStore> store_;
};

TEST_F(PgSchedulerStoreTest, SetsAndReplicasRoundTrip) {
  const StoredSet set = Set("dep-a", 3);
  ASSERT_OK(store_->PutSet(set));
  StoredReplica replica{
      .name = "dep-a-r3-1",
      .deployment = "dep-a",
      .revision = 3,
      .index = 1,
      .state = v1::REPLICA_STATE_READY,
      .priority = v1::PRIORITY_SCALE_OUT,
      .node = "t4-2",
      .gpus = {3, 5},
      .address = "127.0.0.1:4321",
      .pid = 4242,
      .restarts = 2,
      .last_error = "exited with code 1",
      .stopping = true,
      .create_time = absl::FromUnixMicros(1'700'000'001'000'001),
      .ready_time = absl::FromUnixMicros(1'700'000'002'000'002),
      .placed_time = absl::FromUnixMicros(1'700'000'001'500'000),
      .replica_seconds = 12.5};
  ASSERT_OK(store_->PutReplica(replica));
  StoredReplica pending{.name = "dep-a-r3-0",
                        .deployment = "dep-a",
                        .revision = 3,
                        .index = 0,
                        .create_time = absl::FromUnixMicros(5)};
  ASSERT_OK(store_->PutReplica(pending));

  ASSERT_OK_AND_ASSIGN(SchedulerSnapshot snapshot, store_->Load());
  ASSERT_THAT(snapshot.sets, SizeIs(1));
  EXPECT_TRUE(MessageDifferencer::Equals(snapshot.sets[0].spec, set.spec));
  EXPECT_EQ(snapshot.sets[0].desired, 2);
  EXPECT_EQ(snapshot.sets[0].version, 7);
  EXPECT_FALSE(snapshot.sets[0].deleting);
  EXPECT_EQ(snapshot.sets[0].create_time, set.create_time);
  ASSERT_THAT(snapshot.replicas, SizeIs(2));
  const StoredReplica& got = snapshot.replicas[1];  // By name: -0, -1.
  EXPECT_EQ(got.name, replica.name);
  EXPECT_EQ(got.index, 1);
  EXPECT_EQ(got.state, v1::REPLICA_STATE_READY);
  EXPECT_EQ(got.priority, v1::PRIORITY_SCALE_OUT);
  EXPECT_EQ(got.node, "t4-2");
  EXPECT_EQ(got.gpus, (std::vector<int>{3, 5}));
  EXPECT_EQ(got.address, replica.address);
  EXPECT_EQ(got.pid, 4242);
  EXPECT_EQ(got.restarts, 2);
  EXPECT_EQ(got.last_error, replica.last_error);
  EXPECT_TRUE(got.stopping);
  EXPECT_EQ(got.create_time, replica.create_time);
  EXPECT_EQ(got.ready_time, replica.ready_time);
  EXPECT_EQ(got.placed_time, replica.placed_time);
  EXPECT_DOUBLE_EQ(got.replica_seconds, 12.5);
  EXPECT_FALSE(snapshot.replicas[0].ready_time.has_value());
  EXPECT_FALSE(snapshot.replicas[0].placed_time.has_value());
  EXPECT_TRUE(snapshot.replicas[0].gpus.empty());

  // An update replaces; deleting one replica leaves the other.
  replica.state = v1::REPLICA_STATE_DRAINING;
  replica.gpus = {};
  ASSERT_OK(store_->PutReplica(replica));
  ASSERT_OK(store_->DeleteReplica("dep-a-r3-0"));
  ASSERT_OK_AND_ASSIGN(snapshot, store_->Load());
  ASSERT_THAT(snapshot.replicas, SizeIs(1));
  EXPECT_EQ(snapshot.replicas[0].state, v1::REPLICA_STATE_DRAINING);
  EXPECT_TRUE(snapshot.replicas[0].gpus.empty());

  // Deleting the set removes its replicas; a replica needs a set.
  ASSERT_OK(store_->DeleteSet("dep-a", 3));
  EXPECT_THAT(store_->DeleteSet("dep-a", 3),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  ASSERT_OK_AND_ASSIGN(snapshot, store_->Load());
  EXPECT_THAT(snapshot.sets, SizeIs(0));
  EXPECT_THAT(snapshot.replicas, SizeIs(0));
  EXPECT_THAT(store_->PutReplica(replica),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
}

TEST_F(PgSchedulerStoreTest, JobsAreIdempotentByRequestId) {
  StoredJob job;
  job.request_id = "req-1";
  job.job.set_name("job-1");
  job.job.mutable_spec()->add_argv("/bin/sh");
  job.job.mutable_spec()->add_argv("-c");
  job.job.mutable_spec()->add_argv("echo 'hi'; exit 3");
  job.job.mutable_spec()->set_hardware("t4-1x");
  job.job.mutable_spec()->set_owner("optimizer:opt-1");
  job.job.set_state(v1::JOB_STATE_PENDING);
  *job.job.mutable_create_time() =
      ToProtoTimestamp(absl::FromUnixMicros(1'700'000'000'000'001));
  ASSERT_OK_AND_ASSIGN(StoredJob created, store_->CreateJob(job));
  EXPECT_EQ(created.job.name(), "job-1");

  StoredJob retry = job;
  retry.job.set_name("job-2");
  ASSERT_OK_AND_ASSIGN(StoredJob again, store_->CreateJob(retry));
  EXPECT_EQ(again.job.name(), "job-1");

  job.job.set_state(v1::JOB_STATE_FAILED);
  job.job.set_exit_code(3);
  job.job.set_log_tail("hi\n");
  job.job.set_failure_reason("exited with code 3");
  job.job.set_node("t4-0");
  job.job.add_gpus(1);
  job.pid = 99;
  *job.job.mutable_start_time() =
      ToProtoTimestamp(absl::FromUnixMicros(1'700'000'000'100'000));
  *job.job.mutable_end_time() =
      ToProtoTimestamp(absl::FromUnixMicros(1'700'000'000'200'000));
  ASSERT_OK(store_->PutJob(job));
  ASSERT_OK_AND_ASSIGN(SchedulerSnapshot snapshot, store_->Load());
  ASSERT_THAT(snapshot.jobs, SizeIs(1));
  EXPECT_TRUE(MessageDifferencer::Equals(snapshot.jobs[0].job, job.job))
      << snapshot.jobs[0].job.DebugString();
  EXPECT_EQ(snapshot.jobs[0].request_id, "req-1");
  EXPECT_EQ(snapshot.jobs[0].pid, 99);

  StoredJob unknown = job;
  unknown.job.set_name("job-9");
  EXPECT_THAT(store_->PutJob(unknown),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

}  // namespace
}  // namespace hangar::scheduler
