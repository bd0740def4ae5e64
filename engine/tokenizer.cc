#include "engine/tokenizer.h"

#include <pcre2.h>
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/utypes.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <queue>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "engine/gguf.h"

namespace hangar::engine {
namespace {

using json = nlohmann::json;

constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| "
    "?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr char kLlama3Pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr char kQwen2Pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr char kMetaspace[] = "\xe2\x96\x81";  // U+2581 "▁"

// GPT-2's reversible map from bytes to printable code points.
struct ByteUnicode {
  uint32_t byte_to_cp[256];
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;
  ByteUnicode() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                       (b >= 174 && b <= 255);
      byte_to_cp[b] = printable ? uint32_t(b) : uint32_t(256 + n++);
      cp_to_byte[byte_to_cp[b]] = uint8_t(b);
    }
  }
};
const ByteUnicode& ByteMap() {
  static const ByteUnicode* m = new ByteUnicode();
  return *m;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(char(cp));
  } else if (cp < 0x800) {
    out->push_back(char(0xc0 | (cp >> 6)));
    out->push_back(char(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(char(0xe0 | (cp >> 12)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(char(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(char(0xf0 | (cp >> 18)));
    out->push_back(char(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(char(0x80 | (cp & 0x3f)));
  }
}

// Length of the valid UTF-8 character at s[i], 0 if invalid, -1 if
// truncated (a valid prefix that runs past the end).
int Utf8CharLen(absl::string_view s, size_t i) {
  auto b = [&](size_t k) { return uint8_t(s[k]); };
  uint8_t c = b(i);
  if (c < 0x80) return 1;
  int len;
  uint32_t min;
  if ((c & 0xe0) == 0xc0) {
    len = 2;
    min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3;
    min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  uint32_t cp = c & (0x7f >> len);
  for (int k = 1; k < len; ++k) {
    if (i + k >= s.size()) {
      return -1;
    }
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

// Decodes a GPT-2 unicode-mapped token string to raw bytes.
absl::StatusOr<std::string> ByteLevelToBytes(const std::string& piece) {
  std::string out;
  size_t i = 0;
  while (i < piece.size()) {
    int len = Utf8CharLen(piece, i);
    if (len <= 0) return absl::InvalidArgumentError("token is not valid UTF-8");
    uint32_t cp = uint8_t(piece[i]) & (len == 1 ? 0x7f : (0x7f >> len));
    for (int k = 1; k < len; ++k)
      cp = (cp << 6) | (uint8_t(piece[i + k]) & 0x3f);
    auto it = ByteMap().cp_to_byte.find(cp);
    if (it == ByteMap().cp_to_byte.end()) {
      // Not a mapped byte (can happen in added tokens): keep as UTF-8.
      out.append(piece, i, size_t(len));
    } else {
      out.push_back(char(it->second));
    }
    i += size_t(len);
  }
  return out;
}

// "<0xAB>" -> 0xAB, or -1.
int ParseByteToken(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>')
    return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    char c = piece[size_t(k)];
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                     : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

std::string ReplaceAll(const std::string& s, const std::string& from,
                       const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t f = s.find(from, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += to;
    pos = f + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::string SpecialContent(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return "";
}

}  // namespace

// ---------------------------------------------------------------------------
// Normalizers and pre-tokenizer steps.

struct Tokenizer::Normalizer {
  enum Type { kPrepend, kReplace, kUnicode } type;
  std::string a, b;
  // kUnicode: ICU's NFC/NFKC/NFD/NFKD instance (process-lifetime singleton,
  // thread-safe, owned by ICU).
  const icu::Normalizer2* unicode = nullptr;
  std::string Apply(const std::string& s) const {
    if (type == kPrepend) return s.empty() ? s : a + s;
    if (type == kUnicode) {
      // The text is well-formed UTF-8 (Encode checks it, and the other
      // normalizers insert only well-formed strings), so ICU cannot fail on
      // it; if it ever did, the text is kept as it was rather than dropped.
      if (s.empty() || s.size() > size_t(INT32_MAX)) return s;
      std::string out;
      out.reserve(s.size());
      icu::StringByteSink<std::string> sink(&out);
      UErrorCode status = U_ZERO_ERROR;
      unicode->normalizeUTF8(0, icu::StringPiece(s.data(), int32_t(s.size())),
                             sink, nullptr, status);
      return U_SUCCESS(status) ? out : s;
    }
    return ReplaceAll(s, a, b);
  }
};

struct Tokenizer::Splitter {
  enum Type { kRegex, kDigits, kPrefixSpace, kMetaspaceSplit } type = kRegex;
  // kRegex
  pcre2_code* code = nullptr;
  bool removed = false;  // behavior "Removed" (else "Isolated")
  // kDigits
  bool individual = false;
  // kMetaspace
  bool prepend = true;
  bool split = true;

  ~Splitter() {
    if (code != nullptr) pcre2_code_free(code);
  }

  static absl::StatusOr<std::unique_ptr<Splitter>> Regex(
      const std::string& pattern, bool removed) {
    auto s = std::make_unique<Splitter>();
    int err;
    PCRE2_SIZE off;
    s->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()),
                            pattern.size(), PCRE2_UTF | PCRE2_UCP, &err, &off,
                            nullptr);
    if (s->code == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer: pre-tokenizer regex does not compile at offset ", off,
          ": ", reinterpret_cast<char*>(msg)));
    }
    pcre2_jit_compile(s->code, PCRE2_JIT_COMPLETE);  // best effort
    s->removed = removed;
    return s;
  }

  void Apply(const std::string& in, std::vector<std::string>* out) const {
    switch (type) {
      case kRegex: {
        pcre2_match_data* md =
            pcre2_match_data_create_from_pattern(code, nullptr);
        size_t pos = 0, last = 0;
        while (pos <= in.size()) {
          int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(in.data()),
                               in.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
          if (rc < 0) break;
          PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
          size_t s = ov[0], e = ov[1];
          if (e == s) {  // empty match: step one character
            if (s >= in.size()) break;
            int len = Utf8CharLen(in, s);
            pos = s + size_t(len > 0 ? len : 1);
            continue;
          }
          if (s > last && !removed) out->push_back(in.substr(last, s - last));
          out->push_back(in.substr(s, e - s));
          last = pos = e;
        }
        if (last < in.size() && !removed) out->push_back(in.substr(last));
        pcre2_match_data_free(md);
        break;
      }
      case kDigits: {
        size_t i = 0, start = 0;
        auto is_digit = [&](size_t k) { return in[k] >= '0' && in[k] <= '9'; };
        while (i < in.size()) {
          if (is_digit(i)) {
            if (i > start) out->push_back(in.substr(start, i - start));
            size_t j = i + 1;
            if (!individual)
              while (j < in.size() && is_digit(j)) ++j;
            out->push_back(in.substr(i, j - i));
            start = i = j;
          } else {
            ++i;
          }
        }
        if (start < in.size()) out->push_back(in.substr(start));
        break;
      }
      case kPrefixSpace:
        out->push_back(!in.empty() && in[0] != ' ' ? " " + in : in);
        break;
      case kMetaspaceSplit: {
        std::string s = ReplaceAll(in, " ", kMetaspace);
        if (prepend && s.compare(0, 3, kMetaspace) != 0) s = kMetaspace + s;
        if (!split) {
          out->push_back(s);
          break;
        }
        size_t start = 0;
        for (size_t p = s.find(kMetaspace, 1); p != std::string::npos;
             p = s.find(kMetaspace, p + 3)) {
          if (p > start) out->push_back(s.substr(start, p - start));
          start = p;
        }
        if (start < s.size()) out->push_back(s.substr(start));
        break;
      }
    }
  }
};

Tokenizer::Tokenizer() {
  for (int& b : byte_token_) b = -1;
}
Tokenizer::~Tokenizer() = default;

// ---------------------------------------------------------------------------
// Loading from tokenizer.json

namespace {

absl::Status AddNormalizers(
    const json& n,
    std::vector<std::pair<int, std::pair<std::string, std::string>>>* out) {
  if (n.is_null()) return absl::OkStatus();
  std::string type = n.value("type", "");
  if (type == "Sequence") {
    for (const json& c : n.at("normalizers"))
      RETURN_IF_ERROR(AddNormalizers(c, out));
  } else if (type == "Prepend") {
    out->push_back({0, {n.value("prepend", ""), ""}});
  } else if (type == "Replace") {
    const json& p = n.at("pattern");
    if (!p.is_object() || !p.contains("String")) {
      return absl::InvalidArgumentError(
          "tokenizer: normalizer Replace with a regex pattern is not "
          "supported");
    }
    out->push_back(
        {1, {p["String"].get<std::string>(), n.value("content", "")}});
  } else if (type == "NFC" || type == "NFKC" || type == "NFD" ||
             type == "NFKD") {
    out->push_back({2, {type, ""}});
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer: normalizer '", type, "' is not supported"));
  }
  return absl::OkStatus();
}

// ICU's normalizer for a tokenizer.json normalizer type ("NFC", "NFKC",
// "NFD", "NFKD").
absl::StatusOr<const icu::Normalizer2*> UnicodeNormalizer(
    const std::string& form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n =
      form == "NFC"    ? icu::Normalizer2::getNFCInstance(status)
      : form == "NFKC" ? icu::Normalizer2::getNFKCInstance(status)
      : form == "NFD"  ? icu::Normalizer2::getNFDInstance(status)
                       : icu::Normalizer2::getNFKDInstance(status);
  if (U_FAILURE(status) || n == nullptr) {
    return absl::InternalError(absl::StrCat("tokenizer: normalizer ", form,
                                            ": ICU data unavailable (",
                                            u_errorName(status), ")"));
  }
  return n;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromHuggingFace(
    const std::string& tokenizer_json,
    const std::string& tokenizer_config_json) {
  json j = json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("tokenizer.json: not a JSON object");
  }
  json cfg = json::object();
  if (!tokenizer_config_json.empty()) {
    cfg = json::parse(tokenizer_config_json, nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object()) {
      return absl::InvalidArgumentError(
          "tokenizer_config.json: not a JSON object");
    }
  }
  try {
    const json& model = j.at("model");
    if (!model.is_object())
      return absl::InvalidArgumentError(
          "tokenizer.json: 'model' is not an object");
    std::string mtype = model.value("type", "BPE");
    if (mtype != "BPE") {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: model type '", mtype,
                       "' is not supported (only BPE)"));
    }
    auto tok = std::unique_ptr<Tokenizer>(new Tokenizer());
    // Byte-level if any pre-tokenizer or the decoder is ByteLevel.
    std::string dump_pre =
        j.contains("pre_tokenizer") ? j["pre_tokenizer"].dump() : "";
    std::string dump_dec = j.contains("decoder") ? j["decoder"].dump() : "";
    bool byte_level = dump_pre.find("\"ByteLevel\"") != std::string::npos ||
                      dump_dec.find("\"ByteLevel\"") != std::string::npos;
    tok->kind_ = byte_level ? Kind::kByteLevelBpe : Kind::kSentencePieceBpe;
    tok->byte_fallback_ = model.value("byte_fallback", false);
    tok->ignore_merges_ = model.value("ignore_merges", false);
    const json& vocab = model.at("vocab");
    if (!vocab.is_object())
      return absl::InvalidArgumentError(
          "tokenizer.json: model.vocab is not an object");
    int max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it.value().is_number_integer()) {
        return absl::InvalidArgumentError(
            "tokenizer.json: vocab ids must be integers");
      }
      int64_t id = it.value().get<int64_t>();
      if (id < 0 || id > 10'000'000) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.json: vocab id ", id, " out of range"));
      }
      max_id = std::max(max_id, int(id));
    }
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const json& a : j["added_tokens"]) {
        int64_t id = a.value("id", int64_t{-1});
        if (id < 0 || id > 10'000'000) {
          return absl::InvalidArgumentError(absl::StrCat(
              "tokenizer.json: added token id ", id, " out of range"));
        }
        max_id = std::max(max_id, int(id));
      }
    }
    if (max_id < 0)
      return absl::InvalidArgumentError("tokenizer.json: empty vocabulary");
    tok->id_to_piece_.assign(size_t(max_id) + 1, "");
    tok->id_to_bytes_.assign(size_t(max_id) + 1, "");
    tok->special_.assign(size_t(max_id) + 1, false);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      int id = it.value().get<int>();
      const std::string& piece = it.key();
      tok->id_to_piece_[size_t(id)] = piece;
      tok->piece_to_id_[piece] = id;
      if (byte_level) {
        ASSIGN_OR_RETURN(std::string bytes, ByteLevelToBytes(piece));
        tok->id_to_bytes_[size_t(id)] = bytes;
        tok->symbol_to_id_.emplace(bytes, id);
      } else {
        int byte = tok->byte_fallback_ ? ParseByteToken(piece) : -1;
        if (byte >= 0) {
          tok->byte_token_[byte] = id;
          tok->id_to_bytes_[size_t(id)] = std::string(1, char(byte));
        } else {
          tok->id_to_bytes_[size_t(id)] = ReplaceAll(piece, kMetaspace, " ");
          tok->symbol_to_id_.emplace(piece, id);
        }
      }
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = tok->piece_to_id_.find(model["unk_token"].get<std::string>());
      if (it != tok->piece_to_id_.end()) tok->unk_id_ = it->second;
    }
    // Merges: "a b" strings or [a, b] pairs.
    if (model.contains("merges") && model["merges"].is_array()) {
      int rank = 0;
      for (const json& m : model["merges"]) {
        std::string a, b;
        if (m.is_string()) {
          std::string s = m.get<std::string>();
          size_t sp = s.find(' ');
          if (sp == std::string::npos) {
            return absl::InvalidArgumentError(
                absl::StrCat("tokenizer.json: merge '", s, "' has no space"));
          }
          a = s.substr(0, sp);
          b = s.substr(sp + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
                   m[1].is_string()) {
          a = m[0].get<std::string>();
          b = m[1].get<std::string>();
        } else {
          return absl::InvalidArgumentError(
              "tokenizer.json: a merge is neither \"a b\" nor [a, b]");
        }
        auto ia = tok->piece_to_id_.find(a), ib = tok->piece_to_id_.find(b),
             ic = tok->piece_to_id_.find(a + b);
        if (ia == tok->piece_to_id_.end() || ib == tok->piece_to_id_.end() ||
            ic == tok->piece_to_id_.end()) {
          ++rank;
          continue;  // HF refuses these; skipping keeps odd files usable
        }
        uint64_t key =
            (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second);
        tok->merges_.emplace(key, std::make_pair(rank++, ic->second));
      }
    }
    // Added tokens.
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const json& a : j["added_tokens"]) {
        int id = a.value("id", -1);
        std::string content = a.value("content", "");
        if (content.empty()) continue;
        tok->id_to_piece_[size_t(id)] = content;
        tok->id_to_bytes_[size_t(id)] = content;
        tok->piece_to_id_[content] = id;
        tok->special_[size_t(id)] = a.value("special", false);
        tok->added_.push_back({content, id});
      }
    }
    // Normalizer.
    if (j.contains("normalizer")) {
      std::vector<std::pair<int, std::pair<std::string, std::string>>> ns;
      RETURN_IF_ERROR(AddNormalizers(j["normalizer"], &ns));
      for (auto& [type, ab] : ns) {
        auto n = std::make_unique<Normalizer>();
        n->type = type == 0   ? Normalizer::kPrepend
                  : type == 1 ? Normalizer::kReplace
                              : Normalizer::kUnicode;
        n->a = ab.first;
        n->b = ab.second;
        if (n->type == Normalizer::kUnicode) {
          ASSIGN_OR_RETURN(n->unicode, UnicodeNormalizer(n->a));
        }
        tok->normalizers_.push_back(std::move(n));
      }
    }
    // Pre-tokenizer.
    std::vector<json> pres;
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
      const json& p = j["pre_tokenizer"];
      if (p.value("type", "") == "Sequence") {
        for (const json& c : p.at("pretokenizers")) pres.push_back(c);
      } else {
        pres.push_back(p);
      }
    }
    for (const json& p : pres) {
      std::string type = p.value("type", "");
      if (type == "Split") {
        const json& pat = p.at("pattern");
        std::string regex;
        if (pat.contains("Regex")) {
          regex = pat["Regex"].get<std::string>();
        } else if (pat.contains("String")) {
          // Literal: escape for PCRE2.
          regex = "\\Q" + pat["String"].get<std::string>() + "\\E";
        } else {
          return absl::InvalidArgumentError(
              "tokenizer: Split pre-tokenizer needs a pattern");
        }
        std::string behavior = p.value("behavior", "Isolated");
        if (behavior != "Isolated" && behavior != "Removed") {
          return absl::InvalidArgumentError(
              absl::StrCat("tokenizer: Split behavior '", behavior,
                           "' is not supported (Isolated, Removed)"));
        }
        if (p.value("invert", false)) {
          return absl::InvalidArgumentError(
              "tokenizer: inverted Split pre-tokenizer is not supported");
        }
        ASSIGN_OR_RETURN(auto s, Splitter::Regex(regex, behavior == "Removed"));
        tok->splitters_.push_back(std::move(s));
      } else if (type == "ByteLevel") {
        if (p.value("add_prefix_space", false)) {
          auto s = std::make_unique<Splitter>();
          s->type = Splitter::kPrefixSpace;
          tok->splitters_.push_back(std::move(s));
        }
        if (p.value("use_regex", true)) {
          ASSIGN_OR_RETURN(auto s, Splitter::Regex(kGpt2Pattern, false));
          tok->splitters_.push_back(std::move(s));
        }
      } else if (type == "Digits") {
        auto s = std::make_unique<Splitter>();
        s->type = Splitter::kDigits;
        s->individual = p.value("individual_digits", false);
        tok->splitters_.push_back(std::move(s));
      } else if (type == "Metaspace") {
        auto s = std::make_unique<Splitter>();
        s->type = Splitter::kMetaspaceSplit;
        std::string scheme =
            p.value("prepend_scheme",
                    p.value("add_prefix_space", true) ? "always" : "never");
        s->prepend = scheme != "never";
        s->split = p.value("split", true);
        tok->strip_leading_space_ = s->prepend;
        tok->splitters_.push_back(std::move(s));
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "tokenizer: pre-tokenizer '", type, "' is not supported"));
      }
    }
    // Decoder: a Strip of one leading space (Llama 2 style).
    if (dump_dec.find("\"Strip\"") != std::string::npos)
      tok->strip_leading_space_ = true;
    if (dump_dec.find("\"Metaspace\"") != std::string::npos)
      tok->strip_leading_space_ = true;

    // BOS / EOS.
    auto find_id = [&](const std::string& content) {
      auto it = tok->piece_to_id_.find(content);
      return it == tok->piece_to_id_.end() ? -1 : it->second;
    };
    if (cfg.contains("bos_token"))
      tok->bos_id_ = find_id(SpecialContent(cfg["bos_token"]));
    if (cfg.contains("eos_token"))
      tok->eos_id_ = find_id(SpecialContent(cfg["eos_token"]));
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
      tok->add_bos_ = cfg["add_bos_token"].get<bool>();
    } else if (j.contains("post_processor") &&
               j["post_processor"].is_object() &&
               j["post_processor"].value("type", "") == "TemplateProcessing") {
      const json& single = j["post_processor"]["single"];
      if (single.is_array() && !single.empty() &&
          single[0].contains("SpecialToken")) {
        int id = find_id(single[0]["SpecialToken"].value("id", ""));
        if (id >= 0) {
          tok->add_bos_ = true;
          if (tok->bos_id_ < 0) tok->bos_id_ = id;
        }
      }
    }
    if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) {
      tok->add_eos_ = cfg["add_eos_token"].get<bool>();
    }
    if (tok->add_bos_ && tok->bos_id_ < 0) {
      return absl::InvalidArgumentError(
          "tokenizer: add_bos_token is set but no BOS token is defined");
    }
    RETURN_IF_ERROR(tok->Finish());
    return tok;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: ", e.what()));
  }
}

// ---------------------------------------------------------------------------
// Loading from GGUF metadata

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(
    const GgufFile& gguf) {
  const GgufValue* model = gguf.Find("tokenizer.ggml.model");
  const GgufValue* tokens = gguf.Find("tokenizer.ggml.tokens");
  if (model == nullptr || tokens == nullptr || tokens->strings.empty()) {
    return absl::InvalidArgumentError(
        "gguf: no tokenizer (tokenizer.ggml.model and tokenizer.ggml.tokens "
        "are required)");
  }
  auto tok = std::unique_ptr<Tokenizer>(new Tokenizer());
  const std::vector<std::string>& pieces = tokens->strings;
  size_t n = pieces.size();
  std::vector<double> types;
  if (const GgufValue* t = gguf.Find("tokenizer.ggml.token_type"))
    types = t->numbers;
  tok->id_to_piece_ = pieces;
  tok->id_to_bytes_.assign(n, "");
  tok->special_.assign(n, false);
  auto type_of = [&](size_t i) { return i < types.size() ? int(types[i]) : 1; };
  if (model->s == "llama") {
    tok->kind_ = Kind::kSentencePieceBpe;
    tok->byte_fallback_ = true;
    std::vector<float> scores(n, 0.0f);
    if (const GgufValue* s = gguf.Find("tokenizer.ggml.scores")) {
      for (size_t i = 0; i < n && i < s->numbers.size(); ++i)
        scores[i] = float(s->numbers[i]);
    }
    for (size_t i = 0; i < n; ++i) {
      const std::string& piece = pieces[i];
      tok->piece_to_id_[piece] = int(i);
      int type = type_of(i);
      int byte = ParseByteToken(piece);
      if (type == 6 && byte >= 0) {
        tok->byte_token_[byte] = int(i);
        tok->id_to_bytes_[i] = std::string(1, char(byte));
      } else if (type == 3 || type == 4) {
        tok->id_to_bytes_[i] = piece;
        tok->special_[i] = type == 3;
        tok->added_.push_back({piece, int(i)});
      } else {
        tok->id_to_bytes_[i] = ReplaceAll(piece, kMetaspace, " ");
        if (type != 2 && type != 5) tok->symbol_to_id_.emplace(piece, int(i));
        if (type == 2) tok->unk_id_ = int(i);
      }
    }
    tok->BuildMergesFromScores(scores);
    bool add_space = true;
    if (const GgufValue* v = gguf.Find("tokenizer.ggml.add_space_prefix"))
      add_space = v->b;
    if (add_space) {
      auto p = std::make_unique<Normalizer>();
      p->type = Normalizer::kPrepend;
      p->a = kMetaspace;
      tok->normalizers_.push_back(std::move(p));
    }
    auto r = std::make_unique<Normalizer>();
    r->type = Normalizer::kReplace;
    r->a = " ";
    r->b = kMetaspace;
    tok->normalizers_.push_back(std::move(r));
    tok->strip_leading_space_ = add_space;
    tok->add_bos_ = true;
  } else if (model->s == "gpt2") {
    tok->kind_ = Kind::kByteLevelBpe;
    for (size_t i = 0; i < n; ++i) {
      const std::string& piece = pieces[i];
      tok->piece_to_id_[piece] = int(i);
      int type = type_of(i);
      if (type == 3 || type == 4) {
        tok->id_to_bytes_[i] = piece;
        tok->special_[i] = type == 3;
        tok->added_.push_back({piece, int(i)});
        continue;
      }
      auto bytes = ByteLevelToBytes(piece);
      if (!bytes.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("gguf: token ", i, " is not valid UTF-8"));
      }
      tok->id_to_bytes_[i] = *bytes;
      tok->symbol_to_id_.emplace(*bytes, int(i));
    }
    const GgufValue* merges = gguf.Find("tokenizer.ggml.merges");
    if (merges == nullptr)
      return absl::InvalidArgumentError(
          "gguf: gpt2 tokenizer without tokenizer.ggml.merges");
    int rank = 0;
    for (const std::string& m : merges->strings) {
      size_t sp = m.find(' ');
      if (sp == std::string::npos) {
        ++rank;
        continue;
      }
      auto ia = tok->piece_to_id_.find(m.substr(0, sp)),
           ib = tok->piece_to_id_.find(m.substr(sp + 1)),
           ic = tok->piece_to_id_.find(m.substr(0, sp) + m.substr(sp + 1));
      if (ia != tok->piece_to_id_.end() && ib != tok->piece_to_id_.end() &&
          ic != tok->piece_to_id_.end()) {
        tok->merges_.emplace(
            (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second),
            std::make_pair(rank, ic->second));
      }
      ++rank;
    }
    std::string pre = "default";
    if (const GgufValue* p = gguf.Find("tokenizer.ggml.pre")) pre = p->s;
    const char* pattern = kGpt2Pattern;
    if (pre == "llama-bpe" || pre == "llama3" || pre == "smaug-bpe") {
      pattern = kLlama3Pattern;
    } else if (pre == "qwen2") {
      pattern = kQwen2Pattern;
    } else if (pre != "default" && pre != "gpt-2" && pre != "gpt2" &&
               pre != "smollm") {
      return absl::InvalidArgumentError(absl::StrCat(
          "gguf: tokenizer.ggml.pre '", pre,
          "' is not supported (default, gpt-2, smollm, llama-bpe, qwen2)"));
    }
    ASSIGN_OR_RETURN(auto s, Splitter::Regex(pattern, false));
    tok->splitters_.push_back(std::move(s));
    tok->add_bos_ = false;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("gguf: tokenizer model '", model->s,
                     "' is not supported (llama, gpt2)"));
  }
  auto get_id = [&](const char* key) -> int {
    const GgufValue* v = gguf.Find(key);
    if (v == nullptr) return -1;
    int64_t id = v->AsInt();
    return (id >= 0 && id < int64_t(n)) ? int(id) : -1;
  };
  tok->bos_id_ = get_id("tokenizer.ggml.bos_token_id");
  tok->eos_id_ = get_id("tokenizer.ggml.eos_token_id");
  if (int unk = get_id("tokenizer.ggml.unknown_token_id"); unk >= 0)
    tok->unk_id_ = unk;
  if (const GgufValue* v = gguf.Find("tokenizer.ggml.add_bos_token"))
    tok->add_bos_ = v->b;
  if (const GgufValue* v = gguf.Find("tokenizer.ggml.add_eos_token"))
    tok->add_eos_ = v->b;
  if (tok->bos_id_ >= 0) tok->special_[size_t(tok->bos_id_)] = true;
  if (tok->eos_id_ >= 0) tok->special_[size_t(tok->eos_id_)] = true;
  if (tok->add_bos_ && tok->bos_id_ < 0) tok->add_bos_ = false;
  RETURN_IF_ERROR(tok->Finish());
  return tok;
}

void Tokenizer::BuildMergesFromScores(const std::vector<float>& scores) {
  // Every way to split a vocabulary piece into two vocabulary pieces is a
  // merge; higher-scored results merge first.
  std::vector<std::pair<float, int>> order;
  for (const auto& [piece, id] : symbol_to_id_)
    order.push_back({scores[size_t(id)], id});
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  int rank = 0;
  for (const auto& [score, id] : order) {
    const std::string& piece = id_to_piece_[size_t(id)];
    for (size_t cut = 1; cut < piece.size(); ++cut) {
      auto l = symbol_to_id_.find(piece.substr(0, cut));
      if (l == symbol_to_id_.end()) continue;
      auto r = symbol_to_id_.find(piece.substr(cut));
      if (r == symbol_to_id_.end()) continue;
      merges_.emplace(
          (uint64_t(uint32_t(l->second)) << 32) | uint32_t(r->second),
          std::make_pair(rank, id));
    }
    ++rank;
  }
}

absl::Status Tokenizer::Finish() {
  if (kind_ == Kind::kByteLevelBpe) {
    for (int b = 0; b < 256; ++b) {
      if (symbol_to_id_.find(std::string(1, char(b))) == symbol_to_id_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tokenizer: byte-level vocabulary lacks the token for byte ", b));
      }
    }
  }
  // Longest added tokens first so that matching is leftmost-longest.
  std::sort(added_.begin(), added_.end(), [](const auto& a, const auto& b) {
    return a.first.size() != b.first.size() ? a.first.size() > b.first.size()
                                            : a.second < b.second;
  });
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Encoding

absl::StatusOr<std::vector<int>> Tokenizer::Encode(
    absl::string_view text, bool add_special_tokens) const {
  if (!IsValidUtf8(text)) {
    return absl::InvalidArgumentError("prompt: is not valid UTF-8");
  }
  std::vector<int> out;
  if (add_special_tokens && add_bos_) out.push_back(bos_id_);
  std::string s(text);
  size_t start = 0, i = 0;
  while (i < s.size()) {
    int matched = -1;
    size_t mlen = 0;
    for (const auto& [content, id] : added_) {
      if (s.compare(i, content.size(), content) == 0) {
        matched = id;
        mlen = content.size();
        break;
      }
    }
    if (matched < 0) {
      ++i;
      continue;
    }
    if (i > start) EncodeSegment(s.substr(start, i - start), &out);
    out.push_back(matched);
    i += mlen;
    start = i;
  }
  if (start < s.size()) EncodeSegment(s.substr(start), &out);
  if (add_special_tokens && add_eos_ && eos_id_ >= 0) out.push_back(eos_id_);
  return out;
}

void Tokenizer::EncodeSegment(const std::string& text,
                              std::vector<int>* out) const {
  std::string normalized = text;
  for (const auto& n : normalizers_) normalized = n->Apply(normalized);
  std::vector<std::string> pieces{normalized};
  for (const auto& splitter : splitters_) {
    std::vector<std::string> next;
    for (const std::string& p : pieces) splitter->Apply(p, &next);
    pieces.swap(next);
  }
  for (const std::string& p : pieces) {
    if (!p.empty()) Bpe(p, out);
  }
}

void Tokenizer::EmitUnknown(const std::string& symbol,
                            std::vector<int>* out) const {
  if (kind_ == Kind::kSentencePieceBpe && byte_fallback_) {
    bool all = true;
    for (unsigned char c : symbol) all = all && byte_token_[c] >= 0;
    if (all) {
      for (unsigned char c : symbol) out->push_back(byte_token_[c]);
      return;
    }
  }
  if (unk_id_ >= 0) out->push_back(unk_id_);
}

void Tokenizer::Bpe(const std::string& piece, std::vector<int>* out) const {
  if (ignore_merges_) {
    auto it = symbol_to_id_.find(piece);
    if (it != symbol_to_id_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  // Initial symbols: bytes (byte-level) or UTF-8 characters (SentencePiece).
  struct Sym {
    int id;
    size_t begin, len;
    int prev, next;
  };
  std::vector<Sym> syms;
  size_t i = 0;
  while (i < piece.size()) {
    size_t len = 1;
    if (kind_ == Kind::kSentencePieceBpe) {
      int l = Utf8CharLen(piece, i);
      len = l > 0 ? size_t(l) : 1;
    }
    auto it = symbol_to_id_.find(piece.substr(i, len));
    int id = it == symbol_to_id_.end() ? -1 : it->second;
    syms.push_back(Sym{id, i, len, int(syms.size()) - 1, int(syms.size()) + 1});
    i += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;
  struct Cand {
    int rank;
    int left;
    int left_id, right_id;
    bool operator>(const Cand& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int left) {
    if (left < 0) return;
    int right = syms[size_t(left)].next;
    if (right < 0) return;
    int a = syms[size_t(left)].id, b = syms[size_t(right)].id;
    if (a < 0 || b < 0) return;
    auto it = merges_.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
    if (it == merges_.end()) return;
    heap.push(Cand{it->second.first, left, a, b});
  };
  for (int k = 0; k + 1 < int(syms.size()); ++k) push(k);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& l = syms[size_t(c.left)];
    if (l.len == 0 || l.id != c.left_id || l.next < 0) continue;
    Sym& r = syms[size_t(l.next)];
    if (r.id != c.right_id) continue;
    auto it = merges_.find((uint64_t(uint32_t(l.id)) << 32) | uint32_t(r.id));
    l.id = it->second.second;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[size_t(r.next)].prev = c.left;
    push(l.prev);
    push(c.left);
  }
  for (int k = 0; k >= 0; k = syms[size_t(k)].next) {
    const Sym& s = syms[size_t(k)];
    if (s.id >= 0) {
      out->push_back(s.id);
    } else {
      EmitUnknown(piece.substr(s.begin, s.len), out);
    }
  }
}

// ---------------------------------------------------------------------------
// Decoding

const std::string& Tokenizer::TokenBytes(int id) const {
  if (id < 0 || id >= int(id_to_bytes_.size())) return empty_;
  return id_to_bytes_[size_t(id)];
}

const std::string& Tokenizer::TokenPiece(int id) const {
  if (id < 0 || id >= int(id_to_piece_.size())) return empty_;
  return id_to_piece_[size_t(id)];
}

bool Tokenizer::IsSpecial(int id) const {
  return id >= 0 && id < int(special_.size()) && special_[size_t(id)];
}

std::optional<int> Tokenizer::TokenId(const std::string& piece) const {
  auto it = piece_to_id_.find(piece);
  if (it == piece_to_id_.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::Decode(const std::vector<int>& ids,
                              bool skip_special) const {
  std::string bytes;
  bool first = true;
  for (int id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (skip_special && IsSpecial(id)) continue;
    const std::string& b = TokenBytes(id);
    if (first && strip_leading_space_ && !b.empty() && b[0] == ' ') {
      bytes.append(b, 1, std::string::npos);
    } else {
      bytes += b;
    }
    first = false;
  }
  std::string out;
  AppendValidUtf8(bytes, /*final=*/true, &out);
  return out;
}

std::string StreamDetokenizer::Push(int id) {
  if (skip_special_ && tokenizer_->IsSpecial(id)) return "";
  pending_ += tokenizer_->TokenBytes(id);
  std::string out;
  size_t used = AppendValidUtf8(pending_, /*final=*/false, &out);
  pending_.erase(0, used);
  return out;
}

std::string StreamDetokenizer::Flush() {
  std::string out;
  AppendValidUtf8(pending_, /*final=*/true, &out);
  pending_.clear();
  return out;
}

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    int len = Utf8CharLen(text, i);
    if (len <= 0) return false;
    i += size_t(len);
  }
  return true;
}

size_t AppendValidUtf8(absl::string_view bytes, bool final, std::string* out) {
  size_t i = 0;
  while (i < bytes.size()) {
    int len = Utf8CharLen(bytes, i);
    if (len > 0) {
      out->append(bytes.data() + i, size_t(len));
      i += size_t(len);
    } else if (len < 0 && !final) {
      break;  // incomplete character at the end: hold it back
    } else {
      AppendUtf8(0xfffd, out);
      ++i;
      // Skip the continuation bytes of this broken sequence.
      while (i < bytes.size() && (uint8_t(bytes[i]) & 0xc0) == 0x80) ++i;
    }
  }
  return i;
}

}  // namespace hangar::engine
