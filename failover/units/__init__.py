"""systemd units for one host's daemons, rendered from the templates beside this module.

Per role, a target and a service per daemon: failover-master.target wants failover-socketserver
and failover-lhcd, failover-slave.target wants failover-socketserver2 and failover-rhcd, and
each service is PartOf= its target, so the target starts, stops and restarts them together.
The agents (lhcd, rhcd) run with KillMode=process (their restart must not kill the service
their scripts started), no sandbox (the service would inherit it) and a WatchdogSec= their
decision loop feeds (failover.watchdog); the control servers are sandboxed. The reasons are
written in the templates, so that they are in the installed files. `failover install-units`
writes the result; rendering itself touches nothing.
"""

from __future__ import annotations

import math
import re
from importlib import resources
from string import Template

from failover.config import TRIGGER_FLAGS, Config
from failover.daemon import DAEMONS, MODULES
from failover.errors import FailoverError
from failover.machine import Role
from failover.scripts import KILL_GRACE

TARGETS = {Role.MASTER: "failover-master.target", Role.SLAVE: "failover-slave.target"}
DESCRIPTIONS = {
    "lhcd": "the master's local heart-beat daemon",
    "socketserver": "the master's control server",
    "rhcd": "the slave's remote health-check daemon",
    "socketserver2": "the slave's control server",
}
MIN_WATCHDOG = 30  # seconds: WatchdogSec is never shorter
MARGIN = 10.0  # seconds added to the longest pass (a slow disk under the journal, a loaded host)
LB_COMMANDS = 3  # commands one fence or enable sends to HAProxy (change, cut or health, read back)
# What a path may hold to go into a unit as it is: no space, quote, backslash, `$` or `%`, which
# systemd would split, unquote, expand or take for a specifier.
SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+,:@=~-]*")


class UnitError(FailoverError):
    """A unit cannot be written as asked (a path systemd would read otherwise)."""


def unit_name(daemon: str) -> str:
    return f"failover-{daemon}.service"


def loop_budget(config: Config) -> float:
    """The longest one pass of lhcd's or rhcd's decision loop can take while doing its job, in
    seconds: the actions it runs inline all have timeouts, and one event can chain several (on
    the ACK: startup scripts, the service check, the load balancer, the after-failover scripts;
    the fence chain step by step; restarts up to RESTART_LIMIT). The sum of everything any pass
    could run, so generous on purpose: the watchdog must never kill a loop that waits."""
    c = config
    scripts = (
        len(c.STARTUP_SCRIPTS)
        + len(c.SHUTDOWN_SCRIPTS)
        + len(c.RESTART_SCRIPTS) * max(1, c.RESTART_LIMIT)
        + len(c.BEFORE_FAILOVER_SCRIPTS)
        + max((len(c.trigger_scripts(t)) for t in TRIGGER_FLAGS), default=0)
        + len(c.AFTER_FAILOVER_SCRIPTS)
        + len(c.SYNC_FAILURE_SCRIPTS)
    )
    fence_steps = len(c.fence_methods()) + len(c.FENCE_SCRIPTS)  # each step (each script) FENCE_TIMEOUT
    lb = 0.0 if c.LOAD_BALANCER is None else 2 * LB_COMMANDS * c.LOAD_BALANCER.timeout  # a fence and an enable
    return (
        (c.SCRIPT_TIMEOUT + KILL_GRACE) * scripts
        + (c.FENCE_TIMEOUT + KILL_GRACE) * fence_steps
        + c.SERVICE_CHECK_TIMEOUT * (3 + c.RESTART_LIMIT)
        + lb
        + MARGIN
    )


def watchdog_sec(config: Config) -> int:
    """WatchdogSec for the agents: twice the longest pass, since the loop kicks at most every
    half interval (a pass that starts just before a kick is due must end before the interval)."""
    return max(MIN_WATCHDOG, math.ceil(2 * loop_budget(config)))


def _path(what: str, value: str) -> str:
    if not SAFE_PATH.fullmatch(value):
        raise UnitError(
            f"{what} {value!r}: a path in a unit must be absolute and hold only letters, digits and ._/+,:@=~- "
            "(systemd would split, unquote or expand the rest); move it or make a symlink"
        )
    return value


def _template(name: str) -> Template:
    return Template(resources.files(__name__).joinpath(name).read_text())


def render(config: Config, role: Role, python: str, config_path: str) -> dict[str, str]:
    """The units of `role`'s host, file name -> text: its target first, then its daemons in the
    order they start. `python` runs the daemons; `config_path` is the config they are given."""
    control, agent = DAEMONS[role]  # failover.daemon starts the control server first
    common = {
        "role": role.value,
        "target": TARGETS[role],
        "python": _path("the interpreter", python),
        "config": _path("the config", config_path),
        "workdir": _path("the working directory (the config's directory)", config.base_dir),
        "state_dir": _path("STATE_DIR", config.STATE_DIR),
        "log_dir": _path("LOG_DIR", config.LOG_DIR),
        "control_unit": unit_name(control),
        "budget": f"{loop_budget(config):g}",
        "watchdog_sec": str(watchdog_sec(config)),
    }
    units = {
        TARGETS[role]: _template("role.target.in").substitute(
            common, unit=TARGETS[role], units=" ".join(unit_name(d) for d in DAEMONS[role])
        )
    }
    for daemon in DAEMONS[role]:
        template = _template("agent.service.in" if daemon == agent else "control.service.in")
        units[unit_name(daemon)] = template.substitute(
            common, unit=unit_name(daemon), daemon=daemon, module=MODULES[daemon], description=DESCRIPTIONS[daemon]
        )
    return units
