// The hardware file: GPU pools and the offerings users pick from.
//
// deploy/config/hardware.textproto (protobuf text format, schema in
// hardware_config.proto) declares each pool once — GPU model and its
// capabilities, GPU memory, GPUs per node, node count, executor — and the
// offerings drawn from them ("t4-1x": one T4 GPU per replica at $1.128 an
// hour). The scheduler reads it once at start; a file that does not parse or
// breaks a rule is one INVALID_ARGUMENT naming the file, the line and the rule:
//
//   hardware.textproto:14:17: pools[1].gpus_per_node: must be in [1, 64];
//   was 0
//
// Rules: pool names and offering ids are 1 to 63 characters of [a-z0-9-]
// starting with a letter and unique; every pool has a GPU model, GPU memory in
// (0, 1 TiB], 1 to 64 GPUs per node, 1 to 10 000 nodes and an executor; every
// offering names a declared pool, 1 to gpus_per_node GPUs, a display name and
// a price >= 0; at least one pool and one offering.
//
//   ASSIGN_OR_RETURN(config::HardwareConfig hardware,
//                    LoadHardwareConfig("deploy/config/hardware.textproto"));
#ifndef HANGAR_SERVICES_SCHEDULER_HARDWARE_CONFIG_H_
#define HANGAR_SERVICES_SCHEDULER_HARDWARE_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/scheduler/hardware_config.pb.h"

namespace hangar::scheduler {

inline constexpr int kMaxGpusPerNode = 64;
inline constexpr int kMaxNodesPerPool = 10'000;
inline constexpr int64_t kMaxGpuMemoryBytes = int64_t{1} << 40;

// Reads and validates the file at `path`. Errors name `path` and the line.
absl::StatusOr<config::HardwareConfig> LoadHardwareConfig(
    const std::string& path);

// Parses and validates `text`; `source_name` prefixes error locations.
absl::StatusOr<config::HardwareConfig> ParseHardwareConfig(
    absl::string_view text, absl::string_view source_name = "<text>");

// The rules above on an already built config (errors without line numbers).
absl::Status ValidateHardwareConfig(const config::HardwareConfig& config);

// A pool name or offering id: 1 to 63 characters of [a-z0-9-] starting with a
// letter.
bool IsValidHardwareName(absl::string_view name);

// The pool named `name`, or null.
const config::PoolConfig* FindPool(const config::HardwareConfig& config,
                                   absl::string_view name);
// The offering with id `id`, or null.
const config::OfferingConfig* FindOffering(const config::HardwareConfig& config,
                                           absl::string_view id);

}  // namespace hangar::scheduler

#endif  // HANGAR_SERVICES_SCHEDULER_HARDWARE_CONFIG_H_
