// A tiny HTTP/1.1 server on 127.0.0.1 for webhook tests: a real socket that
// a real client (libcurl) POSTs to.
//
// One thread accepts connections one at a time; for each it reads the
// request line, the headers and a Content-Length body, records them, and
// answers with the next configured status (an empty body, Connection:
// close). Not a general server: no chunked bodies, no keep-alive.
//
//   ASSERT_OK_AND_ASSIGN(auto receiver, LoopbackHttpServer::Start());
//   receiver->SetStatuses({500, 500}, /*then=*/200);
//   ... POST to receiver->url() ...
//   ASSERT_TRUE(receiver->WaitForRequests(3, absl::Seconds(10)));
//   receiver->requests()[2].headers.at("x-hangar-signature");
#ifndef HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_TESTING_LOOPBACK_HTTP_SERVER_H_
#define HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_TESTING_LOOPBACK_HTTP_SERVER_H_

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hangar::deployment::webhooks::testing {

class LoopbackHttpServer {
 public:
  struct Request {
    std::string method;
    std::string target;
    // Header names lower-cased.
    std::map<std::string, std::string> headers;
    std::string body;
  };

  static absl::StatusOr<std::unique_ptr<LoopbackHttpServer>> Start();
  ~LoopbackHttpServer();  // Stops the thread and closes the socket.

  int port() const { return port_; }
  // "http://127.0.0.1:<port><path>".
  std::string url(const std::string& path = "/hook") const;

  // Answers the next requests with `statuses` in order, then with `then`.
  void SetStatuses(std::deque<int> statuses, int then);

  // Holds each answer back this long (until the server stops, at most):
  // a slow or hung receiver.
  void SetDelay(absl::Duration delay);
  // Requests whose headers and body were read (answered or not).
  int received() const;

  std::vector<Request> requests() const;
  // Waits (real time, up to `timeout`) until `count` requests were recorded.
  bool WaitForRequests(size_t count, absl::Duration timeout) const;

 private:
  LoopbackHttpServer() = default;
  void Serve();
  void Handle(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;

  mutable absl::Mutex mu_;  // Protects the fields below.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<int> statuses_ ABSL_GUARDED_BY(mu_);
  int then_ ABSL_GUARDED_BY(mu_) = 200;
  absl::Duration delay_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  int received_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hangar::deployment::webhooks::testing

#endif  // HANGAR_SERVICES_DEPLOYMENT_WEBHOOKS_TESTING_LOOPBACK_HTTP_SERVER_H_
