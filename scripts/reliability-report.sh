#!/usr/bin/env bash
# Runs the end-to-end tests (`ctest -L e2e`), collects the one JSON line each
# fault scenario of tests/e2e/suite/fault_e2e_test.py writes (load held,
# fault injected, requests sent / succeeded / failed, writes lost, bad inputs
# tried, what was checked), and writes docs/RELIABILITY.md: a summary, then
# a table per scenario, with the machine, the date, the commit and every e2e
# test's ctest outcome. Failed requests must be 0 in every scenario (each
# promises it); a scenario with failures, lost writes or a failed check is
# marked FAIL and the script exits 1 after writing the report.
#
#   scripts/reliability-report.sh [--build-dir DIR] [--out FILE] [--no-build]
#                                 [--results FILE]
#
#   --build-dir  the configured CMake build tree (default: build)
#   --out        the report (default: docs/RELIABILITY.md)
#   --no-build   do not build the binaries the scenarios run first
#   --results    do not run ctest; build the report from this results file
#                (JSON lines, as HANGAR_E2E_RESULTS collects them)
#
# Logs: <build-dir>/reliability-report/{ctest.log,results.jsonl}. The
# scenarios are meant to run alone on the machine (RUN_SERIAL): other work
# slows them, though none of their checks depends on speed except the
# revoked key's 2 s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR=build
OUT=docs/RELIABILITY.md
BUILD=1
RESULTS=""

while (($#)); do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --build-dir=*) BUILD_DIR="${1#*=}"; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#*=}"; shift ;;
    --no-build) BUILD=0; shift ;;
    --results) RESULTS="$2"; shift 2 ;;
    --results=*) RESULTS="${1#*=}"; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "reliability-report: unknown argument $1 (--help lists them)" >&2
       exit 2 ;;
  esac
done

cd "$ROOT"
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"
[[ "$OUT" = /* ]] || OUT="$ROOT/$OUT"
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  echo "reliability-report: $BUILD_DIR is not a configured build tree" \
       "(make configure)" >&2
  exit 2
fi
LOGS="$BUILD_DIR/reliability-report"
mkdir -p "$LOGS"
CTEST_LOG="$LOGS/ctest.log"

if [[ -z "$RESULTS" ]]; then
  if ((BUILD)); then
    # What the scenarios start; under the shared build lock when one exists.
    flock /tmp/hangar-build.lock cmake --build "$BUILD_DIR" -j2 --target \
      hangar-catalog hangar-scheduler hangar-exec-wrapper hangar-runner \
      hangar-optimizer hangar-optimize hangar-deployment hangar-gateway \
      hangarctl make-tiny-model
  fi
  RESULTS="$LOGS/results.jsonl"
  : >"$RESULTS"
  echo "reliability-report: ctest -L e2e (log: $CTEST_LOG)"
  set +e
  (cd "$BUILD_DIR" && HANGAR_E2E_RESULTS="$RESULTS" \
     ctest -L e2e --output-on-failure) 2>&1 | tee "$CTEST_LOG"
  set -e
else
  [[ "$RESULTS" = /* ]] || RESULTS="$ROOT/$RESULTS"
  : >"$CTEST_LOG.none"
  CTEST_LOG="$CTEST_LOG.none"
fi

# shellcheck source=lib/machine-info.sh
source "$ROOT/scripts/lib/machine-info.sh"
machine_info "$ROOT"

python3 - "$RESULTS" "$CTEST_LOG" "$OUT" "$commit" "$cpu_model" "$cpus" <<'PY'
import json
import re
import sys
import time

results_path, ctest_log, out, commit, cpu, cores = sys.argv[1:7]

# What each scenario promises, in the order the report lists them.
PROMISES = [
    ("demo_flow", "The demo flow",
     "validate -> create with int8 -> DEPLOYED -> key -> 32 concurrent "
     "prompts answered; usage counts the tokens actually used and the "
     "replica time; charges = tokens x prices + replica-seconds x hourly "
     "price"),
    ("redeploy_under_load", "Redeploy under load",
     "0 failed requests while revision 2 rolls in; revision 2 serving and "
     "answering at the end; revision 1's replicas released"),
    ("runner_kill", "kill -9 of one of two runners under load",
     "0 failed requests (the gateway retries a replica that failed before "
     "any token); the replica restarted by the scheduler, 2 READY again"),
    ("key_revoke", "A revoked key",
     "refused within 2 s of RevokeApiKey; the deployment's other key keeps "
     "answering (0 failed); unknown and malformed keys refused"),
    ("postgres_restart", "PostgreSQL restarted during load",
     "control-plane calls UNAVAILABLE during the outage and OK after; "
     "inference keeps answering from the gateway's cached routes and keys "
     "(0 failed); no committed write lost; a key created after the outage "
     "answers"),
    ("gateway_drain", "Gateway SIGTERM with streams in flight",
     "every in-flight GenerateStream call finishes OK with its finish "
     "reason; the gateway exits 0; a later call is refused UNAVAILABLE"),
    ("scheduler_kill", "kill -9 of the scheduler under load",
     "0 failed requests while it is down (the gateway keeps its routes, the "
     "runners live on); restarted with the same state dir it re-adopts the "
     "same runner processes: no orphan, no duplicate, 2 READY"),
    ("deployment_kill", "kill -9 of the deployment service mid-optimization",
     "restarted, the deployment converges to DEPLOYED with one optimization "
     "job, one scheduler job and one revision (no duplicate); it answers"),
]

records = {}
with open(results_path) as f:
  for line in f:
    line = line.strip()
    if line:
      record = json.loads(line)
      records[record["scenario"]] = record  # the last run of each counts

ctest = []
try:
  with open(ctest_log) as f:
    for line in f:
      m = re.search(r"Test\s+#\d+:\s+(\S+)\s+\.*\s*(.*?)\s+([\d.]+) sec", line)
      if m:
        ctest.append((m.group(1), m.group(2).strip("* ").strip(),
                      m.group(3)))
except OSError:
  pass


def verdict(r):
  good = (r.get("passed") and int(r.get("failed", 0)) == 0 and
          int(r.get("writes_lost", 0)) == 0)
  return "PASS" if good else "FAIL"


lines = [
    "# Reliability",
    "",
    "Generated by `scripts/reliability-report.sh` from the end-to-end fault "
    "tests (`ctest -L e2e`; tests/e2e/suite/fault_e2e_test.py). Do not edit "
    "by hand: run the script again.",
    "",
    f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    f"- Commit: `{commit}`",
    f"- Machine: {cpu}, {cores} cores",
    "",
    "Each scenario starts its own private PostgreSQL and the five services "
    "(catalog, scheduler, optimizer, deployment, gateway) as real processes "
    "on free loopback ports, deploys the tiny model, holds a closed loop of "
    "`Generate` calls through the gateway (each one a `hangarctl call`, a "
    "real gRPC client, with an API key), injects the fault and checks the "
    "promise. Waits are conditions with deadlines; no scenario sleeps to "
    "synchronise. Every scenario promises **0 failed requests** and **0 "
    "writes lost**.",
    "",
    "## Summary",
    "",
    "| Scenario | Promise | Sent | Failed | Writes lost | Result |",
    "|---|---|---:|---:|---:|---|",
]
all_pass = True
for key, title, promise in PROMISES:
  r = records.get(key)
  if r is None:
    lines.append(f"| {title} | {promise} | | | | not run |")
    all_pass = False
    continue
  v = verdict(r)
  all_pass &= v == "PASS"
  lines.append(f"| {title} | {promise} | {r.get('sent', 0)} | "
               f"{r.get('failed', 0)} | {r.get('writes_lost', 0)} | "
               f"**{v}** |")

for key, title, promise in PROMISES:
  r = records.get(key)
  lines += ["", f"## {title} (`{key}`)", "", f"Promise: {promise}.", ""]
  if r is None:
    lines.append("Not run (no result line; see the ctest outcomes below).")
    continue
  lines += [
      "| Load held | Fault injected | Sent | Succeeded | Failed | "
      "Writes lost | Bad inputs tried | Seconds | Result |",
      "|---|---|---:|---:|---:|---:|---:|---:|---|",
      f"| {r.get('load', '')} | {r.get('fault', '')} | {r.get('sent', 0)} | "
      f"{r.get('succeeded', 0)} | {r.get('failed', 0)} | "
      f"{r.get('writes_lost', 0)} | {r.get('bad_inputs', 0)} | "
      f"{r.get('seconds', '')} | **{verdict(r)}** |",
  ]
  extra = []
  if r.get("checks"):
    extra.append(f"Checked: {r['checks']}.")
  if r.get("writes_checked"):
    extra.append(f"Writes checked after the fault: {r['writes_checked']}.")
  if r.get("answers_per_revision"):
    per = ", ".join(f"revision {k}: {v}"
                    for k, v in r["answers_per_revision"].items())
    extra.append(f"Answers per revision: {per}.")
  if r.get("error"):
    extra.append(f"Error: `{r['error']}`")
  for failure in r.get("failures", []):
    extra.append(f"Failed request: `{failure}`")
  if extra:
    lines += [""] + [f"- {e}" for e in extra]

lines += ["", "## ctest outcomes (label e2e)", ""]
if ctest:
  lines += ["| Test | Outcome | Seconds |", "|---|---|---:|"]
  lines += [f"| {n} | {o} | {s} |" for n, o, s in ctest]
else:
  lines.append("ctest was not run for this report (--results).")
lines.append("")
with open(out, "w") as f:
  f.write("\n".join(lines))
print(f"reliability-report: wrote {out}"
      f" ({'every scenario passed' if all_pass else 'some scenario FAILED'})")
sys.exit(0 if all_pass else 1)
PY
