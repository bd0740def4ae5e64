// hardware list: the scheduler's hardware offerings, their prices and how
// many replicas fit now.
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "hangar/v1/scheduler.grpc.pb.h"
#include "tools/hangarctl/commands.h"
#include "tools/hangarctl/output.h"

namespace hangar::ctl {
namespace {

int HardwareList(Invocation& in) {
  auto stub = v1::SchedulerService::NewStub(in.Channel(Service::kScheduler));
  v1::ListHardwareRequest request;
  v1::ListHardwareResponse all;
  grpc::Status status = FetchAllPages(
      [&](const std::string& token, v1::ListHardwareResponse* page) {
        request.set_page_token(token);
        return stub->ListHardware(in.Context().get(), request, page);
      },
      &all);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(all);
    return kExitOk;
  }
  if (all.offerings().empty()) {
    std::cerr << "No hardware offerings found.\n";
    return kExitOk;
  }
  Table table({"ID", "GPU", "COUNT", "MEMORY", "PRICE/H", "POOL", "AVAILABLE"});
  for (const v1::HardwareOffering& offering : all.offerings()) {
    table.AddRow({offering.id(), OrDash(offering.gpu_model()),
                  absl::StrCat(offering.gpu_count()),
                  FormatBytes(offering.gpu_memory_bytes()),
                  FormatMoney(offering.hourly_price()), OrDash(offering.pool()),
                  absl::StrCat(offering.available_replicas(), "/",
                               offering.total_replicas())});
  }
  table.Print();
  return kExitOk;
}

}  // namespace

std::vector<Command> HardwareCommands() {
  return {{.path = "hardware list",
           .summary = "List the hardware offerings deployments can use",
           .details = "Columns: ID (the --hardware of deploy create), GPU, "
                      "COUNT (GPUs per replica), MEMORY (per GPU), PRICE/H "
                      "(per replica), POOL, AVAILABLE (replicas that fit now "
                      "/ on an empty pool).\n",
           .run = HardwareList}};
}

}  // namespace hangar::ctl
