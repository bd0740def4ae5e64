#!/usr/bin/env bash
# Runs the Hangar suite on this machine: a private PostgreSQL cluster under
# .hangar/, then every service binary that has been built, with logs under
# .hangar/logs/. Ctrl-C stops everything. `scripts/run-suite.sh --help`
# explains the options (also reachable as `make run ARGS="..."`).
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES=(catalog scheduler optimizer deployment gateway)

usage() {
  cat <<'USAGE'
usage: scripts/run-suite.sh [OPTION...]      (or: make run ARGS="OPTION...")

Starts a private PostgreSQL under the state directory, then every built
service binary (build/services/<name>/hangar-<name>), logs in <state>/logs/.
Ctrl-C (or SIGTERM) stops the services and PostgreSQL.

Options:
  --pg_port=N          PostgreSQL port on 127.0.0.1 (default 5432, or
                       $HANGAR_PG_PORT). Pick another when 5432 is taken.
  --state_dir=DIR      data, models and logs (default ./.hangar, or
                       $HANGAR_STATE_DIR)
  --<service>_<flag>=V pass --<flag>=V to one service, e.g.
                       --catalog_port=7201 --catalog_db_connect_timeout=5s
                       (services: catalog scheduler optimizer deployment
                       gateway; `build/services/<name>/hangar-<name> --help`
                       lists each one's flags)
  --dry_run            print what would run (PostgreSQL port, each service's
                       command line) and exit without starting anything
  --detach             start in the background, wait until every service
                       answers health SERVING (or say which did not), then
                       return; pids under <state>/run/. Running it again
                       while the suite runs reuses it.
  --stop               stop a detached suite: SIGTERM to every service (the
                       scheduler stops its runners and jobs), SIGKILL to any
                       still there after --stop_timeout seconds (default
                       30), then PostgreSQL; no process is left behind
  -h, --help           this text

Environment:
  <SERVICE>_ARGS       extra command-line flags for one service, e.g.
                       CATALOG_ARGS="--port=7201 --hf_endpoint=http://mirror"
  HANGAR_<SERVICE>_<FLAG>, HANGAR_<FLAG>
                       read by the services themselves (every flag has these
                       fallbacks; the command line wins), e.g.
                       HANGAR_CATALOG_PORT=7201
  HANGAR_PG_PORT, HANGAR_STATE_DIR, BUILD_DIR
                       defaults of --pg_port, --state_dir, the build folder

The services find each other on the default ports (gateway 7100, catalog
7101, deployment 7102, optimizer 7103, scheduler 7104): moving one with
--<service>_port also needs the matching address flag of the others (e.g.
--gateway_scheduler_address=127.0.0.1:7204 with --scheduler_port=7204).

Precedence for a service flag: --<service>_<flag> and <SERVICE>_ARGS (given
last, so they win) over the script's defaults (--db, --model_store, ...)
over HANGAR_* variables.
USAGE
}

BUILD_DIR=${BUILD_DIR:-build}
STATE=${HANGAR_STATE_DIR:-$PWD/.hangar}
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=${HANGAR_PG_PORT:-5432}
DRY_RUN=0
DETACH=0
STOP=0
STOP_TIMEOUT=30
declare -A EXTRA=()  # service -> extra flags, space separated
for service in "${SERVICES[@]}"; do
  var="${service^^}_ARGS"
  EXTRA[$service]="${!var:-}"
done
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --dry_run) DRY_RUN=1 ;;
    --detach) DETACH=1 ;;
    --stop) STOP=1 ;;
    --stop_timeout=*) STOP_TIMEOUT=${arg#--stop_timeout=} ;;
    --pg_port=*) PG_PORT=${arg#--pg_port=} ;;
    --state_dir=*) STATE=${arg#--state_dir=} ;;
    --*=*)
      matched=0
      for service in "${SERVICES[@]}"; do
        if [[ $arg == --${service}_* ]]; then
          EXTRA[$service]+=" --${arg#--${service}_}"
          matched=1
        fi
      done
      if [[ $matched -eq 0 ]]; then
        echo "run-suite: unknown option $arg (--help lists them)" >&2
        exit 2
      fi
      ;;
    *) echo "run-suite: unknown argument $arg (--help lists them)" >&2; exit 2 ;;
  esac
done
if ! [[ $PG_PORT =~ ^[0-9]+$ ]] || ((PG_PORT < 1 || PG_PORT > 65535)); then
  echo "run-suite: --pg_port must be a port number in [1, 65535]; was $PG_PORT" >&2
  exit 2
fi
DB="postgresql://hangar@127.0.0.1:$PG_PORT/hangar"

# The command line of one service: the script's flags, then the caller's.
service_args() {
  local service=$1
  args=(--db="$DB")
  case $service in
    catalog)
      args+=(--model_store="$STATE/models" --local_model_root="$STATE/local-models"
        --deployment_address=127.0.0.1:7102) ;;
    scheduler) args+=(--state_dir="$STATE/scheduler") ;;
    optimizer)
      args+=(--model_store="$STATE/models" --scheduler_address=127.0.0.1:7104)
      if [[ -x "$BUILD_DIR/tools/hangar-optimize/hangar-optimize" ]]; then
        args+=(--optimize_binary="$(cd "$BUILD_DIR/tools/hangar-optimize" && pwd)/hangar-optimize")
      fi ;;
    deployment)
      args+=(--catalog_address=127.0.0.1:7101 --scheduler_address=127.0.0.1:7104
        --gateway_endpoint=127.0.0.1:7100) ;;
    gateway)
      args=(--scheduler_address=127.0.0.1:7104 --deployment_address=127.0.0.1:7102) ;;
  esac
  # Extra flags come last so that they win; word-split on purpose.
  read -r -a extra <<<"${EXTRA[$service]}"
  args+=("${extra[@]}")
}

if [[ $DRY_RUN -eq 1 ]]; then
  echo "PostgreSQL: 127.0.0.1:$PG_PORT (data under $STATE/pg)"
  for service in "${SERVICES[@]}"; do
    binary="$BUILD_DIR/services/$service/hangar-$service"
    service_args "$service"
    if [[ -x "$binary" ]]; then
      echo "would start: $binary ${args[*]}"
    else
      echo "not yet built: $service"
    fi
  done
  exit 0
fi
as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

RUN="$STATE/run"
# Whether the process in pid file $1 is alive.
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [[ $STOP -eq 1 ]]; then
  if ! [[ $STOP_TIMEOUT =~ ^[0-9]+$ ]]; then
    echo "run-suite: --stop_timeout must be whole seconds; was $STOP_TIMEOUT" >&2
    exit 2
  fi
  stopped=0
  # The gateway first (it drains streams), the scheduler last but one (it
  # stops its runners and jobs), PostgreSQL last.
  for service in gateway deployment optimizer catalog scheduler; do
    pidfile="$RUN/$service.pid"
    if alive "$pidfile"; then
      pid=$(cat "$pidfile")
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        echo "$service did not stop within ${STOP_TIMEOUT}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
      echo "stopped $service (pid $pid)"
      stopped=$((stopped + 1))
    fi
    rm -f "$pidfile"
  done
  # Runners and jobs the scheduler started live in their own sessions; any
  # still running from this state directory (a scheduler that was killed)
  # go too.
  for pid in $(pgrep -f -- "$STATE/scheduler" || true); do
    kill -TERM "$pid" 2>/dev/null && echo "stopped leftover child $pid" || true
  done
  if [[ -f "$STATE/pg/postmaster.pid" ]]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pg" -m fast -w stop >/dev/null &&
      echo "stopped PostgreSQL"
  fi
  [[ $stopped -eq 0 ]] && echo "no detached suite was running under $STATE"
  exit 0
fi

if [[ $DETACH -eq 1 ]]; then
  running=()
  for service in "${SERVICES[@]}"; do
    alive "$RUN/$service.pid" && running+=("$service")
  done
  if ((${#running[@]} > 0)); then
    echo "already running under $STATE: ${running[*]} (scripts/run-suite.sh --stop stops it)"
    exit 0
  fi
fi
mkdir -p "$STATE/logs" "$RUN"

if [[ ! -f "$STATE/pg/PG_VERSION" ]]; then
  mkdir -p "$STATE/pg"
  [[ $(id -u) -eq 0 ]] && chown postgres "$STATE/pg" "$STATE"
  as_postgres "$PG_BIN/initdb" -D "$STATE/pg" -A trust -U hangar >/dev/null
fi
[[ $(id -u) -eq 0 ]] && chown -R postgres "$STATE/pg" && chmod 777 "$STATE/logs"
if ! as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pg" status >/dev/null 2>&1; then
  as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pg" -l "$STATE/logs/postgres.log" \
    -o "-p $PG_PORT -k $STATE -c listen_addresses=127.0.0.1" -w start >/dev/null
fi
cleanup() {
  trap - EXIT INT TERM
  jobs -p | xargs -r kill 2>/dev/null || true
  wait 2>/dev/null || true
  as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pg" -m fast stop >/dev/null || true
}
[[ $DETACH -eq 0 ]] && trap cleanup EXIT INT TERM
psql -h 127.0.0.1 -p "$PG_PORT" -U hangar -d postgres -tc \
  "SELECT 1 FROM pg_database WHERE datname='hangar'" | grep -q 1 ||
  psql -h 127.0.0.1 -p "$PG_PORT" -U hangar -d postgres -c "CREATE DATABASE hangar" >/dev/null
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
    service_args "$service"
    if [[ $DETACH -eq 1 ]]; then
      # Its own session: the suite outlives this shell; --stop ends it.
      setsid "$binary" "${args[@]}" >>"$STATE/logs/$service.log" 2>&1 </dev/null &
    else
      "$binary" "${args[@]}" >>"$STATE/logs/$service.log" 2>&1 &
    fi
    echo $! >"$RUN/$service.pid"
    echo "started $service ${extra[*]} (log: $STATE/logs/$service.log)"
    started=$((started + 1))
  else
    echo "not yet built: $service"
  fi
done
if [[ $started -eq 0 ]]; then
  echo "No service is built yet; run 'make build' (services land issue by issue)."
  exit 0
fi

# Waits until every started service answers health SERVING on its port.
HANGARCTL="$BUILD_DIR/tools/hangarctl/hangarctl"
wait_healthy() {
  [[ -x $HANGARCTL ]] || return 0
  local -A ports=([gateway]=7100 [catalog]=7101 [deployment]=7102 [optimizer]=7103 [scheduler]=7104)
  local failed=0
  for service in "${SERVICES[@]}"; do
    alive "$RUN/$service.pid" || continue
    local port=${ports[$service]}
    # A --<service>_port=N given to this script moves it.
    [[ " ${EXTRA[$service]} " =~ \ --port=([0-9]+) ]] && port=${BASH_REMATCH[1]}
    local ok=0
    for ((i = 0; i < 600; i++)); do
      if "$HANGARCTL" health "127.0.0.1:$port" >/dev/null 2>&1; then ok=1; break; fi
      alive "$RUN/$service.pid" || break
      sleep 0.1
    done
    if [[ $ok -eq 1 ]]; then
      echo "$service is SERVING on 127.0.0.1:$port"
    else
      echo "$service is NOT serving on 127.0.0.1:$port; last log lines:" >&2
      tail -n 5 "$STATE/logs/$service.log" >&2 || true
      failed=1
    fi
  done
  return $failed
}
if [[ $DETACH -eq 1 ]]; then
  wait_healthy || { echo "run-suite: not every service came up (logs: $STATE/logs)" >&2; exit 1; }
  echo "Hangar is running in the background; scripts/run-suite.sh --stop (make down) stops it."
  exit 0
fi
wait_healthy || true
echo "Hangar is running. Ctrl-C stops it."
wait
