#!/usr/bin/env bash
# The seed's flow, end to end, with hangarctl: `make demo` runs it after the
# build. It starts the suite in the background (scripts/run-suite.sh
# --detach: PostgreSQL and the five services under the state directory),
# then walks "Deploy a model" -> "Deployed" -> the API endpoint:
#
#   1. list the models that run on this machine's CPU
#   2. the Review step: normalized spec, hourly cost, terms
#   3. create a deployment of the tiny demo model with int8 optimization,
#      batch size 8, 1-3 replicas, and watch it to DEPLOYED
#   4. the endpoint page, 5. an API key, 6. 32 concurrent prompts through the
#      gateway (a few answers, the batch sizes the gateway formed),
#   7. the charges so far, 8. commands to explore further.
#
# Running it again reuses the suite and the deployment (a FAILED or
# UNDEPLOYED one is redeployed). `make down` stops everything. Options are
# run-suite.sh's (e.g. --pg_port=5433, --state_dir=DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
CTL="$BUILD_DIR/tools/hangarctl/hangarctl"
DEPLOYMENT=${HANGAR_DEMO_DEPLOYMENT:-demo}
MODEL=${HANGAR_DEMO_MODEL:-hangar/tiny-random-llama}
HARDWARE=${HANGAR_DEMO_HARDWARE:-t4-1x}
PROMPTS=${HANGAR_DEMO_PROMPTS:-32}
SPEC=(--model "$MODEL" --hardware "$HARDWARE" --engine ctranslate2
  --quantization int8 --batch_size 8 --min_replicas 1 --max_replicas 3)

for arg in "$@"; do
  case $arg in
    -h | --help)
      sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
      exit 0 ;;
  esac
done
if [[ ! -x $CTL ]]; then
  echo "demo: $CTL is not built; run 'make demo' (it builds first) or 'make build'" >&2
  exit 2
fi

# Requests of $DEPLOYMENT counted in its usage so far.
requests_now() {
  "$CTL" usage --deployment "$DEPLOYMENT" -o json 2>/dev/null | python3 -c '
import json, sys
usage = json.load(sys.stdin)
print(sum(int(r.get("requests", 0)) for r in usage.get("tokenUsage", [])))' 2>/dev/null || echo 0
}
bold() { if [[ -t 1 ]]; then printf '\n\033[1m%s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }

# Token prices so that the charges show something (run-suite.sh options
# given to this script come later and win).
SUITE=(--deployment_prompt_price_per_1k=0.0005
  --deployment_completion_price_per_1k=0.0015 "$@")
bold "Starting the suite (scripts/run-suite.sh --detach ${SUITE[*]})"
bash scripts/run-suite.sh --detach "${SUITE[@]}"

bold "1. Models that run on this machine's CPU (hangarctl models list --runs_on_cpu)"
"$CTL" models list --runs_on_cpu

bold "2. Review (hangarctl deploy validate ${SPEC[*]})"
"$CTL" deploy validate "${SPEC[@]}"

state=$("$CTL" deploy get "$DEPLOYMENT" -o json 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin).get("state",""))' 2>/dev/null || true)
case $state in
  "")
    bold "3. Deploy (hangarctl deploy create $DEPLOYMENT ${SPEC[*]} --accept_terms --wait)"
    "$CTL" deploy create "$DEPLOYMENT" "${SPEC[@]}" \
      --description "made by make demo" --tag demo --accept_terms --wait ;;
  DEPLOYMENT_STATE_DEPLOYED)
    bold "3. $DEPLOYMENT is already DEPLOYED; reusing it"
    "$CTL" deploy get "$DEPLOYMENT" ;;
  DEPLOYMENT_STATE_FAILED | DEPLOYMENT_STATE_UNDEPLOYED)
    bold "3. $DEPLOYMENT is ${state#DEPLOYMENT_STATE_}; redeploying it"
    "$CTL" deploy redeploy "$DEPLOYMENT" "${SPEC[@]}" --accept_terms --wait ;;
  *)
    bold "3. $DEPLOYMENT is ${state#DEPLOYMENT_STATE_}; watching it"
    "$CTL" deploy watch "$DEPLOYMENT" ;;
esac

bold "4. The endpoint (hangarctl endpoint $DEPLOYMENT)"
"$CTL" endpoint "$DEPLOYMENT"

bold "5. An API key (hangarctl keys create $DEPLOYMENT --name demo-...): shown once"
key=$("$CTL" keys create "$DEPLOYMENT" --name "demo-$(date +%s)" -o json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["plaintext"])')
echo "key: ${key:0:11}... (kept in this shell only)"

bold "6. $PROMPTS concurrent prompts through the gateway (hangarctl generate)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
metrics() { curl -sf http://127.0.0.1:9100/metrics || true; }
# The gateway's batch-size histogram before and after: the difference is
# what these prompts formed.
metrics >"$out/before"
requests_before=$(requests_now)
topics=(GPUs batching compilers databases rivers mountains gardens trains)
for ((i = 0; i < PROMPTS; i++)); do
  HANGAR_API_KEY=$key "$CTL" generate "$DEPLOYMENT" \
    "Write one sentence about ${topics[i % ${#topics[@]}]}." --max_tokens 24 \
    >"$out/answer.$i" 2>"$out/status.$i" &
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=$((failed + 1)); done
metrics >"$out/after"
echo "$((PROMPTS - failed)) of $PROMPTS answered; a few of them (the demo model's"
echo "weights are random, so its text is noise; the token counts are real):"
for i in 0 1 2; do
  printf '  [%d] %s\n      %s\n' "$i" "$(tr -d '\n' <"$out/answer.$i" | cut -c1-120)" \
    "$(tr -d '\n' <"$out/status.$i")"
done
if ((failed > 0)); then
  echo "failures:"; cat "$out"/status.* | grep -v '^\[' | sort | uniq -c | head -5
fi
python3 - "$out/before" "$out/after" <<'PY'
import re, sys
def read(path):
    counts = {}
    for line in open(path):
        m = re.match(r'hangar_gateway_batch_size_bucket\{.*le="([^"]+)".*\} (\S+)', line)
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + float(m.group(2))
    return counts
before, after = read(sys.argv[1]), read(sys.argv[2])
if not after:
    print("batch sizes: the gateway's /metrics (port 9100) was not readable")
    sys.exit(0)
previous, rows = 0.0, []
def key(le): return float("inf") if le == "+Inf" else float(le)
for le in sorted(after, key=key):
    cumulative = after[le] - before.get(le, 0.0)
    rows.append((le, cumulative - previous)); previous = cumulative
formed = [f"<= {le}: {int(n)}" for le, n in rows if n > 0]
print("batches the gateway formed, by size:", ", ".join(formed) or "none")
PY

bold "7. Charges so far (hangarctl usage --deployment $DEPLOYMENT)"
# The gateway reports token usage in batches (every few seconds); wait up
# to 30 s for this run's requests to be counted.
for ((i = 0; i < 60; i++)); do
  (($(requests_now) >= requests_before + PROMPTS - failed)) && break
  sleep 0.5
done
"$CTL" usage --deployment "$DEPLOYMENT"

bold "8. Explore"
cat <<EOF
  hangarctl deploy list                       # every deployment
  hangarctl deploy history $DEPLOYMENT          # revisions
  hangarctl deploy redeploy $DEPLOYMENT --temperature 0.7 --accept_terms --wait
  HANGAR_API_KEY=<key> hangarctl generate $DEPLOYMENT "Hello"
  hangarctl list 127.0.0.1:7100               # reflection, like grpcurl
  grpcurl -plaintext -H 'authorization: Bearer <key>' \\
    -d '{"deployment": "$DEPLOYMENT", "prompt": "Hello"}' \\
    127.0.0.1:7100 hangar.v1.InferenceService/Generate
  curl -s 127.0.0.1:9100/metrics | grep hangar_gateway_   # Prometheus metrics
  prometheus --config.file=deploy/prometheus/local.yml     # scrape the suite
Logs: ${HANGAR_STATE_DIR:-.hangar}/logs/. 'make down' stops everything.
EOF
