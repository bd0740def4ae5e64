// How hangarctl shows results: kubectl-style tables for people, proto JSON
// for scripts (--output json), short human forms of money, bytes, ages and
// enum values, and a progress display that redraws one line on a terminal
// and prints plain lines (only when something worth reading changed) when
// stdout is a pipe or a file.
#ifndef HANGAR_TOOLS_HANGARCTL_OUTPUT_H_
#define HANGAR_TOOLS_HANGARCTL_OUTPUT_H_

#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "hangar/v1/common.pb.h"

namespace hangar::ctl {

// Columns padded to their widest cell, two spaces apart, headers in capitals
// ("NAME  STATE  AGE").
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void AddRow(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  void Print(std::ostream& out = std::cout) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// Key-value lines for one object ("State:      DEPLOYED"), labels aligned.
class Details {
 public:
  void Add(const std::string& label, const std::string& value);
  void Print(std::ostream& out = std::cout) const;

 private:
  std::vector<std::pair<std::string, std::string>> rows_;
};

// The message as proto JSON (lowerCamel names, indented), newline-ended.
void PrintJson(const google::protobuf::Message& message,
               std::ostream& out = std::cout);
// One line of compact proto JSON (for streams).
std::string CompactJson(const google::protobuf::Message& message);

// "DEPLOYED" from "DEPLOYMENT_STATE_DEPLOYED": the enum value's name without
// the prefix its enum's values share.
std::string EnumName(const google::protobuf::EnumDescriptor* descriptor,
                     int value);
// "1.818 USD/h" style: the amount with 2 to 6 decimals, and the currency.
std::string FormatMoney(const v1::Money& money);
// "ctranslate2/int8", or "none" for no optimization.
std::string FormatRecipe(const v1::OptimizationRecipe& recipe);
// "135M", "8.0B": a parameter count.
std::string FormatCount(int64_t count);
// "1.5 GiB".
std::string FormatBytes(int64_t bytes);
// kubectl's AGE: "42s", "5m", "3h", "12d"; "-" for an unset time.
std::string FormatAge(const google::protobuf::Timestamp& time);
// RFC 3339 UTC, or "-" when unset.
std::string FormatTime(const google::protobuf::Timestamp& time);
// "-" for an empty value.
std::string OrDash(const std::string& value);

// Progress of long work. On a terminal: one line redrawn in place with a
// bar ("[=======>      ] 52%  1.2 GiB / 2.3 GiB"). Otherwise: a plain line
// when the stage or message changes or the progress passes another tenth.
class ProgressDisplay {
 public:
  // `bytes`: done/total are bytes (shown as sizes), else counts.
  ProgressDisplay(bool terminal, std::ostream& out = std::cout);
  ~ProgressDisplay();

  // `stage` names the step ("DOWNLOADING", "OPTIMIZING"); total 0 means
  // unknown.
  void Update(const std::string& stage, int64_t done, int64_t total, bool bytes,
              const std::string& message);
  // Ends the redrawn line (no-op for plain lines).
  void Finish();

 private:
  bool terminal_;
  std::ostream& out_;
  bool drawn_ = false;
  std::string last_stage_;
  std::string last_message_;
  int last_tenth_ = -1;
};

}  // namespace hangar::ctl

#endif  // HANGAR_TOOLS_HANGARCTL_OUTPUT_H_
