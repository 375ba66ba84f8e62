"""`failover check`: validate the config (the replacement for `perl -cw`), and on the ACTIVE host
with a reachable peer, say whether SYNC_FILES are equal on both hosts."""

from __future__ import annotations

import click

from failover.cli.context import BadConfig, CommandError, Context, own_state, pass_context
from failover.config import ConfigError, find_role
from failover.machine import Role, State
from failover.sync.files import SyncError
from failover.sync.peer import Peer


@click.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@pass_context
def check(ctx: Context, path: str | None) -> None:
    """Validate the config (the replacement for `perl -cw`): exit 0, or 2 with one line per problem."""
    ctx = Context(path or ctx.config_path, ctx.role_option)
    config = ctx.config
    for warning in config.warnings:
        click.echo(f"{config.source}: warning: {warning}", err=True)
    try:
        role_text = f"this host is the {find_role(config, Role(ctx.role_option) if ctx.role_option else None)}"
    except ConfigError as e:
        if "both MASTER_HOST" not in e.problems[0].message:
            raise BadConfig("\n".join(e.lines())) from None
        role_text = "both roles are on this machine (give --role to start, status works as is)"
    c = config
    if c.SYNC_FILES and c.RLOGIN_KNOWN_HOSTS:
        _check_sync(ctx)
    triggers = ", ".join(sorted(t.value for t in c.triggers()))
    mode = f"automatic failover on: {triggers}" if triggers else "MANUAL MODE (no trigger enabled)"
    click.echo(
        f"{c.source}: OK: {role_text}; master {c.MASTER_HOST}, slave {c.SLAVE_HOST}; {mode}; probes every "
        f"{c.PROBE_INTERVAL:g} s (timeout {c.REMOTE_POP3_TIMEOUT:g} s, {c.PROBE_FAILURES} in a row = down); "
        f"{c.RESTART_LIMIT} local restarts per {c.RESTART_WINDOW:g} s; ON_ACK_TIMEOUT {c.ON_ACK_TIMEOUT.value}"
    )


def _check_sync(ctx: Context) -> None:
    """On the ACTIVE host with a reachable peer: are SYNC_FILES equal? (a warning, not a config error)"""
    try:
        me = ctx.role()
        if own_state(ctx.config, me) is not State.ACTIVE:
            return
        with Peer(ctx.config, me) as peer:
            rows = peer.plan(full=False).rows
    except (SyncError, CommandError, ConfigError) as e:
        click.echo(f"{ctx.config.source}: note: SYNC_FILES not compared (the peer: {e})", err=True)
        return
    differ = [r for r in rows if r.status not in ("equal", "skipped")]  # skipped: a fifo, socket, device
    if differ:
        paths = ", ".join(f"/{r.path} ({r.status})" for r in differ[:5])
        click.echo(f"{ctx.config.source}: warning: SYNC_FILES: {len(differ)} of {len(rows)} differ: {paths}", err=True)
