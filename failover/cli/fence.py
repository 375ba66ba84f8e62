"""`failover keygen`, `confirm-fenced` and `fence-self`: the shared secret, the operator's word
that the master is fenced (on the slave), and the fence by ssh (on the master, run by the
slave's rcmd; failover.master_agent.fence_self does the work)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys

import click

from failover.channel import ChannelError, local_call
from failover.cli.context import CommandError, Context, pass_context
from failover.daemon import socket_path
from failover.machine import Role
from failover.master_agent import fence_self as run_fence_self
from failover.protocol import ConfirmFenced, OperatorAnswer, ProtocolError, local_request, parse_local_answer


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing secret.")
def keygen(path: str, force: bool) -> None:
    """Write a new shared secret (mode 0600). Copy the same file to both hosts."""
    if os.path.exists(path) and not force:
        raise CommandError(f"{path} exists; use --force to replace it (then copy it to the other host)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    os.chmod(path, 0o600)
    click.echo(f"wrote a new secret to {path} (mode 0600); copy it to the other host with the same mode")


@click.command("confirm-fenced")
@click.option("--term", type=int, help="The term the slave is FENCING in (default: its current term).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def confirm_fenced(ctx: Context, term: int | None, yes: bool) -> None:
    """On the slave: you made sure the master serves no one; let the slave start the service."""
    config = ctx.config
    if ctx.role() is not Role.SLAVE:
        raise CommandError("confirm-fenced runs on the slave")
    if not yes:
        click.confirm(
            "Is the master powered off or cut off from its clients (or its agents and its service stopped)? "
            "A stopped service alone is not enough: lhcd may restart it",
            abort=True,
        )
    request = ConfirmFenced(term)
    try:  # rhcd decides within fence_wait(); the margin covers the socket
        answer = parse_local_answer(
            local_call(
                socket_path(config, "rhcd"), local_request(request), config.fence_wait() + config.CONTROL_TIMEOUT
            ),
            request,
        )
    except (ChannelError, ProtocolError) as e:
        raise CommandError(f"rhcd does not answer: {e}") from None
    if not isinstance(answer, OperatorAnswer):
        raise CommandError(f"rhcd refused: {answer}")
    click.echo(f"slave is {answer.state} in term {answer.term}: {answer.message}")


@click.command("fence-self")
@click.option("--term", type=int, required=True, help="The term the slave claimed.")
@pass_context
def fence_self(ctx: Context, term: int) -> None:
    """On the master (run by the slave over SSH): stop the service for TERM and verify it is down.
    Prints the answer as JSON; exit 0 when the service is verified down."""
    if ctx.role() is not Role.MASTER:
        raise CommandError("fence-self runs on the master")
    logging.basicConfig(level=logging.INFO, format="fence-self %(levelname)s %(message)s", stream=sys.stderr)
    answer = run_fence_self(ctx.config, term, logging.getLogger("fence-self"))
    click.echo(json.dumps(answer))
    if not answer.get("ok"):
        sys.exit(1)
