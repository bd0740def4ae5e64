// The rules a webhook URL must follow, checked when a deployment's
// webhook_url is set (CreateDeployment, UpdateDeployment):
//
//  - the scheme is http:// or https:// (any letter case);
//  - at most 2048 characters, none of them a space or a control character;
//  - a host (a name, an IPv4 address or a bracketed IPv6 address), with an
//    optional port in [1, 65535];
//  - no user:password@ part (it would be shown by GetDeployment).
//
// A violation is INVALID_ARGUMENT "<field>: <rule>; was <value>" (values
// longer than 100 characters are cut), the same shape as every other field
// error of the service:
//
//   RETURN_IF_ERROR(ValidateWebhookUrl("webhook_url", request.webhook_url()));
#ifndef HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_WEBHOOK_URL_H_
#define HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_WEBHOOK_URL_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hangar::deployment::webhooks {

inline constexpr size_t kMaxWebhookUrlChars = 2048;

// OK when `url` follows the rules above (an empty URL does not: callers
// treat "" as "no webhook" before asking).
absl::Status ValidateWebhookUrl(absl::string_view field, absl::string_view url);

}  // namespace hangar::deployment::webhooks

#endif  // HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_WEBHOOK_URL_H_
