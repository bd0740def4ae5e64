#include "services/deployment/webhooks/http_transport.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>
#include <string>

namespace hangar::deployment::webhooks {
namespace {

constexpr size_t kMaxAnswerBytes = 64 << 10;

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

size_t DropBody(char*, size_t size, size_t count, void* user) {
  size_t* read = static_cast<size_t*>(user);
  *read += size * count;
  // Returning less than given aborts the transfer: a receiver that answers
  // with an endless body is cut off (the status is already known).
  return *read > kMaxAnswerBytes ? 0 : size * count;
}

int Progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* post = static_cast<const HttpPost*>(user);
  return post->cancelled && post->cancelled() ? 1 : 0;
}

}  // namespace

CurlTransport::CurlTransport(std::string user_agent)
    : user_agent_(std::move(user_agent)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpOutcome CurlTransport::Post(const HttpPost& post) {
  HttpOutcome outcome;
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (curl == nullptr) {
    outcome.error = "curl_easy_init failed";
    return outcome;
  }
  CURL* h = curl.get();
  curl_slist* raw = nullptr;
  for (const std::string& header : post.headers) {
    raw = curl_slist_append(raw, header.c_str());
  }
  // No "Expect: 100-continue" round trip for larger bodies.
  raw = curl_slist_append(raw, "Expect:");
  std::unique_ptr<curl_slist, SlistDeleter> headers(raw);
  size_t answer_bytes = 0;
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_URL, post.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, user_agent_.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, post.body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(post.body.size()));
  curl_easy_setopt(
      h, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(post.connect_timeout)));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(post.timeout)));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &DropBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer_bytes);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &Progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &post);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  const CURLcode result = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  outcome.http_status = static_cast<int>(status);
  if (result == CURLE_WRITE_ERROR && status != 0) {
    return outcome;  // The answer's status came; only its body was cut.
  }
  if (result != CURLE_OK) {
    outcome.error = error[0] != '\0' ? std::string(error)
                                     : std::string(curl_easy_strerror(result));
    if (result == CURLE_ABORTED_BY_CALLBACK) outcome.error = "cancelled";
  }
  return outcome;
}

}  // namespace hangar::deployment::webhooks
