// GoogleTest matchers for absl::Status and absl::StatusOr<T>, in the manner of
// Envoy's test/test_common/status_utility.h:
//
//   EXPECT_THAT(store.Put(row), IsOk());
//   EXPECT_THAT(store.Get("x"), StatusIs(absl::StatusCode::kNotFound,
//                                        HasSubstr("x")));
//   EXPECT_THAT(ParseRatio("0.5"), IsOkAndHolds(0.5));
//   ASSERT_OK_AND_ASSIGN(auto model, store.Get("tiny"));
#ifndef HANGAR_COMMON_TESTING_STATUS_MATCHERS_H_
#define HANGAR_COMMON_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hangar::testing {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  if (!status.ok()) *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P(IsOkAndHolds, value_matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(code) +
               " and a matching message") {
  const absl::Status& status = GetStatus(arg);
  if (status.code() != code) {
    *result_listener << "status is " << status;
    return false;
  }
  return ::testing::ExplainMatchResult(
      message_matcher, std::string(status.message()), result_listener);
}

}  // namespace hangar::testing

#define HANGAR_TESTING_CONCAT_INNER_(a, b) a##b
#define HANGAR_TESTING_CONCAT_(a, b) HANGAR_TESTING_CONCAT_INNER_(a, b)

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::hangar::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::hangar::testing::IsOk())

#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  HANGAR_ASSERT_OK_AND_ASSIGN_IMPL_(    \
      HANGAR_TESTING_CONCAT_(hangar_statusor_, __LINE__), lhs, expr)
#define HANGAR_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                      \
  ASSERT_TRUE(statusor.ok()) << statusor.status();             \
  lhs = std::move(statusor).value()

#endif  // HANGAR_COMMON_TESTING_STATUS_MATCHERS_H_
