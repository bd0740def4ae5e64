#include "engine/safetensors.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"

namespace hangar::engine {
namespace {

using json = nlohmann::json;
constexpr int64_t kMaxElements = int64_t{1} << 40;
constexpr uint64_t kMaxHeader = uint64_t{100} << 20;

}  // namespace

int SafetensorsFile::DTypeSize(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16")
    return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" ||
      dtype == "F8_E5M2")
    return 1;
  return 0;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  auto parsed = Parse(file->data(), file->size());
  if (!parsed.ok()) {
    return PrefixStatus(path, parsed.status());
  }
  (*parsed)->file_ = std::move(file);
  return std::move(parsed).value();
}

absl::StatusOr<uint64_t> SafetensorsFile::HeaderLength(const uint8_t* data,
                                                       size_t size) {
  if (size < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: file is ", size,
                     " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > kMaxHeader) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: header length ", header_len,
                     " exceeds the 100 MiB limit"));
  }
  return header_len;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(
    const uint8_t* data, size_t size) {
  ASSIGN_OR_RETURN(uint64_t header_len, HeaderLength(data, size));
  if (header_len > size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "safetensors: header length ", header_len, " exceeds the file (",
        size - 8, " bytes after the length) or the 100 MiB limit"));
  }
  return ParseHeaderJson(reinterpret_cast<const char*>(data + 8), header_len,
                         data + 8 + header_len, size - 8 - header_len);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::ParseHeader(
    const std::string& header_json) {
  if (header_json.size() > kMaxHeader) {
    return absl::InvalidArgumentError(
        "safetensors: header exceeds the 100 MiB limit");
  }
  return ParseHeaderJson(header_json.data(), header_json.size(), nullptr, 0);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>>
SafetensorsFile::ParseHeaderJson(const char* hbegin, size_t header_len,
                                 const uint8_t* base, uint64_t data_size) {
  json header = json::parse(hbegin, hbegin + header_len, nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::InvalidArgumentError(
        "safetensors: header is not a JSON object");
  }
  auto out = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object())
        return absl::InvalidArgumentError(
            "safetensors: __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (m.value().is_string())
          out->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets") || !v["dtype"].is_string() ||
        !v["shape"].is_array() || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor '", name,
                       "' needs dtype (string), shape (array) and data_offsets "
                       "([begin, end])"));
    }
    SafetensorsTensor t;
    t.name = name;
    t.dtype = v["dtype"].get<std::string>();
    int esize = DTypeSize(t.dtype);
    if (esize == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor '", name, "' has unknown dtype '",
                       t.dtype, "'"));
    }
    int64_t elements = 1;
    for (const json& d : v["shape"]) {
      if (!d.is_number_unsigned() &&
          !(d.is_number_integer() && d.get<int64_t>() >= 0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("safetensors: tensor '", name,
                         "' has a non-integer or negative dimension"));
      }
      uint64_t dim = d.get<uint64_t>();
      if (dim > uint64_t(kMaxElements) ||
          (dim != 0 && elements > kMaxElements / int64_t(dim))) {
        return absl::InvalidArgumentError(
            absl::StrCat("safetensors: tensor '", name,
                         "' has an absurd shape (more than 2^40 elements)"));
      }
      elements *= int64_t(dim);
      t.shape.push_back(int64_t(dim));
    }
    const json& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor '", name,
                       "' data_offsets must be non-negative integers"));
    }
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || (base != nullptr && end > data_size)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "safetensors: tensor '", name, "' data_offsets [", begin, ", ", end,
          ") fall outside the data region of ", data_size, " bytes"));
    }
    if (end - begin != uint64_t(elements) * uint64_t(esize)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "safetensors: tensor '", name, "' spans ", end - begin,
          " bytes but its shape and dtype need ", elements * esize));
    }
    t.data = base == nullptr ? nullptr : base + begin;
    t.nbytes = int64_t(end - begin);
    out->tensors_.emplace(name, std::move(t));
  }
  return out;
}

const SafetensorsTensor* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::Status SafetensorsWriter::Add(const std::string& name,
                                    const std::string& dtype,
                                    std::vector<int64_t> shape,
                                    std::string bytes) {
  int esize = SafetensorsFile::DTypeSize(dtype);
  if (esize == 0)
    return absl::InvalidArgumentError(absl::StrCat("unknown dtype ", dtype));
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (int64_t(bytes.size()) != n * esize) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, ": ",
                                                   bytes.size(), " bytes for ",
                                                   n, " elements of ", dtype));
  }
  data_bytes_ += int64_t(bytes.size());
  entries_[name] = Entry{dtype, std::move(shape), std::move(bytes)};
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Write(const std::string& path) const {
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& [name, e] : entries_) {
    header[name] = {{"dtype", e.dtype},
                    {"shape", e.shape},
                    {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat(path, ": cannot create"));
  uint64_t len = h.size();
  char lenbuf[8];
  for (int i = 0; i < 8; ++i) lenbuf[i] = char((len >> (8 * i)) & 0xff);
  out.write(lenbuf, 8);
  out.write(h.data(), std::streamsize(h.size()));
  for (const auto& [name, e] : entries_)
    out.write(e.bytes.data(), std::streamsize(e.bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace hangar::engine
