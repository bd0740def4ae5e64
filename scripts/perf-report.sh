#!/usr/bin/env bash
# Runs every benchmark under bench/ with short settings, collects the lines
# each prints per target,
#
#   TARGET | <what> | <measured> | <target> | PASS|MISS
#
# and writes docs/PERFORMANCE.md: per benchmark its targets (measured value
# or ratio, the target, met or not) and its whole output, with the machine
# (CPU, cores, AVX2/AVX-512, the engine's kernel path), the date and the
# commit. `make perf` runs it.
#
#   scripts/perf-report.sh [--build-dir DIR] [--out FILE] [--full]
#                          [--no-build] [--only NAME]... [--timeout SECONDS]
#
#   --build-dir  the configured CMake build tree (default: build)
#   --out        the report (default: docs/PERFORMANCE.md)
#   --full       each benchmark's default (long) settings instead of the
#                short ones below
#   --no-build   do not build the benchmark targets first
#   --only NAME  run only bench/NAME (repeatable); the others are listed as
#                not run
#   --timeout    longest run of one benchmark (default 900 s)
#
# Short settings: every benchmark's --quick (engine: 2 rounds; optimizer: the
# ~15 M "small" model; scheduler: 1 seed; gateway: 3 s phases, 200 calls;
# deployment: 3 s phases). A benchmark with no entry below gets --quick too.
# Logs: <build-dir>/perf-report/<name>.{out,err}. Benchmarks are meant to
# run alone on the machine: other work lowers every figure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR=build
OUT=docs/PERFORMANCE.md
FULL=0
BUILD=1
TIMEOUT=900
ONLY=()

while (($#)); do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --build-dir=*) BUILD_DIR="${1#*=}"; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#*=}"; shift ;;
    --full) FULL=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --only) ONLY+=("$2"); shift 2 ;;
    --only=*) ONLY+=("${1#*=}"); shift ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --timeout=*) TIMEOUT="${1#*=}"; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "perf-report: unknown argument $1 (--help lists them)" >&2; exit 2 ;;
  esac
done

cd "$ROOT"
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"
[[ "$OUT" = /* ]] || OUT="$ROOT/$OUT"
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  echo "perf-report: $BUILD_DIR is not a configured build tree (make configure)" >&2
  exit 1
fi

# Short flags per benchmark folder; the issue whose targets it measures.
short_flags() {
  case "$1" in
    engine|optimizer|scheduler|gateway|deployment) echo "--quick" ;;
    *) echo "--quick" ;;
  esac
}
issue_of() {
  case "$1" in
    engine) echo 3 ;;
    scheduler) echo 9 ;;
    optimizer) echo 10 ;;
    gateway) echo 11 ;;
    deployment) echo 13 ;;
    *) echo "" ;;
  esac
}

# Every bench/<name>/CMakeLists.txt and the executable it declares.
names=()
targets=()
for list in bench/*/CMakeLists.txt; do
  name="$(basename "$(dirname "$list")")"
  target="$(sed -n 's/^ *add_executable(\([A-Za-z0-9_-]*\).*/\1/p' "$list" | head -n1)"
  [[ -n "$target" ]] || continue
  names+=("$name")
  targets+=("$target")
done
if ((${#names[@]} == 0)); then
  echo "perf-report: no benchmark under bench/" >&2
  exit 1
fi

selected() {
  ((${#ONLY[@]} == 0)) && return 0
  local n
  for n in "${ONLY[@]}"; do [[ "$n" == "$1" ]] && return 0; done
  return 1
}

if ((BUILD)); then
  build_targets=()
  for i in "${!names[@]}"; do
    selected "${names[$i]}" && build_targets+=("${targets[$i]}")
  done
  echo "perf-report: building ${build_targets[*]}"
  # A target that does not exist in this tree (e.g. tests off) is reported
  # as not built below, so one by one.
  for t in "${build_targets[@]}"; do
    cmake --build "$BUILD_DIR" --target "$t" >/dev/null 2>&1 ||
      echo "perf-report: building $t failed; it is reported as not built" >&2
  done
fi

LOGS="$BUILD_DIR/perf-report"
mkdir -p "$LOGS"

# The machine.
# shellcheck source=lib/machine-info.sh
source "$ROOT/scripts/lib/machine-info.sh"
machine_info "$ROOT"
date_utc="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
mode="short (each benchmark's --quick)"
((FULL)) && mode="full (each benchmark's defaults)"

declare -A status seconds flags_used
for i in "${!names[@]}"; do
  name="${names[$i]}"
  binary="$BUILD_DIR/bench/$name/${targets[$i]}"
  if ! selected "$name"; then
    status[$name]="not run (--only)"
    continue
  fi
  if [[ ! -x "$binary" ]]; then
    status[$name]="not built"
    echo "perf-report: $name: $binary not built" >&2
    continue
  fi
  flags=""
  ((FULL)) || flags="$(short_flags "$name")"
  flags_used[$name]="$flags"
  echo "perf-report: running $name: ${targets[$i]} $flags"
  start=$(date +%s)
  rc=0
  # shellcheck disable=SC2086  # flags are words
  timeout "$TIMEOUT" "$binary" $flags >"$LOGS/$name.out" 2>"$LOGS/$name.err" || rc=$?
  seconds[$name]=$(($(date +%s) - start))
  if ((rc == 0)); then
    status[$name]="ran"
  elif ((rc == 124)); then
    status[$name]="timed out after ${TIMEOUT} s"
  else
    status[$name]="failed (exit $rc)"
  fi
  echo "perf-report: $name: ${status[$name]} in ${seconds[$name]} s," \
    "$(grep -c '^TARGET |' "$LOGS/$name.out" || true) targets"
done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

# The engine's kernel path, as engine_bench prints it ("kernels avx512, ...").
kernels="not measured"
if [[ -f "$LOGS/engine.out" && "${status[engine]:-}" == ran ]]; then
  kernels="$(sed -n 's/^engine_bench: kernels \([^,]*\),.*/\1/p' "$LOGS/engine.out" | head -n1)"
  [[ -n "$kernels" ]] || kernels="not printed"
fi

# Markdown cells: a '|' inside a field would split it.
cell() { sed 's/|/\\|/g; s/^ *//; s/ *$//' <<<"$1"; }

tmp="$(mktemp)"
{
  echo "# Performance"
  echo
  echo "Generated by \`scripts/perf-report.sh\` (\`make perf\`) from the benchmarks under"
  echo "\`bench/\`; do not edit by hand. Each benchmark measures its issue's targets in"
  echo "one run and prints one \`TARGET | what | measured | target | PASS|MISS\` line per"
  echo "target; the tables below are those lines. Ratios are measured against a baseline"
  echo "taken in the same run on the same machine, so they move less than absolute"
  echo "figures when the machine is busy."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $date_utc |"
  echo "| commit | $commit |"
  echo "| CPU | $cpu_model, $cpus online CPUs, $memory memory |"
  echo "| vector units | AVX2 $(has_flag avx2), AVX-512F $(has_flag avx512f), AVX-512 VNNI $(has_flag avx512_vnni) |"
  echo "| engine kernel path | $kernels |"
  echo "| kernel | $kernel |"
  echo "| settings | $mode |"
  echo "| load average | $load_start at the start, $load_end at the end (other work on the machine lowers every figure) |"
  echo
  echo "## Summary"
  echo
  echo "| benchmark | issue | command | run | targets met | missed |"
  echo "|---|---|---|---|---|---|"
  for i in "${!names[@]}"; do
    name="${names[$i]}"
    issue="$(issue_of "$name")"
    met=0
    missed=0
    if [[ -f "$LOGS/$name.out" && -n "${seconds[$name]:-}" ]]; then
      met="$(grep -c '^TARGET |.*| PASS$' "$LOGS/$name.out" || true)"
      missed="$(grep -c '^TARGET |.*| MISS$' "$LOGS/$name.out" || true)"
    fi
    run="${status[$name]}"
    [[ -n "${seconds[$name]:-}" ]] && run="$run, ${seconds[$name]} s"
    echo "| [$name](#$name) | ${issue:+#$issue} | \`${targets[$i]} ${flags_used[$name]:-}\` | $run | $met | $missed |"
  done
  for i in "${!names[@]}"; do
    name="${names[$i]}"
    issue="$(issue_of "$name")"
    echo
    echo "## $name"
    echo
    echo "\`bench/$name\` (${targets[$i]})${issue:+, the targets of issue $issue}: ${status[$name]}${seconds[$name]:+ in ${seconds[$name]} s}."
    [[ -n "${seconds[$name]:-}" ]] || continue
    echo
    if grep -q '^TARGET |' "$LOGS/$name.out"; then
      echo "| target | measured | goal | result |"
      echo "|---|---|---|---|"
      while IFS='|' read -r _ what measured goal verdict; do
        verdict="$(cell "$verdict")"
        [[ "$verdict" == PASS ]] && verdict="**met**" || verdict="**missed**"
        echo "| $(cell "$what") | $(cell "$measured") | $(cell "$goal") | $verdict |"
      done < <(grep '^TARGET |' "$LOGS/$name.out")
    else
      echo "No TARGET lines were printed."
    fi
    if [[ "${status[$name]}" != ran ]]; then
      echo
      echo "Last lines of its standard error:"
      echo
      echo '```'
      tail -n 20 "$LOGS/$name.err"
      echo '```'
    fi
    echo
    echo "<details><summary>Output of <code>${targets[$i]} ${flags_used[$name]:-}</code></summary>"
    echo
    echo '```'
    grep -v '^TARGET |' "$LOGS/$name.out" || true
    echo '```'
    echo
    echo "</details>"
  done
} >"$tmp"
mkdir -p "$(dirname "$OUT")"
mv "$tmp" "$OUT"
chmod 644 "$OUT"
echo "perf-report: wrote ${OUT#"$ROOT"/}"
