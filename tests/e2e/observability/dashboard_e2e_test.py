#!/usr/bin/env python3
"""Every PromQL expression of the Grafana dashboard returns series.

The end-to-end check behind deploy/grafana/dashboards/hangar.json: it starts
what scripts/run-suite.sh starts (a private PostgreSQL 15 cluster and the
five services, on free loopback ports, in a temp dir), a real Prometheus
(Debian's `prometheus` binary) scraping their metrics ports every second,
sends traffic through the suite (a deployment, which the deployment
service's reconciler turns into a replica set and the scheduler into a
runner, an API key, inference calls through the gateway, refused calls), waits until Prometheus has scraped the results, then runs
every `expr` of every dashboard panel through /api/v1/query and fails, naming
the panel and the expression, for each one that returns no series. A renamed
or removed metric breaks this test instead of a dashboard.

Exit codes: 0 pass, 1 fail, 77 skipped (the `prometheus` binary is absent;
ctest reports SKIP through SKIP_RETURN_CODE).

Usage: dashboard_e2e_test.py --source_dir=DIR --build_dir=DIR
"""

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77
PG_BIN = "/usr/lib/postgresql/15/bin"
# The services whose /metrics the dashboard reads (all five: every one
# exports the grpc_server_* families of the request panels).
SERVICES = ("catalog", "scheduler", "optimizer", "deployment", "gateway")
MODEL = "hangar/tiny-random-llama"
OFFERING = "t4-1x"
# The services' default metrics ports, as deploy/prometheus/local.yml
# targets them.
DEFAULT_METRICS_PORTS = {"gateway": 9100, "catalog": 9101, "deployment": 9102,
                         "optimizer": 9103, "scheduler": 9104}
# Overall budget: every wait below shares it, so the test ends within it.
BUDGET_SECONDS = 85


class Failure(Exception):
  pass


def log(message):
  print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


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


class Suite:
  """The processes of one run; stop() ends all of them."""

  def __init__(self, args, tmp):
    self.args = args
    self.tmp = tmp
    self.processes = []  # (name, Popen, log path)
    self.pg_data = os.path.join(tmp, "pg")
    self.pg_started = False
    self.ports = {}

  # --- processes -----------------------------------------------------------
  def spawn(self, name, argv, **kwargs):
    log_path = os.path.join(self.tmp, "logs", f"{name}.log")
    log_file = open(log_path, "w")
    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, **kwargs)
    self.processes.append((name, process, log_path))
    return process

  def check_alive(self):
    for name, process, log_path in self.processes:
      if process.poll() is not None:
        raise Failure(f"{name} exited with {process.returncode}; log tail:\n" +
                      tail(log_path))

  def stop(self):
    for name, process, _ in reversed(self.processes):
      if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    for name, process, _ in reversed(self.processes):
      try:
        process.wait(timeout=15)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if self.pg_started:
      as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.pg_data, "-m", "immediate",
                   "stop"], check=False)

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
    port = free_port()
    as_postgres([
        f"{PG_BIN}/pg_ctl", "-D", self.pg_data, "-l",
        os.path.join(self.tmp, "logs", "postgres.log"), "-o",
        f"-p {port} -k {self.tmp} -c listen_addresses=127.0.0.1", "-w", "start"
    ])
    self.pg_started = True
    subprocess.run([
        "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "hangar", "-d",
        "postgres", "-qc", "CREATE DATABASE hangar"
    ], check=True, stdout=subprocess.DEVNULL)
    self.db = f"postgresql://hangar@127.0.0.1:{port}/hangar"

  # --- Hangar --------------------------------------------------------------
  def start_services(self):
    for service in SERVICES:
      self.ports[service] = (free_port(), free_port())
    addr = lambda s: f"127.0.0.1:{self.ports[s][0]}"
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
                self.args.source_dir, "deploy/config/hardware.textproto")
        ],
        "optimizer": [f"--model_store={models}",
                      f"--scheduler_address={addr('scheduler')}",
                      "--optimize_binary=" +
                      self.binary("tools/hangar-optimize/hangar-optimize")],
        "deployment": [f"--catalog_address={addr('catalog')}",
                       f"--scheduler_address={addr('scheduler')}",
                       f"--optimizer_address={addr('optimizer')}",
                       f"--gateway_endpoint={addr('gateway')}",
                       "--prompt_price_per_1k=0.5",
                       "--completion_price_per_1k=1.5"],
        "gateway": [f"--scheduler_address={addr('scheduler')}",
                    f"--deployment_address={addr('deployment')}"],
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANGAR_")}
    for service in SERVICES:
      port, metrics_port = self.ports[service]
      argv = [self.binary(f"services/{service}/hangar-{service}"),
              "--host=127.0.0.1", f"--port={port}",
              f"--metrics_port={metrics_port}"] + flags[service]
      if service != "gateway":
        argv.append(f"--db={self.db}")
      self.spawn(service, argv, env=env)
    return addr

  def binary(self, relative):
    path = os.path.join(self.args.build_dir, relative)
    if not os.access(path, os.X_OK):
      raise Failure(f"{path} is not built")
    return path

  # --- Prometheus ----------------------------------------------------------
  def start_prometheus(self):
    """Prometheus with deploy/prometheus/local.yml (what the README gives for
    `make run`), its targets moved to this run's ports and scraped every
    second, so its job names and labels are the ones under test."""
    port = free_port()
    with open(os.path.join(self.args.source_dir,
                           "deploy/prometheus/local.yml")) as f:
      text = f.read()
    for service, default in DEFAULT_METRICS_PORTS.items():
      target = f"127.0.0.1:{default}"
      if target not in text:
        raise Failure(f"deploy/prometheus/local.yml: no target {target} "
                      f"for the {service}")
      text = text.replace(target, f"127.0.0.1:{self.ports[service][1]}")
    text = re.sub(r"scrape_interval: \S+", "scrape_interval: 1s", text)
    text = re.sub(r"scrape_timeout: \S+", "scrape_timeout: 1s", text)
    config = os.path.join(self.tmp, "prometheus.yml")
    with open(config, "w") as f:
      f.write(text)
    self.spawn("prometheus", [
        self.args.prometheus, f"--config.file={config}",
        f"--storage.tsdb.path={os.path.join(self.tmp, 'tsdb')}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"
    ])
    self.prometheus_url = f"http://127.0.0.1:{port}"


def as_postgres(argv, check=True):
  if os.getuid() == 0:
    argv = ["runuser", "-u", "postgres", "--"] + argv
  return subprocess.run(argv, check=check, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)


def tail(path, lines=20):
  try:
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return "(no log)"


class Ctl:
  """hangarctl call/health, the way an operator would run them."""

  def __init__(self, binary):
    self.binary = binary

  def call(self, address, method, request, api_key=None, timeout=10):
    argv = [self.binary, f"--timeout_seconds={timeout}"]
    if api_key:
      argv.append(f"--api_key={api_key}")
    argv += ["call", address, method, json.dumps(request)]
    result = subprocess.run(argv, capture_output=True, text=True,
                            timeout=timeout + 5)
    if result.returncode != 0:
      raise Failure(f"{method}: {result.stderr.strip() or result.stdout}")
    return json.loads(result.stdout) if result.stdout.strip() else {}

  def healthy(self, address):
    result = subprocess.run([self.binary, "--timeout_seconds=2", "health",
                             address], capture_output=True, text=True,
                            timeout=10)
    return result.returncode == 0 and "NOT_SERVING" not in result.stdout


def prometheus_get(base, path, params):
  url = f"{base}{path}?{urllib.parse.urlencode(params)}"
  with urllib.request.urlopen(url, timeout=5) as response:
    body = json.load(response)
  if body.get("status") != "success":
    raise Failure(f"{path} {params}: {body}")
  return body["data"]


def dashboard_expressions(dashboard):
  """(panel title, expr) for every target of every panel, rows included."""
  found = []

  def visit(panels):
    for panel in panels:
      for target in panel.get("targets", []):
        if target.get("expr"):
          found.append((panel.get("title", "?"), target["expr"]))
      visit(panel.get("panels", []))

  visit(dashboard.get("panels", []))
  return found


def substitute_variables(expr, dashboard):
  """Replaces Grafana's built-in and template variables with what Grafana
  would send: $__rate_interval, $__interval, $__range, and each template
  variable's current value (a regex-matching `.*` for "All")."""
  values = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
  for variable in dashboard.get("templating", {}).get("list", []):
    current = variable.get("current", {}).get("value")
    if isinstance(current, list):
      current = "|".join(current)
    if current in (None, "", "$__all"):
      current = variable.get("allValue") or ".*"
    values[variable["name"]] = str(current)

  def replace(match):
    name = match.group(1) or match.group(2)
    if name not in values:
      raise Failure(f"expression uses unknown variable ${name}: {expr}")
    return values[name]

  return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, expr)


def generate_traffic(suite, ctl, addr, deadline):
  # Every server healthy first (the catalog and the scheduler read their
  # configuration, each control-plane service migrates its schema).
  for service in SERVICES:
    deadline.wait_for(f"{service} health", lambda s=service: (
        suite.check_alive(), ctl.healthy(addr(s)))[1], limit=40)
  log("services healthy")

  deployment_addr = addr("deployment")
  spec = {"model": MODEL, "hardware": OFFERING, "inferenceBatchSize": 4,
          "minReplicas": 1, "maxReplicas": 1}
  review = ctl.call(deployment_addr,
                    "hangar.v1.DeploymentService/ValidateDeployment",
                    {"spec": spec})
  spec.update(acceptTerms=True, acceptedTermsSha256=review["termsSha256"])
  deployment = ctl.call(deployment_addr,
                        "hangar.v1.DeploymentService/CreateDeployment",
                        {"spec": spec, "requestId": "observability-e2e",
                         "displayName": "observability"})
  name = deployment["name"]
  key = ctl.call(deployment_addr, "hangar.v1.DeploymentService/CreateApiKey",
                 {"deployment": name, "displayName": "e2e",
                  "requestId": "observability-e2e-key"})["plaintext"]
  log(f"deployment {name} and its key created")

  # The deployment service's reconciler takes it from here: no optimization,
  # so it applies revision 1's replica set on the scheduler, whose runner the
  # gateway routes to once READY.
  # The gateway answers once it has the route (a READY runner) and the key.
  def generate(prompt):
    return ctl.call(addr("gateway"), "hangar.v1.InferenceService/Generate",
                    {"deployment": name, "prompt": prompt,
                     "sampling": {"maxTokens": 8}}, api_key=key)

  deadline.wait_for("a first answer through the gateway",
                    lambda: (suite.check_alive(), generate("hello"))[1],
                    limit=45, interval=0.5)
  # Concurrent calls so that the batcher forms batches of more than one.
  callers = [subprocess.Popen([
      ctl.binary, f"--api_key={key}", "call", addr("gateway"),
      "hangar.v1.InferenceService/Generate",
      json.dumps({"deployment": name, "prompt": f"prompt {i}",
                  "sampling": {"maxTokens": 8}})
  ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(8)]
  failed = sum(1 for c in callers if c.wait(timeout=30) != 0)
  if failed:
    raise Failure(f"{failed} of 8 concurrent Generate calls failed")
  # Refused calls for the error panels: an unknown key (auth failures) and
  # an override the deployment does not allow (an error of this deployment).
  for request, key_used, code in (
      ({"deployment": name, "prompt": "x"}, "hk_" + "0" * 43,
       "UNAUTHENTICATED"),
      ({"deployment": name, "prompt": "x", "sampling": {"temperature": 5}},
       key, "INVALID_ARGUMENT")):
    try:
      ctl.call(addr("gateway"), "hangar.v1.InferenceService/Generate",
               request, api_key=key_used)
    except Failure as e:
      if code not in str(e):
        raise
    else:
      raise Failure(f"{request} with key {key_used[:6]}... was answered OK; "
                    f"expected {code}")
  log("traffic sent")
  return name


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--source_dir", required=True)
  parser.add_argument("--build_dir", required=True)
  parser.add_argument("--dashboard", default=None)
  parser.add_argument("--prometheus", default=shutil.which("prometheus"))
  parser.add_argument("--keep", action="store_true",
                      help="keep the temp dir (logs) after the run")
  args = parser.parse_args()
  if not args.prometheus:
    print("SKIP: the prometheus binary is absent "
          "(scripts/install-deps.sh installs it)")
    return SKIP
  dashboard_path = args.dashboard or os.path.join(
      args.source_dir, "deploy/grafana/dashboards/hangar.json")
  with open(dashboard_path) as f:
    dashboard = json.load(f)
  expressions = dashboard_expressions(dashboard)
  if not expressions:
    raise Failure(f"{dashboard_path} has no PromQL expressions")

  deadline = Deadline(BUDGET_SECONDS)
  tmp = tempfile.mkdtemp(prefix="hangar-observability-")
  os.makedirs(os.path.join(tmp, "logs"))
  suite = Suite(args, tmp)
  ok = False
  try:
    suite.start_postgres()
    addr = suite.start_services()
    suite.start_prometheus()
    ctl = Ctl(suite.binary("tools/hangarctl/hangarctl"))
    generate_traffic(suite, ctl, addr, deadline)

    base = suite.prometheus_url
    deadline.wait_for("every scrape target up", lambda: (
        suite.check_alive(),
        all(t["health"] == "up" for t in prometheus_get(
            base, "/api/v1/targets", {"state": "active"})["activeTargets"])
        and len(prometheus_get(base, "/api/v1/targets", {"state": "active"})
                ["activeTargets"]) == len(SERVICES))[1], limit=20)
    # Samples from after the traffic: the gateway's last request counter.
    deadline.wait_for("the gateway's requests in Prometheus", lambda: (
        prometheus_get(base, "/api/v1/query", {
            "query": 'sum(hangar_gateway_requests_total{code="OK"}) >= 9'
        })["result"]), limit=15)

    # Each expression until it returns series (rates need two samples in
    # their window), then the ones that never did are reported together.
    empty = []
    for title, expr in expressions:
      query = substitute_variables(expr, dashboard)
      try:
        deadline.wait_for(f"series for {query}", lambda q=query: (
            prometheus_get(base, "/api/v1/query", {"query": q})["result"]),
                          limit=max(1.0, min(10.0, deadline.left())))
        log(f"ok: {title}: {query}")
      except Failure as e:
        empty.append(f"  panel '{title}': {query}\n    ({e})")
    if empty:
      raise Failure(f"{len(empty)} of {len(expressions)} dashboard "
                    "expressions returned no series:\n" + "\n".join(empty))
    log(f"all {len(expressions)} dashboard expressions returned series")
    ok = True
    return 0
  except Failure as e:
    print(f"FAIL: {e}", file=sys.stderr)
    for name, _, log_path in suite.processes:
      print(f"--- {name} log tail:\n{tail(log_path, 8)}", file=sys.stderr)
    return 1
  finally:
    suite.stop()
    if ok and not args.keep:
      shutil.rmtree(tmp, ignore_errors=True)
    else:
      print(f"logs kept under {tmp}", file=sys.stderr)


if __name__ == "__main__":
  sys.exit(main())
