// Fuzzes SafetensorsFile::Parse: any byte string must give a clean error or
// a file whose tensors all lie inside the buffer.
#include <cstddef>
#include <cstdint>

#include "engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = hangar::engine::SafetensorsFile::Parse(data, size);
  if (!file.ok()) return 0;
  uint64_t sum = 0;
  for (const auto& [name, t] : (*file)->tensors()) {
    if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
    for (int64_t i = 0; i < t.nbytes; ++i)
      sum += t.data[i];  // ASan checks every read
  }
  return sum == 0xdeadbeef ? 1 : 0;
}
