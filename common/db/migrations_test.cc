// Integration tests of the migration runner against a real PostgreSQL 15.
#include "common/db/migrations.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/db/pool.h"
#include "common/testing/ports.h"
#include "common/testing/postgres_server.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hangar/migrations/embedded_test.h"

extern char** environ;

namespace hangar::db {
namespace {

using ::hangar::testing::IsOkAndHolds;
using ::hangar::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(MigrationFileNameTest, ParsesVersionAndName) {
  int64_t version = 0;
  std::string name;
  ASSERT_OK(ParseMigrationFileName("0003_add-tags_2.sql", &version, &name));
  EXPECT_EQ(version, 3);
  EXPECT_EQ(name, "add-tags_2");
  for (const char* bad : {"0003_add tags.sql", "add.sql", "_x.sql", "0_x.sql",
                          "0003_.sql", "0003_x.txt", "12345678901_x.sql"}) {
    EXPECT_THAT(ParseMigrationFileName(bad, &version, &name),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(bad)))
        << bad;
  }
}

TEST(MigrationFileNameTest, FileNameRoundTrips) {
  EXPECT_EQ(MakeMigration(3, "add_tags", "").FileName(), "0003_add_tags.sql");
}

TEST(EmbeddedMigrationsTest, MatchTheFilesByteForByte) {
  ASSERT_OK_AND_ASSIGN(std::vector<Migration> files,
                       LoadMigrationsFromDir(HANGAR_TEST_MIGRATIONS_DIR));
  const std::vector<Migration>& embedded =
      migrations::embedded_test::Migrations();
  ASSERT_EQ(embedded.size(), files.size());
  ASSERT_EQ(embedded.size(), 3u);
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(embedded[i].version, files[i].version);
    EXPECT_EQ(embedded[i].name, files[i].name);
    EXPECT_EQ(embedded[i].sql, files[i].sql);
    EXPECT_EQ(embedded[i].checksum, files[i].checksum);
    EXPECT_EQ(embedded[i].checksum.size(), 64u);
  }
  EXPECT_EQ(embedded[2].FileName(), "0010_add_tags.sql");
  EXPECT_STREQ(migrations::embedded_test::kSchema, "embedded_test");
}

class MigrationsTest : public hangar::testing::PostgresTest {
 protected:
  void SetUp() override {
    PostgresTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_OK_AND_ASSIGN(pool_, Pool::Create({.conninfo = conninfo()}));
  }

  absl::StatusOr<int64_t> Scalar(const std::string& sql) {
    return pool_->Transact<int64_t>(
        [&](pqxx::work& tx) -> absl::StatusOr<int64_t> {
          return tx.exec1(sql)[0].as<int64_t>();
        });
  }

  absl::StatusOr<bool> TableExists(const std::string& qualified) {
    return pool_->Transact<bool>([&](pqxx::work& tx) -> absl::StatusOr<bool> {
      return !tx.exec_params1("SELECT to_regclass($1) IS NULL", qualified)[0]
                  .as<bool>();
    });
  }

  std::unique_ptr<Pool> pool_;
};

TEST_F(MigrationsTest, AppliesOnceAndIsIdempotent) {
  const auto& all = migrations::embedded_test::Migrations();
  MigrationReport report;
  ASSERT_OK(ApplyMigrations(*pool_, "embedded_test", all, &report));
  EXPECT_THAT(report.applied,
              ElementsAre("0001_create_models.sql", "0002_seed.sql",
                          "0010_add_tags.sql"));
  EXPECT_EQ(report.current_version, 10);

  ASSERT_OK(ApplyMigrations(*pool_, "embedded_test", all, &report));
  EXPECT_TRUE(report.applied.empty());
  EXPECT_EQ(report.current_version, 10);

  EXPECT_THAT(Scalar("SELECT count(*) FROM embedded_test.applications"),
              IsOkAndHolds(2));
  EXPECT_THAT(Scalar("SELECT count(*) FROM embedded_test.schema_migrations"),
              IsOkAndHolds(3));
  // The quotes and backslash in 0010 reached the server verbatim.
  EXPECT_THAT(Scalar("SELECT count(*) FROM embedded_test.applications WHERE "
                     "note = '0010 ran; quotes '' ; and \\ survive'"),
              IsOkAndHolds(1));
  EXPECT_THAT(pool_->Transact<std::string>(
                  [](pqxx::work& tx) -> absl::StatusOr<std::string> {
                    return tx
                        .exec1(
                            "SELECT checksum FROM "
                            "embedded_test.schema_migrations WHERE "
                            "version = 1")[0]
                        .as<std::string>();
                  }),
              IsOkAndHolds(all[0].checksum));
}

TEST_F(MigrationsTest, AFailingMigrationRollsBackAndEarlierOnesStay) {
  std::vector<Migration> migrations = {
      MakeMigration(1, "first", "CREATE TABLE first (x int);"),
      MakeMigration(2, "broken",
                    "CREATE TABLE second (x int);\n"
                    "INSERT INTO no_such_table VALUES (1);"),
      MakeMigration(3, "third", "CREATE TABLE third (x int);"),
  };
  EXPECT_THAT(ApplyMigrations(*pool_, "svc", migrations),
              StatusIs(absl::StatusCode::kInternal,
                       AllOf(HasSubstr("0002_broken.sql"),
                             HasSubstr("relation \"no_such_table\" does not "
                                       "exist"))));
  EXPECT_THAT(TableExists("svc.first"), IsOkAndHolds(true));
  EXPECT_THAT(TableExists("svc.second"), IsOkAndHolds(false));
  EXPECT_THAT(TableExists("svc.third"), IsOkAndHolds(false));
  EXPECT_THAT(Scalar("SELECT count(*) FROM svc.schema_migrations"),
              IsOkAndHolds(1));
  EXPECT_THAT(Scalar("SELECT max(version) FROM svc.schema_migrations"),
              IsOkAndHolds(1));

  // Fixing the unapplied file is allowed and the run continues from there.
  migrations[1] = MakeMigration(2, "broken", "CREATE TABLE second (x int);");
  MigrationReport report;
  ASSERT_OK(ApplyMigrations(*pool_, "svc", migrations, &report));
  EXPECT_THAT(report.applied, ElementsAre("0002_broken.sql", "0003_third.sql"));
  EXPECT_THAT(TableExists("svc.third"), IsOkAndHolds(true));
}

TEST_F(MigrationsTest, RefusesAnAppliedMigrationWhoseChecksumChanged) {
  ASSERT_OK(ApplyMigrations(
      *pool_, "svc", {MakeMigration(1, "init", "CREATE TABLE t (x int);")}));
  EXPECT_THAT(
      ApplyMigrations(*pool_, "svc",
                      {MakeMigration(1, "init", "CREATE TABLE t (y int);"),
                       MakeMigration(2, "more", "CREATE TABLE u (x int);")}),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("0001_init.sql"), HasSubstr("changed"))));
  EXPECT_THAT(TableExists("svc.u"), IsOkAndHolds(false));
}

TEST_F(MigrationsTest, RefusesAMigrationOlderThanTheNewestApplied) {
  ASSERT_OK(ApplyMigrations(
      *pool_, "svc", {MakeMigration(5, "five", "CREATE TABLE t5 (x int);")}));
  EXPECT_THAT(
      ApplyMigrations(*pool_, "svc",
                      {MakeMigration(3, "three", "CREATE TABLE t3 (x int);"),
                       MakeMigration(5, "five", "CREATE TABLE t5 (x int);")}),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("0003_three.sql")));
}

TEST_F(MigrationsTest, LeavesMigrationsOfANewerReleaseAlone) {
  ASSERT_OK(
      ApplyMigrations(*pool_, "svc",
                      {MakeMigration(1, "one", "CREATE TABLE t1 (x int);"),
                       MakeMigration(2, "two", "CREATE TABLE t2 (x int);")}));
  MigrationReport report;
  ASSERT_OK(ApplyMigrations(
      *pool_, "svc", {MakeMigration(1, "one", "CREATE TABLE t1 (x int);")},
      &report));
  EXPECT_TRUE(report.applied.empty());
  EXPECT_EQ(report.current_version, 2);
}

TEST_F(MigrationsTest, ValidatesSchemaAndOrder) {
  EXPECT_THAT(
      ApplyMigrations(*pool_, "Bad-Name", {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Bad-Name")));
  EXPECT_THAT(
      ApplyMigrations(*pool_, "svc",
                      {MakeMigration(2, "b", ""), MakeMigration(1, "a", "")}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("increasing")));
}

// Runs hangar-migrate with `args`; returns its exit status and output.
struct Child {
  pid_t pid = -1;
  int out_fd = -1;
};

Child SpawnMigrate(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  std::string binary = HANGAR_MIGRATE_PATH;
  argv.push_back(binary.data());
  std::vector<std::string> copy = args;
  for (std::string& arg : copy) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  Child child;
  EXPECT_EQ(posix_spawn(&child.pid, binary.c_str(), &actions, nullptr,
                        argv.data(), environ),
            0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  child.out_fd = fds[0];
  return child;
}

struct Finished {
  int exit_code = -1;
  std::string output;
};

Finished Wait(Child child) {
  Finished result;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(child.out_fd, buffer, sizeof(buffer))) > 0) {
    result.output.append(buffer, static_cast<size_t>(n));
  }
  ::close(child.out_fd);
  int status = 0;
  ::waitpid(child.pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

TEST_F(MigrationsTest, TwoConcurrentProcessesApplyEachMigrationOnce) {
  // Several rounds, each on a fresh schema, so that the processes race from
  // an empty database each time.
  for (int round = 0; round < 3; ++round) {
    const std::string schema = absl::StrCat("race", round);
    const std::vector<std::string> args = {
        absl::StrCat("--db=", conninfo()), absl::StrCat("--schema=", schema),
        absl::StrCat("--dir=", HANGAR_TEST_MIGRATIONS_DIR)};
    Child first = SpawnMigrate(args);
    Child second = SpawnMigrate(args);
    Finished a = Wait(first);
    Finished b = Wait(second);
    ASSERT_EQ(a.exit_code, 0) << a.output;
    ASSERT_EQ(b.exit_code, 0) << b.output;
    std::vector<std::string> applied;
    for (const std::string& output : {a.output, b.output}) {
      for (absl::string_view line : absl::StrSplit(output, '\n')) {
        if (absl::ConsumePrefix(&line, "applied ")) {
          applied.emplace_back(line);
        }
      }
      EXPECT_THAT(output,
                  HasSubstr(absl::StrCat("schema ", schema, " at version 10")));
    }
    std::sort(applied.begin(), applied.end());
    EXPECT_THAT(applied, ElementsAre("0001_create_models.sql", "0002_seed.sql",
                                     "0010_add_tags.sql"))
        << a.output << b.output;
    EXPECT_THAT(
        Scalar(absl::StrCat("SELECT count(*) FROM ", schema, ".applications")),
        IsOkAndHolds(2));
    EXPECT_THAT(Scalar(absl::StrCat("SELECT count(*) FROM ", schema,
                                    ".schema_migrations")),
                IsOkAndHolds(3));
  }
}

TEST(MigrateToolTest, UnreachableDatabaseIsOneLineAndExitCodeOne) {
  ASSERT_OK_AND_ASSIGN(const int port,
                       ::hangar::testing::PickFreeLoopbackPort());
  Finished result = Wait(SpawnMigrate(
      {absl::StrCat("--db=host=127.0.0.1 port=", port,
                    " dbname=hangar password=hunter2"),
       "--schema=svc", absl::StrCat("--dir=", HANGAR_TEST_MIGRATIONS_DIR)}));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.output,
              AllOf(HasSubstr("hangar-migrate: UNAVAILABLE"),
                    HasSubstr(absl::StrCat("127.0.0.1:", port))));
  EXPECT_THAT(result.output, ::testing::Not(HasSubstr("hunter2")));
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1)
      << result.output;
}

TEST(MigrateToolTest, HelpListsItsFlagsWithDefaults) {
  Finished result = Wait(SpawnMigrate({"--help"}));
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_THAT(result.output, ::testing::Not(HasSubstr("No flags matched")));
  EXPECT_THAT(result.output, HasSubstr("--connect_timeout (default 5s; env "
                                       "HANGAR_MIGRATE_CONNECT_TIMEOUT or "
                                       "HANGAR_CONNECT_TIMEOUT)"));
  EXPECT_THAT(result.output, HasSubstr("--schema (default \"\";"));
}

}  // namespace
}  // namespace hangar::db
