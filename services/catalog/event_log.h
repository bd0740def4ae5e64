// One structured line per thing an operator wants to follow in the catalog's
// log: import and preparation state changes, download failures and retries,
// deletes and the start-up sweep. A line is "catalog: event=<name>" followed
// by key="value" pairs, values C-escaped so that no input can break a line
// or forge a field:
//
//   catalog: event=preparation_waiting model="acme/m" attempt="2" ...
//
// Callers never pass secrets (tokens, sealed tokens, Authorization headers);
// the unit tests capture the lines and check it.
//
//   EventLog log;                                   // stderr
//   EventLog captured([&](const std::string& line) { lines.push_back(line); });
//   log.Write("import_state", {{"model", name}, {"state", "READY"}});
//
// Thread-safe: each line is written with one call of the sink, under a lock.
#ifndef HANGAR_SERVICES_CATALOG_EVENT_LOG_H_
#define HANGAR_SERVICES_CATALOG_EVENT_LOG_H_

#include <functional>
#include <initializer_list>
#include <iostream>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace hangar::catalog {

class EventLog {
 public:
  using Sink = std::function<void(const std::string& line)>;

  // Lines go to `sink` (without the newline); the default writes stderr.
  explicit EventLog(Sink sink = {}) : sink_(std::move(sink)) {}

  // The process's stderr log, for classes given none. Never deleted.
  static EventLog* Stderr() {
    static EventLog* const log = new EventLog();
    return log;
  }

  void Write(
      absl::string_view event,
      std::initializer_list<std::pair<absl::string_view, std::string>> fields) {
    std::string line = absl::StrCat("catalog: event=", event);
    for (const auto& [key, value] : fields) {
      absl::StrAppend(&line, " ", key, "=\"", absl::CHexEscape(value), "\"");
    }
    absl::MutexLock lock(&mu_);
    if (sink_) {
      sink_(line);
    } else {
      std::cerr << line + "\n" << std::flush;
    }
  }

 private:
  const Sink sink_;
  absl::Mutex mu_;  // Serializes lines.
};

}  // namespace hangar::catalog

#endif  // HANGAR_SERVICES_CATALOG_EVENT_LOG_H_
