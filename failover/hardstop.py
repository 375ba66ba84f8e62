"""Stop the master's service hard and at once, when its lease ends: SIGKILL of the process
named by SERVICE_PIDFILE with every process below it and in its process group (a service is a
tree: Dovecot's master and its login and auth processes), or the operator's HARD_STOP_SCRIPTS
for a service that is not one tree. Verified down within HARD_STOP_TIMEOUT, or reported not.

A graceful stop may take SCRIPT_TIMEOUT per script; a lease gives no such time. The shutdown
scripts still run afterwards (the machine's STOPPING), for whatever cleaning up they do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil

from failover.config import Config
from failover.machine import Role
from failover.scripts import run_scripts
from failover.service import pid as service_pid


def _tree(pid: int) -> list[psutil.Process]:
    """The service's processes: `pid`, its descendants, and the members of its process group
    when it leads one of its own (never our own group: that would be lhcd itself)."""
    if pid <= 1 or pid == os.getpid():
        return []
    try:
        top = psutil.Process(pid)
        found = {p.pid: p for p in [top, *top.children(recursive=True)]}
        group = os.getpgid(pid)
    except (psutil.Error, OSError):
        return []
    if group == pid and group != os.getpgrp():
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(p.pid) == group:
                    found.setdefault(p.pid, p)
    found.pop(os.getpid(), None)
    return list(found.values())


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_tree(pid: int, timeout: float) -> tuple[bool, str]:
    """SIGKILL the tree of `pid` until none of it is left, for at most `timeout` seconds. The
    tree is taken once, then grown by the children of whatever survives a round (a fork during
    the kill; the children of a killed parent are reparented, not gone)."""
    if pid <= 1 or pid == os.getpid():
        return False, f"refusing to kill pid {pid} (SERVICE_PIDFILE names no service)"
    end = time.monotonic() + timeout
    procs = {p.pid: p for p in _tree(pid)}
    if not procs and psutil.pid_exists(pid):  # its tree could not be read: the pid itself at least
        with contextlib.suppress(psutil.Error):
            procs[pid] = psutil.Process(pid)
    while True:
        alive = [p for p in procs.values() if _running(p)]
        for p in alive:
            with contextlib.suppress(psutil.Error):
                procs.update((c.pid, c) for c in p.children(recursive=True) if c.pid != os.getpid())
        alive = [p for p in procs.values() if _running(p)]
        if not alive:
            return True, f"killed {len(procs)} process(es) of pid {pid} with SIGKILL"
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(alive, timeout=max(0.0, min(0.05, end - time.monotonic())))
        if time.monotonic() >= end and any(_running(p) for p in alive):
            still = sum(_running(p) for p in alive)
            return False, f"{still} process(es) of pid {pid} still run {timeout:g} s after SIGKILL"


def _service_pid(config: Config) -> int | None:
    """The pid in SERVICE_PIDFILE if its process runs and is not younger than the file: a
    process started after the pid file was written is another one that got a reused pid."""
    pid = service_pid(config, Role.MASTER)
    if pid is None or config.SERVICE_PIDFILE is None:
        return None
    try:
        process = psutil.Process(pid)
        if not _running(process) or process.create_time() > os.stat(config.SERVICE_PIDFILE).st_mtime + 1.0:
            return None
    except (psutil.Error, OSError):
        return None
    return pid


def hard_stop(config: Config, env: dict[str, str]) -> tuple[bool, str]:
    """Kill the master's service now, all within HARD_STOP_TIMEOUT; (verified down, what was done)."""
    end = time.monotonic() + config.HARD_STOP_TIMEOUT
    ran = ""
    if config.HARD_STOP_SCRIPTS:
        # one budget for all: each script (and the kill after them) gets an equal share of it
        shares = len(config.HARD_STOP_SCRIPTS) + (1 if config.SERVICE_PIDFILE else 0)
        result = run_scripts(config.HARD_STOP_SCRIPTS, config.HARD_STOP_TIMEOUT / shares, config.base_dir, env)
        ran = f"HARD_STOP_SCRIPTS {'ok' if result.ok else 'FAILED'}: {result.summary()}"
        if config.SERVICE_PIDFILE is None:
            return result.ok, ran
        ran += "; then "
    pid = _service_pid(config)
    if pid is None:
        return True, f"{ran}its process is not running"
    ok, killed = kill_tree(pid, max(0.05, end - time.monotonic()))
    return ok, ran + killed
