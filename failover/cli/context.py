"""What every `failover` command shares: the Context (the config file and the role given on the
command line), the click errors with their exit codes, and the two look-ups several commands
make (a role's status, this host's own state). Command modules import this module only; the
group in failover/cli/__init__.py puts a Context in `ctx.obj`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import click

from failover.channel import ChannelError, request
from failover.config import Config, ConfigError, find_role, load
from failover.errors import FailoverError
from failover.machine import Role, State
from failover.protocol import ProtocolError, StatusReply, StatusRequest
from failover.state import StateError, StateStore
from failover.status import collect
from failover.status_schema import StatusError, checked


class CommandError(FailoverError, click.ClickException):
    """What a command reports to the operator: printed as it is (no "Error:" prefix, no
    traceback), exit 1. Under the project's one root, and a click exception for the exit."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


class BadConfig(CommandError):
    """The config has problems (one line each): exit 2, like `perl -cw` failing."""

    exit_code = 2


class NoAnswer(CommandError):
    exit_code = 3


@dataclass
class Context:
    config_path: str
    role_option: str | None
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load(self.config_path)
            except ConfigError as e:
                raise BadConfig("\n".join(e.lines())) from None
        return self._config

    def role(self) -> Role:
        try:
            return find_role(self.config, Role(self.role_option) if self.role_option else None)
        except ConfigError as e:
            raise BadConfig("\n".join(e.lines())) from None


role_argument = click.argument("role", type=click.Choice([r.value for r in Role]))
pass_context = click.make_pass_decorator(Context)


def fetch_status(config: Config, role: Role) -> dict[str, Any]:
    """Ask the role's control server; if it does not answer but its files are here, read them."""
    host, port = config.host_of(role), config.monitor_port_of(role)
    try:
        reply = request(host, port, config.read_secret(), StatusRequest(), config.CONTROL_TIMEOUT)
    except (ChannelError, ProtocolError, OSError) as e:
        if os.path.exists(os.path.join(config.STATE_DIR, f"{role.value}.state.json")):
            status = collect(config, role)
            status["note"] = f"control server not answering ({e}); read from local files"
            return status
        raise CommandError(f"{role} at {host}:{port}: {e}") from None
    if not isinstance(reply, StatusReply):
        raise CommandError(f"{role} at {host}:{port} answered {reply.TYPE}")
    try:
        return checked(reply.status)
    except StatusError as e:
        raise CommandError(f"{role} at {host}:{port} sent a status that cannot be read: {e}") from None


def own_state(config: Config, role: Role) -> State | None:
    """This host's state as its state file says (None: no file yet)."""
    try:
        node = StateStore(config.STATE_DIR, role, config.host_of(role)).load()
    except StateError as e:
        raise CommandError(str(e)) from None
    return node.state if node else None
