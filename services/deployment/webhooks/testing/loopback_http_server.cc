#include "services/deployment/webhooks/testing/loopback_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace hangar::deployment::webhooks::testing {

absl::StatusOr<std::unique_ptr<LoopbackHttpServer>>
LoopbackHttpServer::Start() {
  std::unique_ptr<LoopbackHttpServer> server(new LoopbackHttpServer());
  server->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (server->listen_fd_ < 0) {
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (bind(server->listen_fd_, reinterpret_cast<sockaddr*>(&address),
           sizeof(address)) != 0 ||
      listen(server->listen_fd_, 16) != 0) {
    return absl::InternalError(absl::StrCat("bind/listen: ", strerror(errno)));
  }
  socklen_t length = sizeof(address);
  getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&address),
              &length);
  server->port_ = ntohs(address.sin_port);
  server->thread_ = std::thread([raw = server.get()] { raw->Serve(); });
  return server;
}

LoopbackHttpServer::~LoopbackHttpServer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

std::string LoopbackHttpServer::url(const std::string& path) const {
  return absl::StrCat("http://127.0.0.1:", port_, path);
}

void LoopbackHttpServer::SetStatuses(std::deque<int> statuses, int then) {
  absl::MutexLock lock(&mu_);
  statuses_ = std::move(statuses);
  then_ = then;
}

void LoopbackHttpServer::SetDelay(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  delay_ = delay;
}

int LoopbackHttpServer::received() const {
  absl::MutexLock lock(&mu_);
  return received_;
}

std::vector<LoopbackHttpServer::Request> LoopbackHttpServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

bool LoopbackHttpServer::WaitForRequests(size_t count,
                                         absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto enough = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return requests_.size() >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

void LoopbackHttpServer::Serve() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    // Wake every 20 ms to notice stopping_.
    pollfd waiting{.fd = listen_fd_, .events = POLLIN, .revents = 0};
    if (poll(&waiting, 1, 20) <= 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    Handle(fd);
    close(fd);
  }
}

void LoopbackHttpServer::Handle(int fd) {
  std::string data;
  char buffer[4096];
  size_t header_end = std::string::npos;
  size_t content_length = 0;
  Request request;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    if (header_end != std::string::npos &&
        data.size() >= header_end + 4 + content_length) {
      break;
    }
    if (absl::Now() > deadline) return;
    pollfd readable{.fd = fd, .events = POLLIN, .revents = 0};
    if (poll(&readable, 1, 100) <= 0) continue;
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) return;
    data.append(buffer, static_cast<size_t>(n));
    if (header_end == std::string::npos) {
      header_end = data.find("\r\n\r\n");
      if (header_end == std::string::npos) continue;
      std::vector<std::string> lines =
          absl::StrSplit(data.substr(0, header_end), "\r\n");
      std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
      if (first.size() >= 2) {
        request.method = first[0];
        request.target = first[1];
      }
      for (size_t i = 1; i < lines.size(); ++i) {
        const size_t colon = lines[i].find(':');
        if (colon == std::string::npos) continue;
        std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
        std::string value(
            absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
        request.headers[name] = value;
      }
      auto length = request.headers.find("content-length");
      if (length != request.headers.end()) {
        (void)absl::SimpleAtoi(length->second, &content_length);
      }
    }
  }
  request.body = data.substr(header_end + 4, content_length);
  int status = 200;
  {
    absl::MutexLock lock(&mu_);
    ++received_;
    // Hold the answer back (the client may give up meanwhile).
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay_);
    if (!statuses_.empty()) {
      status = statuses_.front();
      statuses_.pop_front();
    } else {
      status = then_;
    }
  }
  const std::string answer =
      absl::StrCat("HTTP/1.1 ", status, " Test\r\nContent-Length: 0\r\n",
                   "Connection: close\r\n\r\n");
  (void)!write(fd, answer.data(), answer.size());
  // Recorded after the answer is written, so a test that saw N requests
  // knows the client got N answers (the sender then records the attempt).
  absl::MutexLock lock(&mu_);
  requests_.push_back(std::move(request));
}

}  // namespace hangar::deployment::webhooks::testing
