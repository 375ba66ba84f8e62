"""`failover status`: both hosts, as their control servers answer (or their files, when a
control server on this host does not), as text or JSON."""

from __future__ import annotations

import json

import click

from failover.cli.context import CommandError, Context, NoAnswer, fetch_status, pass_context
from failover.machine import Role
from failover.status import SCHEMA_VERSION, render


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Both hosts: role, state (ACTIVE / STANDBY / INACTIVE), term, last probe, last transitions."""
    statuses, errors = {}, {}
    for role in Role:
        try:
            statuses[role] = fetch_status(ctx.config, role)
        except CommandError as e:
            errors[role] = e.message
    if as_json:
        hosts = {r.value: statuses.get(r, {"error": errors.get(r)}) for r in Role}
        click.echo(json.dumps({"schema_version": SCHEMA_VERSION, **hosts}, indent=1))
    else:
        click.echo(render(statuses, errors))
    if not statuses:
        raise NoAnswer("neither host answered")
