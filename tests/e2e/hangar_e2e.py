"""Shared pieces of Hangar's end-to-end tests: the real suite on free ports.

An e2e test starts what scripts/run-suite.sh starts — a private PostgreSQL 15
cluster and the five services (catalog, scheduler, optimizer, deployment,
gateway) — on free loopback ports in a temp dir, with every address flag
wired, and drives it the way an operator would: with `hangarctl`. This module
holds what every such test needs:

  Deadline     one time budget shared by every wait of a test; `wait_for`
               polls a condition (never a bare sleep as synchronisation).
  Suite        the processes: start_postgres / stop_postgres /
               start_postgres_again (same data dir and port, for outages),
               start_services, kill_service / start_service (SIGKILL or
               SIGTERM one service and start it again with the same flags),
               runner_pids (the scheduler's runner children), stop().
  Ctl          `hangarctl call` / `health` / any command, JSON in and out;
               CallError keeps the gRPC code of a refusal.
  LoadGenerator  a closed loop of N workers, each running one `hangarctl
               call .../Generate` after the other until stopped; it counts
               sent / succeeded / failed and keeps each failure's message.
  create_deployment, wait_deployed, create_key: the seed's flow in calls.
  ResultsFile  one JSON line per scenario (HANGAR_E2E_RESULTS, else
               e2e-results.jsonl in the working directory), which
               scripts/reliability-report.sh turns into docs/RELIABILITY.md.

Processes are spawned with their output in <tmp>/logs/<name>.log; a failing
test prints each log's tail and keeps the temp dir.
"""

import json
import os
import pwd
import signal
import socket
import subprocess
import threading
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
SERVICES = ("catalog", "scheduler", "optimizer", "deployment", "gateway")
MODEL = "hangar/tiny-random-llama"
OFFERING = "t4-1x"
PROMPT_PRICE_PER_1K = 0.5
COMPLETION_PRICE_PER_1K = 1.5


class Failure(Exception):
  pass


class CallError(Failure):
  """A hangarctl call that failed; `code` is the gRPC code it printed."""

  def __init__(self, method, code, message):
    super().__init__(f"{method}: {code}: {message}")
    self.code = code
    self.message = message


def log(message):
  print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def tail(path, lines=20):
  try:
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return "(no log)"


class Deadline:
  def __init__(self, seconds):
    self.end = time.monotonic() + seconds

  def left(self):
    return self.end - time.monotonic()

  def wait_for(self, what, condition, limit=None, interval=0.2):
    """Polls `condition` until it returns a truthy value, within `limit`
    seconds (or the whole budget); raises Failure naming `what`."""
    end = self.end if limit is None else min(self.end,
                                              time.monotonic() + limit)
    last_error = None
    while True:
      try:
        value = condition()
        if value:
          return value
      except Exception as e:  # The condition's own error is the reason.
        last_error = e
      if time.monotonic() >= end:
        reason = f" (last error: {last_error})" if last_error else ""
        raise Failure(f"timed out waiting for {what}{reason}")
      time.sleep(interval)


def as_postgres(argv, check=True):
  if os.getuid() == 0:
    argv = ["runuser", "-u", "postgres", "--"] + argv
  return subprocess.run(argv, check=check, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)


class Suite:
  """The processes of one run; stop() ends all of them."""

  def __init__(self, source_dir, build_dir, tmp, extra_flags=None):
    self.source_dir = source_dir
    self.build_dir = build_dir
    self.tmp = tmp
    os.makedirs(os.path.join(tmp, "logs"), exist_ok=True)
    self.processes = {}  # name -> (Popen, log path)
    self.argv = {}  # name -> argv, for start_service
    self.env = {k: v for k, v in os.environ.items()
                if not k.startswith("HANGAR_")}
    self.pg_data = os.path.join(tmp, "pg")
    self.pg_started = False
    self.pg_port = None
    self.ports = {}
    self.extra_flags = extra_flags or {}

  def binary(self, relative):
    path = os.path.join(self.build_dir, relative)
    if not os.access(path, os.X_OK):
      raise Failure(f"{path} is not built")
    return path

  def addr(self, service):
    return f"127.0.0.1:{self.ports[service][0]}"

  # --- processes -----------------------------------------------------------
  def spawn(self, name, argv):
    log_path = os.path.join(self.tmp, "logs", f"{name}.log")
    log_file = open(log_path, "a")
    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=self.env)
    log_file.close()
    self.processes[name] = (process, log_path)
    self.argv[name] = argv
    return process

  def check_alive(self, ignore=()):
    for name, (process, log_path) in self.processes.items():
      if name not in ignore and process.poll() is not None:
        raise Failure(f"{name} exited with {process.returncode}; log tail:\n" +
                      tail(log_path))

  def kill_service(self, name, sig=signal.SIGKILL, wait=15):
    process, _ = self.processes[name]
    process.send_signal(sig)
    return process.wait(timeout=wait)

  def start_service(self, name):
    return self.spawn(name, self.argv[name])

  def stop(self):
    for name, (process, _) in reversed(list(self.processes.items())):
      if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    for name, (process, _) in reversed(list(self.processes.items())):
      try:
        process.wait(timeout=20)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    # Runners of a scheduler with --state_dir outlive a killed scheduler by
    # design; whatever of ours is left is ended here.
    for pid in self.runner_pids().values():
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    if self.pg_started:
      as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.pg_data, "-m", "immediate",
                   "stop"], check=False)

  def print_logs(self, lines=12):
    import sys
    for name, (_, log_path) in self.processes.items():
      print(f"--- {name} log tail:\n{tail(log_path, lines)}", file=sys.stderr)
    runner_logs = os.path.join(self.tmp, "scheduler", "logs")
    if os.path.isdir(runner_logs):
      for entry in sorted(os.listdir(runner_logs)):
        print(f"--- scheduler child {entry}:\n"
              f"{tail(os.path.join(runner_logs, entry), 6)}", file=sys.stderr)

  def runner_pids(self):
    """replica name -> pid of each hangar-runner the scheduler started for
    this suite (found by the state dir on its command line)."""
    state = os.path.join(self.tmp, "scheduler")
    found = {}
    for entry in os.listdir("/proc"):
      if not entry.isdigit():
        continue
      try:
        with open(f"/proc/{entry}/cmdline", "rb") as f:
          argv = f.read().split(b"\0")
      except OSError:
        continue
      if not argv or not argv[0].endswith(b"hangar-runner"):
        continue
      text = [a.decode(errors="replace") for a in argv]
      if not any(state in a for a in text):
        continue
      replica = None
      for a in text:
        if a.startswith("--replica_name=") or a.startswith("--replica="):
          replica = a.split("=", 1)[1]
        elif a.startswith("--port_file="):
          replica = replica or os.path.basename(a.split("=", 1)[1]).split(
              ".")[0]
      found[replica or entry] = int(entry)
    return found

  # --- PostgreSQL ----------------------------------------------------------
  def start_postgres(self):
    os.makedirs(self.pg_data)
    if os.getuid() == 0:
      uid = pwd.getpwnam("postgres").pw_uid
      os.chown(self.tmp, uid, -1)
      os.chown(self.pg_data, uid, -1)
      os.chmod(os.path.join(self.tmp, "logs"), 0o777)
    as_postgres([f"{PG_BIN}/initdb", "-D", self.pg_data, "-A", "trust", "-U",
                 "hangar"])
    self.pg_port = free_port()
    self.start_postgres_again()
    subprocess.run([
        "psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "hangar",
        "-d", "postgres", "-qc", "CREATE DATABASE hangar"
    ], check=True, stdout=subprocess.DEVNULL)
    self.db = f"postgresql://hangar@127.0.0.1:{self.pg_port}/hangar"

  def start_postgres_again(self):
    as_postgres([
        f"{PG_BIN}/pg_ctl", "-D", self.pg_data, "-l",
        os.path.join(self.tmp, "logs", "postgres.log"), "-o",
        f"-p {self.pg_port} -k {self.tmp} -c listen_addresses=127.0.0.1",
        "-w", "start"
    ])
    self.pg_started = True

  def stop_postgres(self):
    """A fast shutdown: committed transactions are on disk, connections are
    cut (what a restart of the database looks like to the services)."""
    as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.pg_data, "-m", "fast", "-w",
                 "stop"])

  def psql(self, sql):
    result = subprocess.run([
        "psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "hangar",
        "-d", "hangar", "-AtXqc", sql
    ], check=True, capture_output=True, text=True)
    return result.stdout.strip()

  # --- Hangar --------------------------------------------------------------
  def start_services(self):
    for service in SERVICES:
      self.ports[service] = (free_port(), free_port())
    addr = self.addr
    models = os.path.join(self.tmp, "models")
    local_models = os.path.join(self.tmp, "local-models")
    os.makedirs(local_models)
    subprocess.run([
        self.binary("tools/make-tiny-model/make-tiny-model"), "--out",
        os.path.join(local_models, "tiny-random-llama")
    ], check=True, stdout=subprocess.DEVNULL)
    flags = {
        "catalog": [f"--model_store={models}",
                    f"--local_model_root={local_models}",
                    f"--deployment_address={addr('deployment')}"],
        "scheduler": [
            f"--state_dir={os.path.join(self.tmp, 'scheduler')}",
            "--hardware_config=" + os.path.join(
                self.source_dir, "deploy/config/hardware.textproto")
        ],
        "optimizer": [f"--model_store={models}",
                      f"--scheduler_address={addr('scheduler')}",
                      "--optimize_binary=" +
                      self.binary("tools/hangar-optimize/hangar-optimize")],
        "deployment": [f"--catalog_address={addr('catalog')}",
                       f"--scheduler_address={addr('scheduler')}",
                       f"--optimizer_address={addr('optimizer')}",
                       f"--gateway_endpoint={addr('gateway')}",
                       f"--prompt_price_per_1k={PROMPT_PRICE_PER_1K}",
                       f"--completion_price_per_1k={COMPLETION_PRICE_PER_1K}"],
        "gateway": [f"--scheduler_address={addr('scheduler')}",
                    f"--deployment_address={addr('deployment')}"],
    }
    for service in SERVICES:
      port, metrics_port = self.ports[service]
      argv = [self.binary(f"services/{service}/hangar-{service}"),
              "--host=127.0.0.1", f"--port={port}",
              f"--metrics_port={metrics_port}"] + flags[service]
      argv += self.extra_flags.get(service, [])
      if service != "gateway":
        argv.append(f"--db={self.db}")
      self.spawn(service, argv)
    return self.addr

  def wait_healthy(self, ctl, deadline, services=SERVICES, limit=40):
    for service in services:
      deadline.wait_for(f"{service} health", lambda s=service: (
          self.check_alive(), ctl.healthy(self.addr(s)))[1], limit=limit)


class Ctl:
  """hangarctl, the way an operator or a script runs it."""

  def __init__(self, binary, suite=None):
    self.binary = binary
    self.suite = suite

  def global_flags(self):
    if not self.suite:
      return []
    return [f"--gateway_address={self.suite.addr('gateway')}",
            f"--catalog_address={self.suite.addr('catalog')}",
            f"--deployment_address={self.suite.addr('deployment')}",
            f"--scheduler_address={self.suite.addr('scheduler')}"]

  def call(self, address, method, request, api_key=None, timeout=10):
    argv = [self.binary, f"--timeout_seconds={timeout}"]
    if api_key:
      argv.append(f"--api_key={api_key}")
    argv += ["call", address, method, json.dumps(request)]
    result = subprocess.run(argv, capture_output=True, text=True,
                            timeout=timeout + 5)
    if result.returncode != 0:
      raise parse_error(method, result.stderr or result.stdout)
    return json.loads(result.stdout) if result.stdout.strip() else {}

  def run(self, args, timeout=60, api_key=None):
    """Any hangarctl command with -o json; the parsed output (or the text
    when it is not JSON)."""
    argv = [self.binary, "-o", "json"] + self.global_flags()
    if api_key:
      argv.append(f"--api_key={api_key}")
    result = subprocess.run(argv + args, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
      raise parse_error(" ".join(args[:2]), result.stderr or result.stdout,
                        result.returncode)
    try:
      return json.loads(result.stdout)
    except ValueError:
      return result.stdout

  def healthy(self, address):
    result = subprocess.run([self.binary, "--timeout_seconds=2", "health",
                             address], capture_output=True, text=True,
                            timeout=10)
    return result.returncode == 0 and "NOT_SERVING" not in result.stdout


def parse_error(method, text, returncode=1):
  """hangarctl's one error line: `hangarctl: <CODE>: <message>`."""
  text = text.strip()
  for line in text.splitlines():
    if line.startswith("hangarctl: "):
      rest = line[len("hangarctl: "):]
      code, _, message = rest.partition(": ")
      if code.isupper():
        return CallError(method, code, message)
  return CallError(method, f"EXIT_{returncode}", text[-500:])


# --- the seed's flow in calls ------------------------------------------------
def deployment_call(ctl, suite, method, request, timeout=10):
  return ctl.call(suite.addr("deployment"),
                  f"hangar.v1.DeploymentService/{method}", request,
                  timeout=timeout)


def create_deployment(ctl, suite, request_id, spec_overrides=None,
                      display_name=None):
  spec = {"model": MODEL, "hardware": OFFERING, "inferenceBatchSize": 4,
          "minReplicas": 1, "maxReplicas": 1}
  spec.update(spec_overrides or {})
  review = deployment_call(ctl, suite, "ValidateDeployment", {"spec": spec})
  if not review.get("valid"):
    raise Failure(f"spec {spec} is invalid: {review.get('violations')}")
  spec.update(acceptTerms=True, acceptedTermsSha256=review["termsSha256"])
  return deployment_call(ctl, suite, "CreateDeployment", {
      "spec": spec, "requestId": request_id,
      "displayName": display_name or request_id})


def get_deployment(ctl, suite, name):
  return deployment_call(ctl, suite, "GetDeployment", {"name": name})


def wait_deployed(ctl, suite, deadline, name, revision=1, limit=60):
  def deployed():
    suite.check_alive()
    d = get_deployment(ctl, suite, name)
    if d.get("state") == "DEPLOYMENT_STATE_FAILED":
      raise Failure(f"{name} FAILED: {d.get('stateReason')}")
    return (d.get("state") == "DEPLOYMENT_STATE_DEPLOYED" and
            int(d.get("servingRevision", 0)) == revision) and d
  return deadline.wait_for(f"{name} DEPLOYED at revision {revision}",
                           deployed, limit=limit, interval=0.3)


def create_key(ctl, suite, deployment, request_id):
  response = deployment_call(ctl, suite, "CreateApiKey", {
      "deployment": deployment, "displayName": request_id,
      "requestId": request_id})
  return response["apiKey"]["name"], response["plaintext"]


def generate(ctl, suite, deployment, key, prompt, max_tokens=8, timeout=15):
  return ctl.call(suite.addr("gateway"), "hangar.v1.InferenceService/Generate",
                  {"deployment": deployment, "prompt": prompt,
                   "sampling": {"maxTokens": max_tokens}},
                  api_key=key, timeout=timeout)


def wait_first_answer(ctl, suite, deadline, deployment, key, limit=45):
  return deadline.wait_for(
      "a first answer through the gateway",
      lambda: (suite.check_alive(),
               generate(ctl, suite, deployment, key, "hello"))[1],
      limit=limit, interval=0.3)


def replica_set(ctl, suite, deployment, revision):
  return ctl.call(suite.addr("scheduler"),
                  "hangar.v1.SchedulerService/GetReplicaSet",
                  {"deployment": deployment, "revision": revision})


def metric(suite, service, name, labels=None):
  """The sum of every sample of `name` (labels matching `labels`, a dict)
  on `service`'s /metrics page (Prometheus text format)."""
  import urllib.request
  url = f"http://127.0.0.1:{suite.ports[service][1]}/metrics"
  with urllib.request.urlopen(url, timeout=5) as response:
    text = response.read().decode()
  total = 0.0
  for line in text.splitlines():
    if line.startswith("#"):
      continue
    head, _, value = line.rpartition(" ")
    metric_name, _, label_text = head.partition("{")
    if metric_name != name:
      continue
    if labels and not all(f'{k}="{v}"' in label_text
                          for k, v in labels.items()):
      continue
    total += float(value)
  return total


# --- load --------------------------------------------------------------------
class LoadGenerator:
  """A closed loop of `workers` callers, each sending one Generate (through
  `hangarctl call`, a real gRPC client) after the other until stop()."""

  def __init__(self, ctl, suite, deployment, key, workers=3, max_tokens=8,
               timeout=20):
    self.ctl = ctl
    self.suite = suite
    self.deployment = deployment
    self.key = key
    self.workers = workers
    self.max_tokens = max_tokens
    self.timeout = timeout
    self.lock = threading.Lock()
    self.sent = 0
    self.succeeded = 0
    self.failures = []  # (time, message)
    self.revisions = {}  # revision -> answers
    self.tokens = {"prompt": 0, "completion": 0}
    self.stopping = threading.Event()
    self.threads = []

  def start(self):
    for i in range(self.workers):
      thread = threading.Thread(target=self.loop, args=(i,), daemon=True)
      thread.start()
      self.threads.append(thread)
    return self

  def loop(self, worker):
    n = 0
    while not self.stopping.is_set():
      n += 1
      with self.lock:
        self.sent += 1
      try:
        answer = generate(self.ctl, self.suite, self.deployment, self.key,
                          f"load {worker}.{n}", max_tokens=self.max_tokens,
                          timeout=self.timeout)
        usage = answer.get("usage", {})
        with self.lock:
          self.succeeded += 1
          revision = int(answer.get("revision", 0))
          self.revisions[revision] = self.revisions.get(revision, 0) + 1
          self.tokens["prompt"] += int(usage.get("promptTokens", 0))
          self.tokens["completion"] += int(usage.get("completionTokens", 0))
      except Exception as e:  # Every failure counts and is kept.
        with self.lock:
          self.failures.append((time.strftime("%H:%M:%S"), str(e)))

  def count(self):
    with self.lock:
      return self.succeeded

  def wait_answers(self, deadline, n, what="answers under load", limit=30):
    target = self.count() + n
    deadline.wait_for(f"{n} more {what}", lambda: self.count() >= target,
                      limit=limit, interval=0.1)

  def stop(self):
    self.stopping.set()
    for thread in self.threads:
      thread.join(timeout=self.timeout + 10)
    return self

  def summary(self):
    with self.lock:
      return {"sent": self.sent, "succeeded": self.succeeded,
              "failed": len(self.failures)}


# --- results -----------------------------------------------------------------
class ResultsFile:
  """One JSON object per scenario, appended as a line."""

  def __init__(self, path=None):
    self.path = path or os.environ.get("HANGAR_E2E_RESULTS") or os.path.join(
        os.getcwd(), "e2e-results.jsonl")

  def write(self, record):
    record = dict(record)
    record.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                            time.gmtime()))
    with open(self.path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
    log(f"result written to {self.path}: {json.dumps(record)}")
