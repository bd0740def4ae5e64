#!/usr/bin/env bash
# Installs every build, test and run-time dependency of Hangar from Debian 12's
# apt archive. Idempotent: packages already present are left alone, and apt is
# only asked when something is missing. Nothing is downloaded at build time.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  clang-format git
  # RPC and serialization
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  grpc-proto libabsl-dev
  # storage, metrics, crypto, HTTP, text
  libpqxx-dev postgresql-15 prometheus-cpp-dev libssl-dev
  libcurl4-openssl-dev libpcre2-dev nlohmann-json3-dev libicu-dev
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev python3 python3-numpy
  curl
  # bench/gateway's proxy comparison (nginx grpc_pass)
  nginx-light
  # deploy/ checks: docker-compose config, promtool, a real Prometheus for
  # the dashboard's e2e test (tests/e2e/observability)
  docker-compose prometheus
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
