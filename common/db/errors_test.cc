#include "common/db/errors.h"

#include <pqxx/except>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::db {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(CodeForSqlStateTest, MapsTheStatesServicesCareAbout) {
  EXPECT_EQ(CodeForSqlState("23505"), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(CodeForSqlState("23503"), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CodeForSqlState("23514"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodeForSqlState("23502"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodeForSqlState("22P02"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodeForSqlState("40001"), absl::StatusCode::kAborted);
  EXPECT_EQ(CodeForSqlState("40P01"), absl::StatusCode::kAborted);
  EXPECT_EQ(CodeForSqlState("08006"), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CodeForSqlState("57P01"), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CodeForSqlState("57014"), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(CodeForSqlState("53300"), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(CodeForSqlState("42601"), absl::StatusCode::kInternal);
  EXPECT_EQ(CodeForSqlState(""), absl::StatusCode::kInternal);
}

TEST(CodeForSqlStateTest, OnlySerializationAndDeadlockAreRetryable) {
  EXPECT_TRUE(IsRetryableSqlState("40001"));
  EXPECT_TRUE(IsRetryableSqlState("40P01"));
  EXPECT_FALSE(IsRetryableSqlState("40002"));
  EXPECT_FALSE(IsRetryableSqlState("23505"));
}

TEST(StatusFromExceptionTest, KeepsThePrimaryMessageAndState) {
  pqxx::unique_violation error(
      "ERROR:  duplicate key value violates unique constraint \"m_key\"\n"
      "DETAIL:  Key (name)=(secret-value) already exists.\n",
      "INSERT INTO m VALUES ($1)", "23505");
  absl::Status status = StatusFromException(error, "creating model");
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(status.message(),
            "creating model: duplicate key value violates unique constraint "
            "\"m_key\" [SQLSTATE 23505]");
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("secret-value")));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("INSERT")));
}

TEST(StatusFromExceptionTest, BrokenConnectionIsUnavailableOnOneLine) {
  pqxx::broken_connection error(
      "connection to server at \"127.0.0.1\", port 1 failed: Connection "
      "refused\n\tIs the server running on that host?\n");
  absl::Status status = StatusFromException(error);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("\n")));
}

TEST(DescribeEndpointTest, NamesHostAndPortButNeverThePassword) {
  EXPECT_EQ(DescribeEndpoint("host=db.internal port=6543 dbname=hangar "
                             "user=svc password=hunter2"),
            "db.internal:6543");
  EXPECT_EQ(DescribeEndpoint("postgresql://svc:hunter2@db.internal:6543/x"),
            "db.internal:6543");
  EXPECT_EQ(DatabaseName("postgresql://svc:hunter2@db.internal:6543/x"), "x");
  EXPECT_EQ(DescribeEndpoint("host=h dbname=d password='unterminated"),
            "<malformed conninfo>");
}

}  // namespace
}  // namespace hangar::db
