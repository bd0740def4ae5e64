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
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

# The suite-starting part is shared with the other e2e tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
import hangar_e2e as e2e  # noqa: E402
from hangar_e2e import (Ctl, Deadline, Failure, free_port,  # noqa: E402
                        log)

SKIP = 77
# The services whose /metrics the dashboard reads (all five: every one
# exports the grpc_server_* families of the request panels).
SERVICES = e2e.SERVICES
MODEL = e2e.MODEL
OFFERING = e2e.OFFERING
# The services' default metrics ports, as deploy/prometheus/local.yml
# targets them.
DEFAULT_METRICS_PORTS = {"gateway": 9100, "catalog": 9101, "deployment": 9102,
                         "optimizer": 9103, "scheduler": 9104}
# Overall budget: every wait below shares it, so the test ends within it.
BUDGET_SECONDS = 85


class Suite(e2e.Suite):
  """The suite of tests/e2e/hangar_e2e.py (PostgreSQL and the five services
  on free ports) plus a Prometheus scraping it."""

  def __init__(self, args, tmp):
    super().__init__(args.source_dir, args.build_dir, tmp)
    self.args = args

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
    suite.print_logs(8)
    return 1
  finally:
    suite.stop()
    if ok and not args.keep:
      shutil.rmtree(tmp, ignore_errors=True)
    else:
      print(f"logs kept under {tmp}", file=sys.stderr)


if __name__ == "__main__":
  sys.exit(main())
