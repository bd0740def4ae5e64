// A loaded Llama-family decoder: configuration, tokenizer, weights and the
// forward pass.
//
// `Model::Load` accepts
//   * a Hugging Face model directory: config.json, model.safetensors or a
//     sharded model.safetensors.index.json, tokenizer.json, and optionally
//     tokenizer_config.json and generation_config.json. Weights may be F32,
//     F16 or BF16, or the optimizer's quantized forms (I8 / I16 / F8_E4M3
//     with a sibling "<name>_scale" F32 tensor of one scale per row);
//   * an optimized artifact directory (the same, plus hangar_manifest.json);
//   * a GGUF v2/v3 file with F32, F16, BF16, Q8_0 or Q4_0 tensors and the
//     tokenizer in its metadata.
// Architectures: llama (Llama 2/3, SmolLM, TinyLlama), mistral, qwen2 (q/k/v
// bias). GQA, RoPE with rope_theta (and Llama 3.1 "llama3" rope scaling),
// RMSNorm, SwiGLU and tied embeddings are supported. Anything else — another
// model_type, hidden_act, a tensor dtype, a missing or mis-shaped tensor —
// is refused with INVALID_ARGUMENT naming it; a missing path is NOT_FOUND.
//
// Weights stay in the memory-mapped files and are dequantized on the fly by
// engine/kernels.h; norms and biases are copied to float32. Safetensors use
// HF's rotate-half RoPE layout; GGUF "llama" files store Q/K rows permuted for
// interleaved RoPE, so the forward pass rotates adjacent pairs for them
// (attention scores are identical either way).
//
// The forward pass is low level: `Forward` takes rows (slot, position, token)
// — any mix of prompt chunks and single decode tokens of different
// sequences — runs them through every layer together, so each weight matrix
// is read once per call, and writes logits for the rows that ask. The KV
// cache and scratch buffers live in a `DecodeState`. Most callers want
// engine/batch_decoder.h instead.
//
//   ASSIGN_OR_RETURN(auto model, Model::Load("/models/tiny", {.threads = 2}));
//   std::cout << model->info().parameters << " parameters\n";
//
// Thread-safety: a Model is immutable after Load, except that `Forward` uses
// the model's thread pool, so at most one `Forward` may run at a time per
// model (the BatchDecoder serializes its own calls; two decoders on one
// model must not Step concurrently).
#ifndef HANGAR_ENGINE_MODEL_H_
#define HANGAR_ENGINE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kernels.h"
#include "engine/model_config.h"
#include "engine/thread_pool.h"
#include "engine/tokenizer.h"

namespace hangar::engine {

struct LoadOptions {
  // Threads for the kernels; 0 means every core.
  int threads = 0;
  // Caps the context length (prompt + output) below the model's
  // max_position_embeddings; 0 keeps the model's (at most 32768).
  int max_context = 0;
};

// What the runner's Info RPC and the CLI report.
struct ModelInfo {
  std::string path;
  std::string format;        // "huggingface" or "gguf"
  std::string architecture;  // config.architecture
  int64_t parameters = 0;    // elements of every weight tensor (not scales)
  std::string
      weight_dtype;  // of the linear layers: "float32", "int8", "q4_0", "mixed"
  std::string quantization;  // the manifest's recipe ("ctranslate2:int8") or
                             // weight_dtype
  int64_t weight_bytes = 0;  // bytes of all weights and scales
  int64_t decode_bytes = 0;  // bytes streamed per forward pass (all but the
                             // embedding table, unless tied to lm_head)
  int context_length = 0;
  int vocab_size = 0;
};

// One row of a forward pass: the token at `position` of the sequence whose
// KV cache is `slot`.
struct ForwardRow {
  int slot = 0;
  int position = 0;
  int token = 0;
  bool want_logits = false;
};

class DecodeState;

class Model {
 public:
  static absl::StatusOr<std::unique_ptr<Model>> Load(
      const std::string& path, const LoadOptions& options = {});
  ~Model();

  const ModelConfig& config() const { return config_; }
  const ModelInfo& info() const { return info_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  int context_length() const { return info_.context_length; }
  int vocab_size() const { return config_.vocab_size; }
  int threads() const { return pool_->size(); }
  bool IsEos(int token) const;

  // KV cache for `slots` sequences of up to `capacity` positions each, and
  // scratch for up to `max_rows` rows per Forward call.
  absl::StatusOr<std::unique_ptr<DecodeState>> NewState(int slots, int capacity,
                                                        int max_rows) const;

  // Runs `rows` through the model, appending their keys/values to the
  // state's cache, and writes vocab_size() logits for each row with
  // want_logits, in order, to `logits`. Rows of the same slot must come in
  // increasing position order; a row at position p attends to positions
  // [0, p] of its slot (earlier ones written by previous calls).
  absl::Status Forward(absl::Span<const ForwardRow> rows, DecodeState* state,
                       float* logits) const;

  // ------------------------------------------------------------------------
 private:
  struct Layer {
    std::vector<float> attn_norm, ffn_norm, bq, bk, bv;
    WeightMatrix wq, wk, wv, wo, gate, up, down;
  };
  struct Files;
  Model();
  absl::Status LoadHuggingFace(const std::string& dir);
  absl::Status LoadGguf(const std::string& path);
  absl::Status Finish(const LoadOptions& options);
  void Attention(absl::Span<const ForwardRow> rows, int layer,
                 DecodeState* s) const;

  ModelConfig config_;
  ModelInfo info_;
  std::unique_ptr<Files> files_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<std::vector<float>> owned_scales_;
  WeightMatrix embed_, lm_head_;
  std::vector<float> final_norm_;
  std::vector<Layer> layers_;
  std::vector<float> rope_cos_, rope_sin_;  // [context][head_dim / 2]
};

// KV cache and scratch for one driver of Model::Forward.
class DecodeState {
 public:
  int slots() const { return slots_; }
  int capacity() const { return capacity_; }
  int max_rows() const { return max_rows_; }
  int64_t bytes() const { return int64_t(kv_.size()) * 4; }

 private:
  friend class Model;
  int slots_ = 0, capacity_ = 0, max_rows_ = 0;
  int64_t kv_dim_ = 0, layers_ = 0;
  std::vector<float> kv_;  // [slot][layer][k|v][capacity][kv_dim]
  std::vector<float> x_, xn_, q_, k_, v_, att_, tmp_, gate_, up_, xl_;
  float* K(int slot, int layer) {
    return kv_.data() +
           ((int64_t(slot) * layers_ + layer) * 2) * capacity_ * kv_dim_;
  }
  float* V(int slot, int layer) {
    return K(slot, layer) + int64_t(capacity_) * kv_dim_;
  }
};

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_MODEL_H_
