// Fuzzes GgufFile::Parse and the GGUF tokenizer built from its metadata.
#include <cstddef>
#include <cstdint>

#include "engine/gguf.h"
#include "engine/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = hangar::engine::GgufFile::Parse(data, size);
  if (!file.ok()) return 0;
  uint64_t sum = 0;
  for (const auto& [name, t] : (*file)->tensors()) {
    if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
    for (int64_t i = 0; i < t.nbytes; i += 64) sum += t.data[i];
    if (t.nbytes > 0) sum += t.data[t.nbytes - 1];
  }
  auto tok = hangar::engine::Tokenizer::FromGguf(**file);
  if (tok.ok()) {
    auto ids = (*tok)->Encode("Hello world, 123 ünïcode <s>!");
    if (ids.ok()) sum += (*tok)->Decode(*ids).size();
  }
  return sum == 0xdeadbeef ? 1 : 0;
}
