#include "engine/gguf.h"

#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/status_util.h"

namespace hangar::engine {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 40;

struct TypeInfo {
  uint32_t type;
  const char* name;
  int block;
  int bytes;
};
constexpr TypeInfo kTypes[] = {
    {0, "F32", 1, 4},       {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},    {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},    {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}, {24, "I8", 1, 1},
    {25, "I16", 1, 2},      {26, "I32", 1, 4},      {27, "I64", 1, 8},
    {28, "F64", 1, 8},      {30, "BF16", 1, 2},
};

const TypeInfo* FindType(uint32_t t) {
  for (const TypeInfo& info : kTypes)
    if (info.type == t) return &info;
  return nullptr;
}

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <typename T>
  absl::Status Read(T* out, const char* what) {
    if (remaining() < sizeof(T)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gguf: truncated while reading ", what, " at byte ", pos_));
    }
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }
  absl::Status ReadString(std::string* out, const char* what) {
    uint64_t len;
    RETURN_IF_ERROR(Read(&len, what));
    if (len > remaining()) {
      return absl::InvalidArgumentError(absl::StrCat("gguf: ", what, " claims ",
                                                     len, " bytes but only ",
                                                     remaining(), " remain"));
    }
    out->assign(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return absl::OkStatus();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

int ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    default:
      return 0;
  }
}

// Reads one scalar of numeric type `t` into v (u, i, f, b all set).
absl::Status ReadScalar(Reader& r, GgufType t, GgufValue* v,
                        const std::string& key) {
  auto set = [&](int64_t i, uint64_t u, double f) {
    v->i = i;
    v->u = u;
    v->f = f;
    v->b = u != 0;
  };
  switch (t) {
    case GgufType::kU8: {
      uint8_t x;
      RETURN_IF_ERROR(r.Read(&x, "u8"));
      set(x, x, x);
      break;
    }
    case GgufType::kI8: {
      int8_t x;
      RETURN_IF_ERROR(r.Read(&x, "i8"));
      set(x, uint64_t(x), x);
      break;
    }
    case GgufType::kU16: {
      uint16_t x;
      RETURN_IF_ERROR(r.Read(&x, "u16"));
      set(x, x, x);
      break;
    }
    case GgufType::kI16: {
      int16_t x;
      RETURN_IF_ERROR(r.Read(&x, "i16"));
      set(x, uint64_t(x), x);
      break;
    }
    case GgufType::kU32: {
      uint32_t x;
      RETURN_IF_ERROR(r.Read(&x, "u32"));
      set(x, x, x);
      break;
    }
    case GgufType::kI32: {
      int32_t x;
      RETURN_IF_ERROR(r.Read(&x, "i32"));
      set(x, uint64_t(x), x);
      break;
    }
    case GgufType::kU64: {
      uint64_t x;
      RETURN_IF_ERROR(r.Read(&x, "u64"));
      set(int64_t(x), x, double(x));
      break;
    }
    case GgufType::kI64: {
      int64_t x;
      RETURN_IF_ERROR(r.Read(&x, "i64"));
      set(x, uint64_t(x), double(x));
      break;
    }
    case GgufType::kF32: {
      float x;
      RETURN_IF_ERROR(r.Read(&x, "f32"));
      set(int64_t(x), uint64_t(x), x);
      break;
    }
    case GgufType::kF64: {
      double x;
      RETURN_IF_ERROR(r.Read(&x, "f64"));
      set(int64_t(x), uint64_t(x), x);
      break;
    }
    case GgufType::kBool: {
      uint8_t x;
      RETURN_IF_ERROR(r.Read(&x, "bool"));
      set(x != 0, x != 0, x != 0);
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "gguf: metadata '", key, "' has unknown value type ", uint32_t(t)));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t GgufValue::AsInt() const {
  if (type == GgufType::kF32 || type == GgufType::kF64) return int64_t(f);
  return i;
}
double GgufValue::AsDouble() const { return f; }

std::string GgufFile::GgmlTypeName(uint32_t type) {
  const TypeInfo* info = FindType(type);
  return info ? info->name : absl::StrCat("type ", type);
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  auto parsed = Parse(file->data(), file->size());
  if (!parsed.ok()) {
    return PrefixStatus(path, parsed.status());
  }
  (*parsed)->file_ = std::move(file);
  return std::move(parsed).value();
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(const uint8_t* data,
                                                          size_t size) {
  Reader r(data, size);
  uint32_t magic;
  RETURN_IF_ERROR(r.Read(&magic, "magic"));
  if (std::memcmp(&magic, "GGUF", 4) != 0) {
    return absl::InvalidArgumentError("gguf: bad magic (expected 'GGUF')");
  }
  auto out = std::unique_ptr<GgufFile>(new GgufFile());
  RETURN_IF_ERROR(r.Read(&out->version_, "version"));
  if (out->version_ != 2 && out->version_ != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gguf: version ", out->version_, " is not supported (only 2 and 3)"));
  }
  uint64_t n_tensors, n_kv;
  RETURN_IF_ERROR(r.Read(&n_tensors, "tensor count"));
  RETURN_IF_ERROR(r.Read(&n_kv, "metadata count"));
  // Every KV needs at least 12 bytes and every tensor info at least 24.
  if (n_kv > r.remaining() / 12 || n_tensors > r.remaining() / 24) {
    return absl::InvalidArgumentError(
        absl::StrCat("gguf: counts (", n_kv, " metadata, ", n_tensors,
                     " tensors) exceed the file size"));
  }
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    RETURN_IF_ERROR(r.ReadString(&key, "metadata key"));
    uint32_t type;
    RETURN_IF_ERROR(r.Read(&type, "metadata type"));
    GgufValue v;
    v.type = GgufType(type);
    if (v.type == GgufType::kString) {
      RETURN_IF_ERROR(r.ReadString(&v.s, "metadata string"));
    } else if (v.type == GgufType::kArray) {
      uint32_t et;
      uint64_t n;
      RETURN_IF_ERROR(r.Read(&et, "array type"));
      RETURN_IF_ERROR(r.Read(&n, "array length"));
      v.element_type = GgufType(et);
      if (v.element_type == GgufType::kString) {
        if (n > r.remaining() / 8) {
          return absl::InvalidArgumentError(
              absl::StrCat("gguf: metadata '", key, "' array of ", n,
                           " strings exceeds the file"));
        }
        v.strings.resize(n);
        for (uint64_t j = 0; j < n; ++j)
          RETURN_IF_ERROR(r.ReadString(&v.strings[j], "array string"));
      } else {
        int es = ScalarSize(v.element_type);
        if (es == 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("gguf: metadata '", key,
                           "' has unsupported array element type ", et));
        }
        if (n > r.remaining() / es) {
          return absl::InvalidArgumentError(
              absl::StrCat("gguf: metadata '", key, "' array of ", n,
                           " elements exceeds the file"));
        }
        v.numbers.resize(n);
        for (uint64_t j = 0; j < n; ++j) {
          GgufValue e;
          RETURN_IF_ERROR(ReadScalar(r, v.element_type, &e, key));
          v.numbers[j] = (v.element_type == GgufType::kF32 ||
                          v.element_type == GgufType::kF64)
                             ? e.f
                             : double(e.i);
        }
      }
    } else {
      RETURN_IF_ERROR(ReadScalar(r, v.type, &v, key));
    }
    out->metadata_[key] = std::move(v);
  }
  uint64_t alignment = 32;
  if (const GgufValue* a = out->Find("general.alignment")) {
    alignment = uint64_t(a->AsInt());
    if (alignment == 0 || alignment > 65536 ||
        (alignment & (alignment - 1)) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("gguf: general.alignment ", alignment,
                       " must be a power of two <= 65536"));
    }
  }
  std::vector<std::pair<GgufTensor, uint64_t>> infos;
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensor tensor;
    RETURN_IF_ERROR(r.ReadString(&tensor.name, "tensor name"));
    uint32_t n_dims;
    RETURN_IF_ERROR(r.Read(&n_dims, "tensor n_dims"));
    if (n_dims == 0 || n_dims > 4) {
      return absl::InvalidArgumentError(
          absl::StrCat("gguf: tensor '", tensor.name, "' has ", n_dims,
                       " dimensions (1 to 4 allowed)"));
    }
    int64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim;
      RETURN_IF_ERROR(r.Read(&dim, "tensor dimension"));
      if (dim == 0 || dim > uint64_t(kMaxElements) ||
          elements > kMaxElements / int64_t(dim)) {
        return absl::InvalidArgumentError(
            absl::StrCat("gguf: tensor '", tensor.name,
                         "' has an absurd shape (zero or over 2^40 elements)"));
      }
      elements *= int64_t(dim);
      tensor.dims.push_back(int64_t(dim));
    }
    RETURN_IF_ERROR(r.Read(&tensor.type, "tensor type"));
    uint64_t offset;
    RETURN_IF_ERROR(r.Read(&offset, "tensor offset"));
    const TypeInfo* info = FindType(tensor.type);
    if (info == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("gguf: tensor '", tensor.name,
                       "' has unknown ggml type ", tensor.type));
    }
    if (tensor.dims[0] % info->block != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("gguf: tensor '", tensor.name, "' row of ",
                       tensor.dims[0], " elements is not a multiple of the ",
                       info->name, " block size ", info->block));
    }
    tensor.nbytes = elements / info->block * info->bytes;
    if (offset % alignment != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("gguf: tensor '", tensor.name, "' offset ", offset,
                       " is not aligned to ", alignment));
    }
    infos.emplace_back(std::move(tensor), offset);
  }
  uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  if (data_start > size) {
    if (n_tensors == 0) return out;
    return absl::InvalidArgumentError(
        "gguf: the data region starts past the end of the file");
  }
  uint64_t data_size = size - data_start;
  for (auto& [tensor, offset] : infos) {
    if (offset > data_size || uint64_t(tensor.nbytes) > data_size - offset) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gguf: tensor '", tensor.name, "' at offset ", offset, " with ",
          tensor.nbytes, " bytes runs past the end of the file"));
    }
    tensor.data = data + data_start + offset;
    std::string name = tensor.name;
    if (!out->tensors_.emplace(name, std::move(tensor)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("gguf: tensor '", name, "' appears twice"));
    }
  }
  return out;
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

// ---------------------------------------------------------------------------
// Writer

namespace {
template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void PutString(std::string* out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out->append(s);
}
}  // namespace

void GgufWriter::AddString(const std::string& key, const std::string& v) {
  PutString(&kv_, key);
  Put<uint32_t>(&kv_, uint32_t(GgufType::kString));
  PutString(&kv_, v);
  ++kv_count_;
}
void GgufWriter::AddU32(const std::string& key, uint32_t v) {
  PutString(&kv_, key);
  Put<uint32_t>(&kv_, uint32_t(GgufType::kU32));
  Put<uint32_t>(&kv_, v);
  ++kv_count_;
}
void GgufWriter::AddI32(const std::string& key, int32_t v) {
  PutString(&kv_, key);
  Put<uint32_t>(&kv_, uint32_t(GgufType::kI32));
  Put<int32_t>(&kv_, v);
  ++kv_count_;
}
void GgufWriter::AddF32(const std::string& key, float v) {
  PutString(&kv_, key);
  Put<uint32_t>(&kv_, uint32_t(GgufType::kF32));
  Put<float>(&kv_, v);
  ++kv_count_;
}
void GgufWriter::AddBool(const std::string& key, bool v) {
  PutString(&kv_, key);
  Put<uint32_t>(&kv_, uint32_t(GgufType::kBool));
  Put<uint8_t>(&kv_, v ? 1 : 0);
  ++kv_count_;
}
void GgufWriter::AddStringArray(const std::string& key,
                                const std::vector<std::string>& v) {
  PutString(&kv_, key);
  Put<uint32_t>(&kv_, uint32_t(GgufType::kArray));
  Put<uint32_t>(&kv_, uint32_t(GgufType::kString));
  Put<uint64_t>(&kv_, v.size());
  for (const auto& s : v) PutString(&kv_, s);
  ++kv_count_;
}
void GgufWriter::AddF32Array(const std::string& key,
                             const std::vector<float>& v) {
  PutString(&kv_, key);
  Put<uint32_t>(&kv_, uint32_t(GgufType::kArray));
  Put<uint32_t>(&kv_, uint32_t(GgufType::kF32));
  Put<uint64_t>(&kv_, v.size());
  for (float f : v) Put<float>(&kv_, f);
  ++kv_count_;
}
void GgufWriter::AddI32Array(const std::string& key,
                             const std::vector<int32_t>& v) {
  PutString(&kv_, key);
  Put<uint32_t>(&kv_, uint32_t(GgufType::kArray));
  Put<uint32_t>(&kv_, uint32_t(GgufType::kI32));
  Put<uint64_t>(&kv_, v.size());
  for (int32_t x : v) Put<int32_t>(&kv_, x);
  ++kv_count_;
}
void GgufWriter::AddTensor(const std::string& name, uint32_t ggml_type,
                           std::vector<int64_t> dims, std::string bytes) {
  tensors_.push_back(
      Tensor{name, ggml_type, std::move(dims), std::move(bytes)});
}

absl::Status GgufWriter::Write(const std::string& path) const {
  constexpr uint64_t kAlign = 32;
  std::string head = "GGUF";
  Put<uint32_t>(&head, 3);
  Put<uint64_t>(&head, tensors_.size());
  Put<uint64_t>(&head, kv_count_);
  head += kv_;
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const Tensor& t : tensors_) {
    PutString(&head, t.name);
    Put<uint32_t>(&head, uint32_t(t.dims.size()));
    for (int64_t d : t.dims) Put<uint64_t>(&head, uint64_t(d));
    Put<uint32_t>(&head, t.type);
    Put<uint64_t>(&head, offset);
    offsets.push_back(offset);
    offset += (t.bytes.size() + kAlign - 1) / kAlign * kAlign;
  }
  while (head.size() % kAlign != 0) head.push_back('\0');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat(path, ": cannot create"));
  out.write(head.data(), std::streamsize(head.size()));
  for (const Tensor& t : tensors_) {
    out.write(t.bytes.data(), std::streamsize(t.bytes.size()));
    size_t pad = (kAlign - t.bytes.size() % kAlign) % kAlign;
    std::string zeros(pad, '\0');
    out.write(zeros.data(), std::streamsize(pad));
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace hangar::engine
