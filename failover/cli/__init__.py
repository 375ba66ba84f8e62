"""The `failover` command: the group, its options, and every command it has.

Each family of commands lives in its own module and imports only failover.cli.context (the
shared Context and errors), never this package, so nothing here is imported in a circle:

    check        check: validate the config (and compare SYNC_FILES on the ACTIVE host)
    status       status: both hosts, as their control servers answer
    history      history: both hosts' journals merged in time order
    daemons      start, stop: this host's daemons, each started once the one before is ready
    operations   hold, release, switchover, switchback: the operator's controls
    sync         sync, and sync-inventory / sync-commit that the standby runs over SSH
    fence        keygen, confirm-fenced, fence-self
    demo         demo: a pair on this machine and a failure to watch (failover.lab)
    units        install-units: this host's systemd units (failover.units)

`python -m failover.cli` runs it too (failover/cli/__main__.py).
"""

from __future__ import annotations

import click

from failover.cli import check, daemons, demo, fence, history, operations, status, sync, units
from failover.cli.context import BadConfig, CommandError, Context, NoAnswer, pass_context, role_argument
from failover.machine import Role

__all__ = ["BadConfig", "CommandError", "Context", "NoAnswer", "main", "pass_context", "role_argument"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="FAILOVER_CONFIG",
    default="failover_config.py",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The config file (same on both hosts).",
)
@click.option(
    "--role",
    "role_option",
    type=click.Choice([r.value for r in Role]),
    help="This host's role, when MASTER_HOST/SLAVE_HOST cannot tell (a pair on one machine).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str, role_option: str | None) -> None:
    """Two-host failover for a service that runs on one host at a time (POP3 first)."""
    ctx.obj = Context(config_path, role_option)


main.add_command(check.check)
main.add_command(status.status)
main.add_command(history.history)
main.add_command(daemons.start)
main.add_command(daemons.stop)
main.add_command(operations.hold)
main.add_command(operations.release)
main.add_command(operations.switchover)
main.add_command(operations.switchback)
main.add_command(sync.sync)
main.add_command(sync.sync_inventory)
main.add_command(sync.sync_commit)
main.add_command(fence.keygen)
main.add_command(fence.confirm_fenced)
main.add_command(fence.fence_self)
main.add_command(demo.demo)
main.add_command(units.install_units)
