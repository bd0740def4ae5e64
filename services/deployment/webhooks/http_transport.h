// How a webhook delivery leaves the process: one HTTP POST.
//
// WebhookTransport is the seam between the sender and the network; the
// production implementation, CurlTransport, POSTs with libcurl:
//
//   - at most `connect_timeout` to connect and `timeout` for the whole
//     exchange (libcurl's CONNECTTIMEOUT_MS / TIMEOUT_MS);
//   - http and https only, no redirects followed (a 3xx is an answer that
//     is not 2xx, so the delivery is retried), certificates verified;
//   - the answer's body is read and dropped (at most 64 KiB are read);
//   - `cancelled` is polled while the exchange runs, so a stopping server
//     does not wait out a slow receiver.
//
// Post() never fails as a call: the outcome (the HTTP status, or 0 and the
// transport error) is what the sender records on the delivery.
#ifndef HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_HTTP_TRANSPORT_H_
#define HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_HTTP_TRANSPORT_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace hangar::deployment::webhooks {

struct HttpPost {
  std::string url;
  // "Name: value" lines, Content-Type included.
  std::vector<std::string> headers;
  std::string body;
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration timeout = absl::Seconds(5);
  // Polled while the request runs; returning true aborts it.
  std::function<bool()> cancelled;
};

struct HttpOutcome {
  // The answer's status; 0 when there was none.
  int http_status = 0;
  // Empty when an answer came; otherwise what went wrong ("Timeout was
  // reached", "Couldn't connect to server").
  std::string error;
};

class WebhookTransport {
 public:
  virtual ~WebhookTransport() = default;
  virtual HttpOutcome Post(const HttpPost& post) = 0;
};

class CurlTransport final : public WebhookTransport {
 public:
  explicit CurlTransport(std::string user_agent = "hangar-webhooks/1");
  HttpOutcome Post(const HttpPost& post) override;

 private:
  const std::string user_agent_;
};

}  // namespace hangar::deployment::webhooks

#endif  // HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_HTTP_TRANSPORT_H_
