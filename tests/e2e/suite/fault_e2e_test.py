#!/usr/bin/env python3
"""The suite under faults: one scenario per run, real processes.

Each scenario starts a private PostgreSQL and the five services on free
ports (tests/e2e/hangar_e2e.py), deploys the tiny model, holds a closed loop
of Generate calls through the gateway (hangarctl, a real gRPC client),
injects one fault and checks what the suite promises:

  demo_flow          validate -> create int8 (ctranslate2) -> DEPLOYED ->
                     key -> 32 concurrent prompts answered -> usage shows
                     the tokens actually used and replica time; charges =
                     tokens x prices and replica-seconds x hourly price.
  redeploy_under_load  Redeploy (a new temperature) while the load runs:
                     zero failed requests, revision 2 serving and answering
                     at the end, revision 1's replica set released.
  runner_kill        kill -9 of one of two runners under load: zero failed
                     requests (the gateway retries a replica that failed
                     before any token), the replica restarted READY.
  key_revoke         a revoked key is refused within 2 s while another key
                     of the deployment keeps answering; unknown and
                     malformed keys are refused.
  postgres_restart   PostgreSQL stopped under load: control-plane calls fail
                     UNAVAILABLE during the outage and succeed after;
                     inference keeps answering (zero failed); every
                     deployment and key created before is there after.
  gateway_drain      SIGTERM of the gateway with GenerateStream calls in
                     flight: each stream finishes OK with its finish reason.
  scheduler_kill     kill -9 of the scheduler under load: zero failed
                     requests while it is down; restarted, it re-adopts the
                     same runner processes (no orphan, no duplicate).
  deployment_kill    kill -9 of the deployment service while an int8
                     deployment is OPTIMIZING: restarted, the deployment
                     converges with one optimizer job and one revision.

Each scenario appends one JSON line (load, fault, sent / succeeded / failed,
writes lost, bad inputs tried, passed) to $HANGAR_E2E_RESULTS, else
e2e-results.jsonl in the working directory; scripts/reliability-report.sh
turns them into docs/RELIABILITY.md.

Usage: fault_e2e_test.py --scenario=NAME --source_dir=DIR --build_dir=DIR
Exit codes: 0 pass, 1 fail.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
import hangar_e2e as e2e  # noqa: E402
from hangar_e2e import Failure, log  # noqa: E402

BUDGET_SECONDS = 85
# How long PostgreSQL stays down at least in postgres_restart.
OUTAGE_SECONDS = 5


def micros(x):
  return int(round(x * 1e6))


def money_micros(money):
  return int((money or {}).get("micros", 0))


# --- 1. the demo flow --------------------------------------------------------
def demo_flow(suite, ctl, deadline, record):
  prompts = 32
  name = "demo-e2e"
  spec_flags = ["--model", e2e.MODEL, "--hardware", e2e.OFFERING,
                "--engine", "ctranslate2", "--quantization", "int8",
                "--batch_size", "8", "--min_replicas", "1",
                "--max_replicas", "3"]
  record.update(load=f"{prompts} concurrent Generate streams (hangarctl "
                "generate), 8 tokens each",
                fault="none (the seed's flow end to end)")
  models = ctl.run(["models", "list"])
  if e2e.MODEL not in json.dumps(models):
    raise Failure(f"models list does not show {e2e.MODEL}: {models}")
  review = ctl.run(["deploy", "validate"] + spec_flags)
  if not review.get("valid") or not review.get("termsSha256"):
    raise Failure(f"deploy validate: {review}")
  # Bad inputs: an unknown offering and a quantization without an engine
  # are refused by the review, and create without accepting the terms.
  bad = 0
  for args in (["--model", e2e.MODEL, "--hardware", "no-such-gpu"],
               ["--model", e2e.MODEL, "--hardware", e2e.OFFERING,
                "--quantization", "int8"]):
    bad += 1
    try:
      out = ctl.run(["deploy", "validate"] + args)
      raise Failure(f"deploy validate {args} was valid: {out}")
    except e2e.CallError as e:
      if e.code not in ("INVALID_ARGUMENT", "EXIT_1"):
        raise
  bad += 1
  try:
    ctl.run(["deploy", "create", "no-terms"] + spec_flags)
    raise Failure("deploy create without --accept_terms succeeded")
  except e2e.CallError as e:
    if e.code != "EXIT_2":
      raise
  record["bad_inputs"] = bad

  ctl.run(["deploy", "create", name] + spec_flags +
          ["--accept_terms", "--wait", "--watch_timeout_seconds=60",
           "--request_id=demo-e2e"], timeout=deadline.left())
  deployment = ctl.run(["deploy", "get", name])
  dep = deployment["name"]
  if deployment["state"] != "DEPLOYMENT_STATE_DEPLOYED":
    raise Failure(f"after --wait: {deployment}")
  if deployment["spec"].get("optimization", {}).get(
      "quantization") != "QUANTIZATION_INT8":
    raise Failure(f"spec lost the int8 recipe: {deployment['spec']}")
  endpoint = ctl.run(["endpoint", name])
  if not endpoint.get("ready") or endpoint.get("address") != suite.addr(
      "gateway"):
    raise Failure(f"endpoint: {endpoint}")
  key = ctl.run(["keys", "create", name, "--name", "demo"])
  plaintext = key["plaintext"]
  log(f"{dep} DEPLOYED with int8; key {key['apiKey']['name']}")

  e2e.wait_first_answer(ctl, suite, deadline, dep, plaintext)
  used = {"prompt": 0, "completion": 0}
  # The first answer above counts too: read it back from usage at the end.
  warmup = e2e.generate(ctl, suite, dep, plaintext, "warm up")
  for k, field in (("prompt", "promptTokens"),
                   ("completion", "completionTokens")):
    used[k] += int(warmup["usage"].get(field, 0))
  callers = []
  for i in range(prompts):
    callers.append(subprocess.Popen(
        [ctl.binary, "-o", "json", f"--gateway_address={suite.addr('gateway')}",
         f"--api_key={plaintext}", "--timeout_seconds=30", "generate", name,
         f"prompt number {i}", "--max_tokens", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  failed, answers = [], 0
  for caller in callers:
    out, err = caller.communicate(timeout=max(5, deadline.left()))
    if caller.returncode != 0:
      failed.append(err.strip())
      continue
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    last = lines[-1] if lines else {}
    if not last.get("finishReason") or not last.get("usage"):
      failed.append(f"no final message: {out[-300:]}")
      continue
    answers += 1
    used["prompt"] += int(last["usage"].get("promptTokens", 0))
    used["completion"] += int(last["usage"].get("completionTokens", 0))
  record.update(sent=prompts + 1, succeeded=answers + 1, failed=len(failed))
  if failed:
    raise Failure(f"{len(failed)} of {prompts} prompts failed: {failed[:3]}")
  if used["completion"] == 0:
    raise Failure("no completion tokens in any answer")
  log(f"{prompts} prompts answered; tokens {used}")

  # The first answer (wait_first_answer) used an unknown number of tokens
  # only if more than one try answered; it answered once: add it from usage
  # rows minus ours, and require the rest to match exactly.
  def usage_matches():
    u = ctl.run(["usage", "--deployment", name])
    tokens = {"prompt": 0, "completion": 0}
    requests = 0
    for row in u.get("tokenUsage", []):
      requests += int(row.get("requests", 0))
      tokens["prompt"] += int(row.get("tokens", {}).get("promptTokens", 0))
      tokens["completion"] += int(row.get("tokens", {}).get(
          "completionTokens", 0))
    # prompts + warm-up + the first answer.
    return requests == prompts + 2 and u if requests == prompts + 2 else None
  usage = deadline.wait_for("usage to count every request", usage_matches,
                            limit=20, interval=0.5)
  tokens = {"prompt": 0, "completion": 0}
  for row in usage["tokenUsage"]:
    tokens["prompt"] += int(row["tokens"].get("promptTokens", 0))
    tokens["completion"] += int(row["tokens"].get("completionTokens", 0))
  # "hello" is answered with the same max tokens as the warm-up's 8: the
  # difference between usage and ours is exactly one request's tokens.
  first = {k: tokens[k] - used[k] for k in tokens}
  if first["prompt"] <= 0 or first["completion"] <= 0 or first[
      "completion"] > 8:
    raise Failure(f"usage tokens {tokens} do not match the answers' {used} "
                  "plus one 8-token request")
  expected_token_cost = micros(tokens["prompt"] / 1000 *
                               e2e.PROMPT_PRICE_PER_1K +
                               tokens["completion"] / 1000 *
                               e2e.COMPLETION_PRICE_PER_1K)
  token_cost = money_micros(usage.get("tokenCost"))
  rows = len(usage["tokenUsage"])
  if abs(token_cost - expected_token_cost) > rows:
    raise Failure(f"token cost {token_cost} micros; tokens {tokens} x prices "
                  f"is {expected_token_cost}")
  replica_seconds = sum(float(r.get("replicaSeconds", 0))
                        for r in usage.get("replicaUsage", []))
  if replica_seconds <= 0:
    raise Failure(f"no replica time in usage: {usage}")
  hourly = money_micros(usage.get("prices", {}).get("hourly", {}).get(
      e2e.OFFERING))
  expected_replica_cost = int(round(replica_seconds / 3600 * hourly))
  replica_cost = money_micros(usage.get("replicaCost"))
  if hourly <= 0 or abs(replica_cost - expected_replica_cost) > max(
      2, len(usage["replicaUsage"])):
    raise Failure(f"replica cost {replica_cost} micros; {replica_seconds} s x "
                  f"{hourly} micros/h is {expected_replica_cost}")
  if money_micros(usage.get("totalCost")) != replica_cost + token_cost:
    raise Failure(f"total cost is not replica + token cost: {usage}")
  record["checks"] = (f"usage: {tokens['prompt']} prompt + "
                      f"{tokens['completion']} completion tokens = "
                      f"{token_cost} micros; {replica_seconds:.1f} replica-s = "
                      f"{replica_cost} micros")
  log(record["checks"])


# --- 2. redeploy under load --------------------------------------------------
def redeploy_under_load(suite, ctl, deadline, record):
  record.update(load="3 closed-loop Generate callers, 8 tokens each",
                fault="Redeploy (temperature 0.7) rolls revision 2 in")
  dep = e2e.create_deployment(ctl, suite, "redeploy-e2e")["name"]
  e2e.wait_deployed(ctl, suite, deadline, dep)
  _, key = e2e.create_key(ctl, suite, dep, "redeploy-e2e-key")
  e2e.wait_first_answer(ctl, suite, deadline, dep, key)
  load = e2e.LoadGenerator(ctl, suite, dep, key, workers=3).start()
  record["_load"] = load
  load.wait_answers(deadline, 6)
  current = e2e.get_deployment(ctl, suite, dep)
  spec = dict(current["spec"])
  spec["sampling"] = dict(spec.get("sampling", {}), temperature=0.7)
  for k in ("acceptTerms", "acceptedTermsSha256"):
    spec.pop(k, None)
  review = e2e.deployment_call(ctl, suite, "ValidateDeployment",
                               {"spec": spec})
  spec.update(acceptTerms=True, acceptedTermsSha256=review["termsSha256"])
  # A bad input first: a stale etag is ABORTED, nothing changes.
  record["bad_inputs"] = 1
  try:
    e2e.deployment_call(ctl, suite, "Redeploy", {
        "name": dep, "spec": spec, "etag": "stale", "requestId": "r2-stale"})
    raise Failure("Redeploy with a stale etag succeeded")
  except e2e.CallError as e:
    if e.code not in ("ABORTED", "FAILED_PRECONDITION"):
      raise
  e2e.deployment_call(ctl, suite, "Redeploy", {
      "name": dep, "spec": spec, "etag": current["etag"],
      "requestId": "redeploy-e2e-r2"})
  log("Redeploy sent")
  e2e.wait_deployed(ctl, suite, deadline, dep, revision=2, limit=60)
  deadline.wait_for("answers from revision 2",
                    lambda: load.revisions.get(2, 0) >= 3, limit=20)

  def released():
    try:
      rs = e2e.replica_set(ctl, suite, dep, 1)
    except e2e.CallError as e:
      return e.code == "NOT_FOUND"
    return not rs.get("replicas")
  deadline.wait_for("revision 1's replicas released", released, limit=40,
                    interval=0.5)
  # Released means its runner process is gone too: one runner, revision 2's.
  runners = deadline.wait_for(
      "one runner left, revision 2's",
      lambda: (lambda p: len(p) == 1 and all("-r2-" in n for n in p) and p)(
          suite.runner_pids()), limit=15, interval=0.2)
  record["checks"] = (f"revision 2 serving; revision 1's replica set gone; "
                      f"runners left: {sorted(runners)}")
  load.wait_answers(deadline, 3, "answers after the release")
  load.stop()
  log(f"answers per revision: {load.revisions}")
  if not load.revisions.get(1):
    raise Failure("no answer came from revision 1 (load started too late)")


# --- 3. kill -9 of one of two runners ----------------------------------------
def runner_kill(suite, ctl, deadline, record):
  record.update(load="4 closed-loop Generate callers, 64 tokens each, "
                "2 replicas", fault="kill -9 of one runner")
  dep = e2e.create_deployment(ctl, suite, "runner-kill-e2e", {
      "minReplicas": 2, "maxReplicas": 2})["name"]
  e2e.wait_deployed(ctl, suite, deadline, dep)
  deadline.wait_for("2 ready replicas", lambda: int(e2e.replica_set(
      ctl, suite, dep, 1).get("readyReplicas", 0)) == 2, limit=30)
  _, key = e2e.create_key(ctl, suite, dep, "runner-kill-e2e-key")
  e2e.wait_first_answer(ctl, suite, deadline, dep, key)
  load = e2e.LoadGenerator(ctl, suite, dep, key, workers=4,
                           max_tokens=64).start()
  record["_load"] = load
  load.wait_answers(deadline, 8)
  pids = suite.runner_pids()
  if len(pids) != 2:
    raise Failure(f"expected 2 runners, found {pids}")
  victim, pid = sorted(pids.items())[0]
  before = {r["name"]: int(r.get("restarts", 0)) for r in e2e.replica_set(
      ctl, suite, dep, 1)["replicas"]}
  retries_before = e2e.metric(suite, "gateway", "hangar_gateway_retries_total")
  os.kill(pid, signal.SIGKILL)
  log(f"killed runner {victim} (pid {pid})")
  load.wait_answers(deadline, 10, "answers after the kill")

  def replaced():
    rs = e2e.replica_set(ctl, suite, dep, 1)
    new_pid = suite.runner_pids().get(victim)
    restarts = {r["name"]: int(r.get("restarts", 0)) for r in rs["replicas"]}
    return (int(rs.get("readyReplicas", 0)) == 2 and new_pid and
            new_pid != pid and
            sum(restarts.values()) > sum(before.values()))
  deadline.wait_for(f"{victim} replaced and 2 replicas READY", replaced,
                    limit=40, interval=0.3)
  load.wait_answers(deadline, 6, "answers after the replacement")
  load.stop()
  retries = e2e.metric(suite, "gateway", "hangar_gateway_retries_total")
  record["checks"] = (f"{victim} restarted with a new pid, 2 READY again; "
                      f"gateway retries during the fault: "
                      f"{int(retries - retries_before)}")


# --- 7. kill -9 of the scheduler ---------------------------------------------
def scheduler_kill(suite, ctl, deadline, record):
  record.update(load="3 closed-loop Generate callers, 2 replicas",
                fault="kill -9 of the scheduler, restarted with the same "
                "state dir")
  dep = e2e.create_deployment(ctl, suite, "scheduler-kill-e2e", {
      "minReplicas": 2, "maxReplicas": 2})["name"]
  e2e.wait_deployed(ctl, suite, deadline, dep)
  deadline.wait_for("2 ready replicas", lambda: int(e2e.replica_set(
      ctl, suite, dep, 1).get("readyReplicas", 0)) == 2, limit=30)
  _, key = e2e.create_key(ctl, suite, dep, "scheduler-kill-e2e-key")
  e2e.wait_first_answer(ctl, suite, deadline, dep, key)
  load = e2e.LoadGenerator(ctl, suite, dep, key, workers=3).start()
  record["_load"] = load
  load.wait_answers(deadline, 6)
  pids = suite.runner_pids()
  if len(pids) != 2:
    raise Failure(f"expected 2 runners, found {pids}")
  suite.kill_service("scheduler")
  log(f"scheduler killed; runners {pids}")
  # Runners live on (--state_dir) and the gateway keeps its routes.
  load.wait_answers(deadline, 20, "answers while the scheduler is down")
  if suite.runner_pids() != pids:
    raise Failure(f"runners changed while the scheduler was down: "
                  f"{pids} -> {suite.runner_pids()}")
  suite.start_service("scheduler")
  suite.wait_healthy(ctl, deadline, services=("scheduler",))
  log("scheduler started again")

  def readopted():
    rs = e2e.replica_set(ctl, suite, dep, 1)
    return int(rs.get("readyReplicas", 0)) == 2 and rs
  rs = deadline.wait_for("2 READY replicas after the restart", readopted,
                         limit=30, interval=0.3)
  after = suite.runner_pids()
  record["checks"] = (f"runner pids before {sorted(pids.values())}, after "
                      f"{sorted(after.values())}; replicas {len(rs['replicas'])}")
  if after != pids:
    raise Failure(f"runners not re-adopted: before {pids}, after {after} "
                  "(a duplicate or a restart)")
  if len(rs["replicas"]) != 2:
    raise Failure(f"replica records after the restart: {rs['replicas']}")
  load.wait_answers(deadline, 6, "answers after the restart")
  load.stop()


# --- 4. a revoked key --------------------------------------------------------
def key_revoke(suite, ctl, deadline, record):
  record.update(load="2 closed-loop Generate callers on a second key",
                fault="RevokeApiKey of a key in use")
  dep = e2e.create_deployment(ctl, suite, "revoke-e2e")["name"]
  e2e.wait_deployed(ctl, suite, deadline, dep)
  victim_name, victim = e2e.create_key(ctl, suite, dep, "revoke-e2e-victim")
  _, keeper = e2e.create_key(ctl, suite, dep, "revoke-e2e-keeper")
  e2e.wait_first_answer(ctl, suite, deadline, dep, victim)
  e2e.wait_first_answer(ctl, suite, deadline, dep, keeper)
  load = e2e.LoadGenerator(ctl, suite, dep, keeper, workers=2).start()
  record["_load"] = load
  load.wait_answers(deadline, 4)
  e2e.deployment_call(ctl, suite, "RevokeApiKey", {"name": victim_name})
  revoked_at = time.monotonic()
  refusals = {"n": 0}

  def refused():
    refusals["n"] += 1
    try:
      e2e.generate(ctl, suite, dep, victim, "still here?", timeout=5)
      return False
    except e2e.CallError as e:
      if e.code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return True
      raise
  deadline.wait_for("the revoked key refused", refused, limit=2.0,
                    interval=0.05)
  took = time.monotonic() - revoked_at
  log(f"revoked key refused after {took:.2f} s")
  if took > 2.0:
    raise Failure(f"the revoked key was refused only after {took:.2f} s")
  record["checks"] = f"revoked key refused {took:.2f} s after RevokeApiKey"
  # Bad inputs: the revoked key again, an unknown well-formed key, a
  # malformed key, no key; all refused, none answered.
  bad = [victim, "hk_" + "A" * 43, "not-a-key", None]
  for k in bad:
    try:
      e2e.generate(ctl, suite, dep, k, "x", timeout=5)
      raise Failure(f"key {str(k)[:8]}... was answered")
    except e2e.CallError as e:
      if e.code not in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        raise
  record["bad_inputs"] = refusals["n"] + len(bad)
  load.wait_answers(deadline, 4, "answers on the other key after the revoke")
  load.stop()


# --- 5. PostgreSQL restarted -------------------------------------------------
def postgres_restart(suite, ctl, deadline, record):
  record.update(load="3 closed-loop Generate callers",
                fault="PostgreSQL stopped (fast shutdown) and started again")
  deps, keys = [], []
  for i in range(2):
    deps.append(e2e.create_deployment(ctl, suite, f"pg-e2e-{i}")["name"])
  for d in deps:
    e2e.wait_deployed(ctl, suite, deadline, d)
    for j in range(2):
      keys.append(e2e.create_key(ctl, suite, d, f"{d}-key-{j}"))
  dep, key = deps[0], keys[0][1]
  e2e.wait_first_answer(ctl, suite, deadline, dep, key)
  load = e2e.LoadGenerator(ctl, suite, dep, key, workers=3).start()
  record["_load"] = load
  load.wait_answers(deadline, 6)

  suite.stop_postgres()
  log("PostgreSQL stopped")
  outage_codes = []
  control_calls = (
      ("GetDeployment", {"name": dep}),
      ("ListDeployments", {}),
      ("CreateApiKey", {"deployment": dep, "displayName": "during-outage",
                        "requestId": "during-outage"}),
  )
  # The outage lasts at least OUTAGE_SECONDS (longer than the services'
  # 2 s database connect timeout, so reconnects fail too), until the load
  # has had 30 answers and the control plane has been asked 6 times (two
  # rounds of three calls): every call UNAVAILABLE, every inference
  # answered from the gateway's cached routes and keys.
  target = load.count() + 30
  outage_end = time.monotonic() + OUTAGE_SECONDS

  def outage_done():
    if (len(outage_codes) < 6 or load.count() < target or
        time.monotonic() < outage_end):
      method, request = control_calls[len(outage_codes) % len(control_calls)]
      try:
        e2e.deployment_call(ctl, suite, method, request, timeout=8)
        outage_codes.append("OK")
      except e2e.CallError as e:
        outage_codes.append(e.code)
      return False
    return True
  deadline.wait_for("30 answers and 6 control-plane calls during the outage",
                    outage_done, limit=40, interval=0.1)
  outage_seconds = OUTAGE_SECONDS + time.monotonic() - outage_end
  answered_in_outage = load.count() - target + 30
  suite.check_alive()
  log(f"control-plane codes during the outage: {sorted(set(outage_codes))} "
      f"x {len(outage_codes)}")
  suite.start_postgres_again()
  log("PostgreSQL started again")
  bad = [c for c in outage_codes if c != "UNAVAILABLE"]
  if bad:
    raise Failure(f"control-plane calls during the outage answered "
                  f"{outage_codes}; expected UNAVAILABLE for each")
  deadline.wait_for("control-plane calls again", lambda: e2e.deployment_call(
      ctl, suite, "ListDeployments", {}), limit=30, interval=0.3)
  # A write after the outage, and every write from before.
  keys.append(e2e.create_key(ctl, suite, dep, "after-outage"))
  listed = e2e.deployment_call(ctl, suite, "ListDeployments", {})
  names = {d["name"] for d in listed.get("deployments", [])}
  lost = [d for d in deps if d not in names]
  listed_keys = set()
  for d in deps:
    for k in e2e.deployment_call(ctl, suite, "ListApiKeys",
                                 {"deployment": d}).get("apiKeys", []):
      listed_keys.add(k["name"])
  lost += [k for k, _ in keys if k not in listed_keys]
  record["writes_lost"] = len(lost)
  record["writes_checked"] = len(deps) + len(keys)
  record["checks"] = (f"{answered_in_outage} answers during the "
                      f"{outage_seconds:.1f} s outage; "
                      f"control-plane codes during it: "
                      f"{sorted(set(outage_codes))} x {len(outage_codes)}")
  if lost:
    raise Failure(f"writes lost after the restart: {lost}")
  load.wait_answers(deadline, 4, "answers after the restart")
  load.stop()
  # The key created after the outage reaches the gateway (its key watch
  # came back) and answers.
  e2e.wait_first_answer(ctl, suite, deadline, dep, keys[-1][1], limit=15)
  # The suite survived: every service still running and healthy.
  suite.check_alive()


# --- 6. gateway SIGTERM drains streams ---------------------------------------
def gateway_drain(suite, ctl, deadline, record):
  streams = 4
  max_tokens = 400
  record.update(load=f"{streams} GenerateStream calls of up to {max_tokens} "
                "tokens in flight", fault="SIGTERM of the gateway")
  dep = e2e.create_deployment(ctl, suite, "drain-e2e", {
      "sampling": {"maxTokens": max_tokens}})["name"]
  e2e.wait_deployed(ctl, suite, deadline, dep)
  _, key = e2e.create_key(ctl, suite, dep, "drain-e2e-key")
  e2e.wait_first_answer(ctl, suite, deadline, dep, key)
  callers, first_token = [], []
  for i in range(streams):
    p = subprocess.Popen(
        [ctl.binary, "-o", "json", f"--gateway_address={suite.addr('gateway')}",
         f"--api_key={key}", "--timeout_seconds=30", "generate", dep,
         f"a long story {i}", "--max_tokens", str(max_tokens)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    callers.append(p)
  outputs = [[] for _ in callers]

  def reader(i, p):
    for line in p.stdout:
      outputs[i].append(line)
  threads = [threading.Thread(target=reader, args=(i, p), daemon=True)
             for i, p in enumerate(callers)]
  for t in threads:
    t.start()
  deadline.wait_for("a first token on every stream",
                    lambda: all(outputs), limit=20, interval=0.01)
  in_flight = sum(1 for p in callers if p.poll() is None)
  suite.processes["gateway"][0].send_signal(signal.SIGTERM)
  log(f"gateway SIGTERM with {in_flight} of {streams} streams in flight")
  record["sent"] = streams
  ok, failed = 0, []
  for i, p in enumerate(callers):
    p.wait(timeout=max(5, deadline.left()))
    threads[i].join(timeout=5)
    err = p.stderr.read()
    last = json.loads(outputs[i][-1]) if outputs[i] else {}
    if p.returncode == 0 and last.get("finishReason"):
      ok += 1
    else:
      failed.append(f"stream {i}: exit {p.returncode}: {err.strip()[-300:]}")
  record.update(succeeded=ok, failed=len(failed),
                checks=f"{in_flight} streams in flight at SIGTERM")
  code = suite.processes["gateway"][0].wait(timeout=max(5, deadline.left()))
  if failed:
    raise Failure(f"{len(failed)} streams failed: {failed}")
  if in_flight == 0:
    raise Failure("every stream had ended before SIGTERM; the test proved "
                  "nothing (make the streams longer)")
  if code != 0:
    raise Failure(f"the gateway exited {code} after SIGTERM")
  # A bad input after the drain: a new call is refused (nothing listens).
  record["bad_inputs"] = 1
  try:
    e2e.generate(ctl, suite, dep, key, "too late", timeout=3)
    raise Failure("a call after the gateway's SIGTERM was answered")
  except e2e.CallError as e:
    if e.code != "UNAVAILABLE":
      raise


# --- 7. kill -9 of the deployment service mid-optimization ------------------
def deployment_kill(suite, ctl, deadline, record):
  record.update(load="one int8 deployment being optimized (no inference "
                "yet); then 8 Generate calls",
                fault="kill -9 of the deployment service while the "
                "deployment is OPTIMIZING, restarted")
  dep = e2e.create_deployment(ctl, suite, "deployment-kill-e2e", {
      "optimization": {"engine": "ENGINE_CTRANSLATE2",
                       "quantization": "QUANTIZATION_INT8"}})["name"]
  deadline.wait_for("the deployment OPTIMIZING", lambda: e2e.get_deployment(
      ctl, suite, dep)["state"] == "DEPLOYMENT_STATE_OPTIMIZING", limit=20,
                    interval=0.02)
  suite.kill_service("deployment")
  log("deployment service killed while OPTIMIZING")
  suite.start_service("deployment")
  suite.wait_healthy(ctl, deadline, services=("deployment",))
  log("deployment service started again")
  e2e.wait_deployed(ctl, suite, deadline, dep, limit=60)
  jobs = [j for j in ctl.call(
      suite.addr("optimizer"),
      "hangar.v1.OptimizerService/ListOptimizationJobs", {}).get("jobs", [])]
  scheduler_jobs = ctl.call(suite.addr("scheduler"),
                            "hangar.v1.SchedulerService/ListJobs",
                            {}).get("jobs", [])
  revisions = e2e.deployment_call(ctl, suite, "ListRevisions",
                                  {"deployment": dep}).get("revisions", [])
  record["checks"] = (f"{len(jobs)} optimization job(s), "
                      f"{len(scheduler_jobs)} scheduler job(s), "
                      f"{len(revisions)} revision(s) after the restart")
  record["writes_checked"] = 1 + len(revisions)
  if len(jobs) != 1 or len(scheduler_jobs) != 1:
    raise Failure(f"duplicate jobs: optimizer {[j['name'] for j in jobs]}, "
                  f"scheduler {[j['name'] for j in scheduler_jobs]}")
  if len(revisions) != 1:
    record["writes_lost"] = 1
    raise Failure(f"revisions after the restart: {revisions}")
  _, key = e2e.create_key(ctl, suite, dep, "deployment-kill-e2e-key")
  e2e.wait_first_answer(ctl, suite, deadline, dep, key)
  sent, ok = 8, 0
  for i in range(sent):
    e2e.generate(ctl, suite, dep, key, f"after the restart {i}")
    ok += 1
  record.update(sent=sent + 1, succeeded=ok + 1)


SCENARIOS = {
    "demo_flow": (demo_flow, {}),
    "redeploy_under_load": (redeploy_under_load,
                            {"deployment": ["--drain_seconds=2"]}),
    "runner_kill": (runner_kill, {}),
    "key_revoke": (key_revoke, {}),
    "postgres_restart": (postgres_restart, {}),
    "gateway_drain": (gateway_drain, {}),
    "scheduler_kill": (scheduler_kill, {}),
    # The restarted service takes the deployment over when the killed one's
    # lease expires: a 10 s lease keeps the scenario short.
    "deployment_kill": (deployment_kill,
                        {"deployment": ["--lease_duration=10s"]}),
}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
  parser.add_argument("--source_dir", required=True)
  parser.add_argument("--build_dir", required=True)
  parser.add_argument("--results", default=None)
  parser.add_argument("--keep", action="store_true")
  args = parser.parse_args()
  scenario, extra_flags = SCENARIOS[args.scenario]

  deadline = e2e.Deadline(BUDGET_SECONDS)
  started = time.monotonic()
  tmp = tempfile.mkdtemp(prefix=f"hangar-e2e-{args.scenario}-")
  suite = e2e.Suite(args.source_dir, args.build_dir, tmp, extra_flags)
  record = {"scenario": args.scenario, "load": "", "fault": "", "sent": 0,
            "succeeded": 0, "failed": 0, "writes_lost": 0, "bad_inputs": 0,
            "failure_promise": "0 failed"}
  ok = False
  try:
    suite.start_postgres()
    suite.start_services()
    ctl = e2e.Ctl(suite.binary("tools/hangarctl/hangarctl"), suite)
    suite.wait_healthy(ctl, deadline)
    log("services healthy")
    scenario(suite, ctl, deadline, record)
    ok = True
  except Failure as e:
    print(f"FAIL: {e}", file=sys.stderr)
    record["error"] = str(e)[:500]
  finally:
    load = record.pop("_load", None)
    if load:
      load.stop()
      record.update(load.summary())
      if load.failures:
        record["failures"] = [f"{t} {m}"[:300] for t, m in load.failures[:5]]
        print(f"FAIL: {len(load.failures)} failed requests under load; "
              f"first: {load.failures[:3]}", file=sys.stderr)
        ok = False
      record["answers_per_revision"] = {
          str(k): v for k, v in sorted(load.revisions.items())}
    if not ok:
      suite.print_logs()
    suite.stop()
    record["passed"] = ok
    record["seconds"] = round(time.monotonic() - started, 1)
    e2e.ResultsFile(args.results).write(record)
    if ok and not args.keep:
      shutil.rmtree(tmp, ignore_errors=True)
    else:
      print(f"logs kept under {tmp}", file=sys.stderr)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
