// Fuzzes Tokenizer::FromHuggingFace (tokenizer.json) and, when the input
// builds a tokenizer, encoding and streaming decoding with it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string json(reinterpret_cast<const char*>(data), size);
  auto tok = hangar::engine::Tokenizer::FromHuggingFace(json, "");
  if (!tok.ok()) return 0;
  const auto& t = **tok;
  for (const char* text :
       {"Hello world", " leading and  double  spaces\n",
        "ünïcödé 中文 🛩 123456",
        // decomposed and compatibility characters for the
        // Unicode normalizers
        "cafe\xcc\x81 \xef\xac\x81 \xef\xbc\xa1\xc2\xb2", ""}) {
    auto ids = t.Encode(text);
    if (!ids.ok()) continue;
    hangar::engine::StreamDetokenizer stream(&t);
    std::string out;
    for (int id : *ids) out += stream.Push(id);
    out += stream.Flush();
    if (!hangar::engine::IsValidUtf8(out)) __builtin_trap();
    if (!hangar::engine::IsValidUtf8(t.Decode(*ids))) __builtin_trap();
  }
  // Arbitrary ids never crash decoding.
  (void)t.Decode({-1, 0, 1, 2, 255, 256, 1 << 30});
  return 0;
}
