// The command-line flags every Hangar server shares, defined once.
//
// Flags belong to a binary's main.cc (STYLE.md: no ABSL_FLAG in libraries),
// so this header defines them through macros that a main.cc expands once at
// namespace scope, with the service's own defaults:
//
//   #include "common/server/server_flags.h"
//
//   HANGAR_SERVER_FLAGS("127.0.0.1", /*port=*/7103, /*metrics_port=*/9103);
//   HANGAR_DATABASE_FLAGS();
//
//   int main(int argc, char** argv) {
//     hangar::ParseFlagsWithEnv(argc, argv, "HANGAR_OPTIMIZER_", "optimizer");
//     ... .server = HangarServerOptionsFromFlags("optimizer"),
//         .admin_token_file = absl::GetFlag(FLAGS_admin_token_file),
//         .db = absl::GetFlag(FLAGS_db), ...
//   }
//
// HANGAR_SERVER_FLAGS defines --host, --port, --metrics_port,
// --drain_timeout, --tls_cert_file, --tls_key_file and --admin_token_file,
// and the function HangarServerOptionsFromFlags(name) that turns them into
// ServerOptions. HANGAR_DATABASE_FLAGS defines --db, --db_startup_timeout
// and --db_connect_timeout. Only include this header from a main.cc.
#ifndef HANGAR_COMMON_SERVER_SERVER_FLAGS_H_
#define HANGAR_COMMON_SERVER_SERVER_FLAGS_H_

#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/server/server.h"

#define HANGAR_SERVER_FLAGS(default_host, default_port, default_metrics_port) \
  ABSL_FLAG(std::string, host, default_host,                                  \
            "Address to bind (0.0.0.0 in containers)");                       \
  ABSL_FLAG(int, port, default_port, "gRPC port (0 picks a free one)");       \
  ABSL_FLAG(int, metrics_port, default_metrics_port,                          \
            "Prometheus /metrics port (0 picks a free one, -1: none)");       \
  ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),                 \
            "How long in-flight calls may finish after SIGTERM");             \
  ABSL_FLAG(std::string, tls_cert_file, "",                                   \
            "PEM certificate for TLS (with --tls_key_file)");                 \
  ABSL_FLAG(std::string, tls_key_file, "", "PEM private key for TLS");        \
  ABSL_FLAG(std::string, admin_token_file, "",                                \
            "File holding the admin token: control-plane servers then "       \
            "require 'authorization: Bearer <token>' on every call but "      \
            "health and reflection, and internal calls carry it");            \
  inline ::hangar::ServerOptions HangarServerOptionsFromFlags(                \
      std::string name) {                                                     \
    return {.name = std::move(name),                                          \
            .host = absl::GetFlag(FLAGS_host),                                \
            .port = absl::GetFlag(FLAGS_port),                                \
            .metrics_port = absl::GetFlag(FLAGS_metrics_port),                \
            .drain_timeout = absl::GetFlag(FLAGS_drain_timeout),              \
            .tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file),              \
            .tls_key_file = absl::GetFlag(FLAGS_tls_key_file)};               \
  }                                                                           \
  static_assert(true)

#define HANGAR_DATABASE_FLAGS()                                              \
  ABSL_FLAG(std::string, db, "",                                             \
            "PostgreSQL: libpq conninfo or postgresql:// URI (required)");   \
  ABSL_FLAG(absl::Duration, db_startup_timeout, absl::ZeroDuration(),        \
            "Keep retrying an unreachable database this long at start "      \
            "(containers)");                                                 \
  ABSL_FLAG(absl::Duration, db_connect_timeout, absl::Seconds(2),            \
            "Longest one PostgreSQL connection attempt may take; calls and " \
            "health fail fast beyond it")

#endif  // HANGAR_COMMON_SERVER_SERVER_FLAGS_H_
