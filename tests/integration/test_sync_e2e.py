"""SYNC_FILES end to end: real sshd on loopback, real agents, the two hosts' file trees in two
directories (SYNC_ROOT), as on two machines (issue 6)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from failover.lab.pair import LoopbackPair
from failover.machine import Role
from tests.conftest import put
from tests.harness.pair import ssh_settings, start_pair
from tests.harness.sshd import SshdInstance

M, S = Role.MASTER, Role.SLAVE
MakePair = Callable[..., LoopbackPair]
SECRET = "s3cr3t-never-printed"


def roots(pair: LoopbackPair) -> dict[Role, Path]:
    return {role: Path(pair.dir, f"{role.value}-root") for role in Role}


def sync_pair(make_pair: MakePair, sshd: SshdInstance, entries: Sequence[object], **settings: object) -> LoopbackPair:
    pair = make_pair(start=False, **ssh_settings(sshd))
    r = roots(pair)
    for root in r.values():
        root.mkdir()
    pair.write_config(SYNC_FILES=entries, SYNC_ROOT={role.value: str(path) for role, path in r.items()}, **settings)
    return pair


def start_idle(pair: LoopbackPair) -> None:
    """Start, and let the automatic sync's first pass (of an empty tree) finish; with
    SYNC_INTERVAL 3600 it does nothing more during the test."""
    start_pair(pair)
    result = Path(pair.dir, "state", "sync.json")
    end = time.monotonic() + 20
    while time.monotonic() < end and "auto_ok" not in (result.read_text() if result.exists() else ""):
        time.sleep(0.05)
    assert "auto_ok" in result.read_text()


def test_check_tells_equal_different_missing_and_never_prints_a_secret(make_pair: MakePair, sshd: SshdInstance) -> None:
    pair = sync_pair(make_pair, sshd, ["/etc/app", {"path": "/etc/secret.key", "mode": "verify"}], SYNC_INTERVAL=3600)
    m, s = roots(pair)[M], roots(pair)[S]
    start_idle(pair)
    for root in (m, s):
        put(root, "etc/app/same.conf", "same\n")
    put(m, "etc/app/changed.conf", "new\n")
    put(s, "etc/app/changed.conf", "old\n")
    put(m, "etc/app/only-active.conf", "x\n")
    put(s, "etc/app/only-standby.conf", "y\n")
    put(m, "etc/secret.key", SECRET + "-master\n", 0o600)
    put(s, "etc/secret.key", SECRET + "-slave\n", 0o600)
    check = pair.failover("sync", "--check", role=M)
    out = check.stdout + check.stderr
    assert check.returncode == 1, out
    lines = table(check.stdout)
    assert lines["/etc/app/same.conf"].startswith("equal")
    assert lines["/etc/app/changed.conf"].startswith("different") and "SHA-256" in lines["/etc/app/changed.conf"]
    assert lines["/etc/app/only-active.conf"].startswith("missing on standby")
    assert lines["/etc/app/only-standby.conf"].startswith("missing on active")
    assert lines["/etc/secret.key"].startswith("different") and "verify" in lines["/etc/secret.key"]
    assert SECRET not in out
    assert "4 of 6 paths differ" in check.stderr
    wrong_host = pair.failover("sync", "--check", role=S)
    assert wrong_host.returncode == 1 and "sync runs on the ACTIVE host" in wrong_host.stderr


def test_full_sync_plans_then_copies_deletes_keeps_prev_and_substitutes(
    make_pair: MakePair, sshd: SshdInstance
) -> None:
    entries = [
        "/etc/app",
        {"path": "/etc/listen.conf", "substitute": {"10.0.0.1": "10.0.0.2"}},
        {"path": "/etc/secret.key", "mode": "verify"},
    ]
    pair = sync_pair(make_pair, sshd, entries, SYNC_INTERVAL=3600)
    m, s = roots(pair)[M], roots(pair)[S]
    start_idle(pair)
    put(m, "etc/app/a.conf", "new a\n", 0o640)
    put(s, "etc/app/a.conf", "old a\n")
    put(m, "etc/app/sub/b.conf", "b\n")
    put(s, "etc/app/stale.conf", "gone soon\n")
    put(m, "etc/listen.conf", "listen 10.0.0.1:110\n")
    put(m, "etc/secret.key", SECRET + "-m\n", 0o600)
    put(s, "etc/secret.key", SECRET + "-s\n", 0o600)
    dry = pair.failover("sync", "--full", "--dry-run", role=M)
    assert dry.returncode == 0, dry.stderr
    assert "delete /etc/app/stale.conf" in dry.stdout and "dry run" in dry.stdout
    assert (s / "etc/app/stale.conf").exists() and (s / "etc/app/a.conf").read_text() == "old a\n"
    full = pair.failover("sync", "--full", role=M)
    assert full.returncode == 0, full.stdout + full.stderr
    assert (s / "etc/app/a.conf").read_text() == "new a\n" and (s / "etc/app/a.conf").stat().st_mode & 0o777 == 0o640
    assert (s / "etc/app/a.conf.failover-prev").read_text() == "old a\n"
    assert (s / "etc/app/sub/b.conf").read_text() == "b\n" and not (s / "etc/app/stale.conf").exists()
    assert (s / "etc/listen.conf").read_text() == "listen 10.0.0.2:110\n"
    assert (m / "etc/listen.conf").read_text() == "listen 10.0.0.1:110\n"
    assert (s / "etc/secret.key").read_text() == SECRET + "-s\n"  # verify: never copied
    assert SECRET not in full.stdout + full.stderr
    assert not list(s.rglob(".failover-tmp-*"))
    check = pair.failover("sync", "--check", role=M)
    statuses = {path: line.split()[0] for path, line in table(check.stdout).items()}
    assert [p for p, st in statuses.items() if st != "equal"] == ["/etc/secret.key"]  # only the secret differs
    assert "file sync: last check DIFFERENT" in pair.failover("status").stdout
    checked = pair.failover("check", role=M)
    assert checked.returncode == 0 and "SYNC_FILES: 1 of 6 differ: /etc/secret.key" in checked.stderr
    refused = pair.failover("switchover", "--yes")
    assert refused.returncode == 1 and "not in sync" in refused.stderr and pair.state(S)["state"] == "STANDBY"


def test_a_changed_file_is_synced_automatically_and_the_direction_follows_the_active_host(
    make_pair: MakePair, sshd: SshdInstance
) -> None:
    pair = sync_pair(make_pair, sshd, ["/etc/app"], SYNC_INTERVAL=0.5)
    m, s = roots(pair)[M], roots(pair)[S]
    put(m, "etc/app/one.conf", "1\n")
    start_pair(pair)
    wait_file(s / "etc/app/one.conf", "1\n", 10)  # the first pass sends what differs
    put(m, "etc/app/one.conf", "2\n")
    started = time.monotonic()
    wait_file(s / "etc/app/one.conf", "2\n", 10)
    print(f"automatic sync of one changed file took {time.monotonic() - started:.2f} s (SYNC_INTERVAL 0.5)")
    assert time.monotonic() - started < 0.5 + 3.0
    pair.pop3[M].kill(signal.SIGKILL)  # a failover: the slave becomes ACTIVE
    pair.wait_for(S, "ACTIVE", timeout=30)
    put(s, "etc/app/one.conf", "3 from the new active host\n")
    wait_file(m / "etc/app/one.conf", "3 from the new active host\n", 10)
    time.sleep(1.5)
    assert (s / "etc/app/one.conf").read_text() == "3 from the new active host\n"  # no loop back


def test_a_dead_peer_leaves_the_old_file_fires_the_failure_script_and_pauses(
    make_pair: MakePair, sshd: SshdInstance
) -> None:
    pair = sync_pair(make_pair, sshd, ["/data"], SYNC_INTERVAL=0.3, SYNC_FAILURE_LIMIT=2)
    Path(pair.dir, "on-failure").write_text('#!/bin/sh\necho "$FAILOVER_REASON" >> sync-failures.log\n')
    os.chmod(Path(pair.dir, "on-failure"), 0o755)
    pair.write_config(SYNC_FAILURE_SCRIPTS=["./on-failure"])
    m, s = roots(pair)[M], roots(pair)[S]
    put(m, "data/big.bin", "")
    put(s, "data/big.bin", "old\n")
    start_pair(pair)
    wait_file(s / "data/big.bin", "", 10)
    with open(m / "data/big.bin", "wb") as f:
        f.write(os.urandom(64 * 1024 * 1024))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(p.stat().st_size for p in s.rglob(".failover-tmp-*")):
        time.sleep(0.01)
    kill_sshd(sshd)  # mid-transfer: part of the file has arrived
    log = Path(pair.dir, "sync-failures.log")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "PAUSED" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    assert "sync to the standby failed" in log.read_text() and "PAUSED" in log.read_text()
    assert (s / "data/big.bin").read_text() == ""  # the old version, whole
    leftovers = list(s.rglob(".failover-tmp-*"))
    assert leftovers, "the kill left no temp file: the transfer was not cut"
    # no byte of a file in transit is readable by others (sftp-server creates files 0644)
    assert [oct(p.stat().st_mode & 0o777) for p in leftovers if p.stat().st_size] == ["0o600"]
    assert "automatic: PAUSED" in pair.failover("status").stdout
    sshd.start()
    full = pair.failover("sync", "--full", role=M, timeout=120)
    assert full.returncode == 0, full.stderr
    assert (s / "data/big.bin").stat().st_size == 64 * 1024 * 1024
    assert not list(s.rglob(".failover-tmp-*"))  # the full sync removed what the kill left


def test_a_file_over_100_mb_is_streamed(make_pair: MakePair, sshd: SshdInstance) -> None:
    pair = sync_pair(make_pair, sshd, ["/data"])
    m, s = roots(pair)[M], roots(pair)[S]
    size = 120 * 1024 * 1024
    with open(put(m, "data/huge.bin", ""), "wb") as f:
        for _ in range(size // (1024 * 1024)):
            f.write(os.urandom(1024 * 1024))
    start_pair(pair)
    pair.stop_agents(M)  # only the command below sends it
    pair.stop_agents(S)
    command = [sys.executable, "-m", "failover.cli", "--config", pair.config_path, "--role", "master", "sync", "--full"]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command], capture_output=True, text=True, timeout=300, cwd=pair.dir
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (s / "data/huge.bin").stat().st_size == size
    peak_mb = int(done.stdout.strip().splitlines()[-1]) / 1024
    print(f"sync --full of a 120 MB file: peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 100  # a whole-file read would be over 120 MB


def test_paths_outside_the_active_hosts_sync_entries_are_never_deleted_when_the_configs_differ(
    make_pair: MakePair, sshd: SshdInstance
) -> None:
    """Issue 10: the standby's config names more than the ACTIVE host's (REMOTE_CONFIG is its own
    file): what only the standby's config names is shown, never planned for deletion; and what the
    standby only compares ('verify' there) it refuses to delete, by path."""
    pair = sync_pair(make_pair, sshd, ["/etc/app"], SYNC_INTERVAL=3600)
    m, s = roots(pair)[M], roots(pair)[S]
    standby_config = Path(pair.dir, "standby_config.py")
    pair.write_config(SYNC_FILES=["/etc/app", "/etc/other", {"path": "/etc/app/local.conf", "mode": "verify"}])
    standby_config.write_text(Path(pair.config_path).read_text())
    pair.write_config(SYNC_FILES=["/etc/app"], REMOTE_CONFIG=str(standby_config))
    start_idle(pair)
    put(m, "etc/app/a.conf", "new\n")
    put(s, "etc/app/a.conf", "old\n")
    put(s, "etc/other/keep.conf", "the standby's own\n")
    put(s, "etc/app/local.conf", "only compared on the standby\n")
    dry = pair.failover("sync", "--full", "--dry-run", role=M)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "delete /etc/other" not in dry.stdout
    rows = table(dry.stdout)
    assert rows["/etc/other/keep.conf"].split()[:4] == ["missing", "on", "active", "none"]
    full = pair.failover("sync", "--full", role=M)
    assert full.returncode == 1 and "/etc/app/local.conf" in full.stderr and "verify" in full.stderr, full.stderr
    assert (s / "etc/other/keep.conf").exists() and (s / "etc/app/local.conf").exists()
    assert (s / "etc/app/a.conf").read_text() == "old\n"  # a refused batch changes nothing
    pair.write_config(SYNC_FILES=["/etc/app", "/etc/other", {"path": "/etc/app/local.conf", "mode": "verify"}])
    pair.write_config(REMOTE_CONFIG=None)  # the same config again: local.conf is 'verify' on both
    full = pair.failover("sync", "--full", role=M)
    assert full.returncode == 0, full.stdout + full.stderr
    assert (s / "etc/app/a.conf").read_text() == "new\n" and (s / "etc/app/local.conf").exists()


def test_symlinks_are_synced_as_links_never_followed_and_special_files_are_skipped(
    make_pair: MakePair, sshd: SshdInstance
) -> None:
    pair = sync_pair(make_pair, sshd, ["/etc/app"], SYNC_INTERVAL=3600)
    m, s = roots(pair)[M], roots(pair)[S]
    start_idle(pair)
    put(m, "etc/app/a.conf", "a\n")
    os.symlink("a.conf", m / "etc/app/current")
    secret = put(Path(pair.dir), "outside-secret", SECRET + "\n", 0o600)
    os.symlink(secret, m / "etc/app/outside")  # outside the synced tree: copied as a link, never read
    put(m, "etc/app/sub/b.conf", "b\n")
    os.symlink("../a.conf", m / "etc/app/sub/up")
    os.mkfifo(m / "etc/app/fifo")
    put(s, "etc/app/current", "a file where the active host has a link\n")
    os.symlink("nowhere", s / "etc/app/stale-link")
    elsewhere = Path(pair.dir, "standby-elsewhere")
    elsewhere.mkdir()
    os.symlink(elsewhere, s / "etc/app/sub")  # where the active host has a directory: never written through
    check = pair.failover("sync", "--check", role=M)
    assert check.returncode == 1 and "Traceback" not in check.stderr, check.stdout + check.stderr
    rows = table(check.stdout)
    assert rows["/etc/app/outside"].startswith("missing on standby") and rows["/etc/app/fifo"].startswith("skipped")
    assert rows["/etc/app/current"].startswith("different") and "kind" in rows["/etc/app/current"]
    full = pair.failover("sync", "--full", role=M)
    assert full.returncode == 0, full.stdout + full.stderr
    assert os.readlink(s / "etc/app/current") == "a.conf" and os.readlink(s / "etc/app/sub/up") == "../a.conf"
    assert os.readlink(s / "etc/app/outside") == str(secret) and not os.path.lexists(s / "etc/app/stale-link")
    assert not os.path.lexists(s / "etc/app/fifo") and (s / "etc/app/current.failover-prev").exists()
    assert (s / "etc/app/sub").is_dir() and not (s / "etc/app/sub").is_symlink() and not list(elsewhere.iterdir())
    assert (s / "etc/app/sub/b.conf").read_text() == "b\n"
    assert SECRET not in full.stdout + full.stderr + check.stdout + check.stderr
    check = pair.failover("sync", "--check", role=M)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "1 skipped" in check.stdout and table(check.stdout)["/etc/app/fifo"].startswith("skipped")


CRAFTED_WRAPPER = """#!/bin/sh
# the standby's `failover`, with its inventory replaced by crafted.json while that file exists
for a in "$@"; do
  if [ "$a" = sync-inventory ] && [ -f {dir}/crafted.json ]; then cat {dir}/crafted.json; exit 0; fi
done
exec {python} -m failover.cli "$@"
"""


def test_a_crafted_inventory_is_a_counted_sync_failure_and_the_automatic_sync_keeps_running(
    make_pair: MakePair, sshd: SshdInstance
) -> None:
    pair = sync_pair(make_pair, sshd, ["/etc/app"], SYNC_INTERVAL=0.3, SYNC_FAILURE_LIMIT=3)
    wrapper = Path(pair.dir, "remote-failover")
    wrapper.write_text(CRAFTED_WRAPPER.format(dir=pair.dir, python=sys.executable))
    Path(pair.dir, "on-failure").write_text('#!/bin/sh\necho "$FAILOVER_REASON" >> sync-failures.log\n')
    for script in (wrapper, Path(pair.dir, "on-failure")):
        os.chmod(script, 0o755)
    pair.write_config(REMOTE_FAILOVER=str(wrapper), SYNC_FAILURE_SCRIPTS=["./on-failure"])
    crafted = {"etc/app/a.conf": {"kind": "file", "size": 2, "mode": "0644", "uid": 0, "gid": 0, "mtime_ns": 0}}
    Path(pair.dir, "crafted.json").write_text(json.dumps(crafted))
    m, s = roots(pair)[M], roots(pair)[S]
    put(m, "etc/app/a.conf", "1\n")
    start_pair(pair)
    log = Path(pair.dir, "sync-failures.log")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "PAUSED" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    failures = log.read_text().splitlines() if log.exists() else []
    assert len(failures) == 3 and "PAUSED" in failures[-1], f"{failures}\n{pair.logs()}"
    assert all("/etc/app/a.conf" in line and "'mode'" in line for line in failures), failures
    check = pair.failover("sync", "--check", role=M)
    assert check.returncode == 1 and "'mode'" in check.stderr and "Traceback" not in check.stderr, check.stderr
    Path(pair.dir, "crafted.json").unlink()
    full = pair.failover("sync", "--full", role=M)
    assert full.returncode == 0, full.stdout + full.stderr
    put(m, "etc/app/a.conf", "2\n")
    wait_file(s / "etc/app/a.conf", "2\n", 10)  # the automatic sync is alive after all that


def test_the_automatic_sync_never_sends_a_verify_entry(make_pair: MakePair, sshd: SshdInstance) -> None:
    pair = sync_pair(make_pair, sshd, ["/etc/app", {"path": "/etc/secret.key", "mode": "verify"}], SYNC_INTERVAL=0.3)
    Path(pair.dir, "on-failure").write_text('#!/bin/sh\necho "$FAILOVER_REASON" >> sync-failures.log\n')
    os.chmod(Path(pair.dir, "on-failure"), 0o755)
    pair.write_config(SYNC_FAILURE_SCRIPTS=["./on-failure"])
    m, s = roots(pair)[M], roots(pair)[S]
    put(m, "etc/secret.key", SECRET + "-m\n", 0o600)
    put(s, "etc/secret.key", SECRET + "-s\n", 0o600)
    put(m, "etc/app/a.conf", "1\n")
    start_pair(pair)
    wait_file(s / "etc/app/a.conf", "1\n", 10)
    put(m, "etc/secret.key", SECRET + "-m changed\n", 0o600)  # a change the automatic sync sees
    put(m, "etc/app/a.conf", "2\n")
    wait_file(s / "etc/app/a.conf", "2\n", 10)
    time.sleep(1.0)
    log = Path(pair.dir, "sync-failures.log")
    assert not log.exists(), log.read_text()  # not even one failure that the next pass cleared
    result = json.loads(Path(pair.dir, "state", "sync.json").read_text())
    assert result.get("failures") == 0 and not result.get("last_error"), result
    assert (s / "etc/secret.key").read_text() == SECRET + "-s\n" and not list(s.rglob(".failover-tmp-*"))


# Runs a command and prints its peak RSS (KiB), measured by the kernel for that child alone.
PEAK_RSS = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
"""


ROW = re.compile(r"^(equal|different|missing on standby|missing on active|skipped)\s+(sync|verify|none)\s+(\S+)")


def table(stdout: str) -> dict[str, str]:
    """`failover sync --check`'s rows by path."""
    return {m.group(3): line for line in stdout.splitlines() if (m := ROW.match(line))}


def wait_file(path: Path, text: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{path} never held {text!r}\n{sync_logs(path)}")


def kill_sshd(sshd: SshdInstance) -> None:
    """kill -9 of sshd and of its per-connection children (they run in sessions of their own)."""
    assert sshd.proc is not None
    leader = psutil.Process(sshd.proc.pid)
    for proc in [*leader.children(recursive=True), leader]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    sshd.proc.wait(5)


def sync_logs(path: Path) -> str:
    """The agents' logs of the pair that `path` belongs to (for a failure's message)."""
    pair_dir = next(p for p in path.parents if (p / "log").is_dir())
    return "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted((pair_dir / "log").glob("*")))
