#include "services/deployment/webhooks/webhook_url.h"

#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"

namespace hangar::deployment::webhooks {
namespace {

std::string Shown(absl::string_view url) {
  if (url.size() <= 100) return absl::StrCat("\"", url, "\"");
  return absl::StrCat("\"", url.substr(0, 100), "...\" (", url.size(),
                      " characters)");
}

absl::Status Violation(absl::string_view field, absl::string_view rule,
                       absl::string_view url) {
  return InvalidField(field, absl::StrCat(rule, "; was ", Shown(url)));
}

bool IsHostChar(char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_';
}

}  // namespace

absl::Status ValidateWebhookUrl(absl::string_view field,
                                absl::string_view url) {
  if (url.size() > kMaxWebhookUrlChars) {
    return Violation(
        field, absl::StrCat("at most ", kMaxWebhookUrlChars, " characters"),
        url);
  }
  for (unsigned char c : url) {
    if (c <= 0x20 || c == 0x7f) {
      return Violation(field, "must not contain spaces or control characters",
                       url);
    }
  }
  absl::string_view rest;
  if (absl::StartsWithIgnoreCase(url, "https://")) {
    rest = url.substr(8);
  } else if (absl::StartsWithIgnoreCase(url, "http://")) {
    rest = url.substr(7);
  } else {
    return Violation(field, "must start with http:// or https://", url);
  }
  const absl::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (absl::StrContains(authority, '@')) {
    return Violation(field, "must not carry a user or password", url);
  }
  absl::string_view host = authority;
  absl::string_view port;
  if (absl::StartsWith(authority, "[")) {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos || close == 1) {
      return Violation(field, "must name a host", url);
    }
    for (char c : authority.substr(1, close - 1)) {
      if (!absl::ascii_isxdigit(c) && c != ':' && c != '.') {
        return Violation(field, "must name a valid IPv6 host", url);
      }
    }
    host = authority.substr(0, close + 1);
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return Violation(field, "must name a host", url);
      port = after.substr(1);
      if (port.empty())
        return Violation(field, "must have a port after ':'", url);
    }
  } else {
    const size_t colon = authority.rfind(':');
    if (colon != absl::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      if (port.empty())
        return Violation(field, "must have a port after ':'", url);
    }
    if (host.empty()) return Violation(field, "must name a host", url);
    for (char c : host) {
      if (!IsHostChar(c)) {
        return Violation(
            field, "must name a host of letters, digits, '-', '_' and '.'",
            url);
      }
    }
  }
  if (!port.empty()) {
    uint32_t number = 0;
    if (port.size() > 5 || !absl::SimpleAtoi(port, &number) || number < 1 ||
        number > 65535 || !absl::ascii_isdigit(port[0])) {
      return Violation(field, "must have a port in [1, 65535]", url);
    }
  }
  return absl::OkStatus();
}

}  // namespace hangar::deployment::webhooks
