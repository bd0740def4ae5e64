#include "tools/hangarctl/output.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"

namespace hangar::ctl {

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(headers_.size());
  for (size_t i = 0; i < headers_.size(); ++i) widths[i] = headers_[i].size();
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i + 1 == cells.size()) {
        absl::StrAppend(&line, cells[i]);
      } else {
        absl::StrAppend(
            &line,
            absl::StrFormat("%-*s  ", static_cast<int>(widths[i]), cells[i]));
      }
    }
    out << line << "\n";
  };
  print_row(headers_);
  for (const auto& row : rows_) print_row(row);
}

void Details::Add(const std::string& label, const std::string& value) {
  rows_.emplace_back(label, value);
}

void Details::Print(std::ostream& out) const {
  size_t width = 0;
  for (const auto& [label, value] : rows_) {
    width = std::max(width, label.size() + 1);
  }
  for (const auto& [label, value] : rows_) {
    out << absl::StrFormat("%-*s  ", static_cast<int>(width), label + ":")
        << value << "\n";
  }
}

void PrintJson(const google::protobuf::Message& message, std::ostream& out) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  out << json;
  if (json.empty() || json.back() != '\n') out << "\n";
}

std::string CompactJson(const google::protobuf::Message& message) {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json);
  return json;
}

std::string EnumName(const google::protobuf::EnumDescriptor* descriptor,
                     int value) {
  const google::protobuf::EnumValueDescriptor* found =
      descriptor->FindValueByNumber(value);
  if (found == nullptr) return absl::StrCat(value);
  // The prefix every value shares: the first value's name up to its
  // "_UNSPECIFIED" (DEPLOYMENT_STATE_UNSPECIFIED -> DEPLOYMENT_STATE_).
  std::string prefix;
  const std::string& first = descriptor->value(0)->name();
  if (absl::EndsWith(first, "_UNSPECIFIED")) {
    prefix = first.substr(0, first.size() - std::string("UNSPECIFIED").size());
  }
  std::string name = found->name();
  if (!prefix.empty() && absl::StartsWith(name, prefix)) {
    name = name.substr(prefix.size());
  }
  return name;
}

std::string FormatMoney(const v1::Money& money) {
  std::string amount = absl::StrFormat("%.6f", money.micros() / 1e6);
  // Keep at least two decimals.
  while (amount.size() > 3 && amount.back() == '0' &&
         amount[amount.size() - 3] != '.') {
    amount.pop_back();
  }
  return absl::StrCat(
      amount, " ",
      money.currency_code().empty() ? "USD" : money.currency_code());
}

std::string FormatRecipe(const v1::OptimizationRecipe& recipe) {
  if (recipe.engine() == v1::ENGINE_UNSPECIFIED ||
      recipe.engine() == v1::ENGINE_NONE) {
    return "none";
  }
  std::string text =
      absl::AsciiStrToLower(EnumName(v1::Engine_descriptor(), recipe.engine()));
  if (recipe.quantization() != v1::QUANTIZATION_UNSPECIFIED) {
    absl::StrAppend(&text, "/",
                    absl::AsciiStrToLower(EnumName(
                        v1::Quantization_descriptor(), recipe.quantization())));
  }
  return text;
}

std::string FormatCount(int64_t count) {
  if (count >= 1'000'000'000) return absl::StrFormat("%.1fB", count / 1e9);
  if (count >= 1'000'000) return absl::StrFormat("%.0fM", count / 1e6);
  if (count >= 1'000) return absl::StrFormat("%.0fK", count / 1e3);
  return absl::StrCat(count);
}

std::string FormatBytes(int64_t bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FormatAge(const google::protobuf::Timestamp& time) {
  if (time.seconds() == 0 && time.nanos() == 0) return "-";
  const int64_t seconds =
      std::max<int64_t>(0, absl::ToUnixSeconds(absl::Now()) - time.seconds());
  if (seconds < 120) return absl::StrCat(seconds, "s");
  if (seconds < 2 * 3600) return absl::StrCat(seconds / 60, "m");
  if (seconds < 2 * 86400) return absl::StrCat(seconds / 3600, "h");
  return absl::StrCat(seconds / 86400, "d");
}

std::string FormatTime(const google::protobuf::Timestamp& time) {
  if (time.seconds() == 0 && time.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                          absl::FromUnixSeconds(time.seconds()),
                          absl::UTCTimeZone());
}

std::string OrDash(const std::string& value) {
  return value.empty() ? "-" : value;
}

ProgressDisplay::ProgressDisplay(bool terminal, std::ostream& out)
    : terminal_(terminal), out_(out) {}

ProgressDisplay::~ProgressDisplay() { Finish(); }

void ProgressDisplay::Update(const std::string& stage, int64_t done,
                             int64_t total, bool bytes,
                             const std::string& message) {
  auto amount = [bytes](int64_t value) {
    return bytes ? FormatBytes(value) : absl::StrCat(value);
  };
  std::string counts;
  int tenth = -1;
  int percent = -1;
  if (total > 0) {
    percent = static_cast<int>(std::min<int64_t>(100, done * 100 / total));
    tenth = percent / 10;
    counts = absl::StrCat(amount(done), " / ", amount(total));
  } else if (done > 0) {
    counts = amount(done);
  }
  if (terminal_) {
    std::string line = absl::StrFormat("%-11s", stage);
    if (percent >= 0) {
      constexpr int kWidth = 24;
      const int filled = percent * kWidth / 100;
      std::string bar(kWidth, ' ');
      for (int i = 0; i < filled; ++i) bar[i] = '=';
      if (filled < kWidth) bar[filled] = '>';
      absl::StrAppend(&line, " [", bar, "] ",
                      absl::StrFormat("%3d%%", percent));
    }
    if (!counts.empty()) absl::StrAppend(&line, "  ", counts);
    if (!message.empty()) absl::StrAppend(&line, "  ", message);
    if (line.size() > 120) line.resize(120);
    out_ << "\r\033[K" << line << std::flush;
    drawn_ = true;
    return;
  }
  if (stage == last_stage_ && message == last_message_ &&
      tenth == last_tenth_) {
    return;
  }
  last_stage_ = stage;
  last_message_ = message;
  last_tenth_ = tenth;
  std::string line = stage;
  if (percent >= 0) absl::StrAppend(&line, " ", percent, "%");
  if (!counts.empty()) absl::StrAppend(&line, " (", counts, ")");
  if (!message.empty()) absl::StrAppend(&line, ": ", message);
  out_ << line << std::endl;
}

void ProgressDisplay::Finish() {
  if (terminal_ && drawn_) {
    out_ << "\n" << std::flush;
    drawn_ = false;
  }
}

}  // namespace hangar::ctl
