"""Failover time on loopback with real Dovecot: kill -9 of the master's POP3 -> first answer of the slave.

Each trial builds a fresh pair (failover.lab.pair), lets it settle, waits a random part of the
probe cycle, kills the master's Dovecot process group with SIGKILL, and measures with a client
that does a full greeting + USER + PASS + STAT every 10 ms (master first, then slave):

    outage = first complete exchange answered by the slave - the kill

It also counts answers from the master after the slave's first one (must be 0). Prints
min / median / p95 / max per profile and the settings it ran with.

    .venv/bin/python bench/failover_time.py [--trials 20] [--profile fast|default|both] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from failover.config import KEYS
from failover.lab.pair import PROFILES, LoopbackPair, Poller
from failover.machine import Role


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def settings_of(profile: str) -> dict[str, Any]:
    """The timing settings a profile runs with: the shipped defaults, then the profile's own."""
    timing = [k for k in KEYS if "TIMEOUT" in k.name or "INTERVAL" in k.name or k.name == "PROBE_FAILURES"]
    return {**{k.name: k.default for k in timing}, **PROFILES[profile]}


def wait_settled(pair: LoopbackPair, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    path = os.path.join(pair.dir, "state", "rhcd.status.json")
    while time.monotonic() < end:
        try:
            with open(path) as f:
                obs = json.load(f)["observations"]
            if obs.get("probe_ok") and "heartbeat_time" in obs:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise TimeoutError("the pair did not settle:\n" + pair.logs())


def trial(profile: str, rng: random.Random) -> dict[str, Any]:
    pair = LoopbackPair(profile=profile)
    try:
        pair.pop3[Role.MASTER].start()
        pair.start_agents(Role.MASTER)
        pair.start_agents(Role.SLAVE)
        wait_settled(pair)
        poller = Poller(pair, interval=0.01)
        poller.start()
        interval = float(settings_of(profile)["PROBE_INTERVAL"])
        time.sleep(0.5 + rng.uniform(0, interval))  # a random point of the probe cycle
        killed = time.monotonic()
        pair.pop3[Role.MASTER].kill(signal.SIGKILL)
        pair.wait_for(Role.SLAVE, ("ACTIVE", "FAILED", "FENCING"), timeout=120)
        end = time.monotonic() + 1.0
        while poller.first("slave", killed) is None and time.monotonic() < end + 5:
            time.sleep(0.01)
        time.sleep(max(0.0, end - time.monotonic()))
        poller.stop()
        first = poller.first("slave", killed)
        if first is None:
            raise RuntimeError(f"the slave never answered: {pair.state(Role.SLAVE)}\n{pair.logs()}")
        claim = next(e for e in pair.journal(Role.SLAVE) if e["to"] == "FAILING_OVER")
        return {
            "outage": first - killed,
            "master_after_switch": poller.count("master", first),
            "unanswered": sum(1 for a in poller.answers if a.time >= killed and a.server is None),
            "trigger": claim["reason"].split(":")[0],  # the claim names its trigger first
        }
    finally:
        pair.close()


def run(profile: str, trials: int, rng: random.Random) -> dict[str, Any]:
    results = []
    for i in range(trials):
        r = trial(profile, rng)
        results.append(r)
        print(
            f"  {profile} trial {i + 1:2}/{trials}: {r['outage']:.3f} s ({r['trigger']}, "
            f"{r['unanswered']} unanswered, {r['master_after_switch']} master answers after the switch)",
            file=sys.stderr,
            flush=True,
        )
    outages = [r["outage"] for r in results]
    return {
        "profile": profile,
        "trials": trials,
        "min": min(outages),
        "median": statistics.median(outages),
        "p95": percentile(outages, 0.95),
        "max": max(outages),
        "master_answers_after_switch": sum(r["master_after_switch"] for r in results),
        "triggers": {t: sum(1 for r in results if r["trigger"] == t) for t in {r["trigger"] for r in results}},
        "settings": settings_of(profile),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--profile", choices=["fast", "default", "both"], default="both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    profiles = ["default", "fast"] if args.profile == "both" else [args.profile]
    version = subprocess.run(["/usr/sbin/dovecot", "--version"], capture_output=True, text=True).stdout.strip()
    results = [run(p, args.trials, rng) for p in profiles]
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print("failover time, kill -9 of the master's Dovecot -> first complete POP3 exchange served by the slave")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores; Dovecot {version}; client every 10 ms "
        f"(greeting + USER + PASS + STAT); {args.trials} trials per profile, seed {args.seed}"
    )
    print(f"{'profile':8} {'min':>7} {'median':>7} {'p95':>7} {'max':>7}  master answers after the switch  triggers")
    for r in results:
        print(
            f"{r['profile']:8} {r['min']:7.3f} {r['median']:7.3f} {r['p95']:7.3f} {r['max']:7.3f}  "
            f"{r['master_answers_after_switch']:>31}  {r['triggers']}"
        )
    for r in results:
        print(f"settings {r['profile']}: " + ", ".join(f"{k}={v}" for k, v in sorted(r["settings"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
