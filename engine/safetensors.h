// Reader and writer for the safetensors format (Hugging Face).
//
// A safetensors file is: 8 bytes little-endian header length N, N bytes of
// JSON mapping tensor names to {"dtype", "shape", "data_offsets": [begin,
// end)} (offsets relative to the byte after the header) plus an optional
// "__metadata__" string map, then the raw little-endian tensor bytes.
//
// `SafetensorsFile::Parse` validates everything a lying header could get wrong
// before any tensor byte is touched: the header length against the buffer,
// the JSON, every dtype, shape products (no overflow, <= 2^40 elements),
// offsets within the data region and `end - begin == elements * dtype size`.
// Errors are INVALID_ARGUMENT naming the tensor and the rule. It never reads
// outside `[data, data + size)`; the fuzzer engine/fuzz/safetensors_fuzzer.cc
// holds it to that.
//
//   ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open("model.safetensors"));
//   const SafetensorsTensor* t = file->Find("model.norm.weight");
//
// `SafetensorsWriter` collects tensors (owned byte buffers) and writes one
// file with a header padded to 8 bytes.
#ifndef HANGAR_ENGINE_SAFETENSORS_H_
#define HANGAR_ENGINE_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/file_util.h"

namespace hangar::engine {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // as written: "F32", "BF16", "I8", "F8_E4M3", ...
  std::vector<int64_t> shape;  // outermost first
  const uint8_t* data = nullptr;
  int64_t nbytes = 0;

  int64_t elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

class SafetensorsFile {
 public:
  // Maps and parses a file; the returned object owns the map.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);
  // Parses a buffer the caller keeps alive (used by the fuzzer).
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(
      const uint8_t* data, size_t size);

  // Header-only reading, for callers that fetch just the header (the
  // catalog reads remote files with two HTTP range requests): the header
  // length from the first 8 bytes (at most 100 MiB), then the JSON header
  // alone, validated like Parse except that the data region is unknown, so
  // offsets are not checked against it. Tensors have `data == nullptr` and
  // `nbytes` from their offsets.
  static absl::StatusOr<uint64_t> HeaderLength(const uint8_t* data,
                                               size_t size);
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> ParseHeader(
      const std::string& header_json);

  const SafetensorsTensor* Find(const std::string& name) const;
  const std::map<std::string, SafetensorsTensor>& tensors() const {
    return tensors_;
  }
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }

  // Bytes per element of a safetensors dtype name, or 0 if unknown.
  static int DTypeSize(const std::string& dtype);

 private:
  SafetensorsFile() = default;
  // Parses the JSON header; `base` (null for header-only reading) is where
  // the data region of `data_size` bytes starts.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> ParseHeaderJson(
      const char* header, size_t header_len, const uint8_t* base,
      uint64_t data_size);
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  // Adds a tensor; `bytes.size()` must equal elements * DTypeSize(dtype).
  absl::Status Add(const std::string& name, const std::string& dtype,
                   std::vector<int64_t> shape, std::string bytes);
  void SetMetadata(const std::string& key, const std::string& value) {
    metadata_[key] = value;
  }
  absl::Status Write(const std::string& path) const;
  // Total bytes of tensor data added so far.
  int64_t data_bytes() const { return data_bytes_; }

 private:
  struct Entry {
    std::string dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
  int64_t data_bytes_ = 0;
};

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_SAFETENSORS_H_
