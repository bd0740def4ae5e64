# The newcomer's entry points. `make test` is what .ci/run calls.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CTEST_ARGS ?= -LE fuzz

.PHONY: deps format-check configure build suite test fuzz run demo down perf clean

deps:
	bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Only the programs the suite runs (no tests, no benchmarks): what `make run`
# and `make demo` need, in much less time than a full build.
SUITE_TARGETS = hangar-catalog hangar-scheduler hangar-exec-wrapper \
  hangar-optimizer hangar-deployment hangar-gateway hangar-runner \
  hangar-optimize hangarctl make-tiny-model
suite: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target $(SUITE_TARGETS)

# Every C++ file must be clang-formatted (scripts/check-format.sh --fix
# formats them).
format-check: deps
	bash scripts/check-format.sh

# Installs dependencies, checks formatting, builds everything and runs every
# test but the fuzzers (run those with `make fuzz`).
test: format-check build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# libFuzzer targets need clang; they live in their own build tree.
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHANGAR_BUILD_FUZZERS=ON \
	  -DHANGAR_BUILD_BENCHMARKS=OFF
	cmake --build build-fuzz -j $(JOBS)
	cd build-fuzz && ctest --output-on-failure -L fuzz

# Runs the whole suite locally (PostgreSQL under .hangar/ + every service).
# Options go through ARGS, e.g. make run ARGS="--pg_port=5433
# --catalog_port=7201"; `bash scripts/run-suite.sh --help` lists them.
ARGS ?=
run: suite
	bash scripts/run-suite.sh $(ARGS)

# The seed's flow end to end: builds, starts the suite in the background,
# deploys the tiny demo model with int8 optimization, makes a key and sends
# 32 prompts through the gateway (scripts/demo.sh says each step). Running
# it again reuses what exists; `make down` stops it.
demo: suite
	bash scripts/demo.sh $(ARGS)

# Stops a suite started in the background (run-suite.sh --detach, which the
# demo uses): every service, the scheduler's runners, then PostgreSQL.
down:
	bash scripts/run-suite.sh --stop $(ARGS)

# Runs every benchmark under bench/ with short settings and writes
# docs/PERFORMANCE.md (`bash scripts/perf-report.sh --help`; PERF_ARGS=--full
# for the long runs). Run it on an otherwise idle machine.
PERF_ARGS ?=
perf: configure
	bash scripts/perf-report.sh --build-dir $(BUILD_DIR) $(PERF_ARGS)

clean:
	rm -rf $(BUILD_DIR) build-fuzz
