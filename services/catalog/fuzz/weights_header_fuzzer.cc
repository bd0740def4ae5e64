// Fuzzes the catalog's reader of network bytes: the input is what two HTTP
// range requests would return for a safetensors shard (the first 8 bytes,
// then the header). Any input must give a clean status, and a summary must
// be self-consistent (parameters per dtype add up to the total).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "services/catalog/weights_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<int64_t> length = hangar::catalog::SafetensorsHeaderLength(
      bytes.substr(0, 8), "fuzz.safetensors");
  if (!length.ok()) return 0;
  // The second range read: at most `length` bytes after the first 8 (a
  // short read is what a truncated response delivers).
  const std::string header(bytes.substr(8, static_cast<size_t>(*length)));
  absl::StatusOr<hangar::catalog::WeightsSummary> summary =
      hangar::catalog::SummarizeSafetensorsHeader(header, "fuzz.safetensors");
  if (!summary.ok()) return 0;
  int64_t sum = 0;
  for (const auto& [dtype, count] : summary->parameters_by_dtype) sum += count;
  if (sum != summary->parameters) __builtin_trap();
  return 0;
}
