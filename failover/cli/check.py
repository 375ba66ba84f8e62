"""`failover check`: validate the config (the replacement for `perl -cw`), and on the ACTIVE host
with a reachable peer, say whether SYNC_FILES are equal on both hosts."""

from __future__ import annotations

import click

from failover.cli.context import BadConfig, CommandError, Context, own_state, pass_context
from failover.config import Config, ConfigError, find_role
from failover.heartbeat import takeover_wait
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
    click.echo(f"{c.source}: {_lease_text(c)}")


def _lease_text(c: Config) -> str:
    """What happens when the master goes silent: the lease's numbers, or why there is none."""
    times = c.lease_times()
    stream = f"heartbeat stream: a datagram every {c.BEAT_INTERVAL:g} s each way (UDP ports {c.MONITOR_PORT}, "
    stream += f"{c.MONITOR_PORT_SLAVE}); contact lost after {c.HEARTBEAT_TIMEOUT:g} s of silence"
    if times is None:
        why = "LEASE = False" if c.LOAD_BALANCER else "no LOAD_BALANCER"
        return f"{stream}; NO LEASE ({why}): without the master's ACK the slave starts only through a fence"
    wait, lb_wait = takeover_wait(times), takeover_wait(times, by_load_balancer=True)
    half = c.HEARTBEAT_TIMEOUT / 2
    return (
        f"{stream} (then one failed probe is enough, asked at {half:g} s of silence, its timeout at most {half:g} s)"
        f"; LEASE: the master kills its service {times.lease:g} s after the last acknowledged "
        f"datagram, or {times.lb_lease:g} s after the last read of the load balancer that showed its server "
        f"in service (read every {times.lb_lease / 4:g} s once acknowledgements stop), verified within "
        f"{times.hard_stop:g} s; without an ACK the slave starts once {wait:.3f} s have passed since its last "
        f"grant and {lb_wait:.3f} s since the load balancer confirmed the master MAINT = (LEASE_TIME "
        f"{times.lease:g} or {times.lb_lease:g} + HARD_STOP_TIMEOUT {times.hard_stop:g} + margin "
        f"{times.margin:g}) x (1 + {times.drift:g}) / (1 - {times.drift:g}); a dead or cut-off master fails "
        f"over {wait:.2f} s after its last datagram at the earliest (plus the fence's lateness past "
        f"{c.HEARTBEAT_TIMEOUT:g} s and the startup scripts)"
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
