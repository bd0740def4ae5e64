#!/usr/bin/env python3
"""Static checks of the deployment files (no Docker engine needed).

  check_deploy.py compose    --source_dir=DIR --build_dir=DIR
      `docker-compose config -q` accepts docker-compose.yml (Debian's
      docker-compose); then, on the resolved file: every HANGAR_* variable
      given to a Hangar service is one its binary reads (listed by
      `hangar-<service> --help`), every service's healthcheck runs `hangarctl
      health` on its own gRPC port, and deploy/prometheus/prometheus.yml
      scrapes every service's metrics port with its `service` label.
  check_deploy.py prometheus --source_dir=DIR
      `promtool check config` accepts deploy/prometheus/prometheus.yml and
      deploy/prometheus/local.yml.

Exit codes: 0 pass, 1 fail, 77 skipped (docker-compose or promtool absent;
scripts/install-deps.sh installs both).
"""

import argparse
import os
import shutil
import subprocess
import sys

SKIP = 77
SERVICES = ("gateway", "catalog", "deployment", "optimizer", "scheduler")

try:
  import yaml
except ImportError:
  # Debian's python3-yaml comes with docker-compose for /usr/bin/python3;
  # another interpreter first on PATH may lack it.
  if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") \
      and os.path.exists("/usr/bin/python3"):
    os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
  yaml = None


def fail(problems):
  for problem in problems:
    print(f"FAIL: {problem}", file=sys.stderr)
  return 1 if problems else 0


def check_compose(args):
  compose = shutil.which("docker-compose")
  if compose is None:
    print("SKIP: docker-compose is absent (scripts/install-deps.sh installs "
          "it)")
    return SKIP
  if yaml is None:
    return fail(["python3-yaml is missing (docker-compose depends on it)"])
  path = os.path.join(args.source_dir, "docker-compose.yml")
  result = subprocess.run([compose, "-f", path, "config", "-q"],
                          capture_output=True, text=True)
  if result.returncode != 0:
    return fail([f"docker-compose config -q: {result.stderr.strip()}"])
  print("docker-compose config -q: valid")
  resolved = yaml.safe_load(subprocess.run(
      [compose, "-f", path, "config"], capture_output=True, text=True,
      check=True).stdout)
  with open(os.path.join(args.source_dir,
                         "deploy/prometheus/prometheus.yml")) as f:
    prometheus = yaml.safe_load(f)
  scraped = {}  # target -> service label
  for job in prometheus["scrape_configs"]:
    for group in job.get("static_configs", []):
      for target in group["targets"]:
        scraped[target] = group.get("labels", {}).get("service")

  problems = []
  services = resolved["services"]
  for service in SERVICES:
    if service not in services:
      problems.append(f"docker-compose.yml: no service {service}")
      continue
    spec = services[service]
    command = spec.get("command") or []
    if command[:1] != [f"hangar-{service}"]:
      problems.append(f"{service}: command is {command}, expected "
                      f"['hangar-{service}']")
    env = {k: str(v) for k, v in (spec.get("environment") or {}).items()}
    binary = os.path.join(args.build_dir, f"services/{service}/hangar-"
                          f"{service}")
    if not os.access(binary, os.X_OK):
      problems.append(f"{binary} is not built")
      continue
    help_text = subprocess.run([binary, "--help"], capture_output=True,
                               text=True).stdout
    for name in env:
      if name.startswith("HANGAR_") and f"env {name} " not in help_text:
        problems.append(f"{service}: {name} is no flag of hangar-{service} "
                        "(see its --help)")
    prefix = f"HANGAR_{service.upper()}_"
    port = env.get(prefix + "PORT")
    metrics_port = env.get(prefix + "METRICS_PORT")
    if port is None or metrics_port is None:
      problems.append(f"{service}: {prefix}PORT and {prefix}METRICS_PORT "
                      "must be set")
      continue
    health = (spec.get("healthcheck") or {}).get("test") or []
    if health != ["CMD", "hangarctl", "health", f"127.0.0.1:{port}"]:
      problems.append(f"{service}: healthcheck is {health}, expected "
                      f"hangarctl health 127.0.0.1:{port}")
    # The gateway lives in the scheduler's network namespace.
    network = spec.get("network_mode", "")
    host = network[len("service:"):] if network.startswith("service:") \
        else service
    target = f"{host}:{metrics_port}"
    if scraped.get(target) != service:
      problems.append(f"deploy/prometheus/prometheus.yml: no target {target} "
                      f"labelled service={service}")
  if not problems:
    print(f"{len(SERVICES)} services: flags, healthchecks and scrape targets "
          "consistent")
  return fail(problems)


def check_prometheus(args):
  promtool = shutil.which("promtool")
  if promtool is None:
    print("SKIP: promtool is absent (scripts/install-deps.sh installs "
          "prometheus)")
    return SKIP
  problems = []
  for name in ("prometheus.yml", "local.yml"):
    path = os.path.join(args.source_dir, "deploy/prometheus", name)
    result = subprocess.run([promtool, "check", "config", path],
                            capture_output=True, text=True)
    print(result.stdout.strip())
    if result.returncode != 0:
      problems.append(f"promtool check config {name}: "
                      f"{(result.stderr or result.stdout).strip()}")
  return fail(problems)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("check", choices=("compose", "prometheus"))
  parser.add_argument("--source_dir", required=True)
  parser.add_argument("--build_dir", default="")
  args = parser.parse_args()
  if args.check == "compose":
    return check_compose(args)
  return check_prometheus(args)


if __name__ == "__main__":
  sys.exit(main())
