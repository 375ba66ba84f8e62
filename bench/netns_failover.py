"""Failover on three hosts (network namespaces): injection -> first answer of the slave through HAProxy.

For each profile (the shipped defaults, and the fast netns profile of tests/harness/cluster.py) and
each injection (kill -9 of the master's Dovecot, the master's links down, every master process
frozen with SIGSTOP), N trials on a fresh three-host cluster: a client inside the client
namespace does a full POP3 exchange through HAProxy every 20 ms, and

    failover time = first complete exchange answered by the slave - the injection

It also counts answers from the master after the slave's first one (must be 0), and, per
profile, the false failovers per minute of a healthy master whose links lose 20 % of their frames.

    .venv/bin/python bench/netns_failover.py [--trials 5] [--profile fast|default|both] [--loss-minutes 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository: tests.harness
from bench.failover_time import percentile, settings_of
from failover.machine import Role
from tests.harness.cluster import TIMINGS, ClientPoller, Cluster, running_cluster
from tests.harness.relay import LossyLink

M, S = Role.MASTER, Role.SLAVE
PROFILES: dict[str, dict[str, Any]] = {"default": {}, "fast": TIMINGS}


def inject(cluster: Cluster, injection: str) -> list[int]:
    if injection == "kill":
        cluster.pair.pop3[M].kill(signal.SIGKILL)
        return []
    if injection == "link-down":
        cluster.net.cut_off("master")
        return []
    return cluster.net.signal_all("master", signal.SIGSTOP)


def trial(profile: str, injection: str, rng: random.Random) -> dict[str, Any]:
    with running_cluster(PROFILES[profile]) as cluster:
        poller = ClientPoller(cluster.pair, cluster.net.ns("client"))
        poller.start()
        interval = float({**settings_of("default"), **PROFILES[profile]}["PROBE_INTERVAL"])
        time.sleep(1.0 + rng.uniform(0, interval))
        injected = time.monotonic()
        frozen = inject(cluster, injection)
        try:
            cluster.pair.wait_for(S, ("ACTIVE", "FAILED"), timeout=900)
            end = time.monotonic() + 10
            while poller.first("slave", injected) is None and time.monotonic() < end:
                time.sleep(0.02)
            time.sleep(1.0)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        time.sleep(0.5 if not frozen else 3.0)  # a thawed master is watched a little longer
        poller.stop()
        first = poller.first("slave", injected)
        if first is None:
            raise RuntimeError(f"{profile}/{injection}: the slave never answered\n{cluster.pair.logs()}")
        claim = next(e for e in cluster.pair.journal(S) if e["to"] == "STARTING")
        return {
            "time": first - injected,
            "master_after": poller.count("master", first),
            "how": claim["reason"].split(":")[0][:60],
        }


def false_failovers(profile: str, minutes: float) -> tuple[int, float]:
    """Failovers of a healthy master while its links lose 20 % of their frames."""
    claims, elapsed = 0, 0.0
    while elapsed < minutes * 60:
        with running_cluster(PROFILES[profile]) as cluster:
            links = [
                LossyLink(cluster.net, "master", other, 0.2, 0.0, max_duration=minutes * 60 + 60, seed=n)
                for n, other in enumerate(("slave", "client"))
            ]
            for link in links:
                link.start()
            start = time.monotonic()
            try:
                while time.monotonic() - start < minutes * 60 - elapsed:
                    if any(e["to"] == "FAILING_OVER" for e in cluster.pair.journal(S)):
                        claims += 1
                        break
                    time.sleep(0.5)
            finally:
                elapsed += time.monotonic() - start
                for link in links:
                    link.stop()
    return claims, elapsed / 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--profile", choices=["fast", "default", "both"], default="both")
    parser.add_argument("--injections", default="kill,link-down,freeze")
    parser.add_argument("--loss-minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    profiles = ["default", "fast"] if args.profile == "both" else [args.profile]
    rows = []
    for profile in profiles:
        for injection in args.injections.split(","):
            results = []
            for i in range(args.trials):
                r = trial(profile, injection, rng)
                results.append(r)
                print(
                    f"  {profile} {injection} {i + 1}/{args.trials}: {r['time']:.3f} s, {r['master_after']} master "
                    f"answers after the switch ({r['how']})",
                    file=sys.stderr,
                    flush=True,
                )
            times = [r["time"] for r in results]
            rows.append(
                {
                    "profile": profile,
                    "injection": injection,
                    "trials": len(times),
                    "min": min(times),
                    "median": statistics.median(times),
                    "p95": percentile(times, 0.95),
                    "max": max(times),
                    "master_after": sum(r["master_after"] for r in results),
                }
            )
        claims, minutes = false_failovers(profile, args.loss_minutes)
        rows.append(
            {"profile": profile, "injection": "20% loss (false failovers)", "claims": claims, "minutes": minutes}
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(
        "failover on three hosts (network namespaces), injection -> first complete POP3 exchange answered by "
        "the slave through HAProxy; client every 20 ms; seed",
        args.seed,
    )
    print(
        f"{'profile':8} {'injection':10} {'n':>2} {'min':>7} {'median':>7} {'p95':>7} {'max':>7}  master answers after"
    )
    for r in rows:
        if "claims" in r:
            print(
                f"{r['profile']:8} 20% loss on the master's links for {r['minutes']:.1f} min: {r['claims']} false "
                f"failover(s), {r['claims'] / max(r['minutes'], 1e-9):.2f} per minute"
            )
        else:
            print(
                f"{r['profile']:8} {r['injection']:10} {r['trials']:>2} {r['min']:7.3f} {r['median']:7.3f} "
                f"{r['p95']:7.3f} {r['max']:7.3f}  {r['master_after']}"
            )
    for profile in profiles:
        settings = {k: v for k, v in {**settings_of("default"), **PROFILES[profile]}.items() if "PORT" not in k}
        print(f"settings {profile}: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
