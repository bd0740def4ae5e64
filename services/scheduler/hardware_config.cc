#include "services/scheduler/hardware_config.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace hangar::scheduler {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::TextFormat;

// Keeps the first parse error (line and column are 0-based in protobuf).
class FirstErrorCollector : public ::google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, ::google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!error_.empty()) return;
    error_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

std::string Quote(absl::string_view value) {
  constexpr size_t kMax = 80;
  std::string shown(value.substr(0, kMax));
  return absl::StrCat("\"", absl::CEscape(shown),
                      value.size() > kMax ? "...\"" : "\"");
}

bool IsPrintableText(absl::string_view text) {
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// Where a field of pools[i] or offerings[i] was written, as "line:column: ",
// or "" when the config was not parsed from text.
class Locator {
 public:
  explicit Locator(const TextFormat::ParseInfoTree* tree) : tree_(tree) {}

  std::string Of(const FieldDescriptor* list, int index,
                 absl::string_view field_name) const {
    if (tree_ == nullptr) return "";
    TextFormat::ParseLocation location = tree_->GetLocation(list, index);
    const TextFormat::ParseInfoTree* nested =
        tree_->GetTreeForNested(list, index);
    const FieldDescriptor* field =
        list->message_type()->FindFieldByName(std::string(field_name));
    if (nested != nullptr && field != nullptr) {
      TextFormat::ParseLocation field_location = nested->GetLocation(field, -1);
      if (field_location.line >= 0) location = field_location;
    }
    if (location.line < 0) return "";
    return absl::StrCat(location.line + 1, ":", location.column + 1, ": ");
  }

 private:
  const TextFormat::ParseInfoTree* tree_;
};

absl::Status Invalid(const Locator& locator, const FieldDescriptor* list,
                     int index, absl::string_view field,
                     absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(locator.Of(list, index, field),
                                                 list->name(), "[", index, "].",
                                                 field, ": ", rule));
}

absl::Status Validate(const config::HardwareConfig& config,
                      const Locator& locator) {
  const Descriptor* descriptor = config::HardwareConfig::descriptor();
  const FieldDescriptor* pools = descriptor->FindFieldByName("pools");
  const FieldDescriptor* offerings = descriptor->FindFieldByName("offerings");
  if (config.pools().empty()) {
    return absl::InvalidArgumentError("pools: at least one pool is required");
  }
  absl::flat_hash_set<std::string> pool_names;
  for (int i = 0; i < config.pools_size(); ++i) {
    const config::PoolConfig& pool = config.pools(i);
    if (!IsValidHardwareName(pool.name())) {
      return Invalid(locator, pools, i, "name",
                     absl::StrCat("must be 1 to 63 characters of [a-z0-9-] "
                                  "starting with a letter; was ",
                                  Quote(pool.name())));
    }
    if (!pool_names.insert(pool.name()).second) {
      return Invalid(locator, pools, i, "name",
                     absl::StrCat("duplicate pool name ", Quote(pool.name())));
    }
    if (pool.gpu_model().empty() || pool.gpu_model().size() > 200 ||
        !IsPrintableText(pool.gpu_model())) {
      return Invalid(locator, pools, i, "gpu_model",
                     absl::StrCat("must be 1 to 200 printable characters; "
                                  "was ",
                                  Quote(pool.gpu_model())));
    }
    if (pool.gpu_memory_bytes() <= 0 ||
        pool.gpu_memory_bytes() > kMaxGpuMemoryBytes) {
      return Invalid(locator, pools, i, "gpu_memory_bytes",
                     absl::StrCat("must be in (0, ", kMaxGpuMemoryBytes,
                                  "]; was ", pool.gpu_memory_bytes()));
    }
    if (pool.gpus_per_node() < 1 || pool.gpus_per_node() > kMaxGpusPerNode) {
      return Invalid(locator, pools, i, "gpus_per_node",
                     absl::StrCat("must be in [1, ", kMaxGpusPerNode, "]; was ",
                                  pool.gpus_per_node()));
    }
    if (pool.node_count() < 1 || pool.node_count() > kMaxNodesPerPool) {
      return Invalid(locator, pools, i, "node_count",
                     absl::StrCat("must be in [1, ", kMaxNodesPerPool,
                                  "]; was ", pool.node_count()));
    }
    if (pool.executor() == config::EXECUTOR_UNSPECIFIED) {
      return Invalid(locator, pools, i, "executor",
                     "must be LOCAL or KUBERNETES; was unset");
    }
  }
  if (config.offerings().empty()) {
    return absl::InvalidArgumentError(
        "offerings: at least one offering is required");
  }
  absl::flat_hash_set<std::string> offering_ids;
  for (int i = 0; i < config.offerings_size(); ++i) {
    const config::OfferingConfig& offering = config.offerings(i);
    if (!IsValidHardwareName(offering.id())) {
      return Invalid(locator, offerings, i, "id",
                     absl::StrCat("must be 1 to 63 characters of [a-z0-9-] "
                                  "starting with a letter; was ",
                                  Quote(offering.id())));
    }
    if (!offering_ids.insert(offering.id()).second) {
      return Invalid(
          locator, offerings, i, "id",
          absl::StrCat("duplicate offering id ", Quote(offering.id())));
    }
    if (offering.display_name().empty() ||
        offering.display_name().size() > 200 ||
        !IsPrintableText(offering.display_name())) {
      return Invalid(locator, offerings, i, "display_name",
                     absl::StrCat("must be 1 to 200 printable characters; "
                                  "was ",
                                  Quote(offering.display_name())));
    }
    const config::PoolConfig* pool = FindPool(config, offering.pool());
    if (pool == nullptr) {
      return Invalid(locator, offerings, i, "pool",
                     absl::StrCat("must name a declared pool; was ",
                                  Quote(offering.pool())));
    }
    if (offering.gpu_count() < 1 ||
        offering.gpu_count() > pool->gpus_per_node()) {
      return Invalid(locator, offerings, i, "gpu_count",
                     absl::StrCat("must be in [1, ", pool->gpus_per_node(),
                                  "] (GPUs per node of pool ", pool->name(),
                                  "); was ", offering.gpu_count()));
    }
    if (offering.hourly_price_usd_micros() < 0) {
      return Invalid(locator, offerings, i, "hourly_price_usd_micros",
                     absl::StrCat("must be >= 0; was ",
                                  offering.hourly_price_usd_micros()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsValidHardwareName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (!absl::ascii_islower(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!absl::ascii_islower(static_cast<unsigned char>(c)) &&
        !absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '-') {
      return false;
    }
  }
  return true;
}

const config::PoolConfig* FindPool(const config::HardwareConfig& config,
                                   absl::string_view name) {
  for (const config::PoolConfig& pool : config.pools()) {
    if (pool.name() == name) return &pool;
  }
  return nullptr;
}

const config::OfferingConfig* FindOffering(const config::HardwareConfig& config,
                                           absl::string_view id) {
  for (const config::OfferingConfig& offering : config.offerings()) {
    if (offering.id() == id) return &offering;
  }
  return nullptr;
}

absl::Status ValidateHardwareConfig(const config::HardwareConfig& config) {
  return Validate(config, Locator(nullptr));
}

absl::StatusOr<config::HardwareConfig> ParseHardwareConfig(
    absl::string_view text, absl::string_view source_name) {
  config::HardwareConfig config;
  FirstErrorCollector errors;
  TextFormat::ParseInfoTree tree;
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(std::string(text), &config)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":",
                     errors.error().empty() ? std::string("1:1: does not parse")
                                            : errors.error()));
  }
  absl::Status status = Validate(config, Locator(&tree));
  if (!status.ok()) {
    // Located messages start with "line:column: ".
    const bool located = absl::ascii_isdigit(
        static_cast<unsigned char>(status.message().front()));
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, located ? ":" : ": ", status.message()));
  }
  return config;
}

absl::StatusOr<config::HardwareConfig> LoadHardwareConfig(
    const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(
        absl::StrCat("hardware config ", Quote(path), " cannot be read"));
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) {
    return absl::DataLossError(
        absl::StrCat("hardware config ", Quote(path), ": read failed"));
  }
  return ParseHardwareConfig(text.str(), path);
}

}  // namespace hangar::scheduler
