# Every third-party dependency, found once, from Debian 12's packages
# (scripts/install-deps.sh installs them). Nothing is downloaded at build time.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(CURL REQUIRED)
find_package(nlohmann_json REQUIRED)
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
if(HANGAR_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(HANGAR_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()

# grpc.health.v1 is generated from the real health.proto (Debian's grpc-proto)
# so that reflection clients can describe it.
set(HANGAR_GRPC_PROTO_ROOT /usr/share/grpc-proto CACHE PATH
    "Directory holding grpc/health/v1/health.proto")
