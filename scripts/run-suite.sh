#!/usr/bin/env bash
# Runs the Hangar suite on this machine: a private PostgreSQL cluster under
# .hangar/, then every service binary that has been built, with logs under
# .hangar/logs/. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
STATE=${HANGAR_STATE_DIR:-$PWD/.hangar}
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=${HANGAR_PG_PORT:-5432}
mkdir -p "$STATE/logs"

as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [[ ! -f "$STATE/pg/PG_VERSION" ]]; then
  mkdir -p "$STATE/pg"
  [[ $(id -u) -eq 0 ]] && chown postgres "$STATE/pg" "$STATE"
  as_postgres "$PG_BIN/initdb" -D "$STATE/pg" -A trust -U hangar >/dev/null
fi
[[ $(id -u) -eq 0 ]] && chown -R postgres "$STATE/pg" && chmod 777 "$STATE/logs"
as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pg" -l "$STATE/logs/postgres.log" \
  -o "-p $PG_PORT -k $STATE -c listen_addresses=127.0.0.1" -w start >/dev/null
cleanup() {
  trap - EXIT INT TERM
  jobs -p | xargs -r kill 2>/dev/null || true
  wait 2>/dev/null || true
  as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pg" -m fast stop >/dev/null || true
}
trap cleanup EXIT INT TERM
psql -h 127.0.0.1 -p "$PG_PORT" -U hangar -d postgres -tc \
  "SELECT 1 FROM pg_database WHERE datname='hangar'" | grep -q 1 ||
  psql -h 127.0.0.1 -p "$PG_PORT" -U hangar -d postgres -c "CREATE DATABASE hangar" >/dev/null
DB="postgresql://hangar@127.0.0.1:$PG_PORT/hangar"
echo "PostgreSQL: $DB"

# The curated demo model hangar/tiny-random-llama lives under the local root.
TINY="$STATE/local-models/tiny-random-llama"
if [[ ! -f "$TINY/config.json" && -x "$BUILD_DIR/tools/make-tiny-model/make-tiny-model" ]]; then
  mkdir -p "$STATE/local-models"
  "$BUILD_DIR/tools/make-tiny-model/make-tiny-model" --out "$TINY" >/dev/null
  echo "generated the demo model at $TINY"
fi

started=0
for service in catalog scheduler optimizer deployment gateway; do
  binary="$BUILD_DIR/services/$service/hangar-$service"
  if [[ -x "$binary" ]]; then
    args=(--db="$DB")
    case $service in
      catalog) args+=(--model_store="$STATE/models" --local_model_root="$STATE/local-models") ;;
      gateway) args=() ;;
    esac
    "$binary" "${args[@]}" >"$STATE/logs/$service.log" 2>&1 &
    echo "started $service (log: $STATE/logs/$service.log)"
    started=$((started + 1))
  else
    echo "not yet built: $service"
  fi
done
if [[ $started -eq 0 ]]; then
  echo "No service is built yet; run 'make build' (services land issue by issue)."
  exit 0
fi
echo "Hangar is running. Ctrl-C stops it."
wait
