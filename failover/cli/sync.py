"""`failover sync`: compare or copy SYNC_FILES from the ACTIVE host to the standby, and the two
commands the standby runs for it over SSH (sync-inventory, sync-commit).

Direction follows the ACTIVE host: `sync` runs only there, and sync-commit refuses to write on
the ACTIVE host. Contents are never printed: only size, mode, owner and whether SHA-256 differs.
"""

from __future__ import annotations

import json
import sys

import click

from failover.cli.context import CommandError, Context, own_state, pass_context
from failover.machine import Role, State
from failover.state import wall_clock
from failover.sync.files import SyncError, clean_temp, inventory, printable
from failover.sync.peer import Peer, Plan, write_result
from failover.sync.receive import apply_batch


def table(plan: Plan) -> str:
    lines = [f"{'STATUS':19} {'MODE':6} PATH"]
    for row in plan.rows:
        detail = f"  ({row.detail})" if row.detail and row.status != "equal" else ""
        lines.append(f"{row.status:19} {row.mode:6} /{row.path}{detail}")
    return printable("\n".join(lines))


@click.command()
@click.option("--check", "mode", flag_value="check", default=True, help="Compare only (the default).")
@click.option("--full", "mode", flag_value="full", help="Make the standby an exact copy of every 'sync' entry.")
@click.option("--dry-run", is_flag=True, help="With --full: print the plan, change nothing.")
@pass_context
def sync(ctx: Context, mode: str, dry_run: bool) -> None:
    """Files that must match on both hosts: compare (exit 0 only if all match) or copy them to the standby."""
    config = ctx.config
    me = ctx.role()
    if not config.SYNC_FILES:
        raise CommandError("SYNC_FILES is empty: nothing to compare")
    state = own_state(config, me)
    if state is not State.ACTIVE:
        peer = "slave" if me is Role.MASTER else "master"
        raise CommandError(f"this host (the {me}) is {state}: sync runs on the ACTIVE host (the {peer}?)")
    try:
        with Peer(config, me) as peer_link:
            plan = peer_link.plan(full=mode == "full")
            click.echo(table(plan))
            # a special file (fifo, socket, device) is listed but cannot differ: it is never synced
            skipped = sum(r.status == "skipped" for r in plan.rows)
            different = [r for r in plan.rows if r.status not in ("equal", "skipped")]
            if mode == "check":
                write_result(
                    config, check_ok=not different, check_summary=f"{len(different)} of {len(plan.rows)} differ"
                )
                if different:
                    raise CommandError(f"{len(different)} of {len(plan.rows)} paths differ")
                extra = f"; {skipped} skipped (not a file, directory or symlink)" if skipped else ""
                click.echo(f"all {len(plan.rows) - skipped} paths match{extra}")
                return
            click.echo(f"plan: send {len(plan.send)}, delete {len(plan.delete)} on the {peer_link.peer}")
            for rel in plan.delete:
                click.echo(printable(f"  delete /{rel}"))
            if dry_run:
                click.echo("dry run: nothing was changed")
                return
            for line in peer_link.send(plan.send, plan.delete):
                click.echo(printable(f"  {line}"))
    except (SyncError, OSError) as e:  # OSError: this host's own files (a permission, a full disk)
        write_result(config, last_error=str(e))
        raise CommandError(printable(f"sync failed: {e}")) from None
    write_result(config, check_ok=True, full_time=wall_clock(), paused=False, failures=0, last_error=None)
    click.echo(f"full sync done: {len(plan.send)} sent, {len(plan.delete)} deleted; automatic sync resumes")


@click.command("sync-inventory", hidden=True)
@click.option(
    "--clean-temp", "clean_temp_first", is_flag=True, help="First remove temp files of interrupted transfers."
)
@pass_context
def sync_inventory(ctx: Context, clean_temp_first: bool) -> None:
    """Run over SSH on the standby: its SYNC_FILES as JSON (metadata and SHA-256, never content)."""
    config = ctx.config
    me = ctx.role()
    try:
        if clean_temp_first and own_state(config, me) is not State.ACTIVE:
            clean_temp(config.sync_root(me), config.sync_entries())
        found = inventory(config.sync_root(me), config.sync_entries(), for_standby=False)
    except (SyncError, OSError) as e:
        raise CommandError(printable(str(e))) from None
    json.dump({rel: info.to_json() for rel, info in found.items()}, sys.stdout)


@click.command("sync-commit", hidden=True)
@click.option("--batch", is_flag=True, required=True, help="Read the JSON list of steps on stdin.")
@pass_context
def sync_commit(ctx: Context, batch: bool) -> None:
    """Run over SSH on the standby: put received temp files in place, make directories and
    symlinks, delete paths, in order (the steps: failover.sync.receive). Refused on the ACTIVE
    host, and for any path that is not under one of THIS host's 'sync' entries (or is under one
    of its 'verify' entries): then nothing is changed. On the first failure the remaining temp
    files go."""
    config = ctx.config
    me = ctx.role()
    if own_state(config, me) is State.ACTIVE:
        raise CommandError(f"the {me} is ACTIVE: a host never receives a sync while it is ACTIVE")
    try:
        steps = json.load(sys.stdin)
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than the parser goes
        raise CommandError(f"sync-commit: bad input: {str(e)[:200]}") from None
    try:
        apply_batch(config.sync_root(me), config.sync_entries(), steps, lambda line: click.echo(printable(line)))
    except SyncError as e:
        raise CommandError(printable(f"sync-commit: {e}")) from None
