// Reader and writer for GGUF files (llama.cpp's model format), versions 2
// and 3.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count, the
// metadata key/value pairs (typed; strings are u64 length + bytes; arrays are
// element type + u64 count + elements), the tensor infos (name, u32 n_dims,
// u64 dims innermost first, u32 ggml type, u64 offset into the data region),
// padding to `general.alignment` (default 32), then the tensor data.
//
// `GgufFile::Parse` checks every length against the bytes that remain,
// bounds array counts, dimensions (at most 4, at most 2^40 elements), known
// ggml types, block-size divisibility, alignment and that every tensor lies
// inside the data region; an error is INVALID_ARGUMENT naming the key or
// tensor. Tensors of types the engine cannot compute with (K-quants, Q4_1,
// ...) still parse; `Model::Load` refuses them by name.
//
// Metadata values are flattened into `GgufValue`: scalars in `u`/`i`/`f`/
// `b`/`s`, arrays of strings in `strings`, numeric arrays in `numbers`.
//
// `GgufWriter` writes a v3 file; engine/tiny_model.cc uses it to convert a
// tiny HF model to GGUF for the cross-format tests.
#ifndef HANGAR_ENGINE_GGUF_H_
#define HANGAR_ENGINE_GGUF_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/file_util.h"

namespace hangar::engine {

enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// ggml tensor types the engine computes with.
enum GgmlType : uint32_t {
  kGgmlF32 = 0,
  kGgmlF16 = 1,
  kGgmlQ4_0 = 2,
  kGgmlQ8_0 = 8,
  kGgmlQ4_K = 12,
  kGgmlQ5_K = 13,
  kGgmlQ6_K = 14,
  kGgmlBF16 = 30,
};

struct GgufValue {
  GgufType type = GgufType::kU32;
  GgufType element_type = GgufType::kU32;  // for arrays
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::vector<std::string> strings;  // array of strings
  std::vector<double> numbers;       // array of numbers (or bools)

  // Integer view of a scalar of any numeric type.
  int64_t AsInt() const;
  double AsDouble() const;
};

struct GgufTensor {
  std::string name;
  uint32_t type = 0;
  std::vector<int64_t> dims;  // innermost first (dims[0] = columns)
  const uint8_t* data = nullptr;
  int64_t nbytes = 0;
  int64_t elements() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
  }
};

class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(
      const std::string& path);
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(const uint8_t* data,
                                                         size_t size);

  uint32_t version() const { return version_; }
  const GgufValue* Find(const std::string& key) const;
  const GgufTensor* FindTensor(const std::string& name) const;
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }

  // Name of a ggml type ("Q4_K") or "type N" when unknown.
  static std::string GgmlTypeName(uint32_t type);

 private:
  GgufFile() = default;
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::map<std::string, GgufTensor> tensors_;
};

class GgufWriter {
 public:
  void AddString(const std::string& key, const std::string& v);
  void AddU32(const std::string& key, uint32_t v);
  void AddI32(const std::string& key, int32_t v);
  void AddF32(const std::string& key, float v);
  void AddBool(const std::string& key, bool v);
  void AddStringArray(const std::string& key,
                      const std::vector<std::string>& v);
  void AddF32Array(const std::string& key, const std::vector<float>& v);
  void AddI32Array(const std::string& key, const std::vector<int32_t>& v);
  // `dims` innermost first; `bytes` already in the ggml type's layout.
  void AddTensor(const std::string& name, uint32_t ggml_type,
                 std::vector<int64_t> dims, std::string bytes);
  absl::Status Write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    uint32_t type;
    std::vector<int64_t> dims;
    std::string bytes;
  };
  std::string kv_;  // serialized key/value pairs
  uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_GGUF_H_
