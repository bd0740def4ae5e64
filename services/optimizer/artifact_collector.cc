#include "services/optimizer/artifact_collector.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/api/time.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"

namespace hangar::optimizer {
namespace {

namespace fs = std::filesystem;

constexpr char kTmpInfix[] = ".tmp-";
constexpr char kReportSuffix[] = ".report.json";
constexpr char kTrashPrefix[] = ".gc-";

// "<64 lower-case hex>-<engine>-<quantization>".
bool IsKey(const std::string& key) {
  if (key.size() < 66 || key[64] != '-') return false;
  for (int i = 0; i < 64; ++i) {
    char c = key[size_t(i)];
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  for (size_t i = 65; i < key.size(); ++i) {
    char c = key[i];
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
  }
  return true;
}

int64_t SizeOf(const fs::path& p) {
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) {
    auto n = fs::file_size(p, ec);
    return ec ? 0 : int64_t(n);
  }
  int64_t total = 0;
  for (auto it = fs::recursive_directory_iterator(p, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2)) {
      auto n = it->file_size(e2);
      if (!e2) total += int64_t(n);
    }
  }
  return total;
}

std::optional<absl::Time> ModifiedAt(const fs::path& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return std::nullopt;
  return absl::TimeFromTimespec(st.st_mtim);
}

// What the directory holds for one key.
struct KeyFiles {
  bool dir = false;
  bool report = false;
  std::vector<std::string> temporaries;  // names
};

}  // namespace

absl::StatusOr<std::unique_ptr<ArtifactCollector>> ArtifactCollector::Create(
    Options options) {
  if (options.artifacts_dir.empty())
    return InvalidField("artifacts_dir", "required");
  if (options.grace < absl::ZeroDuration()) {
    return InvalidField("grace",
                        absl::StrCat("must be >= 0; was ",
                                     absl::FormatDuration(options.grace)));
  }
  if (options.store == nullptr || options.clock == nullptr)
    return absl::InvalidArgumentError(
        "ArtifactCollector: store and clock are required");
  std::error_code ec;
  options.artifacts_dir = fs::absolute(options.artifacts_dir, ec).string();
  return std::unique_ptr<ArtifactCollector>(
      new ArtifactCollector(std::move(options)));
}

absl::StatusOr<v1::GarbageCollectArtifactsResponse> ArtifactCollector::Collect(
    bool dry_run) {
  absl::MutexLock lock(&mu_);
  v1::GarbageCollectArtifactsResponse response;
  response.set_dry_run(dry_run);
  const fs::path dir(options_.artifacts_dir);
  auto add = [&](const fs::path& path, const std::string& kind, int64_t size,
                 const std::string& artifact) {
    v1::CollectedPath* c = response.add_removed();
    c->set_path(path.string());
    c->set_kind(kind);
    c->set_size_bytes(size);
    c->set_artifact(artifact);
    response.set_bytes_freed(response.bytes_freed() + size);
  };

  // 1. What is recorded and what is on disk.
  ASSIGN_OR_RETURN(std::vector<std::string> recorded,
                   options_.store->ListArtifactKeys());
  std::map<std::string, KeyFiles> keys;
  for (const std::string& k : recorded) keys[k];
  std::vector<fs::path> trash;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code e2;
    const bool is_dir = entry.is_directory(e2) && !entry.is_symlink(e2);
    if (absl::StartsWith(name, kTrashPrefix)) {
      trash.push_back(entry.path());
    } else if (name.size() > 1 && name[0] == '.' &&
               name.find(kTmpInfix) != std::string::npos) {
      std::string key = name.substr(1, name.rfind(kTmpInfix) - 1);
      if (IsKey(key) && is_dir) keys[key].temporaries.push_back(name);
    } else if (absl::EndsWith(name, kReportSuffix)) {
      std::string key = name.substr(0, name.size() - strlen(kReportSuffix));
      if (IsKey(key)) keys[key].report = true;
    } else if (IsKey(name) && is_dir) {
      keys[name].dir = true;
    }
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return absl::InternalError(
        absl::StrCat(dir.string(), ": cannot list: ", ec.message()));
  }

  // 2. Trash of an interrupted collection.
  std::vector<fs::path> to_delete;
  for (const fs::path& t : trash) {
    add(t, "trash", SizeOf(t), "");
    if (!dry_run) to_delete.push_back(t);
  }

  // 3. Each key under its lock.
  const absl::Time now = options_.clock->Now();
  const std::string tag = absl::StrCat(::getpid());
  for (const auto& [key, files] : keys) {
    std::vector<fs::path> renamed;
    // Filled by the locked step (which may run again on a retry), added
    // once it commits.
    v1::GarbageCollectArtifactsResponse step;
    auto add_step = [&](const fs::path& path, const std::string& kind,
                        int64_t size, const std::string& artifact) {
      v1::CollectedPath* c = step.add_removed();
      c->set_path(path.string());
      c->set_kind(kind);
      c->set_size_bytes(size);
      c->set_artifact(artifact);
    };
    auto move_to_trash = [&](const fs::path& p) -> absl::Status {
      if (dry_run) return absl::OkStatus();
      fs::path t =
          dir / absl::StrCat(kTrashPrefix, key, "-", tag, "-", ++trash_seq_);
      std::error_code e;
      fs::rename(p, t, e);
      if (e && e != std::errc::no_such_file_or_directory) {
        return absl::InternalError(absl::StrCat("rename ", p.string(), " -> ",
                                                t.string(), ": ", e.message()));
      }
      if (!e) renamed.push_back(t);
      return absl::OkStatus();
    };
    auto old = [&](const fs::path& p) {
      std::optional<absl::Time> m = ModifiedAt(p);
      return m.has_value() && now - *m >= options_.grace;
    };
    const KeyFiles& f = files;
    absl::StatusOr<bool> removed = options_.store->WithKeyLocked(
        key, [&](const JobStore::KeyState& s) -> absl::StatusOr<bool> {
          renamed.clear();
          step.Clear();
          if (s.unfinished) return false;  // A job may be writing.
          for (const std::string& t : f.temporaries) {
            const fs::path p = dir / t;
            add_step(p, "temporary", SizeOf(p), "");
            RETURN_IF_ERROR(move_to_trash(p));
          }
          const fs::path report = dir / (key + kReportSuffix);
          if (f.report && old(report)) {
            add_step(report, "report", SizeOf(report), "");
            if (!dry_run) {
              std::error_code e;
              fs::remove(report, e);
            }
          }
          if (s.live_holds > 0) return false;
          const fs::path path = dir / key;
          if (s.artifact.has_value()) {
            absl::Time last_use = FromProtoTimestamp(s.artifact->create_time());
            if (s.last_release.has_value() && *s.last_release > last_use)
              last_use = *s.last_release;
            if (now - last_use < options_.grace) return false;
            add_step(path, "artifact", f.dir ? SizeOf(path) : 0,
                     s.artifact->name());
            if (f.dir) RETURN_IF_ERROR(move_to_trash(path));
            return !dry_run;  // Deletes the row.
          }
          if (f.dir && old(path)) {
            add_step(path, "orphan", SizeOf(path), "");
            RETURN_IF_ERROR(move_to_trash(path));
          }
          return false;
        });
    if (!removed.ok()) {
      // Renamed paths of a rolled-back step stay as trash for the next
      // collection; the row is still there (the artifact is then recorded
      // without its directory, which nothing reuses).
      return removed.status();
    }
    for (fs::path& t : renamed) to_delete.push_back(std::move(t));
    for (const v1::CollectedPath& c : step.removed())
      add(c.path(), c.kind(), c.size_bytes(), c.artifact());
  }

  // 4. Delete what was renamed (after the rows are gone).
  for (const fs::path& t : to_delete) {
    std::error_code e;
    fs::remove_all(t, e);
  }
  return response;
}

}  // namespace hangar::optimizer
