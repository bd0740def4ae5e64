#include "tests/integration/catalog/fake_hub.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/auth/crypto.h"
#include "nlohmann/json.hpp"

namespace hangar::testing {
namespace {

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t sent = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent <= 0) return false;
    data.remove_prefix(static_cast<size_t>(sent));
  }
  return true;
}

std::string Decode(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      int value = 0;
      if (absl::SimpleHexAtoi(text.substr(i + 1, 2), &value)) {
        out.push_back(static_cast<char>(value));
        i += 2;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

void Respond(int fd, int code, absl::string_view reason, absl::string_view body,
             const std::vector<std::string>& extra_headers = {}) {
  std::string head = absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\n",
                                  "Content-Length: ", body.size(), "\r\n",
                                  "Connection: close\r\n");
  for (const std::string& header : extra_headers)
    absl::StrAppend(&head, header, "\r\n");
  absl::StrAppend(&head, "\r\n");
  SendAll(fd, head) && SendAll(fd, body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<FakeHub>> FakeHub::Start() {
  std::unique_ptr<FakeHub> hub(new FakeHub());
  hub->listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  if (hub->listen_fd_ < 0) return absl::InternalError("socket failed");
  int one = 1;
  setsockopt(hub->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (bind(hub->listen_fd_, reinterpret_cast<sockaddr*>(&address),
           sizeof(address)) != 0 ||
      listen(hub->listen_fd_, 64) != 0) {
    return absl::InternalError(
        absl::StrCat("bind/listen: ", std::strerror(errno)));
  }
  socklen_t length = sizeof(address);
  getsockname(hub->listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
  hub->port_ = ntohs(address.sin_port);
  hub->acceptor_ = std::thread([raw = hub.get()] { raw->AcceptLoop(); });
  return hub;
}

FakeHub::~FakeHub() {
  Release();
  stopping_ = true;
  acceptor_.join();
  close(listen_fd_);
  std::vector<std::thread> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  for (std::thread& connection : connections) connection.join();
}

void FakeHub::Hold(const std::string& file) {
  absl::MutexLock lock(&mu_);
  held_file_ = file;
}

void FakeHub::Release() {
  absl::MutexLock lock(&mu_);
  held_file_.clear();
}

bool FakeHub::AwaitHeldDownload() {
  absl::MutexLock lock(&mu_);
  auto waiting = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return held_waiters_ > 0;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&waiting), absl::Seconds(30));
}

std::string FakeHub::endpoint() const {
  return absl::StrCat("http://127.0.0.1:", port_);
}

void FakeHub::AddRepo(Repo repo) {
  absl::MutexLock lock(&mu_);
  repos_[repo.id] = std::move(repo);
}

void FakeHub::SetDown(bool down) {
  absl::MutexLock lock(&mu_);
  down_ = down;
}

void FakeHub::GoDownAfterNextDrop() {
  absl::MutexLock lock(&mu_);
  down_after_drop_ = true;
}

int FakeHub::RefusedWhileDown() {
  absl::MutexLock lock(&mu_);
  return refused_while_down_;
}

void FakeHub::DropAfter(const std::string& file, int64_t bytes, int times) {
  absl::MutexLock lock(&mu_);
  drops_[file] = {bytes, times};
}

int FakeHub::RequestsFor(const std::string& needle) {
  absl::MutexLock lock(&mu_);
  int count = 0;
  for (const std::string& path : paths_)
    count += absl::StrContains(path, needle);
  return count;
}

int FakeHub::ResumedRequestsFor(const std::string& needle) {
  absl::MutexLock lock(&mu_);
  int count = 0;
  for (const std::string& path : resumed_paths_)
    count += absl::StrContains(path, needle);
  return count;
}

std::vector<std::string> FakeHub::AuthorizationsSeen() {
  absl::MutexLock lock(&mu_);
  return authorizations_;
}

void FakeHub::AcceptLoop() {
  while (!stopping_) {
    pollfd poll_fd{listen_fd_, POLLIN, 0};
    // Wake up now and then to notice stopping_; not a synchronisation sleep.
    if (poll(&poll_fd, 1, 50) <= 0) continue;
    int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    absl::MutexLock lock(&mu_);
    connections_.emplace_back([this, fd] {
      Serve(fd);
      close(fd);
    });
  }
}

void FakeHub::Serve(int fd) {
  std::string request;
  char buffer[4096];
  while (!absl::StrContains(request, "\r\n\r\n")) {
    ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
    if (got <= 0 || request.size() > (1 << 16)) return;
    request.append(buffer, static_cast<size_t>(got));
  }
  std::vector<std::string> lines =
      absl::StrSplit(request.substr(0, request.find("\r\n\r\n")), "\r\n");
  std::vector<std::string> request_line = absl::StrSplit(lines[0], ' ');
  if (request_line.size() != 3 || request_line[0] != "GET") {
    Respond(fd, 405, "Method Not Allowed", "");
    return;
  }
  std::map<std::string, std::string> headers;
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  std::string target = request_line[1];
  std::string path = target.substr(0, target.find('?'));
  std::vector<std::string> parts = absl::StrSplit(path.substr(1), '/');
  for (std::string& part : parts) part = Decode(part);

  Repo repo;
  std::string file;
  std::string revision = "main";
  bool api = false;
  {
    absl::MutexLock lock(&mu_);
    if (down_) {
      ++refused_while_down_;
      Respond(fd, 503, "Service Unavailable", "the Hub is down (test)");
      return;
    }
    paths_.push_back(path);
    if (headers.count("authorization"))
      authorizations_.push_back(headers["authorization"]);
    if (headers.count("range") &&
        !absl::StartsWith(headers["range"], "bytes=0-")) {
      resumed_paths_.push_back(path);
    }
    std::string repo_id;
    if (parts.size() >= 4 && parts[0] == "api" && parts[1] == "models") {
      api = true;
      repo_id = absl::StrCat(parts[2], "/", parts[3]);
      if (parts.size() == 6 && parts[4] == "revision") revision = parts[5];
    } else if (parts.size() >= 5 && parts[2] == "resolve") {
      repo_id = absl::StrCat(parts[0], "/", parts[1]);
      revision = parts[3];
      std::vector<std::string> rest(parts.begin() + 4, parts.end());
      file = absl::StrJoin(rest, "/");
    } else {
      Respond(fd, 404, "Not Found", "no such route");
      return;
    }
    auto it = repos_.find(repo_id);
    if (it == repos_.end()) {
      Respond(fd, 404, "Not Found", "{\"error\":\"Repository not found\"}",
              {"X-Error-Code: RepoNotFound",
               "X-Error-Message: Repository not found"});
      return;
    }
    repo = it->second;
  }
  if (!repo.token.empty() &&
      headers["authorization"] != "Bearer " + repo.token) {
    Respond(fd, 401, "Unauthorized", "{\"error\":\"Invalid credentials\"}",
            {"X-Error-Code: RepoNotFound"});
    return;
  }
  if (repo.gated) {
    Respond(fd, 403, "Forbidden", "{\"error\":\"gated\"}",
            {"X-Error-Code: GatedRepo",
             "X-Error-Message: Access to this repository is restricted"});
    return;
  }
  if (revision != "main" && revision != repo.sha) {
    Respond(fd, 404, "Not Found", "{\"error\":\"Revision not found\"}",
            {"X-Error-Code: RevisionNotFound",
             absl::StrCat("X-Error-Message: Invalid rev id: ", revision)});
    return;
  }
  if (api) {
    nlohmann::json siblings = nlohmann::json::array();
    for (const auto& [name, content] : repo.files) {
      nlohmann::json sibling = {{"rfilename", name},
                                {"size", static_cast<int64_t>(content.size())}};
      if (absl::EndsWith(name, ".safetensors")) {
        auto override = repo.sha256_overrides.find(name);
        sibling["lfs"] = {{"sha256", override != repo.sha256_overrides.end()
                                         ? override->second
                                         : auth::Sha256Hex(content)},
                          {"size", static_cast<int64_t>(content.size())},
                          {"pointerSize", 134}};
      }
      siblings.push_back(sibling);
    }
    nlohmann::json info = {{"id", repo.id},
                           {"sha", repo.sha},
                           {"private", !repo.token.empty()},
                           {"cardData", {{"license", repo.license}}},
                           {"siblings", siblings}};
    Respond(fd, 200, "OK", info.dump(), {"Content-Type: application/json"});
    return;
  }
  auto content_it = repo.files.find(file);
  if (content_it == repo.files.end()) {
    Respond(fd, 404, "Not Found", "{\"error\":\"Entry not found\"}",
            {"X-Error-Code: EntryNotFound"});
    return;
  }
  const std::string& content = content_it->second;
  int64_t begin = 0;
  int64_t end = static_cast<int64_t>(content.size()) - 1;
  bool ranged = false;
  bool open_ended = true;
  if (auto range = headers.find("range"); range != headers.end()) {
    absl::string_view spec = range->second;
    if (absl::ConsumePrefix(&spec, "bytes=")) {
      std::vector<std::string> bounds = absl::StrSplit(spec, '-');
      if (bounds.size() == 2 && absl::SimpleAtoi(bounds[0], &begin)) {
        ranged = true;
        int64_t last = 0;
        if (!bounds[1].empty() && absl::SimpleAtoi(bounds[1], &last)) {
          end = std::min(end, last);
          open_ended = false;
        }
      }
    }
    if (ranged && begin >= static_cast<int64_t>(content.size())) {
      Respond(fd, 416, "Range Not Satisfiable", "",
              {absl::StrCat("Content-Range: bytes */", content.size())});
      return;
    }
  }
  absl::string_view body(content);
  body = body.substr(begin, end - begin + 1);
  int64_t drop_after = -1;
  {
    absl::MutexLock lock(&mu_);
    auto drop = drops_.find(file);
    if (drop != drops_.end() && drop->second.second > 0 &&
        drop->second.first < static_cast<int64_t>(body.size())) {
      drop_after = drop->second.first;
      --drop->second.second;
      if (down_after_drop_) {
        down_after_drop_ = false;
        down_ = true;
      }
    }
  }
  if (open_ended) {
    absl::MutexLock lock(&mu_);
    if (held_file_ == file) {
      ++held_waiters_;
      auto released = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return held_file_ != file;
      };
      mu_.Await(absl::Condition(&released));
      --held_waiters_;
    }
  }
  std::string head =
      absl::StrCat("HTTP/1.1 ", ranged ? "206 Partial Content" : "200 OK",
                   "\r\n", "Content-Length: ", body.size(),
                   "\r\nConnection: close\r\n", "Accept-Ranges: bytes\r\n",
                   ranged ? absl::StrCat("Content-Range: bytes ", begin, "-",
                                         end, "/", content.size(), "\r\n")
                          : "",
                   "\r\n");
  if (!SendAll(fd, head)) return;
  if (drop_after >= 0 && drop_after < static_cast<int64_t>(body.size())) {
    SendAll(fd, body.substr(0, drop_after));
    return;  // The caller closes the socket mid-body.
  }
  SendAll(fd, body);
}

}  // namespace hangar::testing
