#include "services/catalog/hugging_face_client.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status/status_macros.h"
#include "nlohmann/json.hpp"

namespace hangar::catalog {
namespace {

using ::nlohmann::json;

// Percent-encodes everything but [A-Za-z0-9._-], and '/' when `keep_slash`.
std::string Escape(absl::string_view text, bool keep_slash) {
  std::string out;
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(u) || c == '.' || c == '_' || c == '-' ||
        (keep_slash && c == '/')) {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "%%%02X", u);
    }
  }
  return out;
}

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

}  // namespace

// One HTTP GET and what came back.
struct HuggingFaceClient::Request {
  std::string url;
  std::string token;
  int64_t offset = 0;      // Range start; 0 = whole file
  int64_t length = -1;     // Range length; -1 = to the end
  bool streaming = false;  // A download: stall timeout instead of a deadline
  int64_t max_bytes = -1;  // Body limit when collecting into `body`
  const std::function<bool(absl::string_view)>* sink = nullptr;
  const std::atomic<bool>* cancelled = nullptr;

  // Results.
  std::string body;  // When no sink; and the error body (first 4 KiB)
  long http_code = 0;
  std::string error_code;  // X-Error-Code
  std::string error_message;
  int64_t to_skip = 0;  // Bytes still to drop (server ignored Range)
  bool started = false;
  bool stopped_by_sink = false;
  bool too_large = false;
};

HuggingFaceClient::HuggingFaceClient(Options options)
    : options_(std::move(options)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  while (absl::EndsWith(options_.endpoint, "/")) options_.endpoint.pop_back();
}

std::string HuggingFaceClient::FileUrl(const std::string& repo,
                                       const std::string& revision,
                                       const std::string& path) const {
  return absl::StrCat(options_.endpoint, "/", repo, "/resolve/",
                      Escape(revision, false), "/", Escape(path, true));
}

absl::Status HuggingFaceClient::Perform(Request& request) const {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  CURL* h = curl.get();
  curl_slist* raw_headers = nullptr;
  if (!request.token.empty()) {
    raw_headers = curl_slist_append(
        raw_headers,
        absl::StrCat("Authorization: Bearer ", request.token).c_str());
  }
  if (request.offset > 0 || request.length >= 0) {
    std::string range = absl::StrCat("Range: bytes=", request.offset, "-");
    if (request.length >= 0)
      absl::StrAppend(&range, request.offset + request.length - 1);
    raw_headers = curl_slist_append(raw_headers, range.c_str());
  }
  std::unique_ptr<curl_slist, SlistDeleter> headers(raw_headers);
  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(
      h, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  if (request.streaming) {
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(std::max<int64_t>(
                         1, absl::ToInt64Seconds(options_.stall_timeout))));
  } else {
    curl_easy_setopt(
        h, CURLOPT_TIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(options_.request_timeout)));
  }
  request.to_skip = 0;
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &request);
  curl_easy_setopt(
      h, CURLOPT_HEADERFUNCTION,
      +[](char* data, size_t size, size_t count, void* user) -> size_t {
        auto* r = static_cast<Request*>(user);
        absl::string_view line(data, size * count);
        if (absl::StartsWith(line, "HTTP/")) {  // A new response (redirects).
          r->error_code.clear();
          r->error_message.clear();
        }
        auto header = [&](absl::string_view name) -> absl::string_view {
          if (line.size() > name.size() &&
              absl::StartsWithIgnoreCase(line, name) &&
              line[name.size()] == ':') {
            return absl::StripAsciiWhitespace(line.substr(name.size() + 1));
          }
          return {};
        };
        if (auto v = header("x-error-code"); !v.empty())
          r->error_code = std::string(v);
        if (auto v = header("x-error-message"); !v.empty()) {
          r->error_message = std::string(v.substr(0, 300));
        }
        return size * count;
      });
  struct WriteContext {
    Request* request;
    CURL* curl;
  } write_context{&request, h};
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &write_context);
  curl_easy_setopt(
      h, CURLOPT_WRITEFUNCTION,
      +[](char* data, size_t size, size_t count, void* user) -> size_t {
        auto* context = static_cast<WriteContext*>(user);
        Request* r = context->request;
        const size_t bytes = size * count;
        if (!r->started) {
          r->started = true;
          curl_easy_getinfo(context->curl, CURLINFO_RESPONSE_CODE,
                            &r->http_code);
          // A server that ignored Range sends the whole file from byte 0.
          if (r->http_code == 200 && r->offset > 0) r->to_skip = r->offset;
        }
        if (r->http_code >= 300) {
          if (r->body.size() < 4096)
            r->body.append(data, std::min<size_t>(bytes, 4096));
          return bytes;
        }
        absl::string_view chunk(data, bytes);
        if (r->to_skip > 0) {
          size_t skip = std::min<size_t>(chunk.size(), r->to_skip);
          chunk.remove_prefix(skip);
          r->to_skip -= skip;
        }
        if (r->length >= 0 && r->http_code == 200) {
          // A whole file where a range was asked: keep only the range.
          int64_t room = r->length - static_cast<int64_t>(r->body.size());
          if (room <= 0) return 0;
          if (static_cast<int64_t>(chunk.size()) > room)
            chunk = chunk.substr(0, room);
        }
        if (r->sink != nullptr) {
          if (!(*r->sink)(chunk)) {
            r->stopped_by_sink = true;
            return 0;
          }
          return bytes;
        }
        if (r->max_bytes >= 0 &&
            static_cast<int64_t>(r->body.size() + chunk.size()) >
                r->max_bytes) {
          r->too_large = true;
          return 0;
        }
        r->body.append(chunk.data(), chunk.size());
        return bytes;
      });
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &request);
  curl_easy_setopt(
      h, CURLOPT_XFERINFOFUNCTION,
      +[](void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
        auto* r = static_cast<Request*>(user);
        return r->cancelled != nullptr && r->cancelled->load() ? 1 : 0;
      });

  CURLcode result = curl_easy_perform(h);
  if (!request.started) {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &request.http_code);
  }
  if (request.stopped_by_sink ||
      (request.cancelled != nullptr && request.cancelled->load())) {
    return absl::CancelledError(
        absl::StrCat("download of ", request.url, " stopped"));
  }
  if (request.too_large) {
    return absl::FailedPreconditionError(absl::StrCat(
        request.url, " is larger than ", request.max_bytes, " bytes"));
  }
  const long code = request.http_code;
  if (code >= 400 || (code >= 300 && result == CURLE_OK)) {
    std::string detail = request.error_message.empty()
                             ? ""
                             : absl::StrCat(": ", request.error_message);
    std::string where =
        absl::StrCat(" (HTTP ", code, " from ", request.url, ")");
    if (code == 401) {
      return absl::PermissionDeniedError(absl::StrCat(
          "repository not found, or private and the request carried no "
          "valid token: import it through a connection",
          detail, where));
    }
    if (code == 403) {
      return absl::PermissionDeniedError(absl::StrCat(
          "access refused: the repository is gated or the token lacks "
          "access; accept its terms on the Hub with the connection's account",
          detail, where));
    }
    if (code == 404) {
      std::string what = request.error_code == "RevisionNotFound" ? "revision"
                         : request.error_code == "EntryNotFound"  ? "file"
                         : request.error_code == "RepoNotFound"
                             ? "repository"
                             : "repository, revision or file";
      return absl::NotFoundError(
          absl::StrCat(what, " not found", detail, where));
    }
    if (code == 429 || code >= 500) {
      return absl::UnavailableError(absl::StrCat(
          "the Hub at ", options_.endpoint, " is unavailable", detail, where));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("request refused", detail, where));
  }
  if (result != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat(
        "cannot reach the Hugging Face endpoint ", options_.endpoint, ": ",
        curl_easy_strerror(result), " (", request.url, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<RepoInfo> HuggingFaceClient::GetRepoInfo(
    const std::string& repo, const std::string& revision,
    const std::string& token) const {
  Request request;
  request.url =
      absl::StrCat(options_.endpoint, "/api/models/", repo, "/revision/",
                   Escape(revision, false), "?blobs=true");
  request.token = token;
  request.max_bytes = 64 << 20;
  RETURN_IF_ERROR(Perform(request));
  json info = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (info.is_discarded() || !info.is_object()) {
    return absl::UnavailableError(
        absl::StrCat(request.url, " did not answer with a JSON object"));
  }
  RepoInfo repo_info;
  repo_info.id = info.value("id", repo);
  repo_info.sha = info.value("sha", "");
  repo_info.is_private = info.value("private", false);
  if (auto card = info.find("cardData");
      card != info.end() && card->is_object()) {
    if (auto license = card->find("license");
        license != card->end() && license->is_string()) {
      repo_info.license = license->get<std::string>();
    }
  }
  if (auto siblings = info.find("siblings");
      siblings != info.end() && siblings->is_array()) {
    for (const json& sibling : *siblings) {
      if (!sibling.is_object() || !sibling.contains("rfilename") ||
          !sibling["rfilename"].is_string()) {
        continue;
      }
      HubFile file;
      file.path = sibling["rfilename"].get<std::string>();
      if (auto size = sibling.find("size");
          size != sibling.end() && size->is_number_integer()) {
        file.size = size->get<int64_t>();
      }
      if (auto lfs = sibling.find("lfs");
          lfs != sibling.end() && lfs->is_object()) {
        file.sha256 = lfs->value("sha256", "");
        if (file.size < 0 && lfs->contains("size") &&
            (*lfs)["size"].is_number_integer()) {
          file.size = (*lfs)["size"].get<int64_t>();
        }
      }
      repo_info.files.push_back(std::move(file));
    }
  }
  return repo_info;
}

absl::StatusOr<std::string> HuggingFaceClient::GetFile(
    const std::string& repo, const std::string& revision,
    const std::string& path, const std::string& token,
    int64_t max_bytes) const {
  Request request;
  request.url = FileUrl(repo, revision, path);
  request.token = token;
  request.max_bytes = max_bytes;
  RETURN_IF_ERROR(Perform(request));
  return std::move(request.body);
}

absl::StatusOr<std::string> HuggingFaceClient::GetRange(
    const std::string& repo, const std::string& revision,
    const std::string& path, const std::string& token, int64_t offset,
    int64_t length) const {
  Request request;
  request.url = FileUrl(repo, revision, path);
  request.token = token;
  request.offset = offset;
  request.length = length;
  request.max_bytes = length;
  RETURN_IF_ERROR(Perform(request));
  if (static_cast<int64_t>(request.body.size()) != length) {
    return absl::UnavailableError(absl::StrCat(request.url, ": asked for ",
                                               length, " bytes at ", offset,
                                               ", got ", request.body.size()));
  }
  return std::move(request.body);
}

absl::Status HuggingFaceClient::Download(
    const std::string& repo, const std::string& revision,
    const std::string& path, const std::string& token, int64_t offset,
    const std::function<bool(absl::string_view)>& sink,
    const std::atomic<bool>* cancelled) const {
  Request request;
  request.url = FileUrl(repo, revision, path);
  request.token = token;
  request.offset = offset;
  request.streaming = true;
  request.sink = &sink;
  request.cancelled = cancelled;
  absl::Status status = Perform(request);
  if (request.http_code == 416) {
    // Range not satisfiable: the partial file is already complete (or
    // longer than the file); the caller's size/checksum check decides.
    return absl::OkStatus();
  }
  return status;
}

}  // namespace hangar::catalog
