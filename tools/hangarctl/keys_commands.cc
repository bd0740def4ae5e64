// keys create|list|revoke (a deployment's API keys) and usage (charges):
// the deployment service's DeploymentService through its generated stub.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hangar/v1/deployment.grpc.pb.h"
#include "tools/hangarctl/commands.h"
#include "tools/hangarctl/output.h"

namespace hangar::ctl {
namespace {

std::unique_ptr<v1::DeploymentService::Stub> Deployments(Invocation& in) {
  return v1::DeploymentService::NewStub(in.Channel(Service::kDeployment));
}

int KeysCreate(Invocation& in) {
  v1::CreateApiKeyRequest request;
  request.set_deployment(in.arg(0));
  request.set_display_name(in.String("name"));
  request.set_request_id(in.String("request_id", RandomUuid()));
  v1::CreateApiKeyResponse response;
  grpc::Status status =
      Deployments(in)->CreateApiKey(in.Context().get(), request, &response);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(response);
    return kExitOk;
  }
  Details details;
  details.Add("Name", response.api_key().name());
  details.Add("Deployment", response.api_key().deployment());
  details.Add("Label", response.api_key().display_name());
  details.Add("Key", response.plaintext().empty()
                         ? "(shown only when first created)"
                         : response.plaintext());
  details.Print();
  if (!response.plaintext().empty()) {
    std::cerr << "Store the key now: it is not shown again. Use it with\n"
                 "  HANGAR_API_KEY=<key> hangarctl generate "
              << response.api_key().deployment() << " \"Hello\"\n";
  }
  return kExitOk;
}

int KeysList(Invocation& in) {
  v1::ListApiKeysRequest request;
  request.set_deployment(in.arg(0));
  request.set_show_revoked(in.Bool("show_revoked"));
  v1::ListApiKeysResponse all;
  grpc::Status status = FetchAllPages(
      [&](const std::string& token, v1::ListApiKeysResponse* page) {
        request.set_page_token(token);
        return Deployments(in)->ListApiKeys(in.Context().get(), request, page);
      },
      &all);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(all);
    return kExitOk;
  }
  if (all.api_keys().empty()) {
    std::cerr << "No API keys found.\n";
    return kExitOk;
  }
  Table table({"NAME", "LABEL", "PREFIX", "STATUS", "LAST USED", "AGE"});
  for (const v1::ApiKey& key : all.api_keys()) {
    table.AddRow({key.name(), key.display_name(), key.prefix() + "...",
                  key.revoked() ? "revoked" : "active",
                  FormatTime(key.last_used_time()),
                  FormatAge(key.create_time())});
  }
  table.Print();
  return kExitOk;
}

int KeysRevoke(Invocation& in) {
  v1::RevokeApiKeyRequest request;
  request.set_name(in.arg(0));
  v1::ApiKey key;
  grpc::Status status =
      Deployments(in)->RevokeApiKey(in.Context().get(), request, &key);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(key);
  } else {
    std::cout << "key " << key.name() << " revoked\n";
  }
  return kExitOk;
}

int Usage(Invocation& in) {
  v1::GetUsageRequest request;
  request.set_deployment(in.String("deployment"));
  request.mutable_range()->set_start_date(in.String("from"));
  request.mutable_range()->set_end_date(in.String("to"));
  v1::GetUsageResponse all;
  grpc::Status status = FetchAllPages(
      [&](const std::string& token, v1::GetUsageResponse* page) {
        request.set_page_token(token);
        return Deployments(in)->GetUsage(in.Context().get(), request, page);
      },
      &all);
  if (!status.ok()) return Fail(status);
  if (in.json()) {
    PrintJson(all);
    return kExitOk;
  }
  if (!all.replica_usage().empty()) {
    std::cout << "Replica time:\n";
    Table table({"DATE", "DEPLOYMENT", "HARDWARE", "REPLICA-HOURS", "COST"});
    for (const v1::ReplicaUsage& row : all.replica_usage()) {
      table.AddRow({row.date(), row.deployment(), row.hardware(),
                    absl::StrFormat("%.3f", row.replica_seconds() / 3600),
                    FormatMoney(row.cost())});
    }
    table.Print();
    std::cout << "\n";
  }
  if (!all.token_usage().empty()) {
    std::cout << "Tokens:\n";
    Table table({"DATE", "DEPLOYMENT", "KEY", "REQUESTS", "PROMPT",
                 "COMPLETION", "COST"});
    for (const v1::KeyTokenUsage& row : all.token_usage()) {
      table.AddRow({row.date(), row.deployment(), row.api_key(),
                    absl::StrCat(row.requests()),
                    absl::StrCat(row.tokens().prompt_tokens()),
                    absl::StrCat(row.tokens().completion_tokens()),
                    FormatMoney(row.cost())});
    }
    table.Print();
    std::cout << "\n";
  }
  if (all.replica_usage().empty() && all.token_usage().empty()) {
    std::cout << "No usage in this range.\n\n";
  }
  Details totals;
  totals.Add("Replica cost", FormatMoney(all.replica_cost()));
  totals.Add("Token cost", FormatMoney(all.token_cost()));
  totals.Add("Total", FormatMoney(all.total_cost()));
  totals.Add("Prices",
             absl::StrCat(FormatMoney(all.prices().prompt_per_1k_tokens()),
                          " per 1k prompt tokens, ",
                          FormatMoney(all.prices().completion_per_1k_tokens()),
                          " per 1k completion tokens"));
  totals.Print();
  return kExitOk;
}

}  // namespace

std::vector<Command> KeysCommands() {
  return {
      {.path = "keys create",
       .arguments = "DEPLOYMENT",
       .min_args = 1,
       .max_args = 1,
       .summary = "Create an API key for a deployment (shown once)",
       .details = "Prints the key's plaintext (hk_...) once; store it. A "
                  "retry with the same --request_id returns the same key "
                  "without it.\n\n"
                  "Example:\n  hangarctl keys create my-chat --name ci\n",
       .flags = {{"name", FlagType::kString, "LABEL",
                  "the key's label (required)"},
                 {"request_id", FlagType::kString, "ID", "idempotency key",
                  "a random UUID"}},
       .run =
           [](Invocation& in) {
             if (!in.Has("name")) {
               return UsageError(in.command(),
                                 "keys create: --name is required");
             }
             return KeysCreate(in);
           }},
      {.path = "keys list",
       .arguments = "DEPLOYMENT",
       .min_args = 1,
       .max_args = 1,
       .summary = "List a deployment's API keys (never their secrets)",
       .flags = {{"show_revoked", FlagType::kBool, "", "include revoked keys"}},
       .run = KeysList},
      {.path = "keys revoke",
       .arguments = "KEY",
       .min_args = 1,
       .max_args = 1,
       .summary = "Revoke an API key (key-...); the gateway refuses it "
                  "within seconds",
       .run = KeysRevoke},
      {.path = "usage",
       .summary = "Show charges: replica time and tokens per key and day",
       .details = "Dates are YYYY-MM-DD, UTC, inclusive; both open by "
                  "default. Totals cover the whole range.\n\n"
                  "Example:\n  hangarctl usage --deployment my-chat --from "
                  "2026-11-01\n",
       .flags = {{"deployment", FlagType::kString, "NAME",
                  "one deployment (default: all)"},
                 {"from", FlagType::kString, "DATE", "first day"},
                 {"to", FlagType::kString, "DATE", "last day"}},
       .run = Usage},
  };
}

}  // namespace hangar::ctl
