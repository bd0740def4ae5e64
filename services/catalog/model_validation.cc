#include "services/catalog/model_validation.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace hangar::catalog {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view rule,
                     absl::string_view value) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", rule, "; was ", QuoteForMessage(value)));
}

bool IsRepoChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-';
}

// One part of "owner/name".
bool IsValidRepoPart(absl::string_view part) {
  if (part.empty() || part.size() > kMaxRepoPartLength) return false;
  if (part.front() == '.' || absl::StrContains(part, "..")) return false;
  for (char c : part) {
    if (!IsRepoChar(c)) return false;
  }
  return true;
}

bool IsValidOwnerName(absl::string_view value) {
  std::vector<absl::string_view> parts = absl::StrSplit(value, '/');
  return parts.size() == 2 && IsValidRepoPart(parts[0]) &&
         IsValidRepoPart(parts[1]);
}

}  // namespace

std::string QuoteForMessage(absl::string_view value) {
  constexpr size_t kMax = 64;
  std::string shown = absl::CHexEscape(value.substr(0, kMax));
  return absl::StrCat(
      "\"", shown, value.size() > kMax ? "\"..." : "\"",
      value.size() > kMax ? absl::StrCat(" (", value.size(), " bytes)") : "");
}

absl::Status ValidateModelName(absl::string_view field,
                               absl::string_view name) {
  if (name.empty())
    return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  if (name.size() > kMaxModelNameLength) {
    return Invalid(
        field,
        absl::StrCat("must be at most ", kMaxModelNameLength, " characters"),
        name);
  }
  if (!IsValidOwnerName(name)) {
    return Invalid(
        field,
        "must be \"owner/name\" with each part 1 to 96 characters "
        "of [A-Za-z0-9._-], not starting with '.' and without \"..\"",
        name);
  }
  return absl::OkStatus();
}

absl::Status ValidateRepoId(absl::string_view field, absl::string_view repo) {
  if (repo.empty())
    return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  if (!IsValidOwnerName(repo)) {
    return Invalid(
        field,
        "must be \"owner/name\" with each part 1 to 96 characters "
        "of [A-Za-z0-9._-], not starting with '.' and without \"..\"",
        repo);
  }
  return absl::OkStatus();
}

absl::Status ValidateRevision(absl::string_view field,
                              absl::string_view revision) {
  constexpr absl::string_view kRule =
      "must be a branch, tag or commit: 1 to 200 characters of "
      "[A-Za-z0-9._/-], not starting with '.', '/' or '-', without \"..\", "
      "\"//\" or a trailing '/'";
  if (revision.empty() || revision.size() > kMaxRevisionLength) {
    return Invalid(field, kRule, revision);
  }
  for (char c : revision) {
    if (!IsRepoChar(c) && c != '/') return Invalid(field, kRule, revision);
  }
  if (revision.front() == '.' || revision.front() == '/' ||
      revision.front() == '-' || revision.back() == '/' ||
      absl::StrContains(revision, "..") || absl::StrContains(revision, "//")) {
    return Invalid(field, kRule, revision);
  }
  return absl::OkStatus();
}

bool IsCommitId(absl::string_view revision) {
  if (revision.size() != 40) return false;
  for (char c : revision) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

absl::Status ValidateConnectionName(absl::string_view field,
                                    absl::string_view name) {
  constexpr absl::string_view kRule =
      "must be 1 to 63 characters of [a-z0-9-], starting with a letter";
  if (name.empty())
    return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  if (name.size() > kMaxConnectionNameLength ||
      !absl::ascii_islower(static_cast<unsigned char>(name.front()))) {
    return Invalid(field, kRule, name);
  }
  for (char c : name) {
    if (!absl::ascii_islower(static_cast<unsigned char>(c)) &&
        !absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '-') {
      return Invalid(field, kRule, name);
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateToken(absl::string_view field, absl::string_view token) {
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": required (a Hugging Face access token)"));
  }
  if (token.size() > kMaxTokenLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be at most ", kMaxTokenLength, " characters"));
  }
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      // Never echo the token, not even in part.
      return absl::InvalidArgumentError(
          absl::StrCat(field,
                       ": must be printable ASCII without spaces or control "
                       "characters"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateText(absl::string_view field, absl::string_view text,
                          int max_length) {
  if (text.size() > static_cast<size_t>(max_length)) {
    return Invalid(
        field, absl::StrCat("must be at most ", max_length, " bytes"), text);
  }
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f) {
      return Invalid(field,
                     "must not contain NUL or control characters (but newline "
                     "and tab)",
                     text);
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTags(absl::string_view field,
                          const std::vector<std::string>& tags) {
  if (tags.size() > kMaxTags) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": at most ", kMaxTags, " tags; was ", tags.size()));
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < tags.size(); ++i) {
    const std::string& tag = tags[i];
    std::string tag_field = absl::StrCat(field, "[", i, "]");
    bool ok = !tag.empty() && tag.size() <= kMaxTagLength;
    for (char c : tag) {
      ok = ok && (absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                  c == '.' || c == '_' || c == '-' || c == ':' || c == '+');
    }
    if (!ok) {
      return Invalid(tag_field,
                     "must be 1 to 64 characters of [A-Za-z0-9._:+-]", tag);
    }
    if (!seen.insert(tag).second) {
      return Invalid(tag_field, "duplicate tag", tag);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolvePathUnderRoot(absl::string_view field,
                                                 absl::string_view root,
                                                 absl::string_view path) {
  namespace fs = std::filesystem;
  if (root.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        field,
        ": local import is disabled (the catalog was started without "
        "--local_model_root)"));
  }
  if (path.empty())
    return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  if (absl::StrContains(path, absl::string_view("\0", 1)) ||
      path.size() > 4096) {
    return Invalid(
        field, "must be a path without NUL bytes, at most 4096 bytes", path);
  }
  std::error_code error;
  fs::path canonical_root = fs::canonical(fs::path(std::string(root)), error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("--local_model_root ", QuoteForMessage(root),
                     " is unusable: ", error.message()));
  }
  fs::path requested{std::string(path)};
  if (requested.is_relative()) requested = canonical_root / requested;
  // Check the lexical form first so that a path outside the root is refused
  // as such even when it does not exist.
  fs::path lexical = requested.lexically_normal();
  auto inside = [&](const fs::path& p) {
    auto [root_end, p_it] = std::mismatch(
        canonical_root.begin(), canonical_root.end(), p.begin(), p.end());
    return root_end == canonical_root.end();
  };
  const std::string rule = absl::StrCat("must lie under the local model root ",
                                        canonical_root.string());
  if (!inside(lexical)) return Invalid(field, rule, path);
  fs::path resolved = fs::canonical(requested, error);
  if (error) {
    return absl::NotFoundError(absl::StrCat(field, ": ", QuoteForMessage(path),
                                            " does not exist under ",
                                            canonical_root.string()));
  }
  if (!inside(resolved)) {
    return Invalid(field, absl::StrCat(rule, " (symlinks included)"), path);
  }
  return resolved.string();
}

}  // namespace hangar::catalog
