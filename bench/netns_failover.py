"""Failover on three hosts (network namespaces): injection -> first answer of the slave through HAProxy.

Per profile (default = the shipped defaults, fast = TIMINGS of tests/harness/cluster.py; the
settings are printed), on a master, a slave and a client with HAProxy (tests/harness/cluster.py):

1. Failover time: N trials per injection, each on a fresh cluster; a client inside the client
   namespace does a full POP3 exchange through HAProxy every 20 ms, and

       failover time = first complete exchange answered by the slave - the injection

   Injections: kill (kill -9 of the master's Dovecot), link-down (both master links down),
   freeze (every master process SIGSTOPped, thawed after the switch), partition (the
   master-slave link down: both still reach HAProxy), cut-m2s and cut-s2m (a relay replaces the
   master-slave link 1 s before; the injection drops every IPv4 frame the master, or the slave,
   sends on it: contact is two-way, so both fail over). slave-freeze (every slave process
   SIGSTOPped: a dead standby) must NOT fail over nor stop the master (it keeps its lease on
   HAProxy's word): it is watched for max(5 s, 2 x HEARTBEAT_TIMEOUT) and counts as correct if
   nothing moved, the master still serves and the client never got the slave.
2. Per trial that fails over: whether the old master's service was verified down before the
   slave's startup scripts ran: the master's first journal entry after the injection with event
   "hard-stop" (reason "verified down") or to INACTIVE, against the slave's first to STARTING
   (wall-clock milliseconds of one machine; the margin is printed); that the master's service
   does not run at the end; and the master's answers after the slave's first (must be 0). A
   frozen master journals only once thawed (after the slave started): for freeze the order
   column counts, besides, trials where the service was SIGSTOPped from the injection on.
3. False failovers of a healthy master whose two links lose 20 % of their frames, and whose two
   links delay every frame by 200 ms, --loss-minutes each: slave claims (FAILING_OVER) and master
   self-stops (its lease expired), per minute, the median time to the first, and the lowest
   lease_left lhcd showed (sampled every 0.2 s); the relays run clean for 1 s before the loss or
   delay starts (a relay swapped in with the delay already set adds an ARP round trip over it,
   a gap longer than the fast LEASE_TIME), and a fresh cluster goes on after each event.
4. Cost: CPU (% of one core) and RSS / USS of lhcd and rhcd on a healthy fast cluster, psutil,
   over --cost-seconds (0: skip).

    .venv/bin/python bench/netns_failover.py [--trials 5] [--profile fast|default|both]
        [--injections kill,link-down,freeze,partition,cut-m2s,cut-s2m,slave-freeze] [--loss-minutes 1]
        [--cost-seconds 20] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository: tests.harness
from bench.failover_time import percentile
from failover.config import KEYS
from failover.lab.pair import PROFILES as LAB_PROFILES
from failover.machine import Role
from tests.harness.cluster import TIMINGS, ClientPoller, Cluster, running_cluster
from tests.harness.relay import LossyLink

M, S = Role.MASTER, Role.SLAVE
PROFILES: dict[str, dict[str, Any]] = {"default": {}, "fast": TIMINGS}
INJECTIONS = ("kill", "link-down", "freeze", "partition", "cut-m2s", "cut-s2m", "slave-freeze")
CUTS = {"cut-m2s": "master", "cut-s2m": "slave"}
MOVES = ("FAILING_OVER", "FENCING", "STARTING", "STOPPING")  # any of these in slave-freeze is a failure
SHOWN = sorted({*TIMINGS, "LEASE", "RESTART_LIMIT", "ON_ACK_TIMEOUT"})


def settings(profile: str) -> dict[str, Any]:
    """What the cluster runs with: the shipped defaults, the lab pair's, then the profile's."""
    return {**{k.name: k.default for k in KEYS}, **LAB_PROFILES["default"], **PROFILES[profile]}


def _when(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))


def _since(entries: list[dict[str, Any]], mono: float) -> list[dict[str, Any]]:
    return [e for e in entries if float(e.get("mono", 0.0)) >= mono - 0.005]


def order(cluster: Cluster, injected: float) -> dict[str, Any]:
    """Was the master's service verified down before the slave's startup scripts ran?"""
    pair = cluster.pair
    stops = [
        e
        for e in _since(pair.journal(M), injected)
        if e.get("event") == "hard-stop" or (e.get("to") == "INACTIVE" and e.get("from") != "INACTIVE")
    ]
    starts = [e for e in _since(pair.journal(S), injected) if e.get("to") == "STARTING"]
    if not starts:
        return {"ordered": False, "margin": None, "by": "the slave never started"}
    if not stops:
        return {"ordered": False, "margin": None, "by": "no hard-stop / INACTIVE in the master's journal"}
    stop, start = stops[0], starts[0]
    verified = stop.get("event") != "hard-stop" or "NOT verified" not in str(stop.get("reason", ""))
    margin = (_when(start) - _when(stop)).total_seconds()
    by = "hard-stop" if stop.get("event") == "hard-stop" else "INACTIVE"
    return {
        "ordered": verified and margin > 0,
        "margin": margin,
        "by": by,
        "stop": stop["time"],
        "start": start["time"],
    }


def inject(cluster: Cluster, injection: str, relay: LossyLink | None) -> list[int]:
    if injection == "kill":
        cluster.pair.pop3[M].kill(signal.SIGKILL)
    elif injection == "link-down":
        cluster.net.cut_off("master")
    elif injection == "partition":
        cluster.net.link("master", "slave", up=False)  # both still reach the client (HAProxy)
    elif injection in CUTS:
        assert relay is not None
        relay.cut_from = CUTS[injection]
    elif injection == "freeze":
        return cluster.net.signal_all("master", signal.SIGSTOP)
    elif injection == "slave-freeze":
        return cluster.net.signal_all("slave", signal.SIGSTOP)
    else:
        raise ValueError(f"unknown injection {injection!r}")
    return []


def journals(cluster: Cluster) -> str:
    return "\n".join(f"{r.value}: {json.dumps(e)}" for r in Role for e in cluster.pair.journal(r))


def _observations(cluster: Cluster) -> dict[str, Any]:
    """lhcd's status observations (lease_left, lease_renewed_by, ...)."""
    try:
        found: dict[str, Any] = json.loads(Path(cluster.pair.dir, "state", "lhcd.status.json").read_text())
        return dict(found["observations"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def largest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] without one of these answers."""
    points = [start, *sorted(t for t in times if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(points))


def watch_no_failover(cluster: Cluster, poller: ClientPoller, injected: float, window: float) -> dict[str, Any]:
    """slave-freeze: nothing may move for `window` s; the master serves on through HAProxy."""
    pair = cluster.pair
    moved: list[dict[str, Any]] = []
    while time.monotonic() - injected < window and not moved:
        moved = [e for e in _since(pair.journal(S) + pair.journal(M), injected) if e.get("to") in MOVES]
        time.sleep(0.1)
    poller.stop()
    answers = list(poller.answers)
    observations = _observations(cluster)
    master_state = pair.state(M).get("state")
    gap = largest_gap([a.time for a in answers if a.server == "master"], injected, answers[-1].time)
    result = {
        "failover": False,
        "window": window,
        "moved": [f"{e['role']} -> {e['to']}: {e.get('reason', '')[:80]}" for e in moved],
        "master_state": master_state,
        "master_running": pair.pop3[M].running(),
        "slave_running": pair.pop3[S].running(),
        "slave_answers": poller.count("slave", injected),
        "master_gap": gap,
        "renewed_by": observations.get("lease_renewed_by"),
    }
    result["ok"] = (
        not moved
        and master_state == "ACTIVE"
        and result["master_running"]
        and not result["slave_running"]
        and result["slave_answers"] == 0
    )
    return result


def trial(profile: str, injection: str, rng: random.Random) -> dict[str, Any]:
    timing = settings(profile)
    with running_cluster(PROFILES[profile]) as cluster:
        relay = None
        if injection in CUTS:  # the relay must carry the stream before the injection
            relay = LossyLink(cluster.net, "master", "slave", max_duration=1800)
            relay.start()
            time.sleep(1.0)
        poller = ClientPoller(cluster.pair, cluster.net.ns("client"))
        poller.start()
        frozen: list[int] = []
        try:
            time.sleep(1.0 + rng.uniform(0, float(timing["PROBE_INTERVAL"])))
            injected = time.monotonic()
            frozen = inject(cluster, injection, relay)
            if injection == "slave-freeze":
                return watch_no_failover(cluster, poller, injected, max(5.0, 2 * float(timing["HEARTBEAT_TIMEOUT"])))
            cluster.pair.wait_for(S, ("ACTIVE", "FAILED"), timeout=900)
            end = time.monotonic() + 10
            while poller.first("slave", injected) is None and time.monotonic() < end:
                time.sleep(0.02)
            time.sleep(1.0)
        finally:
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):  # it may have ended before the freeze
                    os.kill(pid, signal.SIGCONT)
            if frozen:
                time.sleep(3.0)  # a thawed master is watched a little longer
            if relay is not None:
                relay.stop()
        time.sleep(0.5)
        poller.stop()
        first = poller.first("slave", injected)
        if first is None:
            raise RuntimeError(f"the slave never answered\n{journals(cluster)}\n{cluster.pair.logs()}")
        claim = next(e for e in cluster.pair.journal(S) if e["to"] == "STARTING")
        result = {
            "failover": True,
            "time": first - injected,
            "master_after": poller.count("master", first),
            "master_running": cluster.pair.pop3[M].running(),
            "how": claim["reason"].split(":")[0][:60],
            "master_path": [e["to"] for e in _since(cluster.pair.journal(M), injected) if e["to"] != e["from"]],
            **order(cluster, injected),
        }
        if injection == "freeze":
            result["frozen"] = bool(frozen)  # its service could not run from the injection to the thaw
        if not (result["ordered"] or result.get("frozen")) or result["master_running"] or result["master_after"]:
            result["journals"] = journals(cluster)
        return result


def false_failovers(profile: str, minutes: float, loss: float, delay: float) -> dict[str, Any]:
    """Slave claims and master self-stops of a healthy master whose two links lose or delay frames.
    The relays run clean for 1 s first; after a claim or a self-stop a fresh cluster goes on."""
    claims = stops = 0
    elapsed, firsts, lefts = 0.0, [], []
    while elapsed < minutes * 60:
        with running_cluster(PROFILES[profile]) as cluster:
            links = [
                LossyLink(cluster.net, "master", other, max_duration=minutes * 60 + 60, seed=n)
                for n, other in enumerate(("slave", "client"))
            ]
            for link in links:
                link.start()
            time.sleep(1.0)
            for link in links:
                link.loss, link.delay = loss, delay
            start = time.monotonic()
            try:
                while time.monotonic() - start < minutes * 60 - elapsed:
                    claimed = any(e["to"] == "FAILING_OVER" for e in cluster.pair.journal(S))
                    stopped = any(e.get("event") == "lease-expired" for e in cluster.pair.journal(M))
                    left = _observations(cluster).get("lease_left")
                    if isinstance(left, (int, float)):
                        lefts.append(float(left))
                    if claimed or stopped:
                        claims, stops = claims + claimed, stops + stopped
                        firsts.append(time.monotonic() - start)
                        break
                    time.sleep(0.2)
            finally:
                elapsed += time.monotonic() - start
                for link in links:
                    link.stop()
    what = f"{loss:.0%} loss" if loss else f"{delay * 1000:.0f} ms delay"
    return {
        "profile": profile,
        "injection": what,
        "claims": claims,
        "stops": stops,
        "minutes": elapsed / 60,
        "median_to_first": statistics.median(firsts) if firsts else None,
        "min_lease_left": min(lefts, default=None),
    }


def cost(seconds: float) -> list[dict[str, Any]]:
    """CPU and memory of lhcd and rhcd on a healthy fast cluster."""
    with running_cluster(TIMINGS) as cluster:
        time.sleep(2.0)
        procs: dict[str, psutil.Process] = {}
        for name in ("lhcd", "rhcd"):
            pid = cluster.pair.daemon_pid(name)
            if pid is None:
                raise RuntimeError(f"{name} has no pid file")
            procs[name] = psutil.Process(pid)
        before = {n: p.cpu_times() for n, p in procs.items()}
        rss = dict.fromkeys(procs, 0.0)
        uss = dict.fromkeys(procs, 0.0)
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - start))))
            for n, p in procs.items():
                memory = p.memory_full_info()
                rss[n] = max(rss[n], memory.rss / 2**20)
                uss[n] = max(uss[n], memory.uss / 2**20)
        elapsed = time.monotonic() - start
        rows = []
        for n, p in procs.items():
            after = p.cpu_times()
            own = after.user + after.system - before[n].user - before[n].system
            children = after.children_user + after.children_system
            children -= before[n].children_user + before[n].children_system
            rows.append(
                {
                    "daemon": n,
                    "seconds": elapsed,
                    "cpu": 100 * own / elapsed,
                    "children_cpu": 100 * children / elapsed,
                    "rss_mb": rss[n],
                    "uss_mb": uss[n],
                    "threads": p.num_threads(),
                }
            )
        moved = [e for r in Role for e in cluster.pair.journal(r) if e.get("to") in MOVES]
        if moved:
            print(f"  cost: the healthy cluster moved: {moved}", file=sys.stderr)
        return rows


def summary(profile: str, injection: str, results: list[dict[str, Any]], errors: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"profile": profile, "injection": injection, "trials": len(results) + len(errors)}
    row["errors"] = errors
    if injection == "slave-freeze":
        row["correct"] = sum(1 for r in results if r["ok"])
        row["master_gap"] = max((r["master_gap"] for r in results), default=None)
        row["window"] = results[0]["window"] if results else None
        row["details"] = results
        return row
    times = [r["time"] for r in results]
    margins = [r["margin"] for r in results if r["margin"] is not None]
    row.update(
        {
            "ok": len(times),
            "min": min(times) if times else None,
            "median": statistics.median(times) if times else None,
            "p95": percentile(times, 0.95) if times else None,
            "max": max(times) if times else None,
            "ordered": sum(1 for r in results if r["ordered"]),
            "frozen": sum(1 for r in results if r.get("frozen") and not r["ordered"]),
            "min_margin": min(margins) if margins else None,
            "master_down": sum(1 for r in results if not r["master_running"]),
            "master_after": sum(r["master_after"] for r in results),
            "master_failed": sum(1 for r in results if "FAILED" in r["master_path"]),
            "bad": [r for r in results if "journals" in r],
        }
    )
    return row


def _f(value: float | None, width: int = 7) -> str:
    return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"


def print_rows(rows: list[dict[str, Any]], costs: list[dict[str, Any]], profiles: list[str], seed: int) -> None:
    print(
        "failover on three hosts (network namespaces), injection -> first complete POP3 exchange answered by "
        f"the slave through HAProxy; client every 20 ms; seed {seed}"
    )
    print(
        f"{'profile':8} {'injection':12} {'n':>2} {'min':>7} {'median':>7} {'p95':>7} {'max':>7}  "
        f"{'M down<S start':14} {'min margin':>10} {'M down at end':13} {'M answers after':>15}"
    )
    for r in rows:
        head = f"{r['profile']:8} {r['injection']:12} {r.get('trials', 0):>2}"
        errors = f"  ERRORS {len(r['errors'])}" if r.get("errors") else ""
        if "claims" in r:
            per = 1 / max(r["minutes"], 1e-9)
            print(
                f"{r['profile']:8} {r['injection']} on the master's two links for {r['minutes']:.1f} min: "
                f"{r['claims']} slave claim(s) ({r['claims'] * per:.2f}/min), {r['stops']} master lease "
                f"expiry(ies) ({r['stops'] * per:.2f}/min)"
                + (f"; median {r['median_to_first']:.1f} s to the first" if r["median_to_first"] is not None else "")
                + f"; lowest lease left seen {_f(r['min_lease_left'], 0)} s"
            )
        elif r["injection"] == "slave-freeze":
            verdict = "no failover (correct)" if r["correct"] == r["trials"] else "FAILED"
            print(
                f"{head}  {verdict}: {r['correct']}/{r['trials']} trials correct over {r['window'] or 0:.0f} s each; "
                f"longest client gap without a master answer {_f(r['master_gap'], 0)} s{errors}"
            )
        else:
            frozen = f" (+{r['frozen']} frozen)" if r["frozen"] else ""
            ms = f"{r['min_margin'] * 1000:.0f} ms" if r["min_margin"] is not None else "-"
            print(
                f"{head} {_f(r['min'])} {_f(r['median'])} {_f(r['p95'])} {_f(r['max'])}  "
                f"{str(r['ordered']) + '/' + str(r['ok']) + frozen:14} {ms:>10} "
                f"{str(r['master_down']) + '/' + str(r['ok']):13} {r['master_after']:>15}{errors}"
                + (f"  (master passed through FAILED in {r['master_failed']})" if r["master_failed"] else "")
            )
    if costs:
        print(f"cost on a healthy fast cluster over {costs[0]['seconds']:.0f} s (psutil):")
        for c in costs:
            print(
                f"  {c['daemon']}: CPU {c['cpu']:.2f} % of one core (children {c['children_cpu']:.2f} %), "
                f"RSS {c['rss_mb']:.1f} MB, USS {c['uss_mb']:.1f} MB, {c['threads']} threads"
            )
    for profile in profiles:
        shown = settings(profile)
        print(f"settings {profile}: " + ", ".join(f"{k}={shown[k]}" for k in SHOWN if k in shown))
    print("all: TRIGGER_COMMUNICATION_LOSS=True, LOAD_BALANCER=HAProxy (runtime API over TCP), WITNESS=HAProxy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--profile", choices=["fast", "default", "both"], default="both")
    parser.add_argument("--injections", default=",".join(INJECTIONS))
    parser.add_argument("--loss-minutes", type=float, default=1.0)
    parser.add_argument("--cost-seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    injections = [i for i in args.injections.split(",") if i]
    unknown = [i for i in injections if i not in INJECTIONS]
    if unknown:
        parser.error(f"unknown injection(s) {unknown}: choose from {','.join(INJECTIONS)}")
    rng = random.Random(args.seed)
    profiles = ["default", "fast"] if args.profile == "both" else [args.profile]
    rows: list[dict[str, Any]] = []
    for profile in profiles:
        for injection in injections:
            results: list[dict[str, Any]] = []
            errors: list[str] = []
            for i in range(args.trials):
                where = f"  {profile} {injection} {i + 1}/{args.trials}"
                try:
                    r = trial(profile, injection, rng)
                except Exception as error:  # one broken trial is reported, the run goes on
                    errors.append(str(error)[:20000])
                    print(f"{where}: ERROR {error}", file=sys.stderr, flush=True)
                    continue
                results.append(r)
                if r["failover"]:
                    line = (
                        f"{r['time']:.3f} s, {r['master_after']} master answers after; master down before the "
                        f"slave's start: {r['ordered']} ({r['by']}, margin "
                        f"{'-' if r['margin'] is None else format(r['margin'] * 1000, '.0f')} ms)"
                        f"{', frozen' if r.get('frozen') else ''}; master service running at the end: "
                        f"{r['master_running']}; master {'>'.join(r['master_path'])} ({r['how']})"
                    )
                else:
                    line = (
                        f"{'correct' if r['ok'] else 'WRONG'}: moved {r['moved'] or 'nothing'}, master "
                        f"{r['master_state']} running={r['master_running']}, slave running={r['slave_running']}, "
                        f"{r['slave_answers']} slave answers, longest master gap {r['master_gap']:.3f} s, "
                        f"lease renewed by {r['renewed_by']}"
                    )
                print(f"{where}: {line}", file=sys.stderr, flush=True)
                if "journals" in r:
                    print(f"{where}: SUSPICIOUS, journals:\n{r['journals']}", file=sys.stderr, flush=True)
            rows.append(summary(profile, injection, results, errors))
        for loss, delay in ((0.2, 0.0), (0.0, 0.2)):
            if args.loss_minutes > 0:
                rows.append(false_failovers(profile, args.loss_minutes, loss, delay))
                print(f"  {profile}: {rows[-1]}", file=sys.stderr, flush=True)
    costs = cost(args.cost_seconds) if args.cost_seconds > 0 else []
    if args.json:
        print(
            json.dumps(
                {"rows": rows, "cost": costs, "settings": {p: settings(p) for p in profiles}}, indent=1, default=str
            )
        )
        return 0
    print_rows(rows, costs, profiles, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
