"""Run the operator's scripts: each in its own process group, with a timeout, output captured.

Commands are shell command lines (the Perl tool's SHUTDOWN_SCRIPTS contained redirections),
run by /bin/sh in the config file's directory, one after the other; the first failure stops the
list. A script that outlives its timeout gets SIGTERM to its whole process group, then SIGKILL
after a grace period, and is reported with what it printed. Output goes to a temporary file,
not a pipe, so a daemon the script starts in the background cannot hold the run open.
Every script finds its own timeout in FAILOVER_SCRIPT_TIMEOUT (seconds), so a stop script can
give a slow service a grace period that still ends in time (scripts/dovecot-stop.sh does).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from failover.sanitize import clean

OUTPUT_TAIL = 4096  # bytes of output kept per script
ENV_VALUE_LIMIT = 4096  # characters of one FAILOVER_* value
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL


@dataclass(frozen=True)
class ScriptResult:
    command: str
    returncode: int | None  # None when it was killed after its timeout
    timed_out: bool
    duration: float
    output: str
    error: str = ""  # it could not be started at all (and why)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.error

    def summary(self) -> str:
        if self.error:
            outcome = f"could not be started: {self.error}"
        elif self.timed_out:
            outcome = f"killed after its {self.duration:.1f} s timeout"
        elif self.returncode is not None and self.returncode < 0:
            outcome = f"killed by signal {-self.returncode}"
        else:
            outcome = f"exit {self.returncode} in {self.duration:.2f} s"
        last = self.output.strip().splitlines()[-1:] if self.output.strip() else []
        return f"{self.command}: {outcome}" + (f" (last output: {last[0][:200]})" if last and not self.ok else "")


@dataclass(frozen=True)
class ScriptsResult:
    results: tuple[ScriptResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def summary(self) -> str:
        return "; ".join(r.summary() for r in self.results) or "no scripts"


def stop_group(proc: subprocess.Popen[bytes], grace: float = KILL_GRACE) -> None:
    """SIGTERM to the process group led by `proc`, then SIGKILL after `grace` seconds; also
    SIGKILL whatever of the group outlives its leader."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            # the leader is gone; make sure the rest of its group is too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


AGENT_ONLY = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"})


def script_environment(env: Mapping[str, str] | None, timeout: float) -> dict[str, str]:
    """The environment of a script. Our values (FAILOVER_*) carry text from peers and operators:
    each is one clean line of at most ENV_VALUE_LIMIT characters, since a NUL would make Popen
    raise and a newline would split what a script reads with `read`."""
    ours = {name: clean(value, ENV_VALUE_LIMIT) for name, value in (env or {}).items()}
    # systemd's words to the agent are not the service's: a service built with sd_notify would
    # otherwise send READY=1 or watchdog kicks on the agent's behalf
    inherited = {k: v for k, v in os.environ.items() if k not in AGENT_ONLY}
    return {**inherited, **ours, "FAILOVER_SCRIPT_TIMEOUT": f"{timeout:g}"}


def run_script(command: str, timeout: float, cwd: str, env: Mapping[str, str] | None = None) -> ScriptResult:
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=cwd,
                env=script_environment(env, timeout),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        except (OSError, ValueError) as e:  # no /bin/sh, cwd gone, fd or process limits, ...
            return ScriptResult(command, None, False, time.monotonic() - start, "", clean(e, 300))
        timed_out = False
        try:
            returncode: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out, returncode = True, None
            stop_group(proc)
        duration = time.monotonic() - start
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - OUTPUT_TAIL))
        output = out.read().decode(errors="replace")
    return ScriptResult(command, returncode, timed_out, duration, output)


def run_scripts(
    commands: Sequence[str], timeout: float, cwd: str, env: Mapping[str, str] | None = None
) -> ScriptsResult:
    """Run each command in order; stop at the first that fails or times out."""
    results = []
    for command in commands:
        result = run_script(command, timeout, cwd, env)
        results.append(result)
        if not result.ok:
            break
    return ScriptsResult(tuple(results))
