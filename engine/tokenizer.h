// Tokenizers: byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM) and
// SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, GGUF
// "llama" vocabularies with scores), plus streaming detokenization.
//
// Build one from a Hugging Face `tokenizer.json` (+ optional
// `tokenizer_config.json`, which decides BOS/EOS insertion and names the
// special tokens) or from a GGUF file's `tokenizer.ggml.*` metadata:
//
//   ASSIGN_OR_RETURN(auto tok, Tokenizer::FromHuggingFace(json, config_json));
//   ASSIGN_OR_RETURN(std::vector<int> ids, tok->Encode("Hello world"));
//   std::string text = tok->Decode(ids);
//
// Encoding: the text must be valid UTF-8 (else INVALID_ARGUMENT). Added and
// special tokens (`added_tokens`, GGUF control/user-defined tokens) are
// matched literally first, leftmost-longest; the remaining segments go
// through the normalizer (Prepend, Replace, and the Unicode normal forms NFC,
// NFKC, NFD and NFKD computed by ICU; a Sequence applies its members in
// order) and the pre-tokenizer (Split with a PCRE2 regex, ByteLevel with
// the GPT-2 regex, Digits, Metaspace, Sequence), then BPE. BPE applies the
// lowest-ranked adjacent merge first (leftmost on ties); for GGUF "llama"
// vocabularies without merges the rank is the negated score of the merged
// piece, as in SentencePiece. SentencePiece-style symbols missing from the
// vocabulary become `<0xXX>` byte tokens when byte fallback is on, else the
// unknown token. Unsupported components are refused by name.
//
// Decoding maps every token back to the bytes it stands for (byte-level:
// the GPT-2 byte<->unicode table; SentencePiece: "▁" is a space and `<0xXX>`
// is a byte) and repairs invalid UTF-8 with U+FFFD.
//
// `StreamDetokenizer` turns a stream of ids into text deltas that never end
// inside a UTF-8 character: bytes of an incomplete character are held back
// until the next token completes it (or `Flush` replaces them with U+FFFD).
//
// Thread-safety: a Tokenizer is immutable after construction and safe to
// share; a StreamDetokenizer belongs to one sequence.
#ifndef HANGAR_ENGINE_TOKENIZER_H_
#define HANGAR_ENGINE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hangar::engine {

class GgufFile;

class Tokenizer {
 public:
  enum class Kind { kByteLevelBpe, kSentencePieceBpe };

  // `tokenizer_config_json` may be empty.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromHuggingFace(
      const std::string& tokenizer_json,
      const std::string& tokenizer_config_json);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(
      const GgufFile& gguf);

  ~Tokenizer();

  // Encodes UTF-8 text. With `add_special_tokens`, BOS (and EOS) are added as
  // the tokenizer's configuration says.
  absl::StatusOr<std::vector<int>> Encode(absl::string_view text,
                                          bool add_special_tokens = true) const;
  // Decodes ids to text; special tokens are dropped when `skip_special`.
  // Out-of-range ids are skipped.
  std::string Decode(const std::vector<int>& ids,
                     bool skip_special = true) const;

  // The raw bytes token `id` stands for (special tokens: their content).
  const std::string& TokenBytes(int id) const;
  // The token as written in the vocabulary ("Ġthe", "▁the", "<0x0A>").
  const std::string& TokenPiece(int id) const;
  bool IsSpecial(int id) const;
  // Id of a vocabulary entry or added token by its written form.
  std::optional<int> TokenId(const std::string& piece) const;

  Kind kind() const { return kind_; }
  int vocab_size() const { return static_cast<int>(id_to_piece_.size()); }
  int bos_id() const { return bos_id_; }  // -1 if none
  int eos_id() const { return eos_id_; }  // -1 if none
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }

  // ------------------------------------------------------------------------
 private:
  struct Splitter;
  struct Normalizer;
  Tokenizer();
  void BuildMergesFromScores(const std::vector<float>& scores);
  absl::Status Finish();
  void EncodeSegment(const std::string& text, std::vector<int>* out) const;
  void Bpe(const std::string& piece, std::vector<int>* out) const;
  void EmitUnknown(const std::string& symbol, std::vector<int>* out) const;

  Kind kind_ = Kind::kByteLevelBpe;
  std::vector<std::string> id_to_piece_;
  std::vector<std::string> id_to_bytes_;
  std::vector<bool> special_;
  // Symbol-space string -> id: raw bytes for byte-level vocabularies, the
  // written piece for SentencePiece ones.
  std::unordered_map<std::string, int> symbol_to_id_;
  std::unordered_map<std::string, int> piece_to_id_;
  // (left id << 32 | right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int, int>> merges_;
  // Added tokens matched literally in the input: content -> id.
  std::vector<std::pair<std::string, int>> added_;
  std::vector<std::unique_ptr<Normalizer>> normalizers_;
  std::vector<std::unique_ptr<Splitter>> splitters_;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool strip_leading_space_ = false;
  int unk_id_ = -1;
  int bos_id_ = -1;
  int eos_id_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
  int byte_token_[256];  // SentencePiece <0xXX> ids, -1 if absent
  std::string empty_;
};

class StreamDetokenizer {
 public:
  explicit StreamDetokenizer(const Tokenizer* tokenizer,
                             bool skip_special = true)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}
  // Adds one token; returns the text that is now complete (maybe empty).
  std::string Push(int id);
  // Returns whatever is held back, incomplete characters as U+FFFD.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

// True if `text` is well-formed UTF-8.
bool IsValidUtf8(absl::string_view text);
// Length of the longest prefix of `bytes` made of complete characters, with
// invalid sequences replaced by U+FFFD in `out`; holds back a trailing
// incomplete character unless `final`.
size_t AppendValidUtf8(absl::string_view bytes, bool final, std::string* out);

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_TOKENIZER_H_
