"""File sync cost: `failover sync --full` and `failover sync --check` against `rsync -a` over the
same sshd on loopback, for many small files and for one big file. Prints wall time and peak RSS
of the command on the sending host (the kernel's ru_maxrss of that process tree), and the ratio.

    .venv/bin/python bench/sync.py [--files 10000] [--big-mb 1024]

rsync's comparisons: `rsync -a` from an empty standby (a full copy), `rsync -a -n -c` (a check
by checksum, like ours by SHA-256) and `rsync -a -n` (by size and mtime only).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository: tests.harness
from failover.lab.pair import LoopbackPair
from failover.lab.pop3 import make_world_readable_dir
from failover.machine import Role, State, Transition, initial_state
from failover.state import StateStore
from tests.harness.pair import ssh_settings
from tests.harness.sshd import SshdInstance

PEAK_RSS = """
import resource, subprocess, sys, time
start = time.monotonic()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
print(time.monotonic() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
if done.returncode not in (0, 1):
    sys.stderr.write(done.stderr.decode()[-2000:])
sys.exit(done.returncode)
"""


def measure(command: list[str], ok_codes: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one command."""
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], capture_output=True, text=True)
    if done.returncode not in ok_codes:
        raise SystemExit(f"{shlex.join(command[:6])} ... exited {done.returncode}: {done.stderr[-1500:]}")
    seconds, kib = done.stdout.split()
    return float(seconds), int(kib) / 1024


def make_small(root: Path, count: int) -> None:
    for i in range(count):
        path = root / "data" / f"d{i // 100:03d}" / f"f{i:05d}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(1024))


def make_big(root: Path, megabytes: int) -> None:
    path = root / "data" / "big.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        for i in range(megabytes):
            f.write(block[i % 7 :] + block[: i % 7])  # every MiB different, cheaply


def run_case(
    name: str, pair: LoopbackPair, sshd: SshdInstance, fill: Callable[[Path], None]
) -> list[tuple[str, float, float]]:
    m, s = Path(pair.dir, "master-root"), Path(pair.dir, "slave-root")
    for root in (m, s):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
    fill(m)
    ours = [sys.executable, "-m", "failover.cli", "--config", pair.config_path, "--role", "master", "sync"]
    rows = [("failover sync --full", *measure([*ours, "--full"]))]
    rows.append(("failover sync --check", *measure([*ours, "--check"])))
    shutil.rmtree(s)
    s.mkdir()
    ssh = (
        f"ssh -p {sshd.port} -i {sshd.key_file} -o UserKnownHostsFile={sshd.known_hosts} "
        "-o StrictHostKeyChecking=yes -o BatchMode=yes"
    )
    rsync = ["rsync", "-a", "-e", ssh, f"{m}/data/", f"127.0.0.1:{s}/data/"]
    rows.append(("rsync -a", *measure(rsync)))
    rows.append(("rsync -a -n -c (check by checksum)", *measure([*rsync[:2], "-n", "-c", *rsync[2:]])))
    rows.append(("rsync -a -n (check by size+mtime)", *measure([*rsync[:2], "-n", *rsync[2:]])))
    print(f"\n{name}")
    print(f"  {'command':36} {'seconds':>9} {'peak MiB':>9}")
    for label, seconds, mib in rows:
        print(f"  {label:36} {seconds:9.2f} {mib:9.1f}")
    full, check, copy, by_sum = rows[0][1], rows[1][1], rows[2][1], rows[3][1]
    print(f"  ratio failover/rsync: full copy {full / copy:.2f}x, check {check / by_sum:.2f}x (vs rsync -c)")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--big-mb", type=int, default=1024)
    args = parser.parse_args()
    if shutil.which("rsync") is None:
        raise SystemExit("rsync is not installed: run scripts/setup.sh")
    base = make_world_readable_dir("failover-bench-sync-")
    sshd = SshdInstance(os.path.join(base, "sshd"))
    sshd.start()
    pair = LoopbackPair(base_dir=os.path.join(base, "pair"))
    try:
        roots = {role.value: os.path.join(pair.dir, f"{role.value}-root") for role in Role}
        pair.write_config(SYNC_FILES=["/data"], SYNC_ROOT=roots, **ssh_settings(sshd))
        store = StateStore(os.path.join(pair.dir, "state"), Role.MASTER, "127.0.0.1")
        first = Transition(State.ACTIVE, State.ACTIVE, 0, 0, "benchmark: the master is ACTIVE", "Started")
        store.save(initial_state(Role.MASTER), first)  # `sync` runs on the ACTIVE host only
        openssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
        print(
            f"settings: loopback, {openssh}, {platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} CPUs; small: {args.files} files of 1 KiB in {max(1, args.files // 100)} "
            f"directories; big: one {args.big_mb} MiB file"
        )
        run_case(f"{args.files} small files", pair, sshd, lambda root: make_small(root, args.files))
        run_case(f"one {args.big_mb} MiB file", pair, sshd, lambda root: make_big(root, args.big_mb))
    finally:
        pair.close()
        sshd.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"\n(benchmark ran {time.monotonic() - started:.0f} s)")
    sys.exit(code)
